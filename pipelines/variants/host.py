"""The CPU's variant for RGB frame pipelines: DALI decodes, the loader cuts every view.

On the CPU backend DALI's resize cost more than JPEG decoding itself, while OpenCV's uint8 bilinear kernel does the
same arithmetic several times cheaper (docs/PERFORMANCE.md). So the graph only decodes, and `assemble` cuts each box
group's view from the decoded frame with `parts.cut_box` (a slice, OpenCV's INTER_LINEAR resize of an integer box, or
a warpAffine from source coordinates for a fractional one: bilinear, half-pixel centres, no antialias, as
MMAction2's mmcv.imresize and DALI's resize), and flips each view by its own flag while it writes it into the batch.
No per-sample branch in the graph: a DALI conditional that chose between "slice" and "resample" per box cost 4 of 23
CPU ms per 25x3 test clip.
roi_decode (single-view pipelines): only the box is decoded when it is integral (the decoded window is the view),
else the box plus a 1 px interpolation margin.

Outputs: frames (N, H, W, 3) as decoded; boxes (N, G, 4) float32, each box group's (x1, y1, x2, y2) relative to the
decoded image; mirror (N, crops) uint8; index (N,).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..readers import ReaderKind
from . import parts
from .base import Column, Variant


@dataclass(frozen=True)
class HostResample(Variant):
    roi_decode: bool = False

    name = "host resample"
    host_work = "cut + resample every box + flip + copy to torch"   # what the loader adds after the graph (tsn profile)

    def columns(self, source) -> list[Column]:
        cols = parts.decoder_columns(ReaderKind.JPEG, window=self.roi_decode)
        return cols + [Column("boxes", np.float32), Column("mirror", np.uint8), Column("index", np.int64)]

    def emit(self, columns: dict, source, index: int, clip, views: list, drawn: dict):
        layout = source.layout
        n = ReaderKind.JPEG.samples_per_video(layout)
        window = None
        if self.roi_decode:
            # The exact box when it is integral (the decoded window is the view), else a 1 px margin.
            exact = parts.is_integral(views[0].box)
            window = (tuple(int(v) for v in views[0].box) if exact else
                      parts.margin_window(views[0], clip.width, clip.height))
        parts.emit_decoder(columns, clip, ReaderKind.JPEG, n, window)
        x0, y0 = window[:2] if window else (0, 0)
        boxes = []
        for members in layout.groups:
            x1, y1, x2, y2 = views[members[0]].box
            boxes.append((x1 - x0, y1 - y0, x2 - x0, y2 - y0))
        columns["boxes"] += [boxes] * n
        columns["mirror"] += [[int(view.mirror) for view in views]] * n
        columns["index"] += [index] * n

    def decoded(self, nodes: dict, source, backend: str, decoding):
        return parts.decode(nodes, ReaderKind.JPEG, gray=False, backend=backend, decoding=decoding,
                            window=self.roi_decode)

    def graph(self, nodes: dict, source, backend: str, decoding) -> dict:
        return {"frames": self.decoded(nodes, source, backend, decoding), "boxes": nodes["boxes"],
                "mirror": nodes["mirror"]}

    def output_names(self, layout) -> tuple[str, ...]:
        return ("frames", "boxes", "mirror", "index")

    def assemble(self, named: dict, layout, videos: int, empty=None) -> torch.Tensor:
        """Named CPU outputs of one batch -> (B, V, 3, H, W) uint8 clips.

        Each view is cut from the decoded frame as an (h, w, 3) crop (resampled if its box is not the output size,
        mirrored by OpenCV if flagged) and de-interleaved once into its slot (parts.deinterleave: OpenCV's split,
        3x cheaper than the transposing numpy copy this replaced; no whole-frame transpose for multi-crop protocols).
        """
        w, h, vpc = layout.out_w, layout.out_h, layout.views_per_crop
        frames = named["frames"]
        boxes = parts.torch_view(named["boxes"]).numpy().tolist()     # per sample: G boxes (x1, y1, x2, y2)
        flags = parts.torch_view(named["mirror"]).numpy().tolist()    # per sample: one 0/1 per crop
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
                image = np.asarray(frames[i])
                for u, members in enumerate(layout.groups):
                    pixels = parts.cut_box(image, boxes[i][u], w, h)
                    mirrored = None
                    for c in members:
                        if flags[i][c] and mirrored is None:
                            mirrored = cv2.flip(pixels, 1)
                        parts.deinterleave(mirrored if flags[i][c] else pixels, dst[video, c, frame])
        finally:
            cv2.setNumThreads(threads)
        return out.view(videos, layout.views, 3, h, w)
