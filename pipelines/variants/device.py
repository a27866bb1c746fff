"""Every crop resampled inside the DALI graph: the GPU's variant, which also runs on the CPU backend (flow frames,
DALI's video decoder, splits with augmentation steps, and `gpu_graph=True`, how CI runs the GPU's graph).

decode -> per box group one fused crop+resize(+flip) or a slice -> (flow) x inversion -> the split's augmentation
steps (pipelines/augment.py), all uint8. Per box and sample, a DALI conditional chooses: a box with integer corners
and exactly the output size is sliced out (a linear resample at scale 1 gives the same pixels at ~5x the CPU cost),
any other box is resampled once from source coordinates (parts.resample). A flip is folded into the resample's ROI
(an end-first x range); views that share a box (TenCrop's mirrored copies) flip the shared result instead.

roi_decode (CPU, single-view JPEG pipelines): only the crop window plus a 1 px interpolation margin is decoded
(less entropy decoding); the boxes are then relative to that window.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nvidia.dali import fn, types

from ..readers import ReaderKind
from . import parts
from .base import Column, Variant


def _invert_x(images, invert, backend: str):
    """255 - v where `invert` (per sample, 0/1) is set: Flip on flow negates the x displacement (MMAction2 v0.24.1
    mmaction/datasets/pipelines/augmentations.py Flip: `mmcv.iminvert` on x-flow images)."""
    if backend == "gpu":
        invert = invert.gpu()
    return fn.cast(invert * (255 - images) + (1 - invert) * images, dtype=types.UINT8)


def _crop_group(images, nodes: dict, u: int, members: tuple[int, ...], layout, xy_axes: list[int]):
    """The views of box group `u`, per sample either sliced (plain crop) or resampled; a tuple in `members` order.

    Each branch binds one name (`out`): DALI's conditionals merge names, not list items assigned in a branch.
    """
    if nodes[f"sliced{u}"]:
        base = fn.slice(images, nodes[f"corner{u}"], nodes[f"extent{u}"], axes=xy_axes)
        out = tuple(fn.flip(base, horizontal=nodes[f"mirror{c}"]) for c in members)
    else:
        # The ROI carries the first member's flip; the others are its mirrored copies (TenCrop: mirror XOR).
        base = parts.resample(images, nodes, u, layout)
        out = (base,) + tuple(fn.flip(base, horizontal=1) for _ in members[1:])
    return out


@dataclass(frozen=True)
class DeviceResample(Variant):
    roi_decode: bool = False

    name = "device (every resample in DALI)"
    host_work = "copy to torch"   # what the loader adds after the graph (tsn profile)

    def columns(self, source) -> list[Column]:
        cols = parts.decoder_columns(source.reader.kind, window=self.roi_decode)
        cols += parts.box_columns(source.layout, flow=source.flow)
        cols += [Column(name, dtype) for name, dtype in parts.step_columns(source.steps, source.layout)]
        return cols + [Column("index", np.int64)]

    def emit(self, columns: dict, source, index: int, clip, views_: list, drawn: dict):
        kind, layout = source.reader.kind, source.layout
        n = kind.samples_per_video(layout)
        window = parts.margin_window(views_[0], clip.width, clip.height) if self.roi_decode else None
        parts.emit_decoder(columns, clip, kind, n, window)
        parts.emit_boxes(columns, views_, layout, n, origin=window[:2] if window else (0, 0), flow=source.flow)
        for name, value in drawn.items():                       # one draw per video, on each of its samples
            columns[name] += [value] * n
        columns["index"] += [index] * n

    def decoded(self, nodes: dict, source, backend: str, decoding):
        return parts.decode(nodes, source.reader.kind, gray=source.flow, backend=backend, decoding=decoding,
                            window=self.roi_decode)

    def graph(self, nodes: dict, source, backend: str, decoding) -> dict:
        layout = source.layout
        images = self.decoded(nodes, source, backend, decoding)
        xy_axes = [2, 1] if source.reader.kind is ReaderKind.VIDEO else [1, 0]   # fn.slice's (x, y): FHWC or HWC
        out = []
        for u, members in enumerate(layout.groups):
            out += _crop_group(images, nodes, u, members, layout, xy_axes)
        if source.flow:
            out = [_invert_x(v, nodes[f"invert{c}"], backend) for c, v in enumerate(out)]
        out = parts.apply_steps(out, nodes, source.steps, layout, backend)      # the recipe's steps, in order
        return dict(zip(parts.view_names(layout), out))

    def output_names(self, layout) -> tuple[str, ...]:
        return parts.output_names(layout)

    def assemble(self, named: dict, layout, videos: int, empty=None):
        return parts.assemble(named, layout, videos, empty)
