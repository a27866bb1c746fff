"""`tsn bench video-decode`: our CPU video path against decord and torchcodec, on the same files and frame indices.

One clip is one call that returns the RGB frames (N, H, W, 3) uint8 of one video's sampled indices:
  ours     pipelines.pyav_decode.decode_frame_list(path, indices, options=..., table=...), what PyAVReader runs inside
           DALI's Python workers: given the file's packet table from the video index where it is regular (a fixed
           GOP at a constant rate, as `tsn prepare resize` writes), else with the per-process packet-table cache
           emptied first (in training every video is read once per epoch, so the demux pass is part of the read).
  decord   decord.VideoReader(BytesIO(file bytes), num_threads=1).get_batch(indices).asnumpy(): MMAction2's
           DecordInit (num_threads=1 by default) + DecordDecode (mode 'accurate'),
           mmaction/datasets/transforms/loading.py (MMAction2 1.2.0), one reader opened per clip as there; the same
           function as the `tsn profile --compare` baseline (jobs/profiling/reference_loader.py decord_frames).
  torchcodec[exact], torchcodec[approximate]
           torchcodec.decoders.VideoDecoder(path, seek_mode=..., num_ffmpeg_threads=1).get_frames_at(indices): what a
           user writes today with PyTorch's own decoder (jobs/profiling/torchcodec_peer.py; the pool's processes start
           with the environment that lets it load FFmpeg). Skipped, with the reason, where it cannot run.
Indices come from the recipe's samplers (pipelines/sampling.py Sampler; TSN train: num_clips segments x 1 frame,
one random draw per epoch; test: num_clips centred clips) with the per-video streams of pipelines/sampling.py.

Clips are spread over `workers` processes (default 2, the loader workers of a 2-core machine) so a decoder's own
threads compete for the cores as they do in training. A run times every clip of one protocol once with one decoder;
runs rotate through the decoders (decord, torchcodec..., ours, [variants], decord, ...) so load drift on a shared
machine hits all alike, and each ratio is ours / a peer of the same round; "vs fastest" divides by the fastest peer
(decord, torchcodec exact or approximate) of that round. Reported: median clips/s per decoder, and the
median, min and max of the per-round ratios; the same for CPU time per clip (every thread of the decoding process,
`time.process_time`), whose ratio (decord's over ours) is what the clips/s ratio tends to once the workers keep
every core busy, and which a shared machine's load disturbs far less than wall time.

The files: `make_videos` writes textured, moving content (a panning multi-octave texture, moving discs, sensor noise)
so the encoder produces realistic sizes, in the layouts the recipes meet: K400-like raw H.264 (x264 medium, long GOP,
B-frames), the same after `tsn prepare resize` (jobs/dataprep/resize.py: short side 256, GOP 16; with its default
x264 tune fastdecode and without), and the synthetic dataset's small H.264 files (pipelines/synthetic_data.py).
"""
from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipelines.sampling import Sampler, video_rng
from pipelines.spawn import spawn_pool

if TYPE_CHECKING:
    from pipelines.pyav_decode import DecodeOptions

FPS = 30


@dataclass(frozen=True)
class Kind:
    """One family of benchmark files."""

    name: str
    width: int
    height: int
    frames: int
    gop: int
    resized: bool = False         # written by `tsn prepare resize` from a raw file of this size (short side 256)
    tune: str | None = "fastdecode"   # the resize's x264 tune (EncodeOptions.tune)
    synthetic: bool = False       # the synthetic dataset's own H.264 files (size/frames/GOP fixed by it)


KINDS = (
    Kind("synthetic 80x64 GOP 12", 80, 64, 24, 12, synthetic=True),
    Kind("prepared 456x256 GOP 16", 640, 360, 300, 250, resized=True),
    Kind("prepared 456x256 GOP 16 tune none", 640, 360, 300, 250, resized=True, tune=None),
    Kind("raw 640x360 GOP 250", 640, 360, 300, 250),
    Kind("raw 1280x720 GOP 250", 1280, 720, 300, 250),
)


# -- files ------------------------------------------------------------------------------------------------------

def render(width: int, height: int, frames: int, seed: int):
    """Frames (H, W, 3) uint8: a texture (four octaves of smooth noise) panned on a slow ellipse, four anti-aliased
    discs moving across it, and +-4 levels of per-frame noise: everything moves, nothing is flat."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    tw, th = 2 * width, 2 * height
    tex = np.zeros((th, tw, 3), np.float32)
    for cell, amp in ((64, 90.0), (16, 50.0), (4, 30.0), (1, 12.0)):
        low = rng.uniform(-1, 1, (max(2, th // cell), max(2, tw // cell), 3)).astype(np.float32)
        tex += amp * np.stack([np.asarray(Image.fromarray(low[..., c]).resize((tw, th), Image.BICUBIC))
                               for c in range(3)], axis=-1)
    texture = Image.fromarray(np.clip(tex + 128, 0, 255).astype(np.uint8))
    discs = [(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-3, 3), rng.uniform(-2, 2),
              rng.uniform(height / 12, height / 5), rng.uniform(0, 255, 3)) for _ in range(4)]
    for t in range(frames):
        ox = 0.45 * width * (1 + np.sin(2 * np.pi * t / 240))
        oy = 0.45 * height * (1 + np.cos(2 * np.pi * t / 300))
        # AFFINE maps output (x, y) to input (x + ox, y + oy): a sub-pixel pan, bilinear.
        img = np.array(texture.transform((width, height), Image.AFFINE, (1, 0, ox, 0, 1, oy), Image.BILINEAR),
                       np.float32)
        for x, y, vx, vy, r, colour in discs:
            cx, cy = (x + vx * t) % width, (y + vy * t) % height
            x0, x1 = int(max(0, cx - r - 1)), int(min(width, cx + r + 2))   # the disc's bounding box only
            y0, y1 = int(max(0, cy - r - 1)), int(min(height, cy + r + 2))
            ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            cover = np.clip(r + 0.5 - np.hypot(xs - cx, ys - cy), 0, 1)[..., None]   # anti-aliased edge
            patch = img[y0:y1, x0:x1]
            patch += cover * (colour - patch)
        img += rng.integers(-4, 5, (height, width, 1)).astype(np.float32)
        yield np.clip(img + 0.5, 0, 255).astype(np.uint8)


def encode_raw(path: Path, kind: Kind, seed: int, preset: str = "medium", crf: int = 23) -> Path:
    """A K400-like raw file: x264 `preset`, CRF `crf`, keyframes every `kind.gop` frames (scene cuts allowed, as in
    uploaded footage), B-frames by the preset."""
    import av
    params = f"keyint={kind.gop}:min-keyint={min(kind.gop, 25)}"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = kind.width, kind.height, "yuv420p"
        stream.options = {"preset": preset, "crf": str(crf), "x264-params": params}
        for i, img in enumerate(render(kind.width, kind.height, kind.frames, seed)):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def _slug(kind: Kind) -> str:
    return kind.name.replace(" ", "_").lower()


def make_videos(root: Path, kind: Kind, count: int) -> list[Path]:
    """`count` files of `kind` under `root` (kept: a second call reuses them)."""
    folder = Path(root) / _slug(kind)
    folder.mkdir(parents=True, exist_ok=True)
    if kind.synthetic:
        from pipelines.synthetic_data import SyntheticSpec, make_synthetic_dataset
        if not (folder / "videos").is_dir():
            make_synthetic_dataset(folder, SyntheticSpec(train_per_class=1, val_per_class=0))
        return sorted((folder / "videos").glob("*.mp4"))[:count]
    paths = []
    for seed in range(count):
        path = folder / f"{seed:02d}.mp4"
        if not path.exists():
            raw = path.with_name(f"raw_{seed:02d}.mp4") if kind.resized else path
            if not raw.exists():
                encode_raw(raw.with_name(f".{raw.name}"), kind, seed).rename(raw)
            if kind.resized:
                from jobs.dataprep.resize import EncodeOptions, resize_video
                from jobs.dataprep.runner import Task
                from jobs.dataprep.videoio import Resize
                resize_video(Task(raw, path), EncodeOptions(Resize(short_side=256), tune=kind.tune))
        paths.append(path)
    return paths


# -- decoders ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ours:
    options: DecodeOptions | None = None      # None: pipelines/pyav_decode.py's defaults (PyAV loads on first use)
    label: str = "ours"
    # path -> (codec, packet table) from the video index (pipelines/video_index.py packet_tables), as the loader's
    # PyAV reader is given them; a file without one is demuxed in the call
    tables: dict = field(default_factory=dict, repr=False)
    peer = False

    def __call__(self, path: str, indices: np.ndarray) -> list[np.ndarray]:
        from pipelines import pyav_decode
        from pipelines.video_index import indexed_table
        pyav_decode.clear_table_cache()          # a real epoch reads each video once: no cached table
        return pyav_decode.decode_frame_list(path, indices, options=self.options or pyav_decode.DEFAULT_OPTIONS,
                                             table=indexed_table(self.tables, path))


@dataclass(frozen=True)
class Decord:
    num_threads: int = 1                      # DecordInit's default
    label: str = "decord"
    peer = True                               # what users run today (the ratios divide by the fastest peer)

    def __call__(self, path: str, indices: np.ndarray) -> np.ndarray:
        from jobs.profiling.reference_loader import decord_frames  # the --compare baseline's own reads
        return decord_frames(path, indices, self.num_threads)


@dataclass(frozen=True)
class TorchCodec:
    seek_mode: str = "exact"                  # jobs/profiling/torchcodec_peer.py SEEK_MODES
    peer = True

    @property
    def label(self) -> str:
        return f"torchcodec[{self.seek_mode}]"

    def __call__(self, path: str, indices: np.ndarray) -> np.ndarray:
        import torch

        from jobs.profiling.torchcodec_peer import frames
        torch.set_num_threads(1)      # what a DataLoader worker sets; torch's own threads would oversubscribe the cores
        return frames(path, indices, self.seek_mode, threads=1)


def parse_variant(text: str) -> Ours:
    """'threads=2,thread_type=FRAME,skip_nonref=0' -> Ours with those DecodeOptions fields."""
    from pipelines.pyav_decode import DecodeOptions
    fields = {f.name: f.type for f in dataclasses.fields(DecodeOptions)}
    values = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in fields:
            raise ValueError(f"variant {text!r}: unknown option {key!r} (options: {', '.join(fields)})")
        kind = str(fields[key])         # the annotation, a string under `from __future__ import annotations`
        if kind == "bool":
            values[key] = value.lower() in ("1", "true", "yes", "on")
        else:
            values[key] = int(value) if kind == "int" else value
    return Ours(DecodeOptions(**values), label=f"ours[{text}]")


# -- indices and timing -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Clip:
    path: str
    indices: np.ndarray           # (F,) int64, 0-based presentation indices


def protocol_clips(paths: list[Path], sampler: Sampler, epochs: int, seed: int = 0) -> list[Clip]:
    """The sampler's indices for every file, one draw per epoch (a test-mode sampler draws the same indices every
    epoch: its clips repeat, each still a cold read), frame counts from our video index (probe_video)."""
    from pipelines.video_index import probe_video
    clips = []
    for v, path in enumerate(paths):
        info = probe_video(str(path))
        if info.status != "ok":
            raise ValueError(f"{path}: not a usable video ({info.status}: {info.reason})")
        for epoch in range(epochs):
            clips.append(Clip(str(path), sampler(info.num_frames, 0, video_rng(seed, epoch, v))))
    return clips


def _run_clip(job) -> float:
    """CPU seconds of one clip in this process, all its threads (decord decodes and converts on two)."""
    decoder, clip = job
    start = time.process_time()
    decoder(clip.path, clip.indices)
    return time.process_time() - start


def time_run(decoder, clips: list[Clip], pool) -> tuple[float, float]:
    """(clips/s, CPU ms per clip) of one pass over `clips` (spread over the pool's processes, or in this one)."""
    jobs = [(decoder, c) for c in clips]
    start = time.perf_counter()
    cpu = list(map(_run_clip, jobs)) if pool is None else list(pool.map(_run_clip, jobs, chunksize=1))
    return len(clips) / (time.perf_counter() - start), 1e3 * sum(cpu) / len(clips)


def _max_diffs(job) -> dict:
    decoders, clip = job
    ref = np.asarray(decoders[0](clip.path, clip.indices)).astype(np.int16)
    out = {}
    for d in decoders[1:]:
        got = np.asarray(d(clip.path, clip.indices))
        out[d.label] = int(np.abs(got.astype(np.int16) - ref).max()) if got.shape == ref.shape else -1
    return out


def same_frames(decoders, clips: list[Clip], pool=None) -> dict:
    """Max |difference| between each decoder's frames and the first's on the first clips (0 = identical); in the
    pool's processes when given (torchcodec loads there)."""
    jobs = [(decoders, clip) for clip in clips[:3]]
    out = {}
    for diffs in (map(_max_diffs, jobs) if pool is None else pool.map(_max_diffs, jobs)):
        for label, diff in diffs.items():
            out[label] = diff if diff < 0 or out.get(label, 0) < 0 else max(out.get(label, 0), diff)
    return out


def compare(decoders: list, clips: list[Clip], *, rounds: int, pool, workers: int = 1) -> dict:
    """`rounds` rounds, each one run per decoder in rotation (decoders[0] is the reference, decord). "vs_fastest":
    each non-peer's clips/s over the fastest peer's of the same round (peers: decoders whose `peer` is true)."""
    runs = {d.label: [] for d in decoders}
    cpu = {d.label: [] for d in decoders}
    for d in decoders:      # untimed: worker start-up, imports, first opens
        time_run(d, clips[:2 * workers], pool)
    for r in range(rounds):
        order = decoders[r % len(decoders):] + decoders[:r % len(decoders)]   # rotate who goes first
        for d in order:
            rate, ms = time_run(d, clips, pool)
            runs[d.label].append(rate)
            cpu[d.label].append(ms)
    ref = decoders[0].label
    out = {"clips": len(clips), "frames_per_clip": len(clips[0].indices), "rounds": rounds,
           "clips_per_s": {k: statistics.median(v) for k, v in runs.items()}, "runs": runs,
           "cpu_ms_per_clip": {k: statistics.median(v) for k, v in cpu.items()}, "cpu_runs": cpu,
           "ratio": {}, "cpu_ratio": {}}
    for d in decoders[1:]:
        ratios = [a / b for a, b in zip(runs[d.label], runs[ref])]
        out["ratio"][d.label] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
        # decord's CPU per clip over ours: the clips/s ratio once the workers keep every core busy.
        ratios = [b / a for a, b in zip(cpu[d.label], cpu[ref])]
        out["cpu_ratio"][d.label] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
    peers = [d.label for d in decoders if d.peer]
    fastest = [max(runs[p][r] for p in peers) for r in range(rounds)]
    out["vs_fastest"] = {}
    for d in decoders:
        if not d.peer:
            ratios = [a / b for a, b in zip(runs[d.label], fastest)]
            out["vs_fastest"][d.label] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
    return out


def samplers(recipe: str) -> dict[str, Sampler]:
    from jobs.recipes.config import load_config
    cfg = load_config(recipe)
    return {"train": cfg.train.sampler, "test": cfg.test.sampler}


@contextlib.contextmanager
def decoding_pool(workers: int, torchcodec: bool):
    """The processes the clips are spread over: None (this process) for one worker unless torchcodec runs, whose
    processes must start with the environment that lets it load FFmpeg (jobs/profiling/torchcodec_peer.py). That
    environment stays set while the pool lives: its processes start when work first reaches them."""
    if workers <= 1 and not torchcodec:
        yield None
        return
    from jobs.profiling.torchcodec_peer import loadable_environment
    with loadable_environment() if torchcodec else contextlib.nullcontext(), spawn_pool(max(1, workers)) as pool:
        yield pool


def run_bench(root: Path, *, recipe: str, kinds=KINDS, files: int = 3, epochs: int = 4, rounds: int = 3,
              workers: int = 2, variants: tuple[Ours, ...] = (), say=print) -> list[dict]:
    """One row per (kind, protocol); torchcodec is skipped, with the reason, where it cannot load."""
    from jobs.profiling.torchcodec_peer import SEEK_MODES, missing
    from pipelines.video_index import packet_tables, probe_video
    torchcodec = not missing()
    if not torchcodec:
        say(f"[video-decode] {missing()}")
    peers = [Decord(), *(TorchCodec(m) for m in SEEK_MODES if torchcodec)]
    decoders = [*peers, Ours(), *variants]
    rows = []
    with decoding_pool(workers, torchcodec) as pool:
        for kind in kinds:
            say(f"[video-decode] files: {kind.name}")
            paths = make_videos(root, kind, files)
            tables = packet_tables({str(p): probe_video(str(p)) for p in paths})
            kind_decoders = [dataclasses.replace(d, tables=tables) if isinstance(d, Ours) else d for d in decoders]
            for protocol, sampler in samplers(recipe).items():
                clips = protocol_clips(paths, sampler, epochs)
                say(f"[video-decode] {kind.name} / {protocol}: {len(clips)} clips x {len(clips[0].indices)} frames, "
                    f"{rounds} rounds")
                row = {"kind": kind.name, "protocol": protocol, "workers": workers,
                       "max_abs_diff_vs_decord": same_frames(kind_decoders, clips, pool),
                       "mean_file_kib": float(np.mean([p.stat().st_size for p in paths]) / 1024),
                       **compare(kind_decoders, clips, rounds=rounds, pool=pool, workers=workers)}
                rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> str:
    """One line per decoder and row: its clips/s and CPU ms/clip; ours: the ratio to decord and to the fastest peer
    of each round (median and range), and the CPU ratio to decord."""
    from jobs.profiling.report import table
    body = []
    for r in rows:
        cps, cpu = r["clips_per_s"], r["cpu_ms_per_clip"]
        for label in cps:
            ratio, fast, c = (r[key].get(label) for key in ("ratio", "vs_fastest", "cpu_ratio"))
            span = (lambda q: f"{q['median']:.2f} ({q['min']:.2f}-{q['max']:.2f})" if q else "")
            body.append([r["kind"], r["protocol"], label, cps[label], cpu[label], span(ratio) if fast else "",
                         span(fast), span(c) if fast else "", r["rounds"],
                         r["max_abs_diff_vs_decord"].get(label, "")])
    return table(["files", "protocol", "decoder", "clips/s", "CPU ms/clip", "vs decord", "vs fastest peer",
                  "CPU: decord / this", "rounds", "max |diff| vs decord"], body)
