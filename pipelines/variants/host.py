"""The CPU's variant for RGB frame pipelines: integer crop boxes are resampled by the loader, not by DALI.

On the CPU backend DALI's resize cost more than JPEG decoding itself, while OpenCV's uint8 bilinear kernel does the
same arithmetic several times cheaper (docs/PERFORMANCE.md). So, per box group and sample:
  * a fractional box (RandomResizedCrop after a resize, a truncated CenterCrop) is still resampled in the graph, once,
    unflipped, at the output size (parts.resample);
  * an integer box leaves the graph as decoded pixels plus its corner/extent, and `assemble` cuts and resamples it
    with OpenCV's INTER_LINEAR: bilinear, half-pixel centres, no antialias (DALI's rule too);
  * every view is flipped by its own flag while it is written into the batch.
roi_decode (single-view pipelines): only the box is decoded when it is integral (the decoded window is the view),
else the box plus a 1 px interpolation margin.

Outputs: frames (N, H, W, 3) as decoded; per box group u: resized{u} (N, out_h, out_w, 3) or a 1 x 1 placeholder,
sliced{u} (N,) bool, corner{u} (N, 2) xy, extent{u} (N, 2) wh; per crop c: mirror{c} (N,); index (N,).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from nvidia.dali import fn

from ..readers import ReaderKind
from . import parts
from .base import Column, Variant

PER_BOX = ("resized", "sliced", "corner", "extent")


def _numpy(tensor_list) -> np.ndarray:
    """A zero-copy (N, ...) view of a dense CPU output; valid until the next run()."""
    return torch.from_dlpack(tensor_list.as_tensor()).numpy()


def _resample(hwc: np.ndarray, w: int, h: int) -> np.ndarray:
    """(h_i, w_i, 3) uint8 -> (h, w, 3) uint8 (the input itself when the size already matches).

    OpenCV's INTER_LINEAR is the resample MMAction2 itself uses (mmcv.imresize, cv2 backend): half-pixel centres, no
    antialias, fixed-point uint8; measured 2x cheaper than torch's uint8 bilinear kernel on 224 x 224 outputs."""
    if hwc.shape[:2] == (h, w):
        return hwc
    return cv2.resize(hwc, (w, h), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class HostResample(Variant):
    roi_decode: bool = False

    name = "host resample"
    host_work = "resample integer boxes + flip + copy to torch"   # what the loader adds after the graph (tsn profile)

    def columns(self, source) -> list[Column]:
        cols = parts.decoder_columns(ReaderKind.JPEG, window=self.roi_decode)
        return cols + parts.box_columns(source.layout, flow=False) + [Column("index", np.int64)]

    def emit(self, columns: dict, source, index: int, clip, views: list, drawn: dict):
        layout = source.layout
        n = ReaderKind.JPEG.samples_per_video(layout)
        window = None
        if self.roi_decode:
            # The exact box when it is integral (the decoded window is the view), else a 1 px margin.
            exact = parts.is_integral(views[0])
            window = (tuple(int(v) for v in views[0].box) if exact else
                      parts.margin_window(views[0], clip.width, clip.height))
        parts.emit_decoder(columns, clip, ReaderKind.JPEG, n, window)
        # The loader flips every view itself: no flip in the ROI.
        parts.emit_boxes(columns, views, layout, n, origin=window[:2] if window else (0, 0), mirror_in_roi=False,
                         sliced=parts.is_integral, flow=False)
        columns["index"] += [index] * n

    def decoded(self, nodes: dict, source, backend: str, decoding):
        return parts.decode(nodes, ReaderKind.JPEG, gray=False, backend=backend, decoding=decoding,
                            window=self.roi_decode)

    def graph(self, nodes: dict, source, backend: str, decoding) -> dict:
        layout = source.layout
        images = self.decoded(nodes, source, backend, decoding)
        out = {"frames": images}
        for u in range(len(layout.groups)):
            # Each branch binds one name: DALI's conditionals merge names. An integer box still has to yield a node:
            # a 1 x 1 placeholder the loader ignores.
            if nodes[f"sliced{u}"]:
                resized = fn.slice(images, nodes[f"corner{u}"], [1, 1], axes=[1, 0])
            else:
                resized = parts.resample(images, nodes, u, layout)
            out[f"resized{u}"] = resized
            for kind in ("sliced", "corner", "extent"):
                out[f"{kind}{u}"] = nodes[f"{kind}{u}"]
        for c in range(layout.crops):
            out[f"mirror{c}"] = nodes[f"mirror{c}"]
        return out

    def output_names(self, layout) -> tuple[str, ...]:
        groups = range(len(layout.groups))
        names = ["frames"] + [f"{kind}{u}" for kind in PER_BOX for u in groups]
        return (*names, *(f"mirror{c}" for c in range(layout.crops)), "index")

    def assemble(self, named: dict, layout, videos: int, empty=None) -> torch.Tensor:
        """Named CPU outputs of one batch -> (B, V, 3, H, W) uint8 clips.

        Each view is cut from the decoded frame as an (h, w, 3) crop (resampled if its box is not the output size,
        mirrored by OpenCV if flagged) and de-interleaved once into its slot (parts.deinterleave: OpenCV's split,
        3x cheaper than the transposing numpy copy this replaced; no whole-frame transpose for multi-crop protocols).
        """
        w, h, vpc = layout.out_w, layout.out_h, layout.views_per_crop
        frames = named["frames"]
        flags = [_numpy(named[f"mirror{c}"]).reshape(-1).tolist() for c in range(layout.crops)]
        per_box = [tuple(_numpy(named[f"{kind}{u}"]) for kind in ("sliced", "corner", "extent"))
                   for u in range(len(layout.groups))]
        resized = [named[f"resized{u}"] for u in range(len(layout.groups))]
        shape = (videos, layout.crops, vpc, 3, h, w)
        out = torch.empty(shape, dtype=torch.uint8) if empty is None else empty(shape)
        dst = out.numpy()
        # One sample at a time, one thread: parallel kernels would only spin on 224 x 224 images (measured: 2x the
        # CPU with torch's intra-op threads); DALI's threads and workers already use the other cores.
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            for i in range(videos * vpc):
                video, frame = divmod(i, vpc)
                for u, members in enumerate(layout.groups):
                    cut, xy, wh = per_box[u]
                    if not cut[i]:
                        pixels = np.asarray(resized[u][i])
                    else:
                        (x, y), (bw, bh) = xy[i], wh[i]
                        pixels = _resample(np.asarray(frames[i])[y:y + bh, x:x + bw], w, h)
                    mirrored = None
                    for c in members:
                        if flags[c][i] and mirrored is None:
                            mirrored = cv2.flip(pixels, 1)
                        parts.deinterleave(mirrored if flags[c][i] else pixels, dst[video, c, frame])
        finally:
            cv2.setNumThreads(threads)
        return out.view(videos, layout.views, 3, h, w)
