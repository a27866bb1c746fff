"""The parts every variant is built from: the decoder stage, the crop-box stage, the view outputs, the step columns.

Decoder stage, per reader kind (pipelines/readers.py `ReaderKind`), with its input columns (`decoder_columns`):
  JPEG     DALI's image decoder: libjpeg-turbo ("cpu") or nvJPEG ("mixed"); with a decode window, `image_slice`
           decodes only that window (ROI decoding, CPU only: pipelines/plan.py)
  VIDEO    DALI's video decoder on (file bytes, frame indices): one (F, H, W, 3) sequence per video
  DECODED  frames decoded in the Python workers (PyAV) pass through (copied to the GPU on a GPU pipeline)

Crop-box stage (`box_columns`), for the variant that resamples in the graph (device.py). Per box
group u (pipelines/layout.py `box_groups`: TenCrop's box and its mirrored copy share one), per sample:
  roi_start{u}, roi_end{u}  (N, 2) float32  the box as fn.resize's ROI, (y, x), relative to the decoded (maybe
                                            ROI-decoded) image; an x range given end-first mirrors the output
  sliced{u}                 (N,) bool       the graph cuts this box with fn.slice instead of resampling it
  corner{u}, extent{u}      (N, 2) int32    the integer box, (x, y) and (w, h)
Per crop c: mirror{c} (N,) int32, and for flow invert{c} (N, 1) uint8 (x images of a flipped view: 255 - v).

View outputs (device.py, worker_views.py): one output per crop, view{c}: (N, H, W, c) images or (B, F, H, W, c)
sequences, and the loader's copy of them into the batch (`assemble`).

Step columns: the augmentation steps' per-video values, `step{i}_{name}` (steps: pipelines/augment.py). The source
draws them after the geometry (`draw_steps`), the device variant declares them (`step_columns`) and applies the steps
to its views (`apply_steps`). Only that variant runs steps (pipelines/plan.py).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from nvidia.dali import fn, types

from ..augment import Step
from ..geometry import View
from ..layout import ClipLayout
from ..readers import Clip, ReaderKind
from .base import Column

if TYPE_CHECKING:
    from ..defaults import Decoding


# --- the decoder stage -----------------------------------------------------------------------------------------------

def decoder_columns(kind: ReaderKind, *, window: bool) -> list[Column]:
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


def emit_decoder(columns: dict, clip: Clip, kind: ReaderKind, n: int,
                 window: tuple[int, int, int, int] | None = None):
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


# --- the crop-box stage ----------------------------------------------------------------------------------------------

def is_integral(box) -> bool:
    """Whether every coordinate of a box (x1, y1, x2, y2) is a whole number."""
    return all(float(v).is_integer() for v in box)


def is_plain_crop(view: View) -> bool:
    """An integer box of exactly the output size: a linear resample at scale 1 is a copy, so slice instead."""
    x1, y1, x2, y2 = view.box
    return is_integral(view.box) and (x2 - x1, y2 - y1) == (view.out_w, view.out_h)


def box_columns(layout: ClipLayout, *, flow: bool) -> list[Column]:
    cols = []
    for u in range(len(layout.groups)):
        cols += [Column(f"roi_start{u}", np.float32), Column(f"roi_end{u}", np.float32),
                 Column(f"sliced{u}", np.bool_), Column(f"corner{u}", np.int32), Column(f"extent{u}", np.int32)]
    for c in range(layout.crops):
        cols.append(Column(f"mirror{c}", np.int32))
        if flow:
            cols.append(Column(f"invert{c}", np.uint8))
    return cols


def emit_boxes(columns: dict, views: list[View], layout: ClipLayout, n: int, *, origin: tuple[int, int], flow: bool):
    """One video's box rows, `n` samples each. origin: the decode window's corner (0, 0 for the full frame).
    The first view of a group has its flip folded into the resample's ROI; a plain crop (`is_plain_crop`) is sliced
    by the graph rather than resampled."""
    x0, y0 = origin
    for u, members in enumerate(layout.groups):
        first = views[members[0]]
        bx1, by1, bx2, by2 = first.box
        # fn.resize ROIs follow the tensor's axis order (y, x), relative to the decoded (maybe sliced) image. An x
        # range given end-first mirrors the output: the first view's flip rides on its resample for free.
        left, right = (bx2, bx1) if first.mirror else (bx1, bx2)
        columns[f"roi_start{u}"] += [(by1 - y0, left - x0)] * n
        columns[f"roi_end{u}"] += [(by2 - y0, right - x0)] * n
        columns[f"sliced{u}"] += [is_plain_crop(first)] * n
        columns[f"corner{u}"] += [(int(bx1) - x0, int(by1) - y0)] * n
        columns[f"extent{u}"] += [(int(bx2) - int(bx1), int(by2) - int(by1))] * n
    for c, view in enumerate(views):
        columns[f"mirror{c}"] += [int(view.mirror)] * n
        # Flow samples alternate x, y (v0.24.1 loading.py RawFrameDecode); a Flip inverts only the x components.
        if flow:
            columns[f"invert{c}"] += [(int(view.invert_flow_x and i % 2 == 0),) for i in range(n)]


def cut_box(frame: np.ndarray, box, w: int, h: int) -> np.ndarray:
    """One view's pixels, (h, w, c) uint8, from an (H, W, c) uint8 frame and a box (x1, y1, x2, y2) in its pixels.

    `resample`'s arithmetic in OpenCV, for the variants that cut views outside the graph: a plain integer crop is
    sliced (and copied out), another integer box is cut and resampled with INTER_LINEAR, a fractional box is
    resampled straight from source coordinates (cv2.warpAffine with half-pixel centres: src = box_start +
    (dst + 0.5) * scale - 0.5, edge pixels repeated, as DALI's ROI resize does)."""
    x1, y1, x2, y2 = box
    if is_integral(box):
        x1, y1, x2, y2 = (int(v) for v in box)
        crop = frame[y1:y2, x1:x2]
        if crop.shape[:2] == (h, w):
            return np.ascontiguousarray(crop)
        return cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)
    sx, sy = (x2 - x1) / w, (y2 - y1) / h
    m = np.float32([[sx, 0, x1 + 0.5 * sx - 0.5], [0, sy, y1 + 0.5 * sy - 0.5]])
    return cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def resample(images, nodes: dict, u: int, layout: ClipLayout):
    """Box group `u` resampled once from its source ROI to the output size: bilinear, half-pixel centres, no
    antialias, like cv2 INTER_LINEAR (MMAction2's mmcv.imresize). (N, out_h, out_w, C) or (B, F, out_h, out_w, C)."""
    return fn.resize(images, roi_start=nodes[f"roi_start{u}"], roi_end=nodes[f"roi_end{u}"],
                     resize_x=layout.out_w, resize_y=layout.out_h, interp_type=types.INTERP_LINEAR, antialias=False)


# --- the view outputs ------------------------------------------------------------------------------------------------

def view_names(layout: ClipLayout) -> tuple[str, ...]:
    return tuple(f"view{c}" for c in range(layout.crops))


def output_names(layout: ClipLayout) -> tuple[str, ...]:
    return view_names(layout) + ("index",)


def torch_view(tensor_list) -> torch.Tensor:
    """A zero-copy torch view of a DALI output; valid until the next run() (DALI reuses its buffers)."""
    return torch.from_dlpack(tensor_list.as_tensor())


def deinterleave(hwc: np.ndarray, chw: np.ndarray) -> None:
    """Write one (h, w, c) uint8 image (rows may be strided: a crop of a larger frame) into `chw`, (c, h, w) with
    contiguous planes. OpenCV's split de-interleaves with SIMD, but only from a contiguous image: a strided crop
    is first copied out row by row. Measured on this project's 2-core machine, per 224 x 224 RGB view: split of a
    strided crop 150 us, copy + split 15 us, numpy's transposing copy 45 us, torch's permuted copy_ 160 us."""
    if hwc.shape[-1] == 1:
        np.copyto(chw[0], hwc[..., 0])
        return
    if not hwc.flags.c_contiguous:
        hwc = np.ascontiguousarray(hwc)
    planes = list(chw)
    if cv2.split(hwc, planes)[0] is not planes[0]:     # OpenCV allocates anew when a plane does not fit: never here
        raise AssertionError(f"cv2.split did not write into the batch: {hwc.shape} -> {chw.shape}")


def assemble(named: dict, layout: ClipLayout, videos: int, empty=None) -> torch.Tensor:
    """view{c} outputs of one batch -> (B, V, C, H, W) uint8 on the pipeline's device.

    The images of one view are k consecutive samples: k = 2 * clip_len grey flow images (x, y, x, y, ...) or k = 1
    RGB frame. Each crop's (B, views, k, H, W, c) is written once, transposed, into its slot of
    (B, crops, views, k, c, H, W) = (B, crops * views, k * c, H, W): crop-major like MMAction2's lists, flow channels
    [x_t, y_t, x_t+1, ...]. One copy out of DALI's buffers, no stack / clone: on the GPU one permuted copy per crop,
    on the CPU one `deinterleave` per image.
    """
    b = videos
    views = [named[name] for name in view_names(layout)]
    first = torch_view(views[0])                                   # each (N, H, W, c) or (B, F, H, W, c)
    h, w = first.shape[-3:-1]
    k, vpc = layout.images_per_view, layout.views_per_crop
    c = layout.channels // k
    shape = (b, layout.crops, vpc, k, c, h, w)
    cpu = first.device.type == "cpu"
    out = empty(shape) if cpu and empty is not None else torch.empty(shape, dtype=first.dtype, device=first.device)
    dst = out.numpy() if cpu else None
    for i, view in enumerate(views):
        src = first if i == 0 else torch_view(view)
        if dst is None:
            out[:, i].copy_(src.reshape(b, vpc, k, h, w, c).permute(0, 1, 2, 5, 3, 4))
            continue
        images, slots = src.numpy().reshape(-1, h, w, c), dst[:, i].reshape(-1, c, h, w)
        for image, slot in zip(images, slots):
            deinterleave(image, slot)
    return out.view(b, -1, layout.channels, h, w)


# --- the step columns ------------------------------------------------------------------------------------------------

def step_columns(steps: tuple[Step, ...], layout: ClipLayout) -> list[tuple[str, type]]:
    """(column name, dtype) of every step's per-video values, in step order."""
    return [(f"step{i}_{name}", dtype) for i, step in enumerate(steps)
            for name, dtype in step.impl.columns(layout).items()]


def draw_steps(steps: tuple[Step, ...], rng: np.random.Generator, layout: ClipLayout) -> dict:
    """One video's values {column name: array}; called after the sampling and geometry draws on the same `rng`."""
    return {f"step{i}_{name}": value for i, step in enumerate(steps)
            for name, value in step.impl.draw(rng, layout).items()}


def apply_steps(views: list, nodes: dict, steps: tuple[Step, ...], layout: ClipLayout, backend: str) -> list:
    """Each step, in order, on every view node (the same per-video parameters for all of a video's views)."""
    for i, step in enumerate(steps):
        params = {name: nodes[f"step{i}_{name}"] for name in step.impl.columns(layout)}
        views = [step.impl.apply(view, params, backend) for view in views]
    return views
