"""Augmentation steps that run inside the DALI graph, on the network's views: built-in or a user's own function.

A recipe lists them per split (`[[train.steps]]`, docs/AUGMENTATIONS.md). Each step is applied to every view after
crop + resize + flip (flow: after the x inversion), in the graph's device variant, so a GPU pipeline runs it on the
GPU. Its random parameters are drawn in numpy, per video, from the video's generator (`video_rng(seed, epoch,
video)`) AFTER the sampling and geometry draws (so those streams are unchanged), once for all frames, segments and
views of the video as MMAction2's ColorJitter does (v0.24.1 mmaction/datasets/pipelines/augmentations.py: one draw
per `results`, `num_clips, clip_len = 1, len(imgs)`). They reach the graph as external-source columns
`step{i}_{name}`, one row per DALI sample (a frame, or a whole video for DALI's video decoder).

Frames a step receives and returns: uint8 DALI nodes, per sample (H, W, C) with layout "HWC" (frame folders, PyAV:
one sample per frame) or (F, H, W, C) "FHWC" (DALI's video decoder: one sample per video); C = 3 (RGB) or 1 (a flow
image); H x W = the output view size. Steps find the image axes by name (`axis_names="HW"`), never by position.

Which semantics each built-in follows:
  color_jitter     MMAction2 v0.24.1 `ColorJitter` (brightness, contrast, saturation, hue; hue through OpenCV's
                   uint8 HSV), reproduced op for op in float32 DALI arithmetic;
  grayscale        torchvision `RandomGrayscale` on uint8 tensors (MMAction2 v0.24.1 has no grayscale step);
  random_erasing   torchvision `RandomErasing` (MMAction2 v0.24.1 has none), the box in output-view pixels.

This module is pure numpy at import time; DALI is imported only where a graph is built.
"""
from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .layout import ClipLayout


def _plain(value):
    """TOML/JSON values -> comparable, picklable ones: lists become tuples (so a dumped recipe loads back equal)."""
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Step:
    """One augmentation step of a split: `kind` is a built-in name (color_jitter, grayscale, random_erasing) or a
    user function's import path "package.module:function"; `params` are its keyword values.

    Constructing a Step validates it and binds `impl`, its implementation (`bind`; a user module is imported here).
    A ValueError's message starts with the name of the offending parameter (e.g. "brightness: ..."), which the
    recipe loader prefixes with the step's key. `dataclasses.asdict` gives {"kind": ..., "params": {...}}.
    """

    kind: str
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.kind, str) or not self.kind:
            raise ValueError(f"kind: expected a step name or 'package.module:function', got {self.kind!r}")
        if not isinstance(self.params, dict):
            raise ValueError(f"params: expected a table, got {type(self.params).__name__}")
        object.__setattr__(self, "params", _plain(self.params))
        object.__setattr__(self, "impl", bind(self.kind, self.params))

    @classmethod
    def from_table(cls, table: dict) -> Step:
        """A recipe's `[[train.steps]]` table: `kind` plus the step's parameters side by side, or the dumped form
        {"kind": ..., "params": {...}} (so a config written by dump_config loads back)."""
        if "kind" not in table:
            raise ValueError("kind: missing (a built-in step name or 'package.module:function')")
        rest = {k: v for k, v in table.items() if k != "kind"}
        if set(rest) == {"params"} and isinstance(rest["params"], dict):
            rest = rest["params"]
        elif "params" in rest:
            raise ValueError("params: reserved (write the step's parameters beside `kind`, or all of them in one "
                             "`params` table)")
        return cls(table["kind"], rest)


def bind(kind: str, params: dict):
    """The implementation of a step: one of the built-in classes below, or a `UserStep` around an imported function.

    Every implementation has `requires_rgb` (bool), `columns(layout) -> {name: dtype}`, `draw(rng, layout) -> {name:
    array}` (one video's values) and `apply(frames, nodes, backend) -> frames`.
    """
    builtin = {"color_jitter": ColorJitter, "grayscale": Grayscale, "random_erasing": RandomErasing}
    if kind in builtin:
        return builtin[kind].of(params)
    if ":" in kind:
        return UserStep.of(kind, params)
    raise ValueError(f"kind: unknown step {kind!r} (built-in: {', '.join(builtin)}; or a function of your own as "
                     "'package.module:function', docs/AUGMENTATIONS.md)")


# ---------------------------------------------------------------------------------------- parameter checking

def _known(kind: str, params: dict, known) -> None:
    for key in params:
        if key not in known:
            raise ValueError(f"{key}: unknown parameter of {kind} (known: {', '.join(known)})")


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    return float(value)


def _pair(name: str, value) -> tuple[float, float]:
    if not isinstance(value, tuple) or len(value) != 2:
        raise ValueError(f"{name}: expected a [low, high] pair, got {value!r}")
    lo, hi = (_number(name, v) for v in value)
    if lo > hi:
        raise ValueError(f"{name}: low {lo} > high {hi}")
    return lo, hi


def _probability(name: str, value) -> float:
    p = _number(name, value)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: a probability must be in [0, 1], got {p}")
    return p


def _jitter_range(name: str, value, base: float, limit: float) -> tuple[float, float]:
    """MMAction2 v0.24.1 ColorJitter.check_input: a number v -> (base - v, base + v) with 0 <= v <= limit; a pair
    must lie within [base - limit, base + limit]."""
    if isinstance(value, tuple):
        lo, hi = _pair(name, value)
    else:
        v = _number(name, value)
        if not 0.0 <= v <= limit:
            raise ValueError(f"{name}: must be in [0, {limit:g}] (or a [low, high] pair), got {v:g}")
        lo, hi = base - v, base + v
    if not base - limit <= lo <= hi <= base + limit:
        raise ValueError(f"{name}: the range [{lo:g}, {hi:g}] must lie within [{base - limit:g}, {base + limit:g}]")
    return lo, hi


def _on(node, backend: str):
    """A per-sample parameter column (a CPU node) where arithmetic with the frames can use it."""
    return node.gpu() if backend == "gpu" else node


def _to_uint8(x):
    """float -> uint8 by clipping to [0, 255] and truncating: MMAction2's `np.clip(img, 0, 255).astype(np.uint8)`
    (and torch's float -> uint8 conversion). DALI's conversions saturate and round half away from zero, so
    convert(x - 0.5) is exactly that (x - 0.5 is exact in float32 below 256), in one pass instead of three."""
    from nvidia.dali import fn, types
    return fn.cast(x - 0.5, dtype=types.UINT8)


# ---------------------------------------------------------------------------------------------- colour jitter

COLOR_OPS = ("brightness", "contrast", "saturation", "hue")
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)     # MMAction2 ColorJitter.rgb_to_grayscale and torchvision rgb_to_grayscale


@dataclass(frozen=True)
class ColorJitter:
    """MMAction2 v0.24.1 ColorJitter (mmaction/datasets/pipelines/augmentations.py), per video:

      b, c, s, h ~ U(range) in that order (ranges: a number v means [1 - v, 1 + v], hue [-v, v]); on float32 pixels,
      in `order`:  brightness  x *= b
                   contrast    x = c x + (1 - c) mean(gray(x))      (mean over the frame, gray = .2989 R + .587 G +
                   saturation  x = s x + (1 - s) gray(x)             .114 B of the current float pixels)
                   hue         x -> uint8 (clip, truncate) -> OpenCV RGB->HSV (H in [0, 180)) -> H += int(h * 255),
                               mod 180 -> OpenCV HSV->RGB (rounded) -> float
      then clip to [0, 255] and truncate to uint8. No clipping between the other ops (as in MMAction2).

    MMAction2 skips an op whose factor is the identity (b == 1, h == 0); here an op whose whole range is the
    identity is left out of the graph (with a non-degenerate range the identity has probability 0).
    MMAction2 draws the order once per process (`np.random.permutation(4)` in __init__); here it is the `order`
    parameter (default: the order of MMAction2's arguments) so that a run is reproducible.
    MMAction2 adds the hue offset to a uint8 array, which wraps at 256 when H + offset > 255 (|hue| > 0.3); the
    intended (H + offset) mod 180 is taken here.
    """

    brightness: tuple[float, float] = (0.5, 1.5)      # MMAction2's defaults: brightness=contrast=saturation=0.5
    contrast: tuple[float, float] = (0.5, 1.5)
    saturation: tuple[float, float] = (0.5, 1.5)
    hue: tuple[float, float] = (-0.1, 0.1)            # hue=0.1
    order: tuple[str, ...] = COLOR_OPS
    requires_rgb: ClassVar[bool] = True

    @classmethod
    def of(cls, params: dict) -> ColorJitter:
        _known("color_jitter", params, COLOR_OPS + ("order",))
        values = {name: _jitter_range(name, params[name], 0.0 if name == "hue" else 1.0, 0.5 if name == "hue" else 1.0)
                  for name in COLOR_OPS if name in params}
        if "order" in params:
            order = params["order"]
            if not isinstance(order, tuple) or sorted(order) != sorted(COLOR_OPS):
                raise ValueError(f"order: expected the four names {list(COLOR_OPS)} in some order, got {order!r}")
            values["order"] = order
        return cls(**values)

    def active(self, name: str) -> bool:
        identity = (0.0, 0.0) if name == "hue" else (1.0, 1.0)
        return getattr(self, name) != identity

    def columns(self, layout: ClipLayout) -> dict:
        """Only the ops in the graph (an unused external-source output costs a transfer and a DALI warning)."""
        kinds = {"brightness": np.float32, "contrast": np.float32, "saturation": np.float32, "hue_shift": np.int32}
        return {name: kinds[name] for name in kinds if self.active(name.replace("_shift", ""))}

    def draw(self, rng: np.random.Generator, layout: ClipLayout) -> dict:
        b, c, s, h = (rng.uniform(*getattr(self, name)) for name in COLOR_OPS)    # MMAction2's draw order, all four
        # hue_shift: MMAction2's `offset = int(factor * 255)` (truncation toward 0), in OpenCV's H units (180 a turn)
        values = {"brightness": np.float32(b), "contrast": np.float32(c), "saturation": np.float32(s),
                  "hue_shift": np.int32(int(h * 255))}
        return {name: values[name] for name in self.columns(layout)}

    def apply(self, frames, nodes: dict, backend: str):
        from nvidia.dali import fn, types
        x = fn.cast(frames, dtype=types.FLOAT)
        for name in self.order:
            if not self.active(name):
                continue
            if name == "brightness":
                x = x * _on(nodes["brightness"], backend)
            elif name == "contrast":
                c = _on(nodes["contrast"], backend)
                mean = fn.reductions.mean(_gray(x), axis_names="HW", keep_dims=True)   # (1, 1, 1) per frame
                x = c * x + (1.0 - c) * mean
            elif name == "saturation":
                s = _on(nodes["saturation"], backend)
                x = s * x + (1.0 - s) * _gray(x)                                       # (..., 1) broadcast to C
            else:
                x = _hue_shift(x, _on(nodes["hue_shift"], backend), backend)
        return _to_uint8(x)


def _gray(x):
    """(..., 3) float -> (..., 1): MMAction2's `rgb_to_grayscale` (0.2989 R + 0.587 G + 0.114 B), no rounding."""
    from nvidia.dali import fn, types
    return fn.coord_transform(x, M=list(GRAY_WEIGHTS), dtype=types.FLOAT)


def _channel(x, i: int):
    from nvidia.dali import fn, types
    return fn.coord_transform(x, M=[float(i == j) for j in range(3)], dtype=types.FLOAT)


# float32 constants of OpenCV's HSV->RGB (imgproc color_hsv HSV2RGB_b): hscale = 6.f / 180 and 1.f / 255.
HSCALE, INV255 = float(np.float32(6.0 / 180.0)), float(np.float32(1.0 / 255.0))


def _hue_shift(x, shift, backend: str):
    """MMAction2 v0.24.1 ColorJitter.adjust_hue as float32 arithmetic: clip + truncate to uint8, OpenCV's uint8
    RGB->HSV, H += shift mod 180, OpenCV's uint8 HSV->RGB; (..., 3) float -> (..., 3) float holding integers.

    RGB->HSV (OpenCV imgproc color_hsv RGB2HSV_b): V = max, d = V - min, S = (d * sdiv[V] + 2^11) >> 12,
    H = (num * hdiv[d] + 2^11) >> 12 (+180 if < 0), with sdiv[v] = round((255 << 12) / v), hdiv[d] =
    round((180 << 12) / (6 d)) (0 for v, d = 0) and num = G - B, B - R + 2d or R - G + 4d when V is R, G or B.
    The quotients never fall on a .5 tie for v, d <= 255 and every product stays below 2^24: exact in float32.
    HSV->RGB (HSV2RGB_b's per-pixel definition, HSV2RGB_native): h = H * hscale, sector = floor(h), f = h - sector,
    s = S / 255, v = V / 255; each channel is v (1 - s w) with w = 0, 1, f or 1 - f by sector, times 255, rounded.
    Here w = clamp(min(m + f, (4 - m) - f), 0, 1) with m = (n + sector) mod 6, n = 5, 3, 1 for R, G, B: the same
    four float32 values, so the same pixels. (OpenCV's vectorised loop truncates instead of rounding, so OpenCV's
    own output depends on the frame width and the CPU's vector width; the per-pixel definition does not.)
    """
    import nvidia.dali.math as dmath
    from nvidia.dali import fn, types
    q = fn.cast(_to_uint8(x), dtype=types.FLOAT)
    r, g, b = (_channel(q, i) for i in range(3))                # each (..., 1)
    v = dmath.max(dmath.max(r, g), b)
    d = v - dmath.min(dmath.min(r, g), b)
    sdiv = dmath.floor(1044480.0 / dmath.max(v, 1.0) + 0.5)
    hdiv = dmath.floor(122880.0 / dmath.max(d, 1.0) + 0.5)
    sat = dmath.floor((d * sdiv + 2048.0) / 4096.0)
    is_r = v == r
    is_g = (v == g) * (1 - is_r)
    num = is_r * (g - b) + is_g * (b - r + 2.0 * d) + (1 - is_r - is_g) * (r - g + 4.0 * d)
    hue = dmath.floor((num * hdiv + 2048.0) / 4096.0)
    hue = hue + 180.0 * (hue < 0) + shift
    hue = hue - 180.0 * dmath.floor(hue / 180.0)
    h = hue * HSCALE
    sector = dmath.floor(h)
    f = h - sector
    m = types.Constant(np.array([5.0, 3.0, 1.0], np.float32), device=backend) + sector     # (..., 3)
    m = m - 6.0 * dmath.floor(m / 6.0)
    w = dmath.clamp(dmath.min(m + f, (4.0 - m) - f), 0.0, 1.0)
    return dmath.floor(((v * INV255) * (1.0 - (sat * INV255) * w)) * 255.0 + 0.5)


# ------------------------------------------------------------------------------------------------- grayscale

@dataclass(frozen=True)
class Grayscale:
    """torchvision RandomGrayscale(p) on uint8 tensors (transforms/_functional_tensor.py rgb_to_grayscale): with
    probability p per video, every channel becomes (0.2989 R + 0.587 G + 0.114 B) truncated to uint8."""

    p: float = 0.1                                    # torchvision's default
    requires_rgb: ClassVar[bool] = True

    @classmethod
    def of(cls, params: dict) -> Grayscale:
        _known("grayscale", params, ("p",))
        return cls(**{k: _probability(k, v) for k, v in params.items()})

    def columns(self, layout: ClipLayout) -> dict:
        return {"apply": np.uint8}

    def draw(self, rng: np.random.Generator, layout: ClipLayout) -> dict:
        return {"apply": np.uint8(rng.random() < self.p)}

    def apply(self, frames, nodes: dict, backend: str):
        from nvidia.dali import fn, types
        gray = np.array([GRAY_WEIGHTS] * 3, np.float32)
        # Per sample a 3 x 3 colour matrix, the gray rows or the identity (exact on integers: the frame unchanged).
        # An operator argument, so it stays on the CPU.
        on = nodes["apply"]
        matrix = on * types.Constant(gray) + (1 - on) * types.Constant(np.eye(3, dtype=np.float32))
        # uint8 in and out: the sum is rounded, so T = -0.5 makes it a truncation (see _to_uint8), in one pass.
        return fn.coord_transform(frames, M=matrix, T=[-0.5] * 3, dtype=types.UINT8)


# ------------------------------------------------------------------------------------------- random erasing

@dataclass(frozen=True)
class RandomErasing:
    """torchvision RandomErasing(p, scale, ratio, value) (transforms/transforms.py): with probability p per video,
    up to 10 attempts of area = H W U(scale), aspect = exp(U(log ratio)) (height / width), h = round(sqrt(area
    aspect)), w = round(sqrt(area / aspect)); the first with h < H and w < W is placed at top = randint(0, H - h),
    left = randint(0, W - w) (inclusive) and filled with `value`; no attempt fits: nothing is erased. H x W is the
    output view; the same box is erased from every frame and view of the video."""

    p: float = 0.5                                    # torchvision's defaults
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)
    value: tuple[float, ...] = (0.0,)                 # one value, or one per channel

    @classmethod
    def of(cls, params: dict) -> RandomErasing:
        _known("random_erasing", params, ("p", "scale", "ratio", "value"))
        values = {}
        if "p" in params:
            values["p"] = _probability("p", params["p"])
        for name in ("scale", "ratio"):
            if name in params:
                values[name] = _pair(name, params[name])
        if "scale" in values and not 0.0 <= values["scale"][0] <= values["scale"][1] <= 1.0:
            raise ValueError(f"scale: the area fraction range must lie within [0, 1], got {list(values['scale'])}")
        if "ratio" in values and values["ratio"][0] <= 0:
            raise ValueError(f"ratio: aspect ratios must be > 0, got {list(values['ratio'])}")
        if "value" in params:
            raw = params["value"] if isinstance(params["value"], tuple) else (params["value"],)
            fill = tuple(_number("value", v) for v in raw)
            if len(fill) not in (1, 3) or not all(0.0 <= v <= 255.0 for v in fill):
                raise ValueError(f"value: expected one number or three (R, G, B) in [0, 255], got {params['value']!r}")
            values["value"] = fill
        return cls(**values)

    @property
    def requires_rgb(self) -> bool:
        """Three fill values are one per RGB channel."""
        return len(self.value) == 3

    def columns(self, layout: ClipLayout) -> dict:
        return {"anchor": np.float32, "shape": np.float32}

    def draw(self, rng: np.random.Generator, layout: ClipLayout) -> dict:
        h, w = layout.out_h, layout.out_w
        box = (0, 0, 0, 0)                            # (top, left, height, width); empty: nothing erased
        if rng.random() < self.p:
            log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
            for _ in range(10):
                area = h * w * rng.uniform(*self.scale)
                aspect = math.exp(rng.uniform(*log_ratio))
                eh, ew = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))     # half to even
                if eh < h and ew < w:
                    top = int(rng.integers(0, h - eh, endpoint=True))
                    left = int(rng.integers(0, w - ew, endpoint=True))
                    box = (top, left, eh, ew)
                    break
        return {"anchor": np.array(box[:2], np.float32), "shape": np.array(box[2:], np.float32)}

    def apply(self, frames, nodes: dict, backend: str):
        from nvidia.dali import fn
        # anchor / shape are (y, x) / (h, w) in view pixels, operator arguments (CPU); "HW" covers HWC and FHWC.
        return fn.erase(frames, anchor=nodes["anchor"], shape=nodes["shape"], axis_names="HW",
                        fill_value=list(self.value))


# ---------------------------------------------------------------------------------------------- user steps

@dataclass(frozen=True)
class UserStep:
    """A function of the user's, named "package.module:function" (contract: docs/AUGMENTATIONS.md).

    `function(frames, params, backend) -> frames` builds its part of the graph; `params` holds the step's recipe
    values and, if the function has a `draw(rng, params) -> {name: array}` attribute, its per-video values as DALI
    nodes (CPU). draw is called once here, with a throwaway generator, to learn the names, dtypes and shapes.
    """

    kind: str
    function: Callable = field(repr=False)
    params: dict = field(default_factory=dict)
    drawn: tuple[tuple[str, np.dtype, tuple[int, ...]], ...] = ()
    requires_rgb: ClassVar[bool] = False

    @classmethod
    def of(cls, kind: str, params: dict) -> UserStep:
        module_name, _, attr = kind.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as err:        # not found, or the module itself fails: the recipe cannot run either way
            raise ValueError(f"kind: cannot import {module_name!r} ({err!r}); the module must be importable in this "
                             "process and in DALI's workers (installed, or on PYTHONPATH)") from None
        function = getattr(module, attr, None)
        if not callable(function):
            raise ValueError(f"kind: {module_name!r} has no function {attr!r}")
        step = cls(kind, function, params)
        if getattr(function, "draw", None) is None:
            return step
        try:
            sample = step._draw(np.random.default_rng(0))
        except Exception as err:        # a user's draw: any error means the recipe cannot run
            raise ValueError(f"kind: {kind}.draw failed on a trial call with this step's parameters: {err!r}") from None
        clash = sorted(set(sample) & set(params))
        if clash:
            raise ValueError(f"{clash[0]}: both a recipe parameter and a name returned by {kind}.draw")
        drawn = tuple((name, a.dtype, a.shape) for name, a in sample.items())
        return cls(kind, function, params, drawn)

    def _draw(self, rng: np.random.Generator) -> dict:
        out = self.function.draw(rng, dict(self.params))
        if not isinstance(out, dict):
            raise ValueError(f"kind: {self.kind}.draw must return a dict of arrays, got {type(out).__name__}")
        return {str(name): np.asarray(value) for name, value in out.items()}

    def columns(self, layout: ClipLayout) -> dict:
        return {name: dtype for name, dtype, _ in self.drawn}

    def draw(self, rng: np.random.Generator, layout: ClipLayout) -> dict:
        if not self.drawn:
            return {}
        out = self._draw(rng)
        got = tuple((name, a.dtype, a.shape) for name, a in out.items())
        if got != self.drawn:
            raise ValueError(f"{self.kind}.draw returned {got}, its first call {self.drawn}: every call must return "
                             "the same names, dtypes and shapes")
        return out

    def apply(self, frames, nodes: dict, backend: str):
        return self.function(frames, {**self.params, **nodes}, backend)
