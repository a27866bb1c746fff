"""What an exported graph takes and returns: one frozen `ExportSpec`, derived from the recipe, stored in the file."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from jobs.recipes.config import Config
from pipelines.errors import UserError
from pipelines.geometry import parse_wxh

FORMATS = ("onnx", "torchscript")
INPUTS = ("uint8", "float")


DEFAULT_RTOL = 1e-4   # verify(): relative tolerance of an export's logits against PyTorch eager


class ExportError(UserError, RuntimeError):
    """An export that cannot be made or read as asked; the message names the file."""


class VerifyFailed(ExportError):
    """The exported graph's logits differ from PyTorch eager's by more than the tolerance."""


@dataclass(frozen=True)
class ExportSpec:
    """Input `(batch, views, channels, height, width)`: uint8 pixels (normalised inside the graph with mean/std)
    or float32 already normalised; output logits `(batch, num_classes)`. With dynamic_batch the batch size is
    free (ONNX axis "batch"), `batch` is then only the size the graph was traced with."""

    format: str
    batch: int
    views: int
    channels: int
    height: int
    width: int
    input: str
    dynamic_batch: bool
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    modality: str = "RGB"
    config: str = ""
    checkpoint: str = ""

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ExportError(f"format must be one of {', '.join(FORMATS)}; got {self.format!r}")
        if self.input not in INPUTS:
            raise ExportError(f"input must be one of {', '.join(INPUTS)}; got {self.input!r}")
        for name in ("batch", "views", "channels", "height", "width", "num_classes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ExportError(f"{name} must be a positive int; got {value!r}")

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return (self.batch, self.views, self.channels, self.height, self.width)

    def describe(self) -> str:
        batch = "B" if self.dynamic_batch else str(self.batch)
        dims = f"({batch}, {self.views}, {self.channels}, {self.height}, {self.width})"
        pixels = "uint8 pixels, normalised inside" if self.input == "uint8" else "float32, already normalised"
        return f"clips {dims} {pixels} -> logits ({batch}, {self.num_classes})"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str) -> ExportSpec:
        try:
            data = json.loads(text)
            data["mean"], data["std"] = tuple(data["mean"]), tuple(data["std"])
            return cls(**data)
        except (ValueError, TypeError, KeyError) as err:
            raise ExportError(f"{where}: unreadable export metadata ({err})") from None


def parse_size(text: str) -> tuple[int, int]:
    """'112' -> (112, 112); '171x128' -> (128, 171): (height, width) from N or WxH (width first, as everywhere)."""
    try:
        w, h = (int(text), int(text)) if text.isdigit() else parse_wxh(text)
    except ValueError:
        raise ExportError(f"--size {text!r}: expected N or WxH with positive integers") from None
    if min(w, h) < 1:
        raise ExportError(f"--size {text!r}: expected N or WxH with positive integers")
    return h, w


def spec_for(cfg: Config, fmt: str, *, views: int | None = None, batch: int = 1, size: tuple[int, int] | None = None,
             input: str = "uint8", dynamic_batch: bool = False, config: str = "", checkpoint: str = "") -> ExportSpec:
    """The recipe's test input: V = the test views of one crop set (clips x clip_len for RGB, clips for flow, as
    the loader lays them out), C = 3 or 2 * clip_len, H x W = the test crop (pipelines/layout.py ClipLayout)."""
    layout = cfg.clip_layout("test")
    if size is None:
        size = (layout.out_h, layout.out_w)
    if views is None:
        views = layout.views_per_crop
    return ExportSpec(format=fmt, batch=batch, views=views,
                      channels=cfg.model.in_channels, height=size[0], width=size[1], input=input,
                      dynamic_batch=dynamic_batch, num_classes=cfg.model.num_classes, mean=cfg.normalize.mean,
                      std=cfg.normalize.std, modality=cfg.data.modality, config=config or cfg.name,
                      checkpoint=checkpoint)
