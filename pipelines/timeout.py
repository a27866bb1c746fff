"""Run one decode with a wall-clock limit so a pathological file cannot hang a loader worker.

Mechanism: the call runs in a decode thread; the caller waits at most the limit for its result and raises
`DecodeTimeout` if it has none. Each calling thread keeps one long-lived decode thread (per process: a forked child
makes its own) and hands it one call at a time; only a timed-out call, whose thread is left running, makes the next
call start a new one. A fresh thread per call was measured to make a video worker's memory grow without bound: glibc
gives threads their own malloc arenas, and decoding 600 prepared videos 5 times over grew one process from 88 to
133 MiB with a thread per call, and stayed at 94-95 MiB with one thread (the loader's PyAV workers: 464 -> 521 MiB
over 5 epochs before). Why a thread and not `signal.alarm`/`setitimer`:
  * a Python signal handler only runs between bytecodes of the *main* thread, so it cannot interrupt
    a hang inside C code (an FFmpeg decode loop) -- the alarm would fire only after the C call
    returns, i.e. never for a true hang;
  * signals only work in the main thread of the main interpreter, while callers may be anywhere.
The thread approach works in every thread and every process, including DALI's parallel
external_source workers (forked or spawned processes; DALI 2.4 runs the callback in the worker's
main thread, `nvidia/dali/_multiproc/worker.py`), and PyAV releases the GIL while decoding, so the
waiting caller is not starved.

Limits (documented, not hidden):
  * Python cannot kill a thread. After a timeout the call keeps running in the background until it
    finishes on its own; its result is discarded and its resources (open container, memory) are
    freed only then. It is a daemon thread, so it never blocks interpreter exit.
  * Every timeout therefore leaks one busy thread. `abandoned_calls()` counts those still running;
    a worker that sees that number grow should be recycled (e.g. restart the DALI pipeline / pool).
  * Calls from one thread run one after another in its decode thread (they would anyway: the caller waits).
  * The limit covers wall time, so a heavily oversubscribed CPU can trip it; pick generous values
    (seconds per clip, not milliseconds).
"""
from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_abandoned: set[threading.Thread] = set()
_lock = threading.Lock()
_local = threading.local()       # the calling thread's decode thread (a _DecodeThread)
_live: set = set()               # this process's decode threads not told to end (end_idle_threads)


class DecodeTimeout(TimeoutError):
    """The call did not finish within the limit. `.path` names the file, `.seconds` the limit."""

    def __init__(self, path: str, seconds: float):
        super().__init__(f"{path}: decode did not finish within {seconds:g} s (still running in "
                         "a background thread; the sample is treated as bad)")
        self.path = path
        self.seconds = seconds


class _DecodeThread:
    """One daemon thread running the calls handed to it, one at a time; each call gets its own reply queue."""

    def __init__(self, label: str):
        self.calls: queue.SimpleQueue = queue.SimpleQueue()
        self.pid = os.getpid()
        self.busy = False           # a call was handed over and its reply not yet taken (under _lock)
        self.ended = False          # told to end: no call may be handed to it any more (under _lock)
        self.thread = threading.Thread(target=self._serve, name=f"decode-timeout:{label}"[:60], daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            call = self.calls.get()
            if call is None:              # abandoned after a timeout: end once the stuck call has returned
                return
            fn, args, kwargs, reply = call
            try:
                reply.put((True, fn(*args, **kwargs)))
            except BaseException as exc:
                reply.put((False, exc))
            del call, fn, args, kwargs, reply     # nothing of a finished call stays referenced while waiting


def _decode_thread(label: str) -> _DecodeThread:
    """The calling thread's decode thread, marked busy (the caller hands it one call)."""
    held = getattr(_local, "held", None)
    with _lock:
        if held is not None and held.pid == os.getpid() and not held.ended and held.thread.is_alive():
            held.busy = True
            return held
    held = _DecodeThread(label)
    with _lock:
        _live.add(held)
        held.busy = True
    _local.held = held
    return held


def end_idle_threads(timeout_s: float = 5.0) -> None:
    """End this process's idle decode threads; call it before forking.

    A forked child clears the state of every thread of its parent except the forking one. An idle decode thread's
    state can hold FFmpeg objects from its last call; one of them was a swscale context with slice threads, whose
    teardown in the child waits forever on a condition variable that the parent's slice threads were waiting on
    at the fork (seen in a hung CI run: the DALI worker never started). Ended here, in the parent, the thread
    frees those objects where their threads exist. A thread busy with a call (a timed-out one included) is left
    alone; the caller's next call starts a new thread."""
    with _lock:
        idle = [t for t in _live if t.pid == os.getpid() and not t.busy and not t.ended]
        for worker in idle:
            worker.ended = True
            worker.calls.put(None)
        _live.difference_update(idle)
    for worker in idle:
        worker.thread.join(timeout_s)


def _forget_parent_threads() -> None:
    """In a forked child: the parent's decode threads do not exist here, and the lock may have been held by a
    parent thread at the fork."""
    global _lock
    _lock = threading.Lock()
    _live.clear()


os.register_at_fork(after_in_child=_forget_parent_threads)


def call_with_timeout(fn: Callable[..., T], seconds: float | None, *args: Any,
                      label: str = "", **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` or `DecodeTimeout(label or args[0])` after `seconds` of wall time.

    `seconds` None or <= 0 calls `fn` directly (no thread). Exceptions raised by `fn` propagate
    unchanged (with their original traceback).
    """
    if seconds is None or seconds <= 0:
        return fn(*args, **kwargs)
    worker = _decode_thread(label)
    reply: queue.SimpleQueue = queue.SimpleQueue()
    worker.calls.put((fn, args, kwargs, reply))
    try:
        ok, value = reply.get(timeout=seconds)
    except queue.Empty:
        # The thread is busy with this call until it ends on its own: the next call gets a new thread.
        _local.held = None
        worker.calls.put(None)
        with _lock:
            worker.ended = True
            _live.discard(worker)
            _abandoned.add(worker.thread)
        raise DecodeTimeout(label or (str(args[0]) if args else getattr(fn, "__name__", "call")),
                            seconds) from None
    with _lock:
        worker.busy = False
    if not ok:
        raise value
    return value


def abandoned_calls() -> int:
    """How many timed-out calls are still running in this process (see module docstring)."""
    with _lock:
        _abandoned.difference_update({t for t in _abandoned if not t.is_alive()})
        return len(_abandoned)
