"""How DALI's Python workers (the parallel external source) are started: fork where it is safe, spawn elsewhere.

DALI refuses to fork its workers once the CUDA driver is initialised in the process ("Cannot fork a process when
the CUDA has been initialized", nvidia/dali/_multiproc/pool.py), and anything may initialise it: a GPU pipeline's
build, `torch.cuda.is_available()`, a CUDA tensor. Spawned workers start a fresh interpreter and receive the source
object pickled (a few KiB: records, reader, sampler, augmentation), so they are safe in every state; fork is kept
where it is safe because it starts faster and shares the parent's pages.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager

from .errors import UserError


def cuda_driver_initialized() -> bool:
    """DALI's own test, the one its worker pool applies before forking."""
    from nvidia.dali import backend
    return bool(backend.IsDriverInitialized())


def start_method(backend: str) -> str:
    """"spawn" for GPU pipelines (their build initialises CUDA, and later loaders of the same process must not fork)
    or when the driver is already initialised; otherwise "fork"."""
    return "spawn" if backend == "gpu" or cuda_driver_initialized() else "fork"


# ------------------------------------------------------------------------------------------------ dying with the parent
#
# Every process we start (DALI's Python workers, forked or spawned; the spawn pools of the video index, the synthetic
# set and the `tsn prepare` steps) must end within seconds of its parent's death, however the parent died (SIGKILL
# included). Two mechanisms were weighed (docs/RUNNING_ON_CLUSTERS.md#nothing-outlives-a-stopped-job):
#   * prctl(PR_SET_PDEATHSIG, sig) (Linux): the kernel sends `sig` to the child when its parent dies. No thread, no
#     polling, works while the child is blocked in C (DALI's workers wait on a futex) or holds the GIL. Caveats: it
#     fires when the parent THREAD that created the child exits, not the process (all our pools are started from the
#     main thread, and CPython's main thread lives until the interpreter exits); and a parent that died before the
#     child's prctl ran is missed, so the child compares getppid() with its parent's pid right after setting it.
#   * a thread in the child polling getppid(): portable, but only as prompt as its period, and it cannot run while the
#     child's main thread holds the GIL in a long C call.
# The kernel signal is the mechanism; the prepare steps, whose workers write hidden temp folders that must not be left
# behind, ask for SIGTERM (turned into SystemExit so their `finally` blocks remove the folder) and keep a polling
# thread as a backstop that SIGKILLs a worker still alive GRACE_S after the parent died.

PR_SET_PDEATHSIG = 1      # <linux/prctl.h>
GRACE_S = 5.0             # how long a worker may spend cleaning up after its parent's death before it is killed


_prctl = []      # [libc's prctl] once resolved, [None] where there is none


def _resolve_prctl():
    """libc's prctl, looked up once. A forked child must not dlopen/dlsym: the dynamic loader's lock may have been
    held by another thread of the parent at the fork, and the child would wait for it forever. So the parent resolves
    it before forking (`dali_workers_die_with_parent`) and the child only calls it."""
    if not _prctl:
        try:
            _prctl.append(ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None)
        except (OSError, AttributeError):
            _prctl.append(None)
    return _prctl[0]


def _prctl_pdeathsig(sig: int) -> bool:
    """Ask the kernel to send `sig` to this process when its parent dies; False where prctl does not exist."""
    prctl = _resolve_prctl()
    return prctl is not None and prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def _expected_parent() -> int | None:
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None else None


def die_with_parent(sig: int = signal.SIGKILL, parent_pid: int | None = None) -> bool:
    """Call in a child process: it receives `sig` when the parent dies (Linux); if the parent is already gone (the
    race before prctl), the signal is sent now. `parent_pid`: the parent to compare with (default: multiprocessing's
    record of it). Returns whether the kernel mechanism is in place. A no-op in a process that is not a child."""
    parent_pid = parent_pid or _expected_parent()
    if parent_pid is None:
        return False
    armed = _prctl_pdeathsig(sig)
    if os.getppid() != parent_pid:          # the parent died before prctl: re-parented already
        os.kill(os.getpid(), sig)
    return armed


_unfinished: set[str] = set()      # this worker's temp outputs (files or folders) that may still exist


def unfinished(path) -> None:
    """Note a temp output of the running task: if the worker must be killed (its main thread stuck in C code the
    SIGTERM cannot interrupt), the backstop removes it first. A published output no longer exists under this name,
    so noting it is all a task needs to do."""
    _unfinished.add(str(path))


def _remove_unfinished() -> None:
    for path in list(_unfinished):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)


def _backstop(parent_pid: int):
    """A daemon thread: once the parent is gone, SIGKILL this process GRACE_S later (if cleanup has not ended it),
    after removing the temp outputs the task left."""
    def watch():
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        time.sleep(GRACE_S)
        _remove_unfinished()
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class ParentDied(SystemExit):
    """Raised in a pool worker by the SIGTERM its parent's death sent: unwinds the task (its `finally` blocks remove
    temp files); the pool's task wrapper then ends the process (`os._exit`)."""


def _on_parent_death(signum, frame):
    # Once: a second SIGTERM while the task unwinds (seen in tests: the cleanup's rmtree cut short, half a temp
    # folder left) must not interrupt the cleanup; the backstop still SIGKILLs a worker that does not finish.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise ParentDied(128 + signum)


def pool_initializer():
    """`initializer=` of our ProcessPoolExecutors (a top-level function, so a spawned worker can unpickle it): the
    worker gets SIGTERM, raised as ParentDied, when the parent dies, and is SIGKILLed GRACE_S later at the latest.

    A worker killed outright would leave the task's hidden temp file or folder behind; with SIGTERM the task unwinds.
    """
    parent_pid = _expected_parent()
    if parent_pid is None:
        return
    signal.signal(signal.SIGTERM, _on_parent_death)
    die_with_parent(signal.SIGTERM, parent_pid)
    _backstop(parent_pid)


_arming = threading.local()


def _ignore_user_signals():
    """SLURM signals every process of a job step, workers included (proctrack/cgroup): `--signal=USR1@90` would end a
    DALI worker (SIGUSR1's default action) under the trainer that is about to finish its step with it. DALI never
    uses SIGUSR1/SIGUSR2, so its workers ignore them; SIGTERM keeps its meaning (DALI and the watchdog stop workers
    with it), and a trainer that was signalled too treats a worker lost that way as the stop it asked for
    (jobs/training/preemption.py)."""
    for sig in (signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)


def _arm_dali_worker(parent_pid: int | None):
    _ignore_user_signals()
    die_with_parent(signal.SIGKILL, parent_pid)


def _after_fork_in_child():
    """os.register_at_fork hook: a child forked while `dali_workers_die_with_parent` is active (DALI's fork start
    method) gets SIGKILL when the parent dies. Its parent is the process that forked it."""
    if getattr(_arming, "ppid", None) is not None:
        _arm_dali_worker(_arming.ppid)
        _arming.ppid = None


_hooked = []


@contextmanager
def dali_workers_die_with_parent():
    """Around DALI's `start_py_workers()`: forked workers are armed by an at-fork hook that acts only inside this
    block; spawned ones arm themselves when they unpickle the source (`ClipSource.__setstate__` calls
    `arm_spawned_worker`). DALI's workers hold no temp files, and their shared memory is file descriptors that die
    with the last holder, so SIGKILL (immune to a worker stuck in C) is the signal. Workers also ignore SIGUSR1 and
    SIGUSR2 (`_ignore_user_signals`)."""
    if not _hooked:
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _hooked.append(True)
    _resolve_prctl()
    _arming.ppid = os.getpid()
    try:
        yield
    finally:
        _arming.ppid = None


# ------------------------------------------------------------------------------------------------ starting in time
#
# DALI's pool waits for every new worker to report in on a shared-memory queue, with no time limit
# (nvidia/dali/_multiproc/pool.py `_sync_initialized_workers`, DALI 2.4), and a signal delivered to another thread
# does not wake that wait. A worker that never reported kept `build_loader` waiting forever in a CI run (the child was
# stuck tearing down a parent thread's FFmpeg state; that cause is removed by pipelines/timeout.py end_idle_threads).
# Whatever the next such cause, the pool's own observer ends the wait when a worker exits, so a worker late past
# START_TIMEOUT_S is killed, and the builder tries again.

START_TIMEOUT_S = 120.0   # a forked worker reports in within milliseconds; a spawned one imports torch first


class WorkersDidNotStart(UserError, RuntimeError):
    """DALI's Python workers did not report in within START_TIMEOUT_S; they were killed."""


@contextmanager
def killed_if_not_started(timeout_s: float):
    """Around DALI's `start_py_workers()`: a process this process starts inside the block and that is still alive
    `timeout_s` later is SIGKILLed. Yields the list of killed pids (empty when the start was in time); a non-empty
    list means the pool is unusable, even if the start call returned."""
    before = {p.pid for p in multiprocessing.active_children()}
    killed: list[int] = []
    done = threading.Event()
    lock = threading.Lock()

    def watch():
        if done.wait(timeout_s):
            return
        with lock:
            if done.is_set():
                return
            for process in multiprocessing.active_children():
                if process.pid not in before:
                    killed.append(process.pid)
                    process.kill()

    watcher = threading.Thread(target=watch, name="dali-worker-start", daemon=True)
    watcher.start()
    try:
        yield killed
    finally:
        with lock:
            done.set()
        watcher.join()


def arm_spawned_worker():
    """In a spawned DALI worker (called while its callback is unpickled): SIGKILL when the parent dies. Elsewhere (the
    main process, a pickle round trip there) nothing happens: only a multiprocessing child has a parent record."""
    if _expected_parent() is not None:
        _arm_dali_worker(_expected_parent())
