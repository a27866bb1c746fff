"""Crop boxes as external-source columns, shared by the variants that resample in the graph (device.py, host.py).

Per box group u (pipelines/layout.py `box_groups`: TenCrop's box and its mirrored copy share one), per sample:
  roi_start{u}, roi_end{u}  (N, 2) float32  the box as fn.resize's ROI, (y, x), relative to the decoded (maybe
                                            ROI-decoded) image; an x range given end-first mirrors the output
  sliced{u}                 (N,) bool       the graph cuts this box with fn.slice instead of resampling it
  corner{u}, extent{u}      (N, 2) int32    the integer box, (x, y) and (w, h)
Per crop c: mirror{c} (N,) int32, and for flow invert{c} (N, 1) uint8 (x images of a flipped view: 255 - v).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from nvidia.dali import fn, types

from ..geometry import View
from ..layout import ClipLayout
from .base import Column


def is_integral(view: View) -> bool:
    return all(float(v).is_integer() for v in view.box)


def is_plain_crop(view: View) -> bool:
    """An integer box of exactly the output size: a linear resample at scale 1 is a copy, so slice instead."""
    x1, y1, x2, y2 = view.box
    return is_integral(view) and (x2 - x1, y2 - y1) == (view.out_w, view.out_h)


def columns(layout: ClipLayout, *, flow: bool) -> list[Column]:
    cols = []
    for u in range(len(layout.groups)):
        cols += [Column(f"roi_start{u}", np.float32), Column(f"roi_end{u}", np.float32),
                 Column(f"sliced{u}", np.bool_), Column(f"corner{u}", np.int32), Column(f"extent{u}", np.int32)]
    for c in range(layout.crops):
        cols.append(Column(f"mirror{c}", np.int32))
        if flow:
            cols.append(Column(f"invert{c}", np.uint8))
    return cols


def emit(columns: dict, views: list[View], layout: ClipLayout, n: int, *, origin: tuple[int, int],
         mirror_in_roi: bool, sliced: Callable[[View], bool], flow: bool):
    """One video's box rows, `n` samples each. origin: the decode window's corner (0, 0 for the full frame).
    mirror_in_roi: the first view of a group has its flip folded into the resample's ROI (else the caller flips).
    sliced: which boxes the graph slices rather than resamples."""
    x0, y0 = origin
    for u, members in enumerate(layout.groups):
        first = views[members[0]]
        bx1, by1, bx2, by2 = first.box
        # fn.resize ROIs follow the tensor's axis order (y, x), relative to the decoded (maybe sliced) image. An x
        # range given end-first mirrors the output: the first view's flip rides on its resample for free.
        left, right = (bx2, bx1) if first.mirror and mirror_in_roi else (bx1, bx2)
        columns[f"roi_start{u}"] += [(by1 - y0, left - x0)] * n
        columns[f"roi_end{u}"] += [(by2 - y0, right - x0)] * n
        columns[f"sliced{u}"] += [sliced(first)] * n
        columns[f"corner{u}"] += [(int(bx1) - x0, int(by1) - y0)] * n
        columns[f"extent{u}"] += [(int(bx2) - int(bx1), int(by2) - int(by1))] * n
    for c, view in enumerate(views):
        columns[f"mirror{c}"] += [int(view.mirror)] * n
        # Flow samples alternate x, y (v0.24.1 loading.py RawFrameDecode); a Flip inverts only the x components.
        if flow:
            columns[f"invert{c}"] += [(int(view.invert_flow_x and i % 2 == 0),) for i in range(n)]


def resample(images, nodes: dict, u: int, layout: ClipLayout):
    """Box group `u` resampled once from its source ROI to the output size: bilinear, half-pixel centres, no
    antialias, like cv2 INTER_LINEAR (MMAction2's mmcv.imresize). (N, out_h, out_w, C) or (B, F, out_h, out_w, C)."""
    return fn.resize(images, roi_start=nodes[f"roi_start{u}"], roi_end=nodes[f"roi_end{u}"],
                     resize_x=layout.out_w, resize_y=layout.out_h, interp_type=types.INTERP_LINEAR, antialias=False)
