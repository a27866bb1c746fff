"""Run one decode with a wall-clock limit so a pathological file cannot hang a loader worker.

Mechanism: the call runs in a fresh daemon thread; the caller waits with `join(timeout)` and raises
`DecodeTimeout` if the thread is still alive. Why a thread and not `signal.alarm`/`setitimer`:
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
  * The limit covers wall time, so a heavily oversubscribed CPU can trip it; pick generous values
    (seconds per clip, not milliseconds).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_abandoned: set[threading.Thread] = set()
_lock = threading.Lock()


class DecodeTimeout(TimeoutError):
    """The call did not finish within the limit. `.path` names the file, `.seconds` the limit."""

    def __init__(self, path: str, seconds: float):
        super().__init__(f"{path}: decode did not finish within {seconds:g} s (still running in "
                         "a background thread; the sample is treated as bad)")
        self.path = path
        self.seconds = seconds


def call_with_timeout(fn: Callable[..., T], seconds: float | None, *args: Any,
                      label: str = "", **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` or `DecodeTimeout(label or args[0])` after `seconds` of wall time.

    `seconds` None or <= 0 calls `fn` directly (no thread). Exceptions raised by `fn` propagate
    unchanged (with their original traceback).
    """
    if seconds is None or seconds <= 0:
        return fn(*args, **kwargs)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"decode-timeout:{label}"[:60], daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        with _lock:
            _abandoned.add(thread)
        raise DecodeTimeout(label or (str(args[0]) if args else getattr(fn, "__name__", "call")),
                            seconds)
    if "error" in box:
        raise box["error"]
    return box["value"]


def abandoned_calls() -> int:
    """How many timed-out calls are still running in this process (see module docstring)."""
    with _lock:
        _abandoned.difference_update({t for t in _abandoned if not t.is_alive()})
        return len(_abandoned)
