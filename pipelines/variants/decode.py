"""The graph's decoder stage, per reader kind (pipelines/readers.py `ReaderKind`), with its input columns.

  JPEG     DALI's image decoder: libjpeg-turbo ("cpu") or nvJPEG ("mixed"); with a decode window, `image_slice`
           decodes only that window (ROI decoding, CPU only: pipelines/plan.py)
  VIDEO    DALI's video decoder on (file bytes, frame indices): one (F, H, W, 3) sequence per video
  DECODED  frames decoded in the Python workers (PyAV) pass through (copied to the GPU on a GPU pipeline)
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from nvidia.dali import fn, types

from ..readers import Clip, ReaderKind
from .base import Column

if TYPE_CHECKING:
    from ..defaults import Decoding
    from ..geometry import View


def columns(kind: ReaderKind, *, window: bool) -> list[Column]:
    """data: encoded JPEGs / decoded frames / one encoded file; frames (VIDEO): (F,) int32 indices; with a decode
    window: anchor (N, 2) and shape (N, 2) int32, (x, y) and (w, h) in source pixels."""
    cols = [Column("data")] + ([Column("frames")] if kind is ReaderKind.VIDEO else [])
    if window:
        cols += [Column("anchor", np.int32), Column("shape", np.int32)]
    return cols


def margin_window(view: View, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer decode window (x0, y0, x1, y1) around a float view box, with a 1 px margin for interpolation."""
    x1, y1, x2, y2 = view.box
    return (max(0, math.floor(x1) - 1), max(0, math.floor(y1) - 1),
            min(width, math.ceil(x2) + 1), min(height, math.ceil(y2) + 1))


def emit(columns: dict, clip: Clip, kind: ReaderKind, n: int, window: tuple[int, int, int, int] | None = None):
    """One video's decoder inputs: its `n` samples, and the decode window (x0, y0, x1, y1) each of them gets."""
    columns["data"] += clip.data
    if kind is ReaderKind.VIDEO:
        columns["frames"].append(clip.frames)
    if window is not None:
        x0, y0, x1, y1 = window
        columns["anchor"] += [(x0, y0)] * n                 # image_slice takes (x, y)
        columns["shape"] += [(x1 - x0, y1 - y0)] * n


def decode(nodes: dict, kind: ReaderKind, *, gray: bool, backend: str, decoding: Decoding, window: bool = False):
    """Decoded images: (N, H, W, C) uint8 (C = 1 for grey flow images), or (B, F, H, W, 3) sequences for VIDEO.

    backend "gpu" runs the "mixed" decoders (nvJPEG / NVDEC) with `decoding`'s settings; "cpu" ignores them."""
    dali_backend = "mixed" if backend == "gpu" else "cpu"
    gpu = {"hw_decoder_load": decoding.hw_decoder_load,
           "jpeg_fancy_upsampling": decoding.jpeg_fancy_upsampling} if backend == "gpu" else {}
    if kind is ReaderKind.VIDEO:
        # Sorted internally by DALI and scattered back to request order; 'edge' guards a frame count off by one.
        return fn.decoders.video(nodes["data"], device=dali_backend, frames=nodes["frames"], pad_mode="edge")
    if kind is ReaderKind.DECODED:
        return nodes["data"].gpu() if backend == "gpu" else nodes["data"]
    out_type = types.GRAY if gray else types.RGB
    if window:
        return fn.decoders.image_slice(nodes["data"], nodes["anchor"], nodes["shape"], device=dali_backend,
                                       output_type=out_type, normalized_anchor=False, normalized_shape=False, **gpu)
    return fn.decoders.image(nodes["data"], device=dali_backend, output_type=out_type, **gpu)
