"""Process trees read from /proc (Linux), for tests that stop a job and check that nothing it started lives on."""
from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path

GONE_AFTER_S = 10.0     # issue 22: every process of a stopped job is gone this long after the signal


def stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state letter, start time in clock ticks) of a live or zombie process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0], int(fields[19])


def process_tree(root: int) -> dict[int, int]:
    """{pid: start time} of `root` and all its descendants."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := stat(int(name))) is not None:
            children.setdefault(st[0], []).append(int(name))
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if (st := stat(pid)) is not None:
            tree[pid] = st[2]
            todo += children.get(pid, [])
    return tree


def survivors(tree: dict[int, int]) -> list[str]:
    """The processes of `tree` still running (same pid and start time, not a zombie), with their command lines."""
    out = []
    for pid, start in tree.items():
        st = stat(pid)
        if st is not None and st[2] == start and st[1] != "Z":
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:160]
            except OSError:
                cmd = "?"
            out.append(f"{pid} ({st[1]}): {cmd}")
    return out


def wait_all_gone(tree: dict[int, int]) -> list[str]:
    deadline = time.monotonic() + GONE_AFTER_S
    while (alive := survivors(tree)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def shared_memory(tree: dict[int, int]) -> set[str]:
    """Files under /dev/shm that the processes of `tree` map or hold open (POSIX shared memory and named semaphores,
    e.g. multiprocessing's `sem.mp-*`), as long as they still have a name there."""
    found = set()
    for pid in tree:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
            fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        paths = [line.split(None, 5)[5] for line in maps if len(line.split(None, 5)) == 6] + fds
        found.update(p for p in paths if p.startswith("/dev/shm/") and not p.endswith("(deleted)"))
    return found


def assert_nothing_left(tree: dict[int, int], shm: set[str]) -> None:
    """Every process of `tree` gone within GONE_AFTER_S, and none of the /dev/shm files `shm` they held left."""
    assert wait_all_gone(tree) == []
    assert sorted(p for p in shm if os.path.exists(p)) == []


@contextmanager
def reaped(proc):
    """A job started in its own session: SIGKILLed as a group on the way out if still running (a failed assert must
    not leave it behind)."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
