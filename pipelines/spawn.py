"""The one way this project runs work in other processes: a pool whose workers are spawned, never forked.

The caller may already run torch, DALI or FFmpeg threads, or hold a CUDA context; a forked child can inherit one of
their locks held and deadlock (seen when the test suite had loaded DALI before preparing frames), and DALI refuses
to fork once CUDA is initialised. A spawned worker starts clean and imports what it needs.
Used by the video index (pipelines/video_index.py), `tsn prepare` (jobs/dataprep/runner.py, fullcheck.py) and
`tsn bench video-decode` (jobs/profiling/video_decode_bench.py).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

from .workers import pool_initializer


def spawn_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool of `workers` spawned processes (use it as a context manager). Each worker ends when this
    process dies, however it died (pipelines/workers.py pool_initializer)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=pool_initializer)


def spawn_map(fn: Callable, items: Iterable, workers: int, *, ordered: bool = True, chunksize: int = 1) -> Iterator:
    """`fn` over `items`: in this process when workers <= 1, else in a spawned pool; results in input order
    (`ordered`) or as they finish. `fn` must be a picklable top-level function. Leaving the loop early cancels
    the work not started."""
    items = list(items)
    if workers <= 1:
        yield from map(fn, items)
        return
    pool = spawn_pool(workers)
    try:
        if ordered:
            yield from pool.map(fn, items, chunksize=chunksize)
        else:
            for future in as_completed([pool.submit(fn, item) for item in items]):
                yield future.result()
    finally:
        pool.shutdown(cancel_futures=True)
