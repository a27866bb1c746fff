"""Per-run timing and best validation result: MMAction2's `cal_train_time` (`tools/analysis/analyze_logs.py`,
v0.24.1) for this project's logs.

Differences, on purpose: a log line here is the mean over the iterations since the previous line, so means over
lines are weighted by the iterations each covers (an epoch's last line may cover fewer); and `time` here is the
step alone, so the time of one iteration is time + data_time and the data share is
sum(data_time) / sum(time + data_time). Like MMAction2, the first line of each epoch (warm-up, the loader
starting) is left out unless include_outliers, except in an epoch with only one line.
"""
from __future__ import annotations

from dataclasses import dataclass

from jobs.reporting.runs import ReportError, Run, TrainRecord


@dataclass(frozen=True)
class RunSummary:
    name: str
    iterations: int             # iterations the timing covers
    iter_time: float            # s per iteration, step + data
    step_time: float            # s per iteration, the step alone
    data_time: float            # s per iteration waiting for data
    data_share: float           # data_time / iter_time
    slowest_epoch: int
    fastest_epoch: int
    metric: str | None          # the metric `best` is judged by (None: no validation in the log)
    best_value: float | None
    best_epoch: int | None
    epochs: int                 # last epoch in the log


def _timed(run: Run, include_outliers: bool) -> list[TrainRecord]:
    by_epoch: dict[int, list[TrainRecord]] = {}
    for r in run.train:
        by_epoch.setdefault(r.epoch, []).append(r)
    if include_outliers:
        return list(run.train)
    return [r for records in by_epoch.values() for r in (records[1:] if len(records) > 1 else records)]


def _weighted(records: list[TrainRecord], key) -> float:
    return sum(key(r) * r.iters for r in records) / sum(r.iters for r in records)


def headline_metric(run: Run) -> str | None:
    """top1_acc when logged, else the first metric of the first validation (jobs/evaluation/metrics.headline)."""
    if not run.val:
        return None
    first = run.val[0].metrics
    return "top1_acc" if "top1_acc" in first else next(iter(first), None)


def summarize(run: Run, metric: str | None = None, include_outliers: bool = False) -> RunSummary:
    if not run.train:
        raise ReportError(f"{run.path}: no train records to time")
    timed = _timed(run, include_outliers)
    step = _weighted(timed, lambda r: r.time)
    data = _weighted(timed, lambda r: r.data_time)
    per_epoch = {}
    for e in sorted({r.epoch for r in timed}):
        per_epoch[e] = _weighted([r for r in timed if r.epoch == e], lambda r: r.time + r.data_time)
    metric = metric or headline_metric(run)
    best_value = best_epoch = None
    if metric is not None:
        scored = [(r.metrics[metric], r.epoch) for r in run.val if metric in r.metrics]
        if not scored and run.val:
            known = sorted({k for r in run.val for k in r.metrics})
            raise ReportError(f"{run.path}: no val record has {metric!r} (logged: {', '.join(known)})")
        if scored:
            best_value = max(v for v, _ in scored)
            best_epoch = min(e for v, e in scored if v == best_value)   # the first epoch to reach it: best.pth's
    total = step + data
    return RunSummary(run.name, sum(r.iters for r in timed), total, step, data, data / total if total > 0 else 0.0,
                      max(per_epoch, key=per_epoch.get), min(per_epoch, key=per_epoch.get), metric, best_value,
                      best_epoch, max(r.epoch for r in run.train))


def format_summary(summaries: list[RunSummary]) -> str:
    lines = []
    for s in summaries:
        lines.append(f"-----Analyze train time of {s.name}-----")
        lines.append(f"time per iteration: {s.iter_time:.4f} s (step {s.step_time:.4f} s + data {s.data_time:.4f} s, "
                     f"over {s.iterations} iterations)")
        lines.append(f"data_time share: {100 * s.data_share:.1f}%")
        lines.append(f"slowest epoch {s.slowest_epoch}, fastest epoch {s.fastest_epoch}")
        if s.metric is None:
            lines.append("best: no validation records")
        else:
            lines.append(f"best {s.metric}: {s.best_value:.4f} at epoch {s.best_epoch} (of {s.epochs})")
    return "\n".join(lines)
