"""Recipes: TOML files -> one frozen `Config`, validated at load, dumped beside the outputs.

A recipe may name one `base` file (one level only) whose tables it overrides key by key; `--cfg-options a.b=c`
overrides come last. Every section is a frozen dataclass; the pipeline and model sections are the very dataclasses
`pipelines` and `model` take, so there is one definition of each knob. Errors name the file and the key.
TOML has no null: an optional field set to the string "none" means None (e.g. `pretrained = "none"`).
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:        # Python 3.10: the same parser from PyPI (setup.cfg)
    import tomli as tomllib

from model.config import AVERAGE_CLIPS, TSNConfig
from pipelines.annotations import MODALITIES, FrameLayout, is_flow_modality
from pipelines.augment import Step
from pipelines.errors import UserError
from pipelines.geometry import Augment
from pipelines.layout import ClipLayout
from pipelines.normalize import Normalize
from pipelines.sampling import Sampler

CONFIG_DIR = Path(__file__).resolve().parent   # jobs/recipes/: the shipped recipes sit beside this module


# The metric names a recipe or `tsn test --eval` may ask for (MMAction2's `evaluate(metrics=...)` names); computed by
# jobs/evaluation/metrics.py compute_metrics.
METRICS = ("top_k_accuracy", "mean_class_accuracy", "mean_average_precision", "mmit_mean_average_precision")


class ConfigError(UserError, ValueError):
    """A recipe that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class DataConfig:
    source: str = "frames"                # "frames" (JPEG folders) | "video" (video files)
    modality: str = "RGB"                 # "RGB" | "Flow"
    filename_tmpl: str = "img_{:05}.jpg"
    start_index: int | None = None        # None: 1 for frame folders, 0 for videos (MMAction2 defaults)
    with_offset: bool = False
    multi_class: bool = False
    train_list: str = ""
    val_list: str = ""
    test_list: str = ""
    train_prefix: str = ""
    val_prefix: str = ""
    test_prefix: str = ""
    decoder: str = "auto"                 # videos: "auto" (DALI/NVDEC on GPU, PyAV on CPU) | "dali" | "pyav"
    videos_per_gpu: int = 32
    val_videos_per_gpu: int | None = None   # None: same as videos_per_gpu
    test_videos_per_gpu: int | None = None  # None: the device's default (pipelines/defaults.py: CPU 2, GPU 4)
    workers: int = 2                      # DALI Python workers reading files (per rank)
    threads: int | None = None            # DALI threads per rank; None: the device's default (pipelines/defaults.py)
    prefetch: int | None = None           # batches in flight; None: max(2, workers)
    hw_decoder_load: float | None = None  # GPU JPEG: share sent to the hardware decoder; None: 0.9
    batch_timeout: float = 600.0          # seconds without a batch before the loader's watchdog ends the run
    on_error: str | None = None           # "skip" | "raise"; None: skip for training, raise for val/test/predict
    max_bad_fraction: float = 0.01
    decode_timeout: float = 30.0

    def __post_init__(self):
        _choice("source", self.source, ("frames", "video"))
        _choice("modality", self.modality, MODALITIES)
        _choice("decoder", self.decoder, ("auto", "dali", "pyav"))
        if self.on_error is not None:
            _choice("on_error", self.on_error, ("skip", "raise"))
        if self.source == "video" and self.is_flow:
            raise ValueError("flow is read from frame folders (source = 'frames')")
        for name in ("videos_per_gpu", "test_videos_per_gpu", "workers", "threads", "prefetch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.hw_decoder_load is not None and not 0.0 <= self.hw_decoder_load <= 1.0:
            raise ValueError("hw_decoder_load must be in [0, 1]")
        if self.batch_timeout <= 0:
            raise ValueError("batch_timeout must be > 0 (seconds)")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ValueError("max_bad_fraction must be in [0, 1]")

    @property
    def first_index(self) -> int:
        return self.start_index if self.start_index is not None else (1 if self.source == "frames" else 0)

    @property
    def is_flow(self) -> bool:
        """Two-channel optical flow (x, y frame pairs) rather than RGB (pipelines.annotations.is_flow_modality)."""
        return is_flow_modality(self.modality)

    @property
    def frame_layout(self) -> FrameLayout:
        """How this recipe's frame folders name their files (template, first index, modality)."""
        return FrameLayout(self.filename_tmpl, self.first_index, self.modality)


@dataclass(frozen=True)
class Split:
    """Temporal sampling, spatial augmentation and augmentation steps of one split (train / val / test).

    steps: `[[train.steps]]` tables run in the DALI graph on the views, in order (pipelines/augment.py,
    docs/AUGMENTATIONS.md), e.g. `kind = "color_jitter"`, `brightness = 0.4`.
    """

    sampler: Sampler = field(default_factory=Sampler)
    augment: Augment = field(default_factory=Augment)
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    grad_clip: float | None = 40.0        # max L2 norm over all parameters; None disables
    lr_steps: tuple[int, ...] = (40, 80)  # epochs (0-based boundaries) where lr *= gamma
    gamma: float = 0.1
    epochs: int = 100
    warmup_epochs: int = 0                # linear warm-up from warmup_ratio * lr (no TSN recipe uses it)
    warmup_ratio: float = 0.1
    fc_lr5: bool = False                  # MMiT's TSMOptimizerConstructor parameter groups
    loss: str = "cross_entropy"           # "cross_entropy" | "bce" (multi-label)
    loss_weight: float = 1.0

    def __post_init__(self):
        _choice("loss", self.loss, ("cross_entropy", "bce"))
        if self.lr <= 0 or self.epochs < 1:
            raise ValueError("lr must be > 0 and epochs >= 1")
        if list(self.lr_steps) != sorted(self.lr_steps):
            raise ValueError("lr_steps must be increasing")


@dataclass(frozen=True)
class RuntimeConfig:
    seed: int = 0
    amp: bool = True                      # bf16 autocast where supported, fp16 + GradScaler otherwise
    checkpoint_interval: int = 5
    eval_interval: int = 5
    keep_last: int = 3
    log_interval: int = 20
    # "none" | "score" | "prob": MMAction2 v0.24.1 mmaction/models/recognizers/base.py `average_clip`
    average_clips: str = "none"
    metrics: tuple[str, ...] = ("top_k_accuracy", "mean_class_accuracy")
    max_views_per_forward: int = 250      # test-time chunking: views per forward over the batch (bounded memory)
    load_from: str = ""                   # weights to start from (fine-tuning), e.g. a K400 checkpoint

    def __post_init__(self):
        _choice("average_clips", self.average_clips, AVERAGE_CLIPS)
        for m in self.metrics:
            _choice("metrics", m, METRICS)


@dataclass(frozen=True)
class Config:
    name: str = ""
    model: TSNConfig = field(default_factory=TSNConfig)
    data: DataConfig = field(default_factory=DataConfig)
    normalize: Normalize = field(default_factory=Normalize)
    train: Split = field(default_factory=Split)
    val: Split = field(default_factory=Split)
    test: Split = field(default_factory=Split)
    optim: OptimConfig = field(default_factory=OptimConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def clip_layout(self, split: str) -> ClipLayout:
        """The (B, V, C, H, W) layout `split` ("train" | "val" | "test") produces: views, channels, output size."""
        part = getattr(self, split)
        return ClipLayout.of(part.sampler, part.augment, flow=self.data.is_flow)

    def __post_init__(self):
        flow = self.data.is_flow
        if flow and self.model.in_channels != 2 * self.train.sampler.clip_len:
            raise ValueError(f"flow needs model.in_channels = 2 * clip_len = {2 * self.train.sampler.clip_len}")
        if len(self.normalize.mean) != (2 if flow else 3):
            raise ValueError(f"normalize needs {2 if flow else 3} mean/std values for {self.data.modality}")
        for split in ("train", "val", "test"):
            for i, step in enumerate(getattr(self, split).steps):
                if flow and step.impl.requires_rgb:
                    raise ValueError(f"{split}.steps[{i}]: {step.kind} needs RGB views (data.modality is Flow)")


def _choice(name: str, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


# ----------------------------------------------------------------------------------------------- building

def _coerce(value, hint, key: str):
    """Check `value` (from TOML/JSON) against a type hint; returns it converted (lists -> tuples, ints -> floats)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (value is None or value == "none"):
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {type(value).__name__}")
        if hint is Step:        # free-form parameters beside `kind`; Step validates them (messages start with the name)
            try:
                return Step.from_table(value)
            except ValueError as err:
                raise ConfigError(f"{key}.{err}") from None
        return _build(hint, value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            raise ConfigError(f"{key}: expected {len(items)} values, got {len(value)}")
        return tuple(_coerce(v, t, f"{key}[{i}]") for i, (v, t) in enumerate(zip(value, items)))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (type(value) is not hint):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build(cls, data: dict, prefix: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"{where}{unknown[0]}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(v, hints[k], f"{prefix + '.' if prefix else ''}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{prefix or 'config'}: {err}") from None


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _parse_override(item: str) -> tuple[list[str], object]:
    if "=" not in item:
        raise ConfigError(f"--cfg-options {item!r}: expected key=value")
    key, raw = item.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw                                  # bare strings: paths, names
    return key.strip().split("."), value


def resolve_path(name_or_path: str) -> Path:
    """A config given as a path, or by recipe name (shipped in jobs/recipes/)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / (name_or_path if name_or_path.endswith(".toml") else name_or_path + ".toml")
    if shipped.is_file():
        return shipped
    raise ConfigError(f"{name_or_path}: no such config file or shipped recipe (see `tsn configs`)")


def _read(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start})") \
            from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: {err}") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of sections, got {type(data).__name__}")
    return data


def load_config(name_or_path: str, overrides: tuple[str, ...] | list[str] = ()) -> Config:
    """A recipe (shipped name or .toml/.json path), its `base` merged under it, then `overrides` (key=value)."""
    path = resolve_path(name_or_path)
    data = _read(path)
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{path}: base: expected a file name, got {base!r}")
        base_path = (path.parent / base) if not Path(base).is_absolute() else Path(base)
        if not base_path.is_file():
            raise ConfigError(f"{path}: base file {base!r} not found")
        base_data = _read(base_path)
        if "base" in base_data:
            raise ConfigError(f"{base_path}: a base file cannot name a base of its own (one level only)")
        data = _merge(base_data, data)
    data.setdefault("name", path.stem)
    return config_from_dict(data, overrides, source=str(path))


def config_from_dict(data: dict, overrides: tuple[str, ...] | list[str] = (), *, source: str) -> Config:
    """A config from its nested dict (a recipe's tables, or `config_dict` stored in a checkpoint), then `overrides`.

    The same validation as load_config; `source` (a file, or "x.pth (stored config)") starts every error message.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a table of sections, got {type(data).__name__}")
    for item in overrides:
        keys, value = _parse_override(item)
        patch = value
        for k in reversed(keys):
            patch = {k: patch}
        data = _merge(data, patch)
    try:
        return _build(Config, data, "")
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def config_dict(cfg) -> dict:
    """Plain nested dict (tuples as lists) of a config, for JSON dumps and checkpoints."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def dump_config(cfg: Config, path: str | Path):
    """Write the resolved config as JSON (loadable again with load_config)."""
    Path(path).write_text(json.dumps(config_dict(cfg), indent=2) + "\n")


def shipped_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml") if not p.stem.startswith("_"))
