"""The loader's watchdog: a killed DALI worker and a stalled source each end in a clear error within the configured
time, instead of DALI's bare "Worker data receiving interrupted" or a hang."""
from __future__ import annotations

import dataclasses
import os
import signal
import time

import pytest

from jobs.recipes.config import load_config
from jobs.recipes.loaders import build_loader
from pipelines.loader import ClipLoader, LoaderStalled, WorkerDied, worker_processes
from tests.helpers import synthetic_overrides

BOUND_S = 60          # generous: the machine may be loaded; the timeout under test is a few seconds


@dataclasses.dataclass(frozen=True)
class StallingReader:
    """Wraps a real reader; sleeps (practically forever) when asked for `stall_path`. Runs in a forked worker."""

    inner: object
    stall_path: str

    @property
    def kind(self):
        return self.inner.kind

    def read(self, record, indices):
        if record.path == self.stall_path:
            time.sleep(3600)
        return self.inner.read(record, indices)


def small_cfg(root, **extra):
    opts = synthetic_overrides(root) + ["data.workers=1", "data.videos_per_gpu=4", "data.prefetch=1"]
    return load_config("tsn_r18_synthetic_rgb", opts + [f"{k}={v}" for k, v in extra.items()])


def test_killed_worker_is_named(synthetic_root):
    loader = build_loader(small_cfg(synthetic_root, **{"data.batch_timeout": 30}), "train")
    batches = iter(loader)
    next(batches)                                   # workers are up and serving
    (worker,) = worker_processes(loader.pipeline)
    os.kill(worker.pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(WorkerDied) as err:
        for _ in batches:
            pass
    assert time.monotonic() - start < BOUND_S
    message = str(err.value)
    assert f"pid {worker.pid}" in message and "SIGKILL" in message
    assert "epoch 1" in message and "train_list_rawframes.txt:" in message


def test_stalled_source_times_out_with_what_it_was_loading(synthetic_root):
    cfg = small_cfg(synthetic_root)
    base = build_loader(cfg, "train")
    source = base.source
    # The first video of the second batch stalls; the first batch arrives normally.
    second = source.records[int(source.batch_entries(0, 1)[0])]
    stalled = dataclasses.replace(source, reader=StallingReader(source.reader, second.path))
    pipe = base.build(stalled, py_workers=1, prefetch=1)       # the loader's own builder, other workers
    loader = ClipLoader(stalled, pipe, num_classes=12, batch_timeout=3.0)
    batches = iter(loader)
    next(batches)
    start = time.monotonic()
    with pytest.raises(LoaderStalled) as err:
        next(batches)
    waited = time.monotonic() - start
    assert 2.5 <= waited < BOUND_S
    assert "no batch for 3 s" in str(err.value) and "batch 2 of epoch 1" in str(err.value)
    assert second.source in str(err.value)
    assert all(p.exitcode is not None for p in worker_processes(pipe))     # the stuck worker was stopped
