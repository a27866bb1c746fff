"""The loader's watchdog: a killed DALI worker and a stalled source each end in a clear error within the configured
time, instead of DALI's bare "Worker data receiving interrupted" or a hang."""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import threading
import time

import av
import pytest
from av.video.reformatter import VideoReformatter

from jobs.recipes.config import load_config
from jobs.recipes.loaders import build_loader
from pipelines.loader import ClipLoader, LoaderStalled, WorkerDied, worker_processes
from pipelines.timeout import call_with_timeout
from pipelines.workers import WorkersDidNotStart
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


# A forked DALI worker that never reports in (stuck in an at-fork hook, as a child stuck on a lock the parent held at
# the fork would be). The hooks are registered once and stay inert while HANG is empty; after_in_parent consumes
# one "hang the next fork" token per fork.
HANG: list[str] = []


def _hang_in_child():
    if HANG:
        time.sleep(3600)


def _forked_in_parent():
    if HANG and HANG[0] == "once":
        HANG.pop()


@pytest.fixture
def hanging_fork(monkeypatch):
    from pipelines import workers
    if not getattr(_hang_in_child, "registered", False):
        os.register_at_fork(after_in_child=_hang_in_child, after_in_parent=_forked_in_parent)
        _hang_in_child.registered = True
    monkeypatch.setattr(workers, "START_TIMEOUT_S", 3.0)
    yield HANG
    HANG.clear()


def _new_children(before: set[int]) -> set[int]:
    return {p.pid for p in multiprocessing.active_children()} - before


def test_a_worker_that_never_starts_is_killed_and_the_start_retried(synthetic_root, hanging_fork, caplog):
    before = {p.pid for p in multiprocessing.active_children()}
    hanging_fork.append("once")
    start = time.monotonic()
    loader = build_loader(small_cfg(synthetic_root), "train")
    assert 3.0 <= time.monotonic() - start < BOUND_S
    assert "did not start within 3 s and were killed; starting them again" in caplog.text
    batch = next(iter(loader))
    assert batch.clips.shape[0] == 4
    assert _new_children(before) == {p.pid for p in worker_processes(loader.pipeline)}   # the stuck one is gone


def test_workers_that_never_start_end_in_a_clear_error(synthetic_root, hanging_fork):
    before = {p.pid for p in multiprocessing.active_children()}
    hanging_fork.append("always")
    start = time.monotonic()
    with pytest.raises(WorkersDidNotStart, match=r"DALI's data workers \(pid \d+\) did not start within 3 s"):
        build_loader(small_cfg(synthetic_root), "train")
    assert 6.0 <= time.monotonic() - start < BOUND_S          # two tries of 3 s each
    assert not _new_children(before)


HELD = threading.local()


def _convert_and_keep(path: str) -> int:
    """Runs in a decode thread: converts one frame with a 2-thread swscale context and keeps the converter in this
    thread's local state, as FFmpeg state was found kept by an idle decode thread when a CI run hung."""
    with av.open(path) as container:
        frame = next(container.decode(video=0))
        HELD.reformatter = VideoReformatter()
        HELD.reformatter.reformat(frame, format="rgb24", threads=2)
    return frame.width


def test_workers_start_after_a_decode_thread_kept_ffmpeg_threads(synthetic_root, monkeypatch):
    """A forked child tears down every other thread's state; a swscale context with slice threads torn down there
    waits forever. Building a loader ends the idle decode threads first (pipelines/timeout.py end_idle_threads)."""
    from pipelines import workers
    monkeypatch.setattr(workers, "START_TIMEOUT_S", 5.0)
    video = str(next((synthetic_root / "videos").glob("*.mp4")))
    assert call_with_timeout(_convert_and_keep, 30, video) > 0
    start = time.monotonic()
    loader = build_loader(small_cfg(synthetic_root), "train")       # WorkersDidNotStart after 10 s without the fix
    assert time.monotonic() - start < 5.0
    assert next(iter(loader)).clips.shape[0] == 4
    assert call_with_timeout(_convert_and_keep, 30, video) > 0       # decoding with a timeout still works after
