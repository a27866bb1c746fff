"""The DALI pipeline around one graph variant: external source -> the variant's graph (pipelines/variants/) -> outputs.

Two values choose the graph:
  * `backend` ("cpu" | "gpu") picks the decoders ("cpu", or "mixed" = nvJPEG / NVDEC) and so where every later
    operator runs;
  * the source's variant (chosen once, by pipelines/plan.py `plan_graph`) builds everything between the external
    source and the outputs, and names those outputs (`variant.output_names`), which the loader reads by name.
The graph a GPU runs (full-frame decode, every resample inside the graph) is `plan_graph(..., gpu_graph=True)` and
builds on the CPU backend too, which is how CI exercises it. Pixels stay uint8 (normalising on the training device
is nearly free there and moves 4x fewer bytes).
"""
from __future__ import annotations

import gc
import logging

from nvidia.dali import fn, pipeline_def

from . import workers
from .defaults import Decoding
from .layout import ClipLayout
from .plan import check_backend
from .source import ClipSource
from .timeout import end_idle_threads
from .variants.base import Variant
from .workers import WorkersDidNotStart, dali_workers_die_with_parent, killed_if_not_started, start_method

DECODE_ONLY = ("frames", "index")      # outputs of a decode-only pipeline


def output_names(layout: ClipLayout, variant: Variant, *, decode_only: bool = False) -> tuple[str, ...]:
    """The pipeline's outputs, in order."""
    return DECODE_ONLY if decode_only else variant.output_names(layout)


def build_pipeline(source: ClipSource, *, backend: str, decoding: Decoding, num_threads: int = 2, py_workers: int = 1,
                   prefetch: int = 2, device_id: int | None = None, seed: int = 0, decode_only: bool = False):
    """A DALI pipeline over `source` whose run() returns the outputs `output_names(source.layout, source.variant)`.

    decoding: the GPU decoders' settings, from pipelines/defaults.py `loader_settings` (no default here, so a
    builder cannot run other values than training does). decode_only: stop after the decoder, run() returns
    (decoded frames, index): the profiler's reference point for how much of the graph's time is decoding (DALI 2.4
    reports no per-operator times on CPU).
    """
    check_backend(backend)
    layout, variant = source.layout, source.variant
    max_batch = source.epochs.batch_size * source.reader.kind.samples_per_video(layout)
    names = output_names(layout, variant, decode_only=decode_only)

    @pipeline_def(batch_size=max_batch, num_threads=num_threads, device_id=device_id if backend == "gpu" else None,
                  py_num_workers=py_workers, py_start_method=start_method(backend), prefetch_queue_depth=prefetch,
                  seed=seed, enable_conditionals=True)
    def graph():
        # py_workers=0: the source runs in this process (the recovery probes, pipelines/recovery.py).
        parallel = {"parallel": True, "prefetch_queue_depth": prefetch} if py_workers > 0 else {}
        columns = fn.external_source(source=source, num_outputs=len(source.columns), batch=True, batch_info=True,
                                     **parallel)
        nodes = {column.name: node for column, node in zip(source.columns, columns)}
        if decode_only:
            out = {"frames": variant.decoded(nodes, source, backend, decoding)}
        else:
            out = variant.graph(nodes, source, backend, decoding)
        out["index"] = nodes["index"]
        return tuple(out[name] for name in names)

    if py_workers == 0:
        return graph()
    try:
        return start_workers(graph())
    except WorkersDidNotStart as err:        # once more, with a fresh pipeline (pipelines/workers.py)
        logging.getLogger(__name__).warning("%s; starting them again", err)
    return start_workers(graph())


def start_workers(pipe):
    """Start the Python workers now: before any CUDA context exists in this process, and with no garbage around.
    Returns `pipe`, or raises WorkersDidNotStart when they did not report in within START_TIMEOUT_S.

    A forked worker inherits every object of the parent. If one of them is an unreachable DALI Pipeline (from an
    earlier loader) the worker's garbage collector destroys it, DALI segfaults in that shutdown, and the parent
    then waits for the dead worker forever. So: collect first, and freeze what survives out of the workers' GC.
    (Spawned workers inherit nothing; the freeze is harmless there.) The child also tears down the state of every
    other thread of this process, so the idle decode threads end first (pipelines/timeout.py end_idle_threads:
    FFmpeg state torn down in a child hung it). Every worker dies with this process (pipelines/workers.py).
    """
    timeout_s = workers.START_TIMEOUT_S
    end_idle_threads()          # a forked child must not tear down a parent thread's FFmpeg state (timeout.py)
    gc.collect()
    gc.freeze()
    try:
        with dali_workers_die_with_parent(), killed_if_not_started(timeout_s) as killed:
            try:
                pipe.start_py_workers()
            except RuntimeError as err:
                if not killed:
                    raise
                error = err
            else:
                error = None
    finally:
        gc.unfreeze()
    if killed:
        raise WorkersDidNotStart(f"DALI's data workers (pid {', '.join(map(str, killed))}) did not start within "
                                 f"{timeout_s:g} s and were killed") from error
    return pipe
