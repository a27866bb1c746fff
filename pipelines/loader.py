"""A small adapter from the DALI pipeline to plain torch tensors: `for batch in loader` and `len(loader)`.

Shapes (legend: B videos, V views = crops x clips x clip_len for RGB or crops x clips for flow, C channels; see
pipelines/layout.py):
  batch.clips   (B, V, C, H, W) uint8 (CPU, or CUDA for the GPU pipeline); C = 3 (RGB) or 2 * clip_len (flow)
  batch.labels  (B,) int64, or (B, num_classes) float32 multi-hot
  batch.index   (B,) int64 position in the annotation list; -1 marks evaluation padding (exclude it downstream)

The loader also owns how it waits for a batch: one watchdog around `pipeline.run()` (`run_guarded`), so a stalled or
dead data pipeline becomes a clear error, never a hang. Without it, a Python worker stuck on a file (an NFS stall, a
decoder spinning on a damaged stream) blocks `run()` forever, and under DDP the other ranks then wait in their next
collective until its timeout (30 minutes); a worker killed by the OOM killer surfaces as DALI's bare "Worker data
receiving interrupted". Here `run()` executes in a daemon helper thread while the caller waits at most `timeout_s`:
  * no batch in time -> the pool's Python workers are terminated (that unblocks a run() waiting on them) and
    `LoaderStalled` names the batch and its list lines;
  * a worker process that exited -> `WorkerDied` (within POLL_S) names its pid, exit code or signal, and the batch.
A stall inside DALI's own C++ threads (e.g. a hardware decoder) cannot be interrupted from Python; the error is still
raised on time and the stuck daemon thread does not keep the process alive.
"""
from __future__ import annotations

import gc
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .errors import UserError
from .graph import output_names
from .readers import BadSample
from .recovery import recover
from .sharding import loadable
from .source import ClipSource, read_bad_log
from .variants.parts import torch_view

# --- waiting for a batch: the watchdog -------------------------------------------------------------------------------

POLL_S = 0.5            # how often a waiting run() checks that the workers are alive


class LoaderStalled(UserError, RuntimeError):
    """No batch arrived within the loader's batch timeout."""


class WorkerDied(UserError, RuntimeError):
    """A DALI Python worker process exited while the loader waited for its data."""


def worker_processes(pipeline) -> list:
    """The multiprocessing.Process objects of the pipeline's parallel external source (empty when it has none).

    DALI keeps them in `Pipeline._py_pool` (a WorkerPool) -> `.pool` (a ProcPool) -> `._processes`
    (nvidia/dali/_multiproc/pool.py, DALI 2.4); there is no public accessor beyond `pids()`."""
    pool = getattr(getattr(pipeline, "_py_pool", None), "pool", None)
    return list(getattr(pool, "_processes", []) or [])


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def dead_workers(pipeline) -> list[str]:
    return [f"pid {p.pid} ({_exit_reason(p.exitcode)})" for p in worker_processes(pipeline) if p.exitcode is not None]


def _stop_workers(pipeline):
    """SIGTERM, then SIGKILL for a worker still alive a second later (one stuck in a C call may ignore SIGTERM).
    A killed process cannot refuse to die; on a loaded machine its reaping can take longer than a second, so the
    last wait is longer (seen in CI: a worker still unreaped 1 s after SIGKILL)."""
    alive = [p for p in worker_processes(pipeline) if p.exitcode is None]
    for process in alive:
        process.terminate()
    for process in alive:
        process.join(1.0)
        if process.exitcode is None:
            process.kill()
            process.join(10.0)


def run_guarded(pipeline, timeout_s: float | None, describe: Callable[[], str], *args):
    """`pipeline.run(*args)`, or LoaderStalled / WorkerDied (see the module docstring). `describe()` says what the
    pipeline was loading ("batch 3 of epoch 1: list.txt:12, list.txt:40, ...") and is called only on failure."""
    box: dict = {}

    def target():
        try:
            box["value"] = pipeline.run(*args)
        except BaseException as exc:            # StopIteration ends an epoch: handed back like any result
            box["error"] = exc

    thread = threading.Thread(target=target, name="dali-run", daemon=True)
    thread.start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    # Poll: DALI does not always notice a dead worker (its run() can keep waiting for the lost batch), so liveness is
    # checked here every POLL_S.
    while thread.is_alive():
        thread.join(POLL_S if deadline is None else max(0.0, min(POLL_S, deadline - time.monotonic())))
        dead = dead_workers(pipeline)
        if thread.is_alive() and dead:
            _stop_workers(pipeline)
            raise WorkerDied(f"DALI data worker {', '.join(dead)} died while loading {describe()}")
        if thread.is_alive() and deadline is not None and time.monotonic() >= deadline:
            _stop_workers(pipeline)
            raise LoaderStalled(f"no batch for {timeout_s:g} s (data.batch_timeout) while loading {describe()}; "
                                "the data workers were stopped")
    error = box.get("error")
    if error is None:
        return box["value"]
    dead = dead_workers(pipeline)
    if dead and isinstance(error, RuntimeError):
        raise WorkerDied(f"DALI data worker {', '.join(dead)} died while loading {describe()} "
                         f"(DALI: {error})") from None
    raise error


@dataclass
class Batch:
    clips: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor


class TooManyBadSamples(UserError, RuntimeError):
    """More of the data was unreadable than `max_bad_fraction` allows."""


_WORKER_BADSAMPLE = f"\n{BadSample.__module__}.{BadSample.__qualname__}: "


def _source_error(err: BaseException) -> BadSample | None:
    """A BadSample raised by the source, from `err` or its chain of causes.

    In a worker process the exception does not survive as such: DALI's pool (nvidia/dali/_multiproc/pool.py) hands the
    parent a plain RuntimeError with the message, wrapped in an Exception whose text is the worker's traceback. That
    traceback's last line, `pipelines.readers.BadSample: <message>`, is the message (list line and file)."""
    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, BadSample):
            return err
        text = str(err)
        if _WORKER_BADSAMPLE in text:
            return BadSample(text.rsplit(_WORKER_BADSAMPLE, 1)[1].strip())
        err, seen = err.__cause__, seen + 1
    return None


# --- the batches' host memory --------------------------------------------------------------------------------------
#
# Host memory for the loader's CPU batches, reused once nobody holds it any more.
#
# A batch is 14 MB (K400 1x1x3 train, 32 videos) to 38 MB (one video of 25 clips x 10 crops). Allocated fresh each
# time, glibc hands memory that large straight from mmap and back to the kernel on free, so every batch first pays a
# page fault per 4 KiB page while it is written: on the 2-core machine writing a 25 x 10 batch took 12-15 ms per video
# into fresh memory and 9-11 ms into reused memory (cProfile of 30 batches, two A/B runs; docs/PERFORMANCE.md).
#
# A pooled buffer is a numpy array handed out as a torch tensor (`torch.from_numpy`). Every tensor, view or numpy
# array made from that tensor keeps a reference to the array through its storage, so the array is free exactly when
# its reference count is back to the pool's own: nothing a consumer still holds is ever overwritten. At most `keep`
# buffers are kept (a consumer that holds more batches than that gets fresh memory, as before).

KEEP = 4     # the consumer's batch + the one being written + slack for a consumer that keeps one more


class BatchBuffers:
    def __init__(self, keep: int = KEEP):
        self.keep = keep
        self._arrays: list[np.ndarray] = []

    def empty(self, shape: tuple[int, ...]) -> torch.Tensor:
        """An uninitialised uint8 CPU tensor of `shape`, in a buffer no live tensor uses."""
        nbytes = math.prod(shape)
        for i in range(len(self._arrays)):
            # References: the list, and getrefcount's own argument. Any tensor made from it adds one.
            if self._arrays[i].nbytes == nbytes and sys.getrefcount(self._arrays[i]) == 2:
                return torch.from_numpy(self._arrays[i]).view(shape)
        array = np.empty(nbytes, np.uint8)
        if self.keep:
            if len(self._arrays) >= self.keep:      # replace a buffer still held, or of another size
                self._arrays.pop(0)
            self._arrays.append(array)
        return torch.from_numpy(array).view(shape)


class ClipLoader:
    def __init__(self, source: ClipSource, pipeline, *, num_classes: int, multi_label: bool = False,
                 max_bad_fraction: float = 1.0, batch_timeout: float | None = None,
                 build: Callable | None = None):
        self.source, self.pipeline = source, pipeline
        self.build = build                     # source -> a new pipeline like this one (decoder-failure recovery)
        self.batch_timeout = batch_timeout     # seconds the watchdog waits for one batch (None: forever)
        # The pipeline epoch and the batch of its epoch being waited for; a resumed epoch starts at its data
        # position (ClipSource.first_iteration: preemption resume, decoder-failure recovery).
        self._epoch_idx, self._iteration = 0, source.first_iteration
        self.layout = source.layout
        self.num_classes, self.multi_label = num_classes, multi_label
        self.max_bad_fraction = max_bad_fraction
        self.names = output_names(self.layout, source.variant)
        self.buffers = BatchBuffers()          # host memory of the CPU batches, reused (BatchBuffers above)
        self._pending = 0            # batches of the current pipeline epoch not yet consumed
        self.short_videos: list[str] = []   # list lines of videos shorter than one clip (padded)

    def __len__(self) -> int:
        """Batches per epoch (a resumed first epoch yields the last `len - first_iteration` of them)."""
        return self.source.num_batches()

    @property
    def position(self) -> int:
        """The batch of the current epoch the next iteration starts at: 0, or a resumed epoch's data position."""
        return self._iteration

    def _run(self):
        """One pipeline.run() under the watchdog; a GPU pipeline's outputs are ordered on torch's current stream, so
        consuming them needs no host synchronisation."""
        args = ()
        if self.pipeline.device_id is not None and torch.cuda.is_initialized():
            args = (torch.cuda.current_stream(self.pipeline.device_id).cuda_stream,)
        try:
            return run_guarded(self.pipeline, self.batch_timeout, self._loading, *args)
        except (StopIteration, LoaderStalled, WorkerDied):
            raise
        except Exception as err:
            # DALI's worker pool re-raises a source error wrapped in plain Exceptions: hand back our own (it names
            # the list line and file) rather than DALI's wrappers.
            ours = _source_error(err)
            if ours is not None and ours is not err:
                raise ours from None
            if ours is not None or not isinstance(err, RuntimeError):
                raise
            # A decoder failed inside DALI: the pipeline object is dead.
            if self.build is None:
                raise
            self._rebuild_after(err)
            return self._run()

    def _rebuild_after(self, err: RuntimeError):
        """Mark the videos that fail alone as bad and resume this epoch at this batch (pipelines/recovery.py)."""
        epoch = self.source.epochs.start_epoch + self._epoch_idx
        source = recover(self.source, err, epoch, self._iteration, self.build)
        self.pipeline = None
        gc.collect()                            # the dead pipeline's buffers (GPU memory) go before the new ones
        self.source, self.pipeline, self._epoch_idx = source, self.build(source), 0

    def _loading(self) -> str:
        """What the pipeline is producing now, for the watchdog's message."""
        epoch = self.source.epochs.start_epoch + self._epoch_idx
        try:
            entries = self.source.batch_entries(epoch, self._iteration)
        except IndexError:
            return f"the end of epoch {epoch + 1}"
        lines = [self.source.records[loadable(int(e))].source for e in entries[:8]]
        more = f", ... ({len(entries)} videos)" if len(entries) > 8 else ""
        return f"batch {self._iteration + 1} of epoch {epoch + 1} ({', '.join(lines)}{more})"

    def _drain(self):
        """Finish an epoch the consumer left early, so the next one starts at its first batch."""
        try:
            while True:
                self._run()
                self._iteration += 1
        except StopIteration:
            self.pipeline.reset()
            self._epoch_idx, self._iteration = self._epoch_idx + 1, 0

    def __iter__(self):
        if self._pending:
            self._drain()
        first = self._iteration                 # 0, or the data position of a resumed epoch
        self._pending = len(self) - first
        for _ in range(first, len(self)):
            named = dict(zip(self.names, self._run()))
            self._iteration += 1
            self._pending -= 1
            yield self._assemble(named)
        self._drain()
        self._pending = 0
        self.check_bad_samples()

    def _assemble(self, named: dict) -> Batch:
        per_sample_index = torch_view(named["index"]).reshape(-1)
        b = len(per_sample_index) // self.source.reader.kind.samples_per_video(self.layout)
        index = per_sample_index.reshape(b, -1)[:, 0].clone()
        clips = self.source.variant.assemble(named, self.layout, b, self.buffers.empty)
        return Batch(clips, self._labels(index), index)

    def _labels(self, index: torch.Tensor) -> torch.Tensor:
        records = self.source.records
        real = [int(i) if i >= 0 else 0 for i in index]          # padding rows get any label; they are masked
        if not self.multi_label:
            return torch.tensor([records[i].label for i in real], dtype=torch.int64)
        hot = torch.zeros(len(real), self.num_classes)
        for row, i in enumerate(real):
            hot[row, list(records[i].labels)] = 1.0
        return hot

    def bad_samples(self) -> list[dict]:
        return read_bad_log(self.source.bad_log)

    def check_bad_samples(self):
        """Abort with a summary once more than max_bad_fraction of the list proved unreadable."""
        bad = self.bad_samples()
        if len(bad) > self.max_bad_fraction * len(self.source.records):
            lines = "\n".join(f"  {b['line']}: {b['reason']}" for b in bad[:20])
            raise TooManyBadSamples(
                f"{len(bad)} of {len(self.source.records)} videos unreadable (max_bad_fraction="
                f"{self.max_bad_fraction}); see {self.source.bad_log}\n{lines}")
