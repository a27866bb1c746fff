"""The one checkpoint format, and the one place that reads and writes checkpoint files.

A training checkpoint is a plain dict:
  model, optimizer, scheduler, scaler   state dicts
  epoch (epochs completed), iteration, best_metric, rng
  epoch_iteration   batches of epoch `epoch` already trained: 0 at an epoch's end, > 0 in the mid-epoch checkpoint a
            preempted run leaves (INTERRUPTED, jobs/training/preemption.py); older files lack it and mean 0
  config    the resolved config as a nested dict (`config_dict`), so `tsn test CKPT` needs no recipe
  classes   class names (line index = label) from the dataset's classes.txt, or None
  meta      {"num_classes", "arch", "config_name"}
Older checkpoints stored `config` as the recipe name only; they still load (the recipe is looked up by that name).
MMAction2 checkpoints ({"state_dict", "meta"}) and bare state dicts are read too, for their weights.

A write goes to a temporary file in the same directory, is fsynced, then renamed over the target, so a process
killed mid-write (or a full disk) leaves the previous file and the `latest` pointer intact. Every file that cannot
be used raises CheckpointError naming it and what is wrong with it.
"""
from __future__ import annotations

import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from jobs.recipes.config import Config, ConfigError, config_dict, config_from_dict, load_config
from pipelines.annotations import AnnotationError, load_class_names
from pipelines.errors import UserError

LATEST = "latest"          # a text file holding the file name of the newest complete checkpoint
INTERRUPTED = "interrupted.pth"   # the mid-epoch checkpoint of a preempted run (deleted by the next epoch's prune)
EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pth$")
SUFFIXES = (".pth", ".pt", ".ckpt")
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6 is a zip archive


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be used (missing, empty, truncated, not a torch file, unwritable, not fitting the
    model); the message starts with the file."""


# ------------------------------------------------------------------------------------------------ reading

@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file as read: `data` is the whole dict (ours, MMAction2's, or a bare state dict)."""

    path: str
    data: dict = field(repr=False)

    @property
    def weights(self) -> dict:
        """The model's state dict: ours {"model": ...}, MMAction2's {"state_dict": ...}, or the file itself."""
        for key in ("model", "state_dict"):
            if isinstance(self.data.get(key), Mapping):
                return dict(self.data[key])
        return self.data

    @property
    def classes(self) -> tuple[str, ...] | None:
        names = self.data.get("classes")
        return tuple(names) if isinstance(names, (list, tuple)) and names else None

    @property
    def meta(self) -> dict:
        meta = self.data.get("meta")
        return dict(meta) if isinstance(meta, Mapping) else {}

    def config(self, overrides: tuple[str, ...] | list[str] = ()) -> Config:
        """The config the checkpoint was trained with (its stored dict, or, in older files, the recipe by name)."""
        stored = self.data.get("config")
        if isinstance(stored, Mapping):
            try:
                return config_from_dict(dict(stored), overrides, source=f"{self.path} (stored config)")
            except ConfigError as err:
                raise CheckpointError(f"{err}; give the recipe explicitly") from None
        if isinstance(stored, str) and stored:
            try:
                return load_config(stored, overrides)
            except ConfigError as err:
                raise CheckpointError(f"{self.path}: stores the recipe name {stored!r} only, and it cannot be "
                                      f"loaded ({err}); give the recipe explicitly") from None
        raise CheckpointError(f"{self.path}: holds no config (an MMAction2 or converted file?); give the recipe: "
                              "tsn test RECIPE CKPT / tsn predict RECIPE CKPT INPUT / tsn export RECIPE CKPT ...")


def _unreadable(path: Path, err: BaseException) -> str:
    """Why torch.load failed, in words (the file exists and is not empty)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head == ZIP_MAGIC and not zipfile.is_zipfile(path):
        return "truncated (zip archive incomplete)"
    if isinstance(err, EOFError):
        return "truncated (ends inside the pickled data)"
    return f"not a torch checkpoint ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"


def read_checkpoint(path: str | os.PathLike, *, weights_only: bool = False) -> Checkpoint:
    """Read a checkpoint file onto the CPU; CheckpointError if it is missing, empty, truncated or not a checkpoint.

    weights_only=True refuses pickled objects other than tensors and plain containers (MMAction2 files from
    untrusted sources); our own files hold numpy RNG state, so they are read with weights_only=False.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (a checkpoint write that never finished?)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as err:
        if weights_only and "Weights only load failed" in str(err):
            detail = next((line.strip() for line in str(err).splitlines() if "WeightsUnpickler error" in line), "")
            raise CheckpointError(f"{path}: cannot be read with weights_only=True ({detail}); if the file comes from "
                                  "a source you trust, pass --trusted") from None
        raise CheckpointError(f"{path}: {_unreadable(path, err)}") from None
    except Exception as err:  # unpickling arbitrary bytes raises nearly any type
        raise CheckpointError(f"{path}: {_unreadable(path, err)}") from None
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path}: not a torch checkpoint (holds a {type(data).__name__}, not a dict)")
    return Checkpoint(str(path), dict(data))


def as_checkpoint(checkpoint: str | os.PathLike | Checkpoint) -> Checkpoint:
    return checkpoint if isinstance(checkpoint, Checkpoint) else read_checkpoint(checkpoint)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The whole dict of one of our checkpoints (resume)."""
    return read_checkpoint(path).data


def is_checkpoint_path(arg: str) -> bool:
    """Whether a command-line word names a checkpoint rather than a recipe: an existing file that is not a .toml or
    .json recipe, or any name ending in .pth/.pt/.ckpt (so a missing one is reported as a missing checkpoint)."""
    path = Path(arg)
    if path.suffix in (".toml", ".json"):
        return False
    return path.suffix in SUFFIXES or path.is_file()


# ------------------------------------------------------------------------------------------------ writing

def _os_error(err: BaseException) -> OSError | None:
    """The OSError behind a write failure (torch.save wraps it in a RuntimeError, keeping it as the context)."""
    while err is not None:
        if isinstance(err, OSError):
            return err
        err = err.__cause__ or err.__context__
    return None


def _atomic_write(path: Path, write: Callable):
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise CheckpointError(f"{path}: cannot write ({err.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        cause = _os_error(err) if isinstance(err, Exception) else None
        if cause is not None:
            kept = " (the previous file is unchanged)" if path.exists() else ""
            raise CheckpointError(f"{path}: cannot write ({cause.strerror or cause}){kept}") from None
        raise


def write_checkpoint(data: dict, path: str | os.PathLike) -> Path:
    """torch.save `data` to `path` atomically; CheckpointError naming the file if the disk refuses it."""
    path = Path(path)
    _atomic_write(path, lambda f: torch.save(data, f))
    return path


def save_checkpoint(state: dict, work_dir: str | Path, name: str, *, latest: bool = True) -> Path:
    path = write_checkpoint(state, Path(work_dir) / name)
    if latest:
        _atomic_write(Path(work_dir) / LATEST, lambda f: f.write(name.encode()))
    return path


def training_state(cfg: Config, model: torch.nn.Module, optimizer, scheduler, scaler, *, epoch: int, iteration: int,
                   best_metric: float, rng: dict, classes: tuple[str, ...] | None, epoch_iteration: int = 0) -> dict:
    """The dict a training checkpoint holds (module docstring); `model` is the unwrapped (non-DDP) module."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "epoch": epoch, "iteration": iteration, "best_metric": best_metric,
            "epoch_iteration": epoch_iteration,
            "config": config_dict(cfg), "classes": list(classes) if classes else None, "rng": rng,
            "meta": {"num_classes": cfg.model.num_classes, "arch": cfg.model.arch, "config_name": cfg.name}}


def classes_file(cfg: Config) -> Path | None:
    """The dataset's classes.txt: beside the train list, or in the parent of the train prefix (the synthetic set
    and `tsn prepare filelist --out` put it beside the lists)."""
    d = cfg.data
    candidates = [Path(d.train_list).parent / "classes.txt"] if d.train_list else []
    if d.train_prefix:
        candidates.append(Path(d.train_prefix).parent / "classes.txt")
    return next((p for p in candidates if p.is_file()), None)


def dataset_classes(cfg: Config, warn: Callable[[str], None]) -> tuple[str, ...] | None:
    """Class names to store in checkpoints, or None (no classes.txt, or one that does not fit: warned)."""
    path = classes_file(cfg)
    if path is None:
        return None
    try:
        return load_class_names(str(path), cfg.model.num_classes)
    except AnnotationError as err:
        warn(f"{err}: class names not stored in checkpoints")
        return None


# ------------------------------------------------------------------------------------------------ the work dir

def find_latest(work_dir: str | Path) -> Path | None:
    """The checkpoint `latest` points at (falls back to the highest epoch_N.pth if the pointer is missing)."""
    work_dir = Path(work_dir)
    pointer = work_dir / LATEST
    if pointer.is_file():
        target = work_dir / pointer.read_text().strip()
        if target.is_file():
            return target
    epochs = _epoch_files(work_dir)
    return epochs[-1] if epochs else None


def _epoch_files(work_dir: Path) -> list[Path]:
    """The epoch_N.pth files of `work_dir`, by N."""
    numbered = sorted((int(m.group(1)), p) for p in work_dir.glob("epoch_*.pth") if (m := EPOCH_FILE.match(p.name)))
    return [p for _, p in numbered]


def prune(work_dir: str | Path, keep_last: int):
    """Delete epoch_N.pth files beyond the newest `keep_last` (best.pth and the latest target are never deleted), and
    an INTERRUPTED checkpoint that `latest` no longer points at (a later epoch superseded it)."""
    work_dir = Path(work_dir)
    latest = find_latest(work_dir)
    if latest != work_dir / INTERRUPTED:
        (work_dir / INTERRUPTED).unlink(missing_ok=True)
    if keep_last <= 0:
        return
    for path in _epoch_files(work_dir)[:-keep_last]:
        if path != latest:
            path.unlink()
