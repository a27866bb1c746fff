"""`tsn bench shards`: frame folders against packed shards of the same frames, for the train and test protocols.

Per (protocol, source, cache) run, over one whole epoch of the loader (so every batch the workers read is delivered;
the first batch, which includes worker start-up, is not timed):
  clips/s          videos delivered per second by the loader (CPU backend, the recipe's own pipeline)
  opens/clip       openat() calls of the DALI worker processes over the epoch / clips, counted by strace attached
                   to the workers (a separate, untimed epoch: ptrace slows every call; only where strace exists)
  read KB/clip     bytes the workers read through read()/pread() (/proc/<pid>/io rchar), per clip
  disk KB/clip     bytes the workers caused to be read from the storage device (/proc/<pid>/io read_bytes): ~0 with
                   a warm page cache
A cold run first evicts every data file from the page cache with posix_fadvise(POSIX_FADV_DONTNEED) (this needs no
root, unlike /proc/sys/vm/drop_caches) and then reads the same files. Pack and unpack are timed as MB/s of payload.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jobs.dataprep import pack as pack_mod
from jobs.dataprep.synthetic import NUM_CLASSES
from jobs.dataprep.worksplit import WorkSplit
from jobs.recipes.config import load_config
from jobs.recipes.loaders import build_loader
from pipelines import packed
from pipelines.loader import worker_processes

PROTOCOLS = {   # protocol -> (recipe, split, extra overrides)
    "k400_1x1x3_train": ("tsn_r50_1x1x3_100e_kinetics400_rgb", "train", []),
    "k400_25x3_test": ("tsn_r50_test_340x256_1x1x25_3crop_100e_kinetics400_rgb", "test", []),
}


@dataclass(frozen=True)
class BenchOptions:
    workers: int = 2
    batch: int = 8              # data.videos_per_gpu: training videos per batch
    count_opens: bool = True


def _files(folder: Path) -> list[Path]:
    return [Path(d) / f for d, _, fs in os.walk(folder) for f in fs]


def evict(paths: list[Path]) -> None:
    """Drop these files' pages from the page cache (clean pages only: the data is read-only here)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _io(pids: list[int]) -> tuple[int, int]:
    """(rchar, read_bytes) summed over `pids`."""
    rchar = disk = 0
    for pid in pids:
        fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
        rchar += int(fields["rchar"])
        disk += int(fields["read_bytes"])
    return rchar, disk


def _strace(pids: list[int], out: Path) -> subprocess.Popen | None:
    if shutil.which("strace") is None:
        return None
    args = ["strace", "-f", "-c", "-e", "trace=openat,open", "-o", str(out)]
    for pid in pids:
        args += ["-p", str(pid)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)             # let strace attach before the timed batches
    return proc


def _opens(proc: subprocess.Popen | None, out: Path) -> int | None:
    if proc is None:
        return None
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    calls = 0
    for line in out.read_text().splitlines():
        parts = line.split()
        if parts and parts[-1] in ("openat", "open"):
            calls += int(parts[3])     # % time, seconds, usecs/call, calls, [errors], syscall
    return calls


def run_one(cfg, split: str, cold_files: list[Path] | None, trace: Path | None) -> dict:
    """One epoch of a loader; `cold_files` are evicted from the page cache first; `trace`: count the workers'
    openat() calls with strace (ptrace slows every call: such a run is not timed)."""
    packed.close_all()
    if cold_files is not None:
        evict(cold_files)
    loader = build_loader(cfg, split)        # starts the workers; they read nothing before the first run
    pids = [p.pid for p in worker_processes(loader.pipeline)]
    tracer = _strace(pids, trace) if trace else None
    io0 = _io(pids)
    it = iter(loader)
    clips = next(it).clips.shape[0]          # worker warm-up and the first batch: not timed
    t0 = time.perf_counter()
    timed = sum(b.clips.shape[0] for b in it)  # the rest of the epoch: nothing is prefetched past its end
    seconds = time.perf_counter() - t0
    io1 = _io(pids)
    opens = _opens(tracer, trace) if tracer else None
    clips += timed
    del it, loader
    return {"clips": clips, "clips_per_s": round(timed / seconds, 1) if trace is None else None,
            "opens_per_clip": None if opens is None else round(opens / clips, 2),
            "read_kb_per_clip": round((io1[0] - io0[0]) / clips / 1024, 1),
            "disk_kb_per_clip": round((io1[1] - io0[1]) / clips / 1024, 1)}


def pack_and_time(folder: Path, out: Path, unpack_shards: int = 3) -> dict:
    """Pack the train and val RGB lists of a synthetic set; time pack (all) and unpack (the first `unpack_shards`
    shards), in MB/s of packed payload."""
    lists = [folder / "train_list_rawframes.txt", folder / "val_list_rawframes.txt"]
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    pack_mod.pack(lists, pack_mod.PackOptions(folder / "rawframes", out), WorkSplit())
    pack_s = time.perf_counter() - t0
    payload = sum(n for s in pack_mod.shards_in(out) for _, n in packed.ShardIndex.load(str(s)).members.values())
    unpacked = out.parent / (out.name + "_unpacked")
    shutil.rmtree(unpacked, ignore_errors=True)
    some = pack_mod.shards_in(out)[:unpack_shards]      # unpacking writes every file again: a sample of shards
    unpacked_bytes = sum(n for s in some for _, n in packed.ShardIndex.load(str(s)).members.values())
    t0 = time.perf_counter()
    for shard in some:
        pack_mod.unpack_shard(shard, unpacked)
    unpack_s = time.perf_counter() - t0
    shutil.rmtree(unpacked)
    files = sum(len(fs) for _, _, fs in os.walk(folder / "rawframes"))
    return {"payload_mb": round(payload / 2**20, 1), "files": files, "shards": len(pack_mod.shards_in(out)),
            "pack_mb_s": round(payload / 2**20 / pack_s, 1), "unpacked_shards": len(some),
            "unpack_mb_s": round(unpacked_bytes / 2**20 / unpack_s, 1)}


def run_bench(folder: Path, shard_dir: Path, opts: BenchOptions, rounds: int,
              say: Callable[[str], None]) -> tuple[dict, list[dict]]:
    """Pack, then per protocol and source: one strace'd epoch (opens), then `rounds` alternating timed epochs with a
    warm and with a cold page cache."""
    packing = pack_and_time(folder, shard_dir)
    say(f"packed {packing}")
    base = [f"data.workers={opts.workers}", f"data.videos_per_gpu={opts.batch}", f"model.num_classes={NUM_CLASSES}"]
    lists = (("train", "train_list_rawframes.txt"), ("test", "val_list_rawframes.txt"))
    sources = {name: [f"data.{s}_list={root / n}" for s, n in lists] + [f"data.{s}_prefix={prefix}" for s, _ in lists]
               for name, root, prefix in (("folders", folder, folder / "rawframes"), ("shards", shard_dir, shard_dir))}
    data_files = {"folders": _files(folder / "rawframes"), "shards": _files(shard_dir)}
    scratch = shard_dir.parent / "bench_scratch"
    scratch.mkdir(exist_ok=True)
    rows = []

    def run(protocol: str, source: str, cache: str, r: int, trace: Path | None) -> None:
        recipe, split, extra = PROTOCOLS[protocol]
        cfg = load_config(recipe, base + sources[source] + extra)
        row = {"round": r, "protocol": protocol, "source": source, "cache": cache,
               **run_one(cfg, split, data_files[source] if cache == "cold" else None, trace)}
        say(str(row))
        rows.append(row)

    for protocol in PROTOCOLS:
        for source in sources:
            if opts.count_opens and shutil.which("strace"):
                run(protocol, source, "warm", -1, scratch / "strace.txt")
        for r in range(rounds):
            for cache in ("warm", "cold"):
                for source in (("folders", "shards") if r % 2 == 0 else ("shards", "folders")):
                    run(protocol, source, cache, r, None)
    return packing, rows


def format_rows(rows: list[dict]) -> str:
    """Median clips/s per (protocol, cache, source) with every run, opens and bytes per clip."""
    import statistics
    opens = {(r["protocol"], r["source"]): r for r in rows if r["round"] < 0}
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["round"] >= 0:
            groups.setdefault((row["protocol"], row["cache"], row["source"]), []).append(row)
    lines = ["| protocol | page cache | source | clips/s: median (runs) | files opened per clip | read KB/clip | "
             "disk KB/clip (median) |", "|---|---|---|---|---|---|---|"]
    for (protocol, cache, source), rs in sorted(groups.items()):
        rates = [r["clips_per_s"] for r in rs]
        counted = opens.get((protocol, source), {}).get("opens_per_clip", "n/a")
        lines.append(f"| {protocol} | {cache} | {source} | {statistics.median(rates):.1f} "
                     f"({', '.join(f'{x:.1f}' for x in rates)}) | {counted} | {rs[0]['read_kb_per_clip']} | "
                     f"{statistics.median(r['disk_kb_per_clip'] for r in rs):.1f} |")
    return "\n".join(lines)
