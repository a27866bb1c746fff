"""One checkpoint format: a plain dict written atomically, a `latest` pointer, `best`, and the last K kept.

Keys: model, optimizer, scheduler, scaler, epoch (epochs completed), iteration, best_metric, config, rng, meta.
A write goes to a temporary file in the same directory, is fsynced, then renamed over the target, so a process
killed mid-write leaves the previous file (and the `latest` pointer) intact.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import torch

LATEST = "latest"          # a text file holding the file name of the newest complete checkpoint
EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pth$")


def _atomic_write(path: Path, write):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(state: dict, work_dir: str | Path, name: str, *, latest: bool = True) -> Path:
    path = Path(work_dir) / name
    _atomic_write(path, lambda f: torch.save(state, f))
    if latest:
        _atomic_write(Path(work_dir) / LATEST, lambda f: f.write(name.encode()))
    return path


def find_latest(work_dir: str | Path) -> Path | None:
    """The checkpoint `latest` points at (falls back to the highest epoch_N.pth if the pointer is missing)."""
    work_dir = Path(work_dir)
    pointer = work_dir / LATEST
    if pointer.is_file():
        target = work_dir / pointer.read_text().strip()
        if target.is_file():
            return target
    epochs = sorted((int(m.group(1)), p) for p in work_dir.glob("epoch_*.pth") if (m := EPOCH_FILE.match(p.name)))
    return epochs[-1][1] if epochs else None


def prune(work_dir: str | Path, keep_last: int):
    """Delete epoch_N.pth files beyond the newest `keep_last` (best.pth and the latest target are never deleted)."""
    if keep_last <= 0:
        return
    work_dir = Path(work_dir)
    keep = {find_latest(work_dir)}
    epochs = sorted((int(m.group(1)), p) for p in work_dir.glob("epoch_*.pth") if (m := EPOCH_FILE.match(p.name)))
    for _, path in epochs[:-keep_last]:
        if path not in keep:
            path.unlink()


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    return torch.load(path, map_location="cpu", weights_only=False)
