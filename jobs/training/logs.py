"""Two log channels: a human line (stdout + <work_dir>/train.log) and JSON lines (<work_dir>/log.jsonl).

JSON keys are stable: mode, epoch, iter, lr, loss, skipped, time, data_time, memory, and the metric names (top1_acc,
top5_acc, mean_class_accuracy, ...). Only rank 0 writes. TensorBoard is one flag away (`tensorboard=True`).

Nothing here stops training: a log file that cannot be written (a full disk) gives one warning on stderr and that
line is lost. Each line goes out in one write on an O_APPEND descriptor; a line cut short (a kill or a full disk in
mid-write) is ended before the next one, and the log's reader (jobs/reporting/runs.py) skips it, saying so.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


class _Appender:
    """One log file written a line at a time; a failed write warns once and never raises."""

    def __init__(self, path: Path):
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        size = os.fstat(self._fd).st_size
        # The last line was cut short (here, or by an earlier run that was killed): start the next on a fresh line.
        self._torn = size > 0 and os.pread(self._fd, 1, size - 1) != b"\n"
        self._warned = False

    def write_line(self, text: str):
        data = (("\n" if self._torn else "") + text + "\n").encode("utf-8")
        try:
            while data:
                n = os.write(self._fd, data)
                self._torn = True
                data = data[n:]
            self._torn = False
        except OSError as err:
            if not self._warned:
                self._warned = True
                print(f"WARNING: {self.path}: cannot write the log ({err.strerror or err}); training goes on, "
                      "log lines are lost until it can be written again", file=sys.stderr, flush=True)

    def close(self):
        os.close(self._fd)


class Logger:
    def __init__(self, work_dir: str | Path | None, *, enabled: bool = True, tensorboard: bool = False):
        self.enabled = enabled
        self.work_dir = Path(work_dir) if work_dir else None
        self._text = self._jsonl = self._tb = None
        if enabled and self.work_dir:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self._text = _Appender(self.work_dir / "train.log")
            self._jsonl = _Appender(self.work_dir / "log.jsonl")
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(str(self.work_dir / "tensorboard"))

    def info(self, message: str):
        if not self.enabled:
            return
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
        print(line, flush=True)
        if self._text:
            self._text.write_line(line)

    def warning(self, message: str):
        if self.enabled:
            print(f"WARNING: {message}", file=sys.stderr, flush=True)
            if self._text:
                self._text.write_line(f"WARNING: {message}")

    def record(self, entry: dict, step: int | None = None):
        """One JSON line; numeric fields also go to TensorBoard under <mode>/<key>."""
        if not self.enabled:
            return
        if self._jsonl:
            self._jsonl.write_line(json.dumps(entry))
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
