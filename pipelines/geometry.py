"""Spatial geometry: where each output view of a video comes from in its source frames.

Reproduces the box arithmetic of MMAction2's Resize / MultiScaleCrop / RandomResizedCrop / CenterCrop /
ThreeCrop / TenCrop / Flip (v0.24.1 mmaction/datasets/pipelines/augmentations.py), without touching pixels.
:func:`plan_views` turns one video's source size and an :class:`Augment` into a list of :class:`View` s whose
boxes are in *source* pixels, so the caller can crop and resize in one resample (DALI ROI resize) instead of
resize -> crop -> resize.

Box convention: ``(x1, y1, x2, y2)``, exclusive right/bottom (``img[y1:y2, x1:x2]``), in the coordinate
frame of the image the transform sees. Randomness comes from one caller-supplied numpy Generator
(MMAction2's mix of Python ``random`` and numpy is reproduced in distribution, not in stream).
Pure numpy; no torch, no DALI.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Box = tuple[int, int, int, int]

RESIZES = ("short_side", "fixed", "none")
CROPS = ("multiscale", "random_resized", "center", "three", "ten", "none")


def parse_wxh(text: str) -> tuple[int, int]:
    """'340x256' -> (340, 256): sizes are written width first everywhere in the project."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like 340x256 (width x height), got {text!r}") from None
    if w < 1 or h < 1:
        raise ValueError(f"size must be positive, got {text!r}")
    return w, h


def rescale_size(w: int, h: int, short_side: int) -> tuple[int, int]:
    """mmcv keep-ratio size for scale ``(inf, short_side)``: the short side becomes ``short_side``."""
    f = short_side / min(w, h)
    return int(w * f + 0.5), int(h * f + 0.5)


def _clip_box(x: int, y: int, cw: int, ch: int, w: int, h: int) -> Box:
    """Box of size cw x ch at (x, y), truncated to the w x h image (crops larger than the image shrink,
    as a numpy slice would; MMAction2 never pads)."""
    return max(0, x), max(0, y), min(w, x + cw), min(h, y + ch)


def multiscale_crop_candidates(
    w: int, h: int, scales: tuple[float, ...], max_wh_scale_gap: int
) -> list[tuple[int, int]]:
    """MultiScaleCrop's (crop_w, crop_h) candidates in MMAction2's enumeration order.

    Sizes are ``int(min(w, h) * s)`` (truncation: int(256 * 0.66) = 168). Outer loop over the height scale
    index i, inner over the width scale index j, keeping pairs with ``|i - j| <= max_wh_scale_gap``.
    """
    base = min(w, h)
    sizes = [int(base * s) for s in scales]
    return [
        (cw, ch)
        for i, ch in enumerate(sizes)
        for j, cw in enumerate(sizes)
        if abs(i - j) <= max_wh_scale_gap
    ]


def multiscale_fixed_offsets(w: int, h: int, cw: int, ch: int, num_fixed_crops: int) -> list[tuple[int, int]]:
    """MultiScaleCrop's fixed (x, y) positions, duplicates kept (they weigh more in the uniform choice)."""
    if num_fixed_crops not in (5, 13):
        raise ValueError(f"num_fixed_crops must be 5 or 13, got {num_fixed_crops!r}")
    ws, hs = (w - cw) // 4, (h - ch) // 4  # floor quarter steps
    # upper-left, upper-right, lower-left, lower-right, centre
    offsets = [(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)]
    if num_fixed_crops == 13:
        # centre-left, centre-right, lower-centre, upper-centre, then the four quarter points
        offsets += [
            (0, 2 * hs), (4 * ws, 2 * hs), (2 * ws, 4 * hs), (2 * ws, 0),
            (ws, hs), (3 * ws, hs), (ws, 3 * hs), (3 * ws, 3 * hs),
        ]
    return offsets


def multiscale_crop_box(
    w: int,
    h: int,
    *,
    input_size: int | tuple[int, int],
    scales: tuple[float, ...],
    max_wh_scale_gap: int,
    random_crop: bool,
    num_fixed_crops: int,
    rng: np.random.Generator,
) -> Box:
    """One MultiScaleCrop box on a w x h image (``input_size`` is an int or (w, h))."""
    in_w, in_h = (input_size, input_size) if isinstance(input_size, (int, np.integer)) else input_size
    candidates = multiscale_crop_candidates(w, h, scales, max_wh_scale_gap)
    if not candidates:
        raise ValueError("multiscale_crop_box: no crop-size candidates (empty scales?)")
    cw, ch = candidates[int(rng.integers(len(candidates)))]
    # Sizes within 2 px of the network input snap to it (so the final stretch is a no-op for them).
    cw = in_w if abs(cw - in_w) < 3 else cw
    ch = in_h if abs(ch - in_h) < 3 else ch
    # Snapping can push a crop past a tiny image's edge; keep the box inside (MMAction2 would misbehave).
    cw, ch = min(cw, w), min(ch, h)
    if random_crop:
        x = int(rng.integers(0, w - cw, endpoint=True))  # inclusive, like Python random.randint
        y = int(rng.integers(0, h - ch, endpoint=True))
    else:
        offsets = multiscale_fixed_offsets(w, h, cw, ch, num_fixed_crops)
        x, y = offsets[int(rng.integers(len(offsets)))]
    return x, y, x + cw, y + ch


def random_resized_crop_box(
    w: int,
    h: int,
    *,
    area_range: tuple[float, float],
    aspect_ratio_range: tuple[float, float],
    rng: np.random.Generator,
    max_attempts: int = 10,
) -> Box:
    """One RandomResizedCrop box on a w x h image (aspect ratio = width / height).

    All ``max_attempts`` candidates are drawn up front; the first that fits wins, else the centred square
    of side min(w, h).
    """
    ratios = np.exp(rng.uniform(math.log(aspect_ratio_range[0]), math.log(aspect_ratio_range[1]), max_attempts))
    areas = rng.uniform(area_range[0], area_range[1], max_attempts) * (w * h)
    cws = np.round(np.sqrt(areas * ratios)).astype(np.int32)  # np.round: half to even
    chs = np.round(np.sqrt(areas / ratios)).astype(np.int32)
    for cw, ch in zip(cws.tolist(), chs.tolist()):
        # cw, ch >= 1 only matters for images of a few pixels, where a candidate can round to 0.
        if 1 <= cw <= w and 1 <= ch <= h:
            x = int(rng.integers(0, w - cw, endpoint=True))  # inclusive, like Python random.randint
            y = int(rng.integers(0, h - ch, endpoint=True))
            return x, y, x + cw, y + ch
    s = min(w, h)
    x, y = (w - s) // 2, (h - s) // 2
    return x, y, x + s, y + s


def center_crop_box(w: int, h: int, cw: int, ch: int) -> Box:
    """CenterCrop box (floor-centred; truncated to the image if the crop is larger)."""
    return _clip_box((w - cw) // 2, (h - ch) // 2, cw, ch, w, h)


def three_crop_boxes(w: int, h: int, cw: int, ch: int) -> list[Box]:
    """ThreeCrop boxes: [left, right, middle] when ch == h (checked first), else [top, bottom, middle]."""
    if ch == h:
        s = (w - cw) // 2
        offsets = [(0, 0), (2 * s, 0), (s, 0)]
    elif cw == w:
        s = (h - ch) // 2
        offsets = [(0, 0), (0, 2 * s), (0, s)]
    else:
        raise ValueError(
            f"three_crop_boxes: crop {cw}x{ch} must match the image {w}x{h} in height or width"
        )
    return [_clip_box(x, y, cw, ch, w, h) for x, y in offsets]


def ten_crop_boxes(w: int, h: int, cw: int, ch: int) -> list[Box]:
    """TenCrop's five boxes [UL, UR, LL, LR, C] (MultiScaleCrop's five fixed positions); the caller adds each one's
    mirrored copy."""
    return [_clip_box(x, y, cw, ch, w, h) for x, y in multiscale_fixed_offsets(w, h, cw, ch, 5)]


def _is_int(v: object, at_least: int = 1) -> bool:
    """An int (Python's or numpy's, not a bool) of at least `at_least`."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= at_least


@dataclass(frozen=True)
class Augment:
    """The spatial part of one split's pipeline (what MMAction2 writes as Resize/MultiScaleCrop/
    RandomResizedCrop/CenterCrop/ThreeCrop/TenCrop/Resize(224,224)/Flip)."""

    resize: str = "short_side"  # "short_side" (Resize(-1, S)) | "fixed" (Resize((w,h), keep_ratio=False)) | "none"
    short_side: int = 256
    size: tuple[int, int] = (340, 256)  # (w, h) for resize == "fixed"
    crop: str = "center"  # "multiscale" | "random_resized" | "center" | "three" | "ten" | "none"
    crop_size: int = 224  # center/three/ten crop size, and MultiScaleCrop input_size
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    max_wh_scale_gap: int = 1
    random_crop: bool = False
    num_fixed_crops: int = 5
    area_range: tuple[float, float] = (0.08, 1.0)
    aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3)
    out_size: int | None = 224  # final Resize((s, s)) after multiscale/random_resized; None = keep crop size
    flip_ratio: float = 0.0

    def __post_init__(self) -> None:
        # Config files (TOML) give lists; store tuples so the frozen value stays hashable.
        for field in ("size", "scales", "area_range", "aspect_ratio_range"):
            if isinstance(getattr(self, field), list):
                object.__setattr__(self, field, tuple(getattr(self, field)))

        def bad(field: str, why: str) -> ValueError:
            return ValueError(f"Augment.{field} {why}, got {getattr(self, field)!r}")

        if self.resize not in RESIZES:
            raise bad("resize", f"must be one of {RESIZES}")
        if self.crop not in CROPS:
            raise bad("crop", f"must be one of {CROPS}")
        if not _is_int(self.short_side):
            raise bad("short_side", "must be a positive int")
        if not isinstance(self.size, tuple) or len(self.size) != 2 or not all(_is_int(v) for v in self.size):
            raise bad("size", "must be a (w, h) pair of positive ints")
        if not _is_int(self.crop_size):
            raise bad("crop_size", "must be a positive int")
        if not isinstance(self.scales, tuple) or not self.scales or not all(0 < s <= 1 for s in self.scales):
            raise bad("scales", "must be a non-empty tuple of floats in (0, 1]")
        if not _is_int(self.max_wh_scale_gap, at_least=0):
            raise bad("max_wh_scale_gap", "must be a non-negative int")
        if self.num_fixed_crops not in (5, 13):
            raise bad("num_fixed_crops", "must be 5 or 13")
        lo, hi = self.area_range
        if not 0 < lo <= hi <= 1:
            raise bad("area_range", "must satisfy 0 < min <= max <= 1")
        lo, hi = self.aspect_ratio_range
        if not 0 < lo <= hi:
            raise bad("aspect_ratio_range", "must satisfy 0 < min <= max")
        if self.out_size is not None and not _is_int(self.out_size):
            raise bad("out_size", "must be None or a positive int")
        if not 0 <= self.flip_ratio <= 1:
            raise bad("flip_ratio", "must be in [0, 1]")
        if self.crop == "three" and self.resize == "short_side" and self.crop_size != self.short_side:
            # ThreeCrop needs the crop to span one full side; after Resize(-1, S) that is the short side S.
            raise bad("crop_size", f"must equal short_side={self.short_side} for crop='three'")

    @property
    def num_crops(self) -> int:
        """Views per frame: 10 for TenCrop, 3 for ThreeCrop, otherwise 1."""
        return {"ten": 10, "three": 3}.get(self.crop, 1)


@dataclass(frozen=True)
class View:
    """One output view of every frame of a video."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in SOURCE-image pixels (resize undone)
    out_w: int
    out_h: int
    mirror: bool  # horizontal flip of the output
    invert_flow_x: bool  # Flip on flow inverts x components (255 - v); TenCrop's mirrored copies do NOT


def output_size(aug: Augment) -> tuple[int, int] | None:
    """(w, h) of every view when the recipe fixes it, None when it follows the image: the final stretch
    Resize((s, s), keep_ratio=False) after multiscale / random_resized crops (out_size; None keeps the crop's size),
    the whole resized image for crop "none" (fixed only after resize "fixed"), else the nominal crop size (a
    truncated center/three/ten box is stretched back to it)."""
    if aug.crop in ("multiscale", "random_resized"):
        return None if aug.out_size is None else (aug.out_size, aug.out_size)
    if aug.crop == "none":
        return aug.size if aug.resize == "fixed" else None
    return aug.crop_size, aug.crop_size


def _resized_size(src_w: int, src_h: int, aug: Augment) -> tuple[int, int]:
    if aug.resize == "short_side":
        return rescale_size(src_w, src_h, aug.short_side)
    if aug.resize == "fixed":
        return aug.size
    return src_w, src_h


def plan_views(src_w: int, src_h: int, aug: Augment, *, flow: bool, rng: np.random.Generator) -> list[View]:
    """One video's geometry (the same for all its frames), as views in MMAction2's output order.

    resize size (rw, rh) -> crop box(es) in resized coords -> output size -> box mapped back to source
    coords by (src_w / rw, src_h / rh). Order: "ten" -> [UL, UL mirrored, UR, UR mirrored, LL, .., C,
    C mirrored]; "three" -> [left/top, right/bottom, middle]; others -> one view. Draw order on ``rng``:
    crop (if random), then one flip draw per video.
    """
    if not (_is_int(src_w) and _is_int(src_h)):
        raise ValueError(f"plan_views: source size must be positive ints, got {src_w!r} x {src_h!r}")
    rw, rh = _resized_size(src_w, src_h, aug)
    cs = aug.crop_size
    tencrop_mirrors = [False]  # per box: mirrored copies TenCrop adds (plain flips, no flow inversion)
    if aug.crop == "multiscale":
        boxes = [multiscale_crop_box(
            rw, rh, input_size=cs, scales=aug.scales, max_wh_scale_gap=aug.max_wh_scale_gap,
            random_crop=aug.random_crop, num_fixed_crops=aug.num_fixed_crops, rng=rng,
        )]
    elif aug.crop == "random_resized":
        boxes = [random_resized_crop_box(
            rw, rh, area_range=aug.area_range, aspect_ratio_range=aug.aspect_ratio_range, rng=rng,
        )]
    elif aug.crop == "center":
        boxes = [center_crop_box(rw, rh, cs, cs)]
    elif aug.crop == "three":
        boxes = three_crop_boxes(rw, rh, cs, cs)
    elif aug.crop == "ten":
        boxes = ten_crop_boxes(rw, rh, cs, cs)
        tencrop_mirrors = [False, True]
    else:  # "none": the whole resized image
        boxes = [(0, 0, rw, rh)]

    # Flip comes last in the pipeline: one Bernoulli draw per video, applied to every view.
    flip = bool(rng.random() < aug.flip_ratio)

    fixed = output_size(aug)
    views = []
    for x1, y1, x2, y2 in boxes:
        # A size that follows the image is the box's own (crop "none": the box is the whole resized image).
        out_w, out_h = fixed if fixed is not None else (x2 - x1, y2 - y1)
        # Undo the resize (scale by src/resized). Multiplying before dividing keeps edges exact: a box edge
        # on the resized border maps to exactly src_w / src_h.
        box = (x1 * src_w / rw, y1 * src_h / rh, x2 * src_w / rw, y2 * src_h / rh)
        for tc_mirror in tencrop_mirrors:
            # Flip after TenCrop mirrors everything again (mirror XOR); x-flow inversion is Flip's alone.
            views.append(View(box, out_w, out_h, mirror=flip != tc_mirror, invert_flow_x=flow and flip))
    return views
