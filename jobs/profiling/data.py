"""`tsn profile --mode data`: the data pipeline alone, and where its time goes.

DALI 2.4 reports no per-operator times on the CPU backend (`executor_statistics()` holds output memory sizes only,
and only with exec_dynamic=False), so the split between decoding and augmentation is measured with variant graphs
in the same run, each timed the same way on the same videos:
  source      the external-source callable alone, in this process (file reads + numpy geometry)
  decode      source -> the same decoder node (image_slice / image / video), nothing after it
  graph       the full DALI graph, pipeline.run() only
  loader      the ClipLoader: graph + copy to (B, V, C, H, W) torch tensors (what training consumes)
  ceiling     full-frame JPEG decoding of the same files from memory: the decoder's upper bound
Shares are marginal costs (decode / graph-decode / loader-graph over the loader's time per batch), estimates rather
than a trace: with pipelining, stages overlap.
"""
from __future__ import annotations

import gc
import os
import warnings
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field

from jobs.profiling.timing import Timing, forever, time_batches
from jobs.recipes.config import Config
from jobs.recipes.loaders import build_loader, settings
from pipelines.readers import ReaderKind

PER_OP_NOTE = ("DALI 2.4 has no per-operator timing on the CPU backend (executor_statistics() reports memory "
               "only, with exec_dynamic=False): decode/augment shares come from variant graphs timed in this run")
BatchInfo = namedtuple("BatchInfo", "iteration epoch_idx")


def rates(t: Timing, frames_per_clip: int, views_per_clip: int) -> dict:
    """A loader's numbers: clips (= videos) /s, decoded frames/s, network views/s, latency percentiles."""
    cps = t.per_second
    return {"batches": t.batches, "clips": t.items, "seconds": t.seconds, "clips_per_s": cps,
            "frames_per_s": cps * frames_per_clip, "views_per_s": cps * views_per_clip,
            "ms_per_batch": 1e3 * t.seconds / t.batches, "latency_ms": t.latency_ms(),
            "cpu_ms_per_clip": t.cpu_ms_per_item}


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc), MiB; NaN where it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    except (OSError, StopIteration, ValueError):
        return float("nan")


def private_mb(pid: int) -> float:
    """Memory only this process holds (Linux smaps_rollup: Private_Clean + Private_Dirty), MiB; NaN where it cannot
    be read. A forked worker's RSS also counts the pages it still shares with the main process (~340 MiB of torch
    and DALI), which are not its own and cannot grow."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            kib = [int(line.split()[1]) for line in f if line.startswith(("Private_Clean:", "Private_Dirty:"))]
        return sum(kib) / 1024
    except (OSError, ValueError):
        return float("nan")


def memory(loader) -> dict:
    """RSS of this process (DALI's threads and buffers live here) and of each DALI Python worker, after timing;
    and each worker's private memory (what a leak in a worker grows)."""
    from pipelines.loader import worker_processes
    pids = [p.pid for p in worker_processes(loader.pipeline)]
    return {"main": round(rss_mb(os.getpid()), 1), "workers": [round(rss_mb(p), 1) for p in pids],
            "workers_private": [round(private_mb(p), 1) for p in pids]}


def memory_by_epoch(loader, epochs: int, say) -> list[dict]:
    """`memory(loader)` after each of `epochs` whole epochs (the first finishes the epoch the timing was in): a
    leak shows as growth from one epoch to the next."""
    rows = []
    for e in range(epochs):
        for _ in loader:
            pass
        rows.append(memory(loader))
        say(f"  epoch {e + 1}: main {rows[-1]['main']:,.0f} MiB, workers {rows[-1]['workers']} MiB "
            f"(private {rows[-1]['workers_private']})")
    return rows


def pipeline_batches(pipe):
    """pipeline.run() outputs across epochs (a parallel external source ends each epoch with StopIteration)."""
    while True:
        try:
            yield pipe.run()
        except StopIteration:
            pipe.reset()


def _clips_in(outputs, per_clip: int) -> int:
    return len(outputs[-1]) // per_clip


def _close(pipe):
    del pipe
    gc.collect()


def time_graph(pipe, per_clip: int, *, warmup: int, batches: int) -> Timing:
    with warnings.catch_warnings():     # the decode-only variant leaves augmentation columns unused: expected
        warnings.filterwarnings("ignore", message=".*are not used.*")
        t = time_batches(pipeline_batches(pipe), warmup=warmup, count=batches, size=lambda o: _clips_in(o, per_clip))
    _close(pipe)
    return t


def _variant(loader, decode_only: bool):
    """The loader's graph rebuilt by the loader's own builder, so with the same settings and decoder settings
    (decode_only: stopped after the decoder)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*are not used.*")
        return loader.build(loader.source, seed=0, decode_only=decode_only)


def time_source(source, per_clip: int, *, warmup: int, batches: int) -> Timing:
    """The external-source callable alone (one process), iterating batches of the first epochs in order."""
    n = source.num_batches()
    calls = (source(BatchInfo(i % n, i // n)) for i in range(warmup + batches))
    return time_batches(calls, warmup=warmup, count=batches, size=lambda cols: len(cols[-1]) // per_clip)


def video_ceiling(source, *, workers: int, batches: int) -> Timing:
    """Our PyAV decoder alone (pipelines/pyav_decode.py, what the loader's Python workers run) on the clips of the
    source's first `batches` batches, spread over `workers` spawned processes, each read with the packet table the
    video index has for it, else without a cached one (in training every video is read once per epoch); items are
    clips. jobs/profiling/video_decode_bench.py times the same calls against decord and torchcodec."""
    from jobs.profiling.video_decode_bench import Clip, Ours, time_run
    from pipelines.sampling import video_rng
    from pipelines.sharding import loadable
    from pipelines.spawn import spawn_pool
    clips = []
    for iteration in range(min(batches, source.num_batches())):
        for entry in source.batch_entries(source.epochs.start_epoch, iteration):
            video = loadable(int(entry))
            record = source.records[video]
            rng = video_rng(source.epochs.seed, source.epochs.start_epoch, video)
            clips.append(Clip(record.path, source.sampler(record.total_frames, source.start_index, rng)))
    # The packet tables the loader's reader has from the video index, for these clips' files only (pickled per call).
    known = getattr(source.reader, "tables", {})
    ours = Ours(tables={c.path: known[c.path] for c in clips if c.path in known})
    with spawn_pool(workers) as pool:
        time_run(ours, clips[:2 * workers], pool)              # untimed: imports, first opens
        rate, cpu_ms = time_run(ours, clips, pool)
    seconds = len(clips) / rate
    return Timing(1, len(clips), seconds, (seconds,), cpu_ms * len(clips) / 1e3)


def decode_ceiling(source, *, threads: int, cores: int, warmup: int, batches: int,
                   device: str) -> tuple[Timing, int] | None:
    """Full-frame decoding of one batch of the source's JPEGs held in memory, and the DALI thread count that gave
    it; items are images. None if N/A.

    The decoder's best with the loader's threads, not merely its rate at the loader's setting: on the CPU a loader
    with more threads than cores is also timed at one thread per core, and the faster run counts. A pure decode
    graph loses at more threads than cores (about 4,000 against 4,100-4,270 JPEG/s at 4 and 2 threads on 2 cores,
    docs/PERFORMANCE.md), which would flatter a loader that oversubscribes."""
    if source.reader.kind is not ReaderKind.JPEG:
        return None                                  # video files or PyAV frames: no JPEG decoder to bound
    counts = [threads] if device == "gpu" else sorted({threads, min(threads, cores)})
    runs = [(_decode_only(source, threads=n, warmup=warmup, batches=batches, device=device), n) for n in counts]
    return max(runs, key=lambda run: run[0].per_second)


def _decode_only(source, *, threads: int, warmup: int, batches: int, device: str) -> Timing:
    from nvidia.dali import fn, pipeline_def, types
    buffers = list(source(BatchInfo(0, 0))[0])
    kind = types.GRAY if source.reader.gray else types.RGB

    @pipeline_def(batch_size=len(buffers), num_threads=threads, device_id=0 if device == "gpu" else None,
                  prefetch_queue_depth=2)
    def graph():
        enc = fn.external_source(source=lambda: buffers, batch=True)
        return fn.decoders.image(enc, device="mixed" if device == "gpu" else "cpu", output_type=kind)

    pipe = graph()
    t = time_batches(pipeline_batches(pipe), warmup=warmup, count=batches, size=lambda o: len(o[0]))
    _close(pipe)
    return t


def breakdown(loader_t: Timing, graph_t: Timing, decode_t: Timing, source_t: Timing, host_work: str) -> dict:
    """Shares of the loader's time per clip, clipped to [0, 1] (overlap can make a difference negative).

    decode: the decode-only graph; augment: what the rest of the graph adds; host: what the loader adds on top of
    the graph (copy into the torch batch, and on the CPU host-resample path the resampling of integer boxes and the
    flips, which then leave the graph: its augment share is near 0 there).
    """
    per_clip = {name: t.seconds / t.items for name, t in
                (("loader", loader_t), ("graph", graph_t), ("decode", decode_t), ("source", source_t))}
    total = per_clip["loader"]
    share = {"decode": per_clip["decode"] / total,
             "augment": (per_clip["graph"] - per_clip["decode"]) / total,
             "host": (per_clip["loader"] - per_clip["graph"]) / total,
             "source_one_process": per_clip["source"] / total}
    return {"ms_per_clip": {k: 1e3 * v for k, v in per_clip.items()}, "host_work": host_work,
            "share": {k: min(1.0, max(0.0, v)) for k, v in share.items()}, "note": PER_OP_NOTE}


@dataclass
class Prepared:
    """A split's DALI loader and variant graphs, all built (their Python workers forked) before any of them runs:
    DALI cannot fork its workers once a CUDA context exists in the process (the GPU pipeline creates one)."""

    split: str
    loader: object
    variants: dict = field(default_factory=dict)


def prepare_data(cfg: Config, split: str, *, device: str = "cpu", detail: bool = True) -> Prepared:
    loader = build_loader(cfg, split, device=device, device_id=0 if device == "gpu" else None)
    variants = {}
    if detail:
        variants = {name: _variant(loader, decode_only=name == "decode_only")
                    for name in ("graph", "decode_only")}
    return Prepared(split, loader, variants)


def profile_data(cfg: Config, prepared: Prepared, *, batches: int, warmup: int, device: str = "cpu",
                 compare: bool = False, ref_workers: int | None = None, memory_epochs: int = 0,
                 say: Callable[[str], None] = print) -> dict:
    """Throughput of a split's pipeline (variants too, if prepared) and of the reference DataLoader."""
    split, loader = prepared.split, prepared.loader
    source = loader.source
    frames_per_clip = loader.layout.frames_per_video
    views_per_clip = loader.layout.views
    say(f"[data/{split}] DALI loader: {len(loader)} batches per epoch of {source.epochs.batch_size} videos")
    loader_t = time_batches(forever(lambda: loader), warmup=warmup, count=batches, size=lambda b: len(b.index),
                            work=sync_work(device))
    knobs = settings(cfg, device)
    out = {"split": split, "batch": source.epochs.batch_size, "frames_per_clip": frames_per_clip,
           "views_per_clip": views_per_clip, "threads": knobs.threads, "py_workers": knobs.workers,
           "prefetch": knobs.prefetch, "cpus": os.cpu_count(),
           "dali": rates(loader_t, frames_per_clip, views_per_clip), "memory_mb": memory(loader)}
    if memory_epochs:
        say(f"[data/{split}] DALI loader: {memory_epochs} whole epochs, resident memory after each")
        out["memory_by_epoch_mb"] = memory_by_epoch(loader, memory_epochs, say)
    if prepared.variants:
        say(f"[data/{split}] variant graphs: full graph, decode only, source alone, decode ceiling")
        per_clip = source.reader.kind.samples_per_video(loader.layout)
        graph_t, decode_t = (time_graph(prepared.variants.pop(name), per_clip, warmup=warmup, batches=batches)
                             for name in ("graph", "decode_only"))
        source_t = time_source(source, per_clip, warmup=min(warmup, 2), batches=max(2, batches // 2))
        ceiling = decode_ceiling(source, threads=knobs.threads, cores=knobs.cores, warmup=warmup, batches=batches,
                                 device=device)
        if source.reader.kind is ReaderKind.DECODED:
            t = video_ceiling(source, workers=knobs.workers, batches=batches)
            out["ceiling"] = {"clips_per_s": t.per_second, "cpu_ms_per_clip": t.cpu_ms_per_item,
                              "what": f"pipelines/pyav_decode.py alone on the same clips, {knobs.workers} processes"}
            out["fraction_of_ceiling"] = out["dali"]["clips_per_s"] / t.per_second
        out["stages"] = {"graph": rates(graph_t, frames_per_clip, views_per_clip),
                         "decode_only": rates(decode_t, frames_per_clip, views_per_clip),
                         "source_only": rates(source_t, frames_per_clip, views_per_clip)}
        out["breakdown"] = breakdown(loader_t, graph_t, decode_t, source_t, source.variant.host_work)
        if ceiling is not None:
            ceiling_t, ceiling_threads = ceiling
            images_per_s = ceiling_t.per_second
            out["ceiling"] = {"images_per_s": images_per_s, "clips_per_s": images_per_s / frames_per_clip,
                              "cpu_ms_per_clip": ceiling_t.cpu_ms_per_item * frames_per_clip,
                              "threads": ceiling_threads,
                              "what": f"full-frame JPEG decode from memory, same files, {ceiling_threads} DALI "
                                      f"threads (the loader's count, or one per core if that was faster)"}
            out["fraction_of_ceiling"] = out["dali"]["clips_per_s"] / out["ceiling"]["clips_per_s"]
    if compare:
        from jobs.profiling.reference_loader import PEERS, decoders_for, missing
        out["references"], out["skipped_references"] = [], []
        for decoder in decoders_for(cfg.data.source):
            if missing(decoder):
                say(f"[data/{split}] {missing(decoder)}")
                out["skipped_references"].append(missing(decoder))
                continue
            ref = reference_run(cfg, split, batches=batches, warmup=warmup, device=device, decoder=decoder,
                                frames_per_clip=frames_per_clip, views_per_clip=views_per_clip,
                                workers=ref_workers or knobs.threads, say=say)
            ref["ratio"] = out["dali"]["clips_per_s"] / ref["clips_per_s"]    # DALI loader / this baseline
            out["references"].append(ref)
        # The headline baseline: the fastest of what users run today (PEERS) in this run.
        peers = [r for r in out["references"] if r["decoder"] in PEERS] or out["references"]
        if peers:
            out["reference"] = max(peers, key=lambda r: r["clips_per_s"])
            out["ratio"] = out["reference"]["ratio"]
        if not out["skipped_references"]:
            del out["skipped_references"]
    return out


def reference_run(cfg: Config, split: str, *, say, decoder: str, **kw) -> dict:
    """`reference` here, or for torchcodec in a spawned process started with the environment that lets it load
    FFmpeg (jobs/profiling/torchcodec_peer.py); the child's DataLoader workers fork from it as they do here."""
    from jobs.profiling.reference_loader import TORCHCODEC_SEEK
    if decoder not in TORCHCODEC_SEEK:
        return reference(cfg, split, say=say, decoder=decoder, **kw)
    from jobs.profiling.torchcodec_peer import loadable_environment
    from pipelines.spawn import spawn_pool
    with loadable_environment(), spawn_pool(1) as pool:     # a spawned child reads the environment when it starts
        return pool.submit(reference, cfg, split, say=print, decoder=decoder, **kw).result()


def reference(cfg: Config, split: str, *, batches: int, warmup: int, device: str, frames_per_clip: int,
              views_per_clip: int, workers: int, say, decoder: str | None = None) -> dict:
    """One baseline DataLoader (jobs/profiling/reference_loader.py), timed like the DALI loader."""
    from jobs.profiling.reference_loader import TITLES, build_reference_loader
    loader = build_reference_loader(cfg, split, workers=workers, decoder=decoder)
    decoder = loader.dataset.spec.decoder
    say(f"[data/{split}] reference DataLoader: {TITLES[decoder]}, {workers} worker processes")
    batches_in = forever(lambda: loader)
    t = time_batches(batches_in, warmup=warmup, count=batches, size=lambda b: len(b.index),
                     work=sync_work(device, to_device=True))
    batches_in.close()          # ends the epoch iterator: its persistent worker processes exit with the loader
    result = rates(t, frames_per_clip, views_per_clip)
    return {**result, "decoder": decoder, "what": TITLES[decoder], "workers": workers,
            "prefetch_factor": loader.prefetch_factor}


def sync_work(device: str, to_device: bool = False):
    """GPU runs: a batch counts once it is on the device (the reference's host batch is copied there)."""
    if device != "gpu":
        return None
    import torch

    def work(batch):
        if to_device:
            batch.clips.cuda(non_blocking=True)
        torch.cuda.synchronize()
    return work

