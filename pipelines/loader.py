"""A small adapter from the DALI pipeline to plain torch tensors: `for batch in loader` and `len(loader)`.

Shapes (legend: B videos, V views = crops x clips x clip_len for RGB or crops x clips for flow, C channels):
  batch.clips   (B, V, C, H, W) uint8 (CPU, or CUDA for the GPU pipeline); C = 3 (RGB) or 2 * clip_len (flow)
  batch.labels  (B,) int64, or (B, num_classes) float32 multi-hot
  batch.index   (B,) int64 position in the annotation list; -1 marks evaluation padding (exclude it downstream)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .graph import output_size
from .source import ClipSource, box_groups, read_bad_log


@dataclass
class Batch:
    clips: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor


class TooManyBadSamples(RuntimeError):
    """More of the data was unreadable than `max_bad_fraction` allows."""


def _resample(hwc: np.ndarray, w: int, h: int) -> np.ndarray:
    """(h_i, w_i, 3) uint8 -> (3, h, w) uint8 (a transposed view when the size already matches)."""
    if hwc.shape[:2] == (h, w):
        return hwc.transpose(2, 0, 1)
    chw = torch.from_numpy(hwc).permute(2, 0, 1)[None]
    return F.interpolate(chw, size=(h, w), mode="bilinear", align_corners=False, antialias=False)[0].numpy()


def _view(tensor_list) -> torch.Tensor:
    """A zero-copy torch view of a DALI output; valid until the next run() (DALI reuses its buffers)."""
    return torch.from_dlpack(tensor_list.as_tensor())


class ClipLoader:
    def __init__(self, source: ClipSource, pipeline, *, num_classes: int, multi_label: bool = False,
                 max_bad_fraction: float = 1.0):
        self.source, self.pipeline = source, pipeline
        self.num_classes, self.multi_label = num_classes, multi_label
        self.max_bad_fraction = max_bad_fraction
        self._pending = 0            # batches of the current pipeline epoch not yet consumed
        self.short_videos: list[str] = []   # list lines of videos shorter than one clip (padded)
        s = source.sampler
        self.views_per_crop = s.num_offsets * (1 if source.flow else s.clip_len)
        self.channels = 2 * s.clip_len if source.flow else 3

    def __len__(self) -> int:
        return self.source.num_batches()

    def _drain(self):
        """Finish an epoch the consumer left early, so the next one starts at its first batch."""
        try:
            while True:
                self.pipeline.run()
        except StopIteration:
            self.pipeline.reset()

    def __iter__(self):
        if self._pending:
            self._drain()
        self._pending = len(self)
        for _ in range(len(self)):
            outputs = self.pipeline.run()
            self._pending -= 1
            yield self._assemble(outputs)
        self._drain()
        self._pending = 0
        self.check_bad_samples()

    def _assemble(self, outputs) -> Batch:
        if self.source.host_resample:
            return self._assemble_host(outputs)
        *views, index = outputs
        per_sample_index = _view(index).reshape(-1)
        b = len(per_sample_index) if self.source.reader.per_video else len(per_sample_index) // self._frames()
        index = per_sample_index.reshape(b, -1)[:, 0].clone()
        first = _view(views[0])                                   # each (N, H, W, c) or (B, F, H, W, c)
        h, w = first.shape[-3:-1]
        # Frames of one view are k consecutive samples: k = 2 * clip_len grey flow images (x, y, x, y, ...) or
        # k = 1 RGB frame. Each crop's (B, views, k, H, W, c) is written once, transposed, into its slot of
        # (B, crops, views, k, c, H, W) = (B, crops * views, k * c, H, W): crop-major like MMAction2's lists, flow
        # channels [x_t, y_t, x_t+1, ...] (spec §3.11). One copy out of DALI's buffers, no stack / clone.
        k = self.channels if self.source.flow else 1
        c = self.channels // k
        out = torch.empty((b, len(views), self.views_per_crop, k, c, h, w), dtype=first.dtype, device=first.device)
        for i, view in enumerate(views):
            src = first if i == 0 else _view(view)
            out[:, i].copy_(src.reshape(b, self.views_per_crop, k, h, w, c).permute(0, 1, 2, 5, 3, 4))
        clips = out.view(b, -1, self.channels, h, w)
        return Batch(clips, self._labels(index), index)

    def _assemble_host(self, outputs) -> Batch:
        """CPU RGB path (graph.py, host_resample): per crop box and sample, either DALI resampled a fractional box or
        the box has integer corners and is cut here from the decoded frame, then resampled if its size differs from
        the output: bilinear, half-pixel centres, no antialias (DALI's and cv2 INTER_LINEAR's rule) in torch's uint8
        kernel. Every view is flipped by its own flag while numpy writes it, transposed, into its slot of the batch
        (one strided copy; measured 2.5x cheaper than torch's permuted copy_ here). Multi-crop protocols transpose
        each frame once and copy plain blocks out of it (25 x 10 views: 20.6 -> 27.4 videos/s measured)."""
        groups = box_groups(self.source.augment)
        g, crops = len(groups), self.source.augment.num_crops
        frames, resized = outputs[0], outputs[1:1 + g]
        sliced, corner, extent = (outputs[1 + g * k:1 + g * (k + 1)] for k in (1, 2, 3))
        mirrors, index = outputs[1 + 4 * g:1 + 4 * g + crops], outputs[-1]
        per_sample_index = _view(index).reshape(-1)
        n, vpc = len(per_sample_index), self.views_per_crop
        b = n // self._frames()
        w, h = output_size(self.source.augment)
        flags = [_view(m).reshape(-1).tolist() for m in mirrors]
        out = torch.empty((b, crops, vpc, 3, h, w), dtype=torch.uint8)
        dst = out.numpy()
        # One sample at a time: torch's intra-op threads would only spin on 224 x 224 images (measured: 2x the CPU).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            per_box = [tuple(_view(t[u]).numpy() for t in (sliced, corner, extent)) for u in range(g)]
            for i in range(n):
                video, frame = divmod(i, vpc)
                chw = None          # the frame transposed once when several views are cut from it (3x faster)
                for u, members in enumerate(groups):
                    cut, xy, wh = per_box[u]
                    if not cut[i]:
                        pixels = np.asarray(resized[u][i]).transpose(2, 0, 1)
                    elif crops > 1 and tuple(wh[i]) == (w, h):
                        if chw is None:
                            chw = np.ascontiguousarray(np.asarray(frames[i]).transpose(2, 0, 1))
                        (x, y) = xy[i]
                        pixels = chw[:, y:y + h, x:x + w]
                    else:
                        (x, y), (bw, bh) = xy[i], wh[i]
                        pixels = _resample(np.asarray(frames[i])[y:y + bh, x:x + bw], w, h)
                    for c in members:
                        np.copyto(dst[video, c, frame], pixels[:, :, ::-1] if flags[c][i] else pixels)
        finally:
            torch.set_num_threads(threads)
        index = per_sample_index.reshape(b, -1)[:, 0].clone()
        return Batch(out.view(b, -1, 3, h, w), self._labels(index), index)

    def _frames(self) -> int:
        s = self.source.sampler
        return s.num_offsets * s.clip_len * (2 if self.source.flow else 1)

    def _labels(self, index: torch.Tensor) -> torch.Tensor:
        records = self.source.records
        real = [int(i) if i >= 0 else 0 for i in index]          # padding rows get any label; they are masked
        if not self.multi_label:
            return torch.tensor([records[i].label for i in real], dtype=torch.int64)
        hot = torch.zeros(len(real), self.num_classes)
        for row, i in enumerate(real):
            hot[row, list(records[i].labels)] = 1.0
        return hot

    def bad_samples(self) -> list[dict]:
        return read_bad_log(self.source.bad_log)

    def check_bad_samples(self):
        """Abort with a summary once more than max_bad_fraction of the list proved unreadable."""
        bad = self.bad_samples()
        if len(bad) > self.max_bad_fraction * len(self.source.records):
            lines = "\n".join(f"  {b['line']}: {b['reason']}" for b in bad[:20])
            raise TooManyBadSamples(
                f"{len(bad)} of {len(self.source.records)} videos unreadable (max_bad_fraction="
                f"{self.max_bad_fraction}); see {self.source.bad_log}\n{lines}")
