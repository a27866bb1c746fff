"""The CPU's variant for frames decoded in Python (PyAV): the DALI Python workers that decoded a video's frames
also cut its views, in parallel, and ship out_w x out_h views instead of whole frames (2.8 MB per 8-frame 456x256
clip); the graph passes them through and the loader only copies them into the batch.

Outputs: view{c} (N, out_h, out_w, 3) uint8 per crop, already flipped; index (N,).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..readers import ReaderKind
from . import parts
from .base import Column, Variant


def cut_views(frames: list[np.ndarray], views_: list, layout) -> list[list[np.ndarray]]:
    """The views of one video's decoded frames: per crop, one (out_h, out_w, 3) uint8 array per frame, flipped.

    Each box is cut by `parts.cut_box` (the graph's resample arithmetic, in OpenCV). Views that share a box
    (TenCrop's mirrored copies) are resampled once.
    """
    w, h = layout.out_w, layout.out_h
    out = [[] for _ in range(layout.crops)]
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)          # the worker processes are the parallelism
    try:
        for frame in frames:
            for members in layout.groups:
                view = views_[members[0]]
                pixels = parts.cut_box(frame, view.box, w, h)
                for c in members:
                    # OpenCV's flip: 8 us per 224 x 224 view against 270 us for numpy's reversed-stride copy
                    out[c].append(cv2.flip(pixels, 1) if views_[c].mirror else pixels)
    finally:
        cv2.setNumThreads(threads)
    return out


@dataclass(frozen=True)
class WorkerViews(Variant):
    name = "views cut in the workers"
    host_work = "copy to torch (the workers cut the views)"   # what the loader adds after the graph (tsn profile)

    def columns(self, source) -> list[Column]:
        return [Column(name, np.uint8) for name in parts.view_names(source.layout)] + [Column("index", np.int64)]

    def emit(self, columns: dict, source, index: int, clip, views_: list, drawn: dict):
        for name, pixels in zip(parts.view_names(source.layout), cut_views(clip.data, views_, source.layout)):
            columns[name] += pixels
        columns["index"] += [index] * ReaderKind.DECODED.samples_per_video(source.layout)

    def decoded(self, nodes: dict, source, backend: str, decoding):
        return nodes[parts.view_names(source.layout)[0]]      # decoding happened in the workers

    def graph(self, nodes: dict, source, backend: str, decoding) -> dict:
        return {name: nodes[name] for name in parts.view_names(source.layout)}

    def output_names(self, layout) -> tuple[str, ...]:
        return parts.output_names(layout)

    def assemble(self, named: dict, layout, videos: int, empty=None):
        return parts.assemble(named, layout, videos, empty)
