"""One watchdog around `pipeline.run()`: a stalled or dead data pipeline becomes a clear error, never a hang.

Without it, a Python worker stuck on a file (an NFS stall, a decoder spinning on a damaged stream) blocks `run()`
forever, and under DDP the other ranks then wait in their next collective until its timeout (30 minutes); a worker
killed by the OOM killer surfaces as DALI's bare "Worker data receiving interrupted". Here `run()` executes in a
daemon helper thread while the caller waits at most `timeout_s`:
  * no batch in time -> the pool's Python workers are terminated (that unblocks a run() waiting on them) and
    `LoaderStalled` names the batch and its list lines;
  * a worker process that exited -> `WorkerDied` (within POLL_S) names its pid, exit code or signal, and the batch.
A stall inside DALI's own C++ threads (e.g. a hardware decoder) cannot be interrupted from Python; the error is still
raised on time and the stuck daemon thread does not keep the process alive.
"""
from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

from .errors import UserError

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
    """SIGTERM, then SIGKILL for a worker still alive a second later (one stuck in a C call may ignore SIGTERM)."""
    alive = [p for p in worker_processes(pipeline) if p.exitcode is None]
    for process in alive:
        process.terminate()
    for process in alive:
        process.join(1.0)
        if process.exitcode is None:
            process.kill()
            process.join(1.0)


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
