"""Timing primitives shared by `tsn profile` and `tsn bench`: per-batch latencies of an iterator, warm-up excluded.

A loader's latency is what its consumer sees: the wall time between consecutive batches handed out (prefetching
makes this smaller than the time one batch takes to produce). Throughput is items over the timed window, and the
window covers exactly the timed batches, so items/s = sum(items) / sum(latencies) holds by construction.

CPU time is the whole machine's busy time over the same window (/proc/stat: every process and thread, so the DALI
threads, its Python workers, a DataLoader's worker processes and the kernel's work for them all count, whichever
process they are in). On a quiet machine that is what the loader costs; on a busy one it overstates it.
"""
from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Timing:
    """`batches` timed batches holding `items` items (clips, videos...) in `seconds`; latencies per batch (s)."""

    batches: int
    items: int
    seconds: float
    latencies: tuple[float, ...]
    cpu_seconds: float = float("nan")     # busy CPU time of the machine over the window (all cores)

    @property
    def per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("nan")

    @property
    def cpu_ms_per_item(self) -> float:
        return 1e3 * self.cpu_seconds / self.items if self.items else float("nan")

    def latency_ms(self) -> dict:
        return latency_summary(self.latencies)


def latency_summary(latencies) -> dict:
    """mean / p50 / p90 / p99 / max in milliseconds (linear-interpolated percentiles: ordered by construction)."""
    ms = np.asarray(latencies, dtype=np.float64) * 1e3
    if ms.size == 0:
        return {k: float("nan") for k in ("mean", "p50", "p90", "p99", "max")}
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"mean": float(ms.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(ms.max())}


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine since boot, summed over cores (/proc/stat: user, nice, system, irq,
    softirq; not a virtual machine's steal time); NaN where /proc/stat cannot be read."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def forever(iterable_factory: Callable[[], Iterable]) -> Iterator:
    """Batches across epoch boundaries (a fresh `iter()` per epoch), as a training loop sees them."""
    while True:
        empty = True
        for item in iterable_factory():
            empty = False
            yield item
        if empty:
            raise RuntimeError("the loader yielded no batch in a whole epoch")


def time_batches(batches: Iterator, *, warmup: int, count: int, size: Callable[[object], int],
                 work: Callable[[object], None] | None = None) -> Timing:
    """Skip `warmup` batches, then time `count` more; `work(batch)` (optional) runs inside each timed interval."""
    for batch in itertools.islice(batches, warmup):
        if work is not None:
            work(batch)
    latencies, items = [], 0
    cpu = machine_cpu_seconds()
    start = last = time.perf_counter()
    for _ in range(count):
        batch = next(batches)
        if work is not None:
            work(batch)
        now = time.perf_counter()
        latencies.append(now - last)
        last = now
        items += size(batch)
    return Timing(count, items, last - start, tuple(latencies), machine_cpu_seconds() - cpu)


def time_calls(fn: Callable[[], None], *, warmup: int, count: int, items_per_call: int = 1) -> Timing:
    """Time `count` calls of fn() after `warmup` untimed ones (model forward / training step)."""
    for _ in range(warmup):
        fn()
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        latencies.append(time.perf_counter() - start)
    return Timing(count, count * items_per_call, float(sum(latencies)), tuple(latencies))
