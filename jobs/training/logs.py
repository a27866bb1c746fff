"""Two log channels: a human line (stdout + <work_dir>/train.log) and JSON lines (<work_dir>/log.jsonl).

JSON keys are stable: mode, epoch, iter, lr, loss, skipped, time, data_time, memory, and the metric names (top1_acc,
top5_acc, mean_class_accuracy, ...). Only rank 0 writes. TensorBoard is one flag away (`tensorboard=True`).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


class Logger:
    def __init__(self, work_dir: str | Path | None, *, enabled: bool = True, tensorboard: bool = False):
        self.enabled = enabled
        self.work_dir = Path(work_dir) if work_dir else None
        self._text = self._jsonl = self._tb = None
        if enabled and self.work_dir:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self._text = open(self.work_dir / "train.log", "a", encoding="utf-8")
            self._jsonl = open(self.work_dir / "log.jsonl", "a", encoding="utf-8")
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(str(self.work_dir / "tensorboard"))

    def info(self, message: str):
        if not self.enabled:
            return
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
        print(line, flush=True)
        if self._text:
            self._text.write(line + "\n")
            self._text.flush()

    def warning(self, message: str):
        if self.enabled:
            print(f"WARNING: {message}", file=sys.stderr, flush=True)
            if self._text:
                self._text.write(f"WARNING: {message}\n")

    def record(self, entry: dict, step: int | None = None):
        """One JSON line; numeric fields also go to TensorBoard under <mode>/<key>."""
        if not self.enabled:
            return
        if self._jsonl:
            self._jsonl.write(json.dumps(entry) + "\n")
            self._jsonl.flush()
        if self._tb is not None and step is not None:
            for k, v in entry.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "iter"):
                    self._tb.add_scalar(f"{entry.get('mode', 'train')}/{k}", v, step)

    def close(self):
        for f in (self._text, self._jsonl):
            if f:
                f.close()
        if self._tb is not None:
            self._tb.close()


def format_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
