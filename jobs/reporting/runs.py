"""log.jsonl -> one `Run`: the train records (one per log interval) and the val records (one per validation).

Train lines carry means over the iterations since the previous line of the same epoch (jobs/training/loop.py
`train_one_epoch`): `time` is the step alone (forward, backward, optimiser), `data_time` the wait for the batch.
A work dir resumed (or retrained) appends to the same file: a train line at or before one already read starts
over from there, so the records a resume redid are replaced, not counted twice. A line that is not JSON is a write cut
short by a killed run (jobs/training/logs.py ends it before the resumed run's next line): it is skipped, and named in
a warning unless it is the unfinished last line of a live run.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import UserError

LOG_NAME = "log.jsonl"
TRAIN_KEYS = ("epoch", "iter", "lr", "loss", "time", "data_time")


class ReportError(UserError, ValueError):
    """A log that cannot be read; the message names the file (and line)."""


@dataclass(frozen=True)
class TrainRecord:
    epoch: int          # 1-based
    iter: int           # 1-based iteration within the epoch at which the line was written
    iters: int          # how many iterations the line's means cover (iter - previous line's iter)
    lr: float
    loss: float
    time: float         # mean step time per iteration (s)
    data_time: float    # mean data wait per iteration (s)


@dataclass(frozen=True)
class ValRecord:
    epoch: int
    metrics: dict       # name -> value, e.g. {"top1_acc": 0.5, "top5_acc": 0.9, "mean_class_accuracy": 0.5}


@dataclass(frozen=True)
class Run:
    name: str           # the work dir's name
    path: Path          # the log file
    train: tuple[TrainRecord, ...]
    val: tuple[ValRecord, ...]

    @property
    def iters_per_epoch(self) -> int:
        """The loader's length: every complete epoch logs its last iteration."""
        return max((r.iter for r in self.train), default=1)

    def train_epochs(self) -> list[float]:
        """x of each train record in epochs: epoch - 1 + iter / iters_per_epoch (MMAction2 plots by iteration)."""
        n = self.iters_per_epoch
        return [r.epoch - 1 + r.iter / n for r in self.train]


def find_log(path: str | Path) -> Path:
    """A work dir (its log.jsonl) or a log file itself."""
    path = Path(path)
    log = path / LOG_NAME if path.is_dir() else path
    if not log.is_file():
        raise ReportError(f"{log}: no such log (expected a work dir holding {LOG_NAME}, or the file itself)")
    return log


def _number(entry: dict, key: str, where: str) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReportError(f"{where}: {entry.get('mode')} record needs a number for {key!r}, got {value!r}")
    return value


def _warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def read_run(path: str | Path, name: str | None = None, warn=_warn) -> Run:
    log = find_log(path)
    train: list[TrainRecord] = []
    val: list[ValRecord] = []
    torn: list[int] = []
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{log}:{n}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            if n < len(lines) or line.endswith("\n"):     # the unfinished last line of a live run is not news
                torn.append(n)
            continue
        if not isinstance(entry, dict):
            raise ReportError(f"{where}: expected a JSON object")
        mode = entry.get("mode")
        if mode == "train":
            v = {k: _number(entry, k, where) for k in TRAIN_KEYS}
            epoch, it = int(v["epoch"]), int(v["iter"])
            if train and (epoch, it) <= (train[-1].epoch, train[-1].iter):
                # a resume (or a fresh run in the same dir) redoes everything from this line on
                train = [r for r in train if (r.epoch, r.iter) < (epoch, it)]
                val = [r for r in val if r.epoch < epoch]
            prev = train[-1].iter if train and train[-1].epoch == epoch else 0
            train.append(TrainRecord(epoch, it, it - prev, v["lr"], v["loss"], v["time"], v["data_time"]))
        elif mode == "val":
            epoch = int(_number(entry, "epoch", where))
            metrics = {k: float(x) for k, x in entry.items() if k not in ("mode", "epoch", "iter")
                       and isinstance(x, (int, float)) and not isinstance(x, bool)}
            val = [r for r in val if r.epoch != epoch] + [ValRecord(epoch, metrics)]
    if torn:
        warn(f"{log}: skipped {len(torn)} line(s) that are not JSON (a write cut short by a killed run?): "
             f"line {', '.join(map(str, torn))}")
    if not train and not val:
        raise ReportError(f"{log}: no train or val records")
    return Run(name or label_for(log), log, tuple(train), tuple(val))


def label_for(log: Path) -> str:
    return log.resolve().parent.name

