"""The loop every media step shares: skip finished outputs, run the rest in a process pool with a
progress bar, record each failure (path, reason) as a JSON line, and never let one bad input stop the others.

A task's `dst` must appear only when the task is complete (steps write to a hidden temp name and
rename at the end), so "dst exists" is the whole resume test and an interrupted run redoes only
the unfinished inputs.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pipelines.spawn import spawn_pool
from pipelines.workers import ParentDied


@dataclass(frozen=True)
class Task:
    src: Path
    dst: Path


@dataclass(frozen=True)
class Failure:
    path: str
    reason: str


@dataclass(frozen=True)
class RunSummary:
    total: int
    done: int
    skipped: int
    failures: tuple[Failure, ...]
    report_path: Path


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _guarded(work: Callable[[Task], None], task: Task) -> str | None:
    """Run one task; return None or the failure reason. Only a string crosses the process boundary,
    because decoder exceptions (PyAV, OpenCV) do not always survive pickling."""
    try:
        work(task)
    except ParentDied as died:
        # The parent is gone (pipelines/workers.py pool_initializer): the task has unwound, its temp folder is
        # removed; leave now instead of sending a result nobody reads and waiting for the next task.
        os._exit(died.code)
    except Exception as err:
        return f"{type(err).__name__}: {err}".strip()
    return None


def _run_pool(todo: list[Task], work, workers: int, on_result: Callable[[Task, str | None], None]) -> list[Task]:
    """Run `todo` in a pool; return the tasks whose worker died (segfault, OOM kill) instead of answering."""
    broken = []
    with spawn_pool(workers) as pool:
        pending: dict[Future, Task] = {pool.submit(_guarded, work, t): t for t in todo}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                task = pending.pop(fut)
                try:
                    on_result(task, fut.result())
                except BrokenProcessPool:
                    broken.append(task)
    return broken


def run_tasks(tasks: Sequence[Task], work: Callable[[Task], None], *, workers: int, report_path: Path,
              desc: str, known_failures: Sequence[Failure] = ()) -> RunSummary:
    """Run `work` on every task whose `dst` does not exist yet; `work` must be a picklable top-level callable.

    workers=0 runs in this process (for debugging). `known_failures` (e.g. inputs found unusable while
    planning) go to the report with the rest."""
    todo = [t for t in tasks if not t.dst.exists()]
    failures: list[Failure] = list(known_failures)
    report_path = Path(report_path)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    with open(report_path, "w") as report, tqdm(total=len(todo), desc=desc, unit="video",
                                                   dynamic_ncols=True) as bar:
        def write(failure: Failure) -> None:
            report.write(json.dumps({"path": failure.path, "reason": failure.reason}) + "\n")
            report.flush()  # readable while a long run is still going

        def record(failure: Failure) -> None:
            failures.append(failure)
            write(failure)

        def on_result(task: Task, reason: str | None) -> None:
            if reason is not None:
                record(Failure(str(task.src), reason))
                bar.set_postfix(failed=len(failures))
            bar.update()

        for failure in known_failures:
            write(failure)
        if workers <= 0:
            for task in todo:
                on_result(task, _guarded(work, task))
        else:
            broken = _run_pool(todo, work, workers, on_result)
            # A dead worker breaks every queued future, so retry those one at a time in a fresh
            # pool: only the input that really kills its worker is reported.
            for task in broken:
                if task.dst.exists():  # it finished, only its answer was lost with the pool
                    on_result(task, None)
                elif _run_pool([task], work, 1, on_result):
                    on_result(task, "worker process died (crash in the decoder or out of memory)")
    done = len(todo) - (len(failures) - len(known_failures))
    return RunSummary(len(tasks), done, len(tasks) - len(todo), tuple(failures), report_path)
