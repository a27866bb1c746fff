"""The measurements of the GPU check (tests/gpu/gpu_check.py), one function per task; each returns a JSON-able dict.

The orchestrator runs the tasks of one section in one subprocess (`python -m tests.gpu.checks JOBS.json`), each
writing its result file as it ends, so a segfault or a hang in nvJPEG / NVDEC / CUDA ends that section's process
only and the tasks finished before it keep their results. `device` is "gpu" on the GPU machine; the dry run passes "cpu", which
runs the same code on DALI's CPU backend (the comparisons then hold the GPU's graph run on the CPU backend against
the CPU's fast path, and DALI's CPU VP9 decoder against PyAV) so that CI exercises every line the GPU run takes.

Shapes: loader batches are (B, V, C, H, W) uint8 (pipelines/loader.py); decoded videos (F, H, W, 3) uint8 RGB.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.metadata
import itertools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

# The check's synthetic videos are 160 x 128: inside every NVDEC minimum the set's codecs have (VP9 128 x 128,
# H.264 48 x 16; pipelines/video_index.py). The small set (96 x 64) is below VP9's: the nvdec section shows the
# decoder's error on it and that a loader routes it to the CPU decoder.
CHECK_SIZE, SMALL_SIZE = (160, 128), (96, 64)


def _data_spec(size: tuple[int, int] = CHECK_SIZE):
    from pipelines.synthetic_data import SyntheticSpec
    return SyntheticSpec(train_per_class=2, val_per_class=1, num_frames=24, width=size[0], height=size[1])


class Skip(Exception):
    """The task does not apply here (e.g. H.264 on DALI's CPU backend in the dry run); the message says why."""


# --- bar-coded frames: a frame's index can be read back from its pixels ----------------------------------------

CODE_BITS = 12                 # 2**12 = 4096 > 3,000 frames
BAR = 16                       # px per bit: wide enough that H.264/VP9 at crf 18-30 keep each bar's mean clear
CODE_W, CODE_H = CODE_BITS * BAR, 128      # 192 x 128: inside every NVDEC codec's minimum size (VP9: 128 x 128)


def code_frame(i: int) -> np.ndarray:
    """(128, 192, 3) uint8: bit b of i -> bar b white (top half); the bottom half a grey level that steps with i,
    so that consecutive frames differ in more than one bar."""
    img = np.zeros((CODE_H, CODE_W, 3), np.uint8)
    for b in range(CODE_BITS):
        if (i >> b) & 1:
            img[: CODE_H // 2, b * BAR:(b + 1) * BAR] = 255
    img[CODE_H // 2:] = 64 + (i * 7) % 128
    return img


def read_code(frame: np.ndarray) -> int:
    """The index code_frame() wrote, from an (H, W, 3) decoded frame of that size (bar centres only: codecs blur
    the edges)."""
    top = frame[4: CODE_H // 2 - 4].astype(np.float32).mean(axis=(0, 2))       # (W,) column means
    bits = [top[b * BAR + 4:(b + 1) * BAR - 4].mean() > 127.5 for b in range(CODE_BITS)]
    return sum(1 << b for b, on in enumerate(bits) if on)


LONG_OPTIONS = {
    # Fixed GOPs (no scene-cut keyframes: every frame changes) and B-frames, so seeking needs the GOP structure.
    "h264": ("libx264", ".mp4", lambda gop: {"preset": "veryfast", "crf": "18",
                                            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=2"}),
    "vp9": ("libvpx-vp9", ".webm", lambda gop: {"g": str(gop), "keyint_min": str(gop), "deadline": "realtime",
                                               "cpu-used": "8", "lag-in-frames": "0", "crf": "30", "b": "0"}),
}


def write_coded_video(path: Path, codec: str, frames: int, gop: int, fps: int = 25) -> dict:
    """Encodes code_frame(0..frames-1) with PyAV; returns what the demuxer says about it (keyframe positions)."""
    import av
    encoder, _, options = LONG_OPTIONS[codec]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(encoder, rate=fps, options=options(gop))
        stream.width, stream.height, stream.pix_fmt = CODE_W, CODE_H, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(code_frame(i), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    with av.open(str(path)) as inp:
        s = inp.streams.video[0]
        packets = [(p.pts, p.is_keyframe) for p in inp.demux(s) if p.size]
    pts = sorted(p for p, _ in packets)
    keys = sorted(pts.index(p) for p, k in packets if k)        # presentation indices of the keyframes
    return {"path": str(path), "codec": codec, "frames": len(pts), "gop": gop, "keyframes": keys[:20],
            "num_keyframes": len(keys), "bytes": path.stat().st_size}


# --- DALI decoding helpers ----------------------------------------------------------------------------------------

def dali_decode(path: str, frames: list[int], device: str, repeats: int = 0) -> tuple[np.ndarray, dict]:
    """fn.decoders.video(frames=...) on one file: ((F, H, W, 3) uint8, timings in ms). The synchronous executor, so
    that one run() is one decode (no prefetching overlaps the timed runs)."""
    from nvidia.dali import fn, pipeline_def
    data = np.fromfile(path, dtype=np.uint8)

    def graph():
        enc = fn.external_source(source=lambda: [data], batch=True)
        return fn.decoders.video(enc, device="mixed" if device == "gpu" else "cpu", frames=list(frames),
                                 pad_mode="none")

    common = {"batch_size": 1, "num_threads": 2, "device_id": 0 if device == "gpu" else None,
              "prefetch_queue_depth": 1}
    executor = "synchronous"
    t0 = time.perf_counter()
    try:
        pipe = pipeline_def(graph, exec_async=False, exec_pipelined=False, **common)()
        (out,) = pipe.run()
    except RuntimeError as err:       # not expected; then the default executor, one batch deep, and say so
        executor = f"default (synchronous refused: {str(err).splitlines()[0][:200]})"
        pipe = pipeline_def(graph, **common)()
        t0 = time.perf_counter()
        (out,) = pipe.run()
    video = np.array((out.as_cpu() if device == "gpu" else out)[0])
    first = 1e3 * (time.perf_counter() - t0)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        (out,) = pipe.run()
        if device == "gpu":
            out.as_cpu()                       # the copy waits for the decode
        times.append(1e3 * (time.perf_counter() - t0))
    del pipe
    return video, {"first_ms": first, "median_ms": float(np.median(times)) if times else None,
                   "runs_ms": [round(t, 3) for t in times], "executor": executor}


def frame_match(decoded: np.ndarray, reference: np.ndarray, asked: list[int]) -> dict:
    """Which reference frame each decoded frame is closest to (mean abs diff): exact when it is the one asked for.

    decoded (F, H, W, 3), reference (N, H, W, 3) every frame of the file; margin = how much closer the asked
    frame is than the best other one (in mean abs diff levels; > 0 means distinguishable)."""
    dec = decoded.astype(np.float32)
    ref = reference.astype(np.float32)
    got, margins, at_asked = [], [], []
    for k, want in enumerate(asked):
        diffs = np.abs(ref - dec[k]).mean(axis=(1, 2, 3))             # (N,)
        got.append(int(diffs.argmin()))
        others = np.delete(diffs, want)
        margins.append(float(others.min() - diffs[want]))
        at_asked.append(float(diffs[want]))
    return {"asked": list(asked), "closest": got, "exact": got == list(asked),
            "mean_abs_diff_at_asked": at_asked, "min_margin": min(margins)}


# --- tasks --------------------------------------------------------------------------------------------------------

def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _library(name: str) -> dict:
    """Whether the dynamic loader finds `name` (e.g. libnvcuvid.so.1), and which file it mapped."""
    short = re.sub(r"^lib|\.so.*$", "", name)
    out = {"find_library": ctypes.util.find_library(short)}
    try:
        ctypes.CDLL(name)
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if name.split(".so")[0] + ".so" in line}
        out.update(loaded=True, path=sorted(paths)[0] if paths else None)
    except OSError as err:
        out.update(loaded=False, error=str(err))
    return out


def _nvidia_smi() -> dict:
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        head = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"error": str(err)}
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", head)
    first = q.stdout.strip().splitlines()[0] if q.stdout.strip() else ""
    name, driver, memory = ([v.strip() for v in first.split(",")] + [None] * 3)[:3]
    return {"name": name, "driver": driver, "memory": memory, "driver_cuda": cuda.group(1) if cuda else None,
            "returncode": q.returncode}


def probe_environment(device: str = "gpu") -> dict:
    """Versions and libraries the GPU path depends on; every probe records its own error instead of raising."""
    env = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
           "nvidia_smi": _nvidia_smi(),
           "LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH"), "PYTHONPATH": os.environ.get("PYTHONPATH")}
    try:
        import torch
        env["torch"] = {"version": torch.__version__, "cuda": torch.version.cuda,
                        "cuda_available": torch.cuda.is_available(), "cudnn": torch.backends.cudnn.version()}
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            env["torch"].update(gpu=p.name, capability=f"{p.major}.{p.minor}", memory_gib=round(p.total_memory / 2**30, 1),
                                bf16=torch.cuda.is_bf16_supported())
    except Exception as err:            # a broken torch is itself the finding
        env["torch"] = {"error": f"{type(err).__name__}: {err}"}
    try:
        import nvidia.dali as dali
        env["dali"] = {"version": dali.__version__, "built_for_cuda": getattr(dali, "__cuda_version__", None),
                       "path": os.path.dirname(dali.__file__),
                       "distribution": ", ".join(d for d in ("nvidia-dali-cuda130", "nvidia-dali-cuda120")
                                                 if _version(d)) or None}
    except Exception as err:
        env["dali"] = {"error": f"{type(err).__name__}: {err}"}
    codec = {"cu13": _version("nvidia-nvimgcodec-cu13"), "cu12": _version("nvidia-nvimgcodec-cu12")}
    try:
        from nvidia import nvimgcodec
        codec["module"] = getattr(nvimgcodec, "__version__", None)
    except Exception as err:
        codec["error"] = f"{type(err).__name__}: {err}"
    env["nvimgcodec"] = codec
    try:
        import av
        env["pyav"] = {"version": av.__version__, "ffmpeg": {k: ".".join(map(str, v))
                                                               for k, v in av.library_versions.items()},
                       "encoders": {c: c in av.codecs_available for c in ("libx264", "libvpx-vp9")}}
    except Exception as err:
        env["pyav"] = {"error": f"{type(err).__name__}: {err}"}
    env["libraries"] = {n: _library(n) for n in ("libcuda.so.1", "libnvcuvid.so.1")}
    # nvImageCodec's nvJPEG extension dlopens libnvjpeg.so.13 from the CUDA 13 wheels' nvidia/cu13/lib or
    # /usr/local/cuda: list what exists there (a bare dlopen here would not search those folders).
    env["libnvjpeg_candidates"] = sorted({f for d in sys.path + ["/usr/local/cuda/lib64"]
                                          for f in glob.glob(os.path.join(d, "nvidia/cu13/lib/libnvjpeg.so*"))
                                          + glob.glob(os.path.join(d, "libnvjpeg.so*"))})
    env["packages"] = {d: _version(d) for d in ("numpy", "pillow", "click", "tqdm", "torchvision", "pytest",
                                                "pytest-timeout", "opencv-python-headless", "nvidia-nvjpeg")}
    try:                                 # which DALI wheel(s), and whether they go with torch (package metadata)
        from jobs.console.dali_env import dali_distributions, has_nvidia_gpu, install_problems, torch_cuda_version
        dists, cuda = dali_distributions(), torch_cuda_version()
        env["install"] = {"dali_distributions": dists, "torch_cuda": cuda,
                          "problems": install_problems(dists, cuda, has_nvidia_gpu())}
    except Exception as err:
        env["install"] = {"error": f"{type(err).__name__}: {err}"}
    env["device_asked"] = device
    return env


def _stamped(folder: Path, params: dict, make) -> dict:
    """make() unless `folder` already holds what it made with the same params (the parts-only calls 2-4 prepare the
    data, `gpu_check --prepare`; the check of call 5 then reuses it)."""
    stamp = folder / "made.json"
    params = json.loads(json.dumps(params))               # as the stamp holds them (tuples become lists)
    try:
        old = json.loads(stamp.read_text())
        if old["params"] == params:
            return {**old["result"], "reused": True}
    except (OSError, ValueError, KeyError):
        pass
    result = make()
    folder.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"params": params, "result": result}, default=str))
    return {**result, "reused": False}


def make_data(work: str, profile_size: str | None, profile_root: str, profile_videos_per_class: int,
              workers: int) -> dict:
    """The synthetic sets: the check's (12 classes, 2 train + 1 val per class, 24 frames, 160 x 128: JPEG frames,
    flow, H.264 and VP9), tests/conftest.py's (80 x 64, for the pytest GPU tests), the small one below NVDEC's VP9
    minimum (96 x 64), and the profile's cached frames."""
    from pipelines.synthetic_data import SyntheticSpec, make_synthetic_dataset
    folder = Path(work) / "data"
    params = {"check": CHECK_SIZE, "small": SMALL_SIZE, "profile": [profile_size, profile_videos_per_class]}

    def make():
        out = {}
        for name, spec in (("synthetic", _data_spec()),
                           ("synthetic_tests", SyntheticSpec(train_per_class=2, val_per_class=1, num_frames=24)),
                           ("synthetic_small", SyntheticSpec(num_colours=1, num_directions=2, train_per_class=1,
                                                             val_per_class=1, num_frames=12, width=SMALL_SIZE[0],
                                                             height=SMALL_SIZE[1]))):
            t0 = time.perf_counter()
            summary = make_synthetic_dataset(folder / name, spec, workers=workers)
            out[name] = {"root": str(folder / name), "size": [spec.width, spec.height], "counts": summary["counts"],
                         "seconds": time.perf_counter() - t0}
        if profile_size:
            # The folder `tsn profile --synthetic` looks for: made here with more processes, reused there.
            from jobs.dataprep.synthetic import ensure_dataset, parse_size
            t0 = time.perf_counter()
            w, h = parse_size(profile_size)
            made = ensure_dataset(profile_root, w, h, videos_per_class=profile_videos_per_class, workers=workers)
            out["profile_data"] = {"folder": str(made), "seconds": time.perf_counter() - t0}
        return out

    return _stamped(folder, params, make)


def make_long(work: str, frames: int, gop: int, codecs: list[str]) -> dict:
    """The bar-coded long videos of the seek check (frames x 192 x 128, fixed GOP)."""
    folder = Path(work) / "long"

    def make():
        out = {}
        for codec in codecs:
            t0 = time.perf_counter()
            path = folder / f"long_{codec}{LONG_OPTIONS[codec][1]}"
            folder.mkdir(parents=True, exist_ok=True)
            out[codec] = {**write_coded_video(path, codec, frames, gop), "seconds": time.perf_counter() - t0}
        return out

    return _stamped(folder, {"frames": frames, "gop": gop, "codecs": list(codecs)}, make)


def _test_image() -> np.ndarray:
    """(128, 192, 3) uint8: smooth colour ramps (chroma upsampling shows there) under the bar code (edges)."""
    img = code_frame(0b1011_0110_1001).astype(np.float32)
    y, x = np.mgrid[0:CODE_H, 0:CODE_W].astype(np.float32)
    ramp = np.stack([255 * x / CODE_W, 255 * y / CODE_H, 128 + 100 * np.sin(x / 9) * np.cos(y / 7)], axis=-1)
    return np.clip(0.5 * img + 0.5 * ramp, 0, 255).astype(np.uint8)


def nvjpeg_smoke(device: str) -> dict:
    """One JPEG through fn.decoders.image (mixed = nvImageCodec / nvJPEG on the GPU) against PIL's decode of the
    same bytes, and the decoder libraries this process mapped. No NVDEC here: a missing libnvcuvid must not hide it."""
    import io

    from nvidia.dali import fn, pipeline_def
    from PIL import Image
    raw = io.BytesIO()
    Image.fromarray(_test_image()).save(raw, "JPEG", quality=90)
    buf = np.frombuffer(raw.getvalue(), dtype=np.uint8)

    @pipeline_def(batch_size=1, num_threads=2, device_id=0 if device == "gpu" else None)
    def graph():
        return fn.decoders.image(fn.external_source(source=lambda: [buf], batch=True),
                                 device="mixed" if device == "gpu" else "cpu")

    t0 = time.perf_counter()
    (img,) = graph().run()
    first_ms = 1e3 * (time.perf_counter() - t0)
    img = np.array((img.as_cpu() if device == "gpu" else img)[0])
    ref = np.asarray(Image.open(io.BytesIO(raw.getvalue())).convert("RGB"))
    diff = np.abs(img.astype(np.float32) - ref) if img.shape == ref.shape else None
    out = {"shape": list(img.shape), "first_ms": first_ms,
           "mean_abs_diff_vs_pil": float(diff.mean()) if diff is not None else None,
           "max_abs_diff_vs_pil": float(diff.max()) if diff is not None else None}
    with open("/proc/self/maps") as maps:
        out["mapped_libraries"] = sorted({line.split()[-1] for line in maps
                                          if re.search(r"nvjpeg|nvimgcodec\.so|libcuda\.so", line)})
    out["pass"] = diff is not None and out["mean_abs_diff_vs_pil"] < 3.0
    return out


def _batches(loader, n: int) -> list:
    return list(itertools.islice(loader, n))


def compare_batches(ref: list, dev: list) -> dict:
    """Pixel differences between two loaders' batches of the same videos (uint8 (B, V, C, H, W) each)."""
    import torch
    rows, total, count = [], 0.0, 0
    for a, b in zip(ref, dev):
        bc = b.clips.cpu()
        row = {"shape_ref": list(a.clips.shape), "shape_dev": list(bc.shape), "dtype_dev": str(bc.dtype),
               "dev_is_cuda": bool(b.clips.is_cuda), "index_equal": bool(torch.equal(a.index, b.index.cpu())),
               "labels_equal": bool(torch.equal(a.labels, b.labels.cpu()))}
        if row["shape_ref"] == row["shape_dev"]:
            d = (a.clips.float() - bc.float()).abs()
            flat = d.flatten()
            sample = flat[torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(0))[:1_000_000]]
            row.update(max_abs_diff=float(d.max()), mean_abs_diff=float(d.mean()),
                       p99_abs_diff=float(torch.quantile(sample, 0.99)),
                       frac_over_16=float((d > 16).float().mean()))
            total += float(d.sum())
            count += d.numel()
        rows.append(row)
    ok_shapes = bool(rows) and all(r["shape_ref"] == r["shape_dev"] for r in rows)
    return {"batches": rows, "compared": len(rows), "shapes_equal": ok_shapes,
            "index_equal": bool(rows) and all(r["index_equal"] for r in rows),
            "max_abs_diff": max((r.get("max_abs_diff", float("nan")) for r in rows), default=None),
            "mean_abs_diff": total / count if count else None}


def flow_flips(batches: list, list_file: str | Path) -> dict:
    """Flipped (x-inverted) flow views in loader batches of the synthetic set, read from the pixels alone.

    Inside the moving disc the synthetic x-flow is quantise(dx) (> 128 for rightward motion, pipelines/synthetic_data.py)
    and 128 elsewhere; a flip mirrors the image and inverts x (255 - v), so the disc's x values then point against
    the video's true dx. Views of videos moving left or right (|dx| >= 1 px per frame) whose crop holds enough disc
    pixels are counted as flipped or unflipped. clips: (B, V, 2 * clip_len, H, W), channels x_t, y_t, x_t+1, ...
    """
    from pipelines.synthetic_data import plan_videos
    truth = {p.vid: p.velocity[0] for p in plan_videos(_data_spec())}
    vids = [line.split()[0] for line in Path(list_file).read_text().splitlines() if line.strip()]
    flipped = unflipped = 0
    for b in batches:
        x = b.clips.cpu()[:, :, 0::2].float() - 127.5               # (B, V, clip_len, H, W) signed x-flow
        for row, idx in enumerate(b.index.tolist()):
            dx = truth[vids[idx]] if idx >= 0 else 0.0
            if abs(dx) < 1.0:
                continue
            for view in x[row]:
                disc = view[view.abs() > 6]                         # the background sits at +-0.5 (+ JPEG noise)
                if disc.numel() < 20:
                    continue
                if np.sign(float(disc.mean())) == np.sign(dx):
                    unflipped += 1
                else:
                    flipped += 1
    return {"flipped_views": flipped, "unflipped_views": unflipped}


def loader_parity(root: str, recipe: str, kind: str, split: str, overrides: list[str], device: str,
                  batches: int = 2, tol: float = 3.0, dev_overrides: list[str] = (), ref_overrides: list[str] = ()) -> dict:
    """The same recipe's loader built for `device` and for the CPU, on the same videos: pixel differences."""
    return _parity(root, recipe, kind, split, overrides, device, batches, tol, dev_overrides, ref_overrides)[0]


def _parity(root, recipe, kind, split, overrides, device, batches, tol, dev_overrides, ref_overrides):
    from jobs.dataprep.synthetic import data_overrides
    from jobs.recipes.config import load_config
    from jobs.recipes.loaders import build_loader
    base = data_overrides(Path(root), kind) + list(overrides)
    ref_cfg = load_config(recipe, base + list(ref_overrides))
    dev_cfg = load_config(recipe, base + list(dev_overrides))
    # Both loaders (and their forked Python workers) exist before either runs: no fork after a CUDA context.
    # Dry run (device "cpu"): the graph a GPU runs, on DALI's CPU backend, against the CPU's own fast path.
    ref_loader = build_loader(ref_cfg, split, device="cpu")
    dev_loader = build_loader(dev_cfg, split, device=device, device_id=0 if device == "gpu" else None,
                              gpu_graph=device != "gpu")
    t0 = time.perf_counter()
    ref = _batches(ref_loader, batches)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    dev = _batches(dev_loader, batches)
    t_dev = time.perf_counter() - t0
    out = {"recipe": recipe, "split": split, "kind": kind, "device": device, "tolerance_mean_abs": tol,
           "seconds_ref": t_ref, "seconds_dev": t_dev, **compare_batches(ref, dev)}
    if ref_cfg.data.is_flow:
        list_file = Path(root) / f"{'train' if split == 'train' else 'val'}_list_{kind}.txt"
        out["flow_flips"] = {"ref": flow_flips(ref, list_file), "dev": flow_flips(dev, list_file)}
        out["inverted_views"] = out["flow_flips"]["ref"]["flipped_views"]
    out["pass"] = bool(out["shapes_equal"] and out["index_equal"] and out["mean_abs_diff"] is not None
                       and out["mean_abs_diff"] < tol and all(r["dev_is_cuda"] == (device == "gpu")
                                                               for r in out["batches"]))
    return out, ref, dev


def video_parity(root: str, codec: str, device: str, overrides: list[str], batches: int = 2, tol: float = 4.0) -> dict:
    """NVDEC (DALI's CPU decoder in the dry run) vs the PyAV loader on the synthetic H.264 / VP9 files, and
    frame-exactness of the raw decoder: every frame decoded is the frame asked for."""
    if device != "gpu" and codec == "h264":
        raise Skip("DALI's CPU video decoder has no H.264 (only VP8, VP9, MJPEG): NVDEC only")
    kind = "videos" if codec == "h264" else "videos_vp9"
    out, ref, dev = _parity(root, "tsn_r18_synthetic_video_rgb", kind, "val",
                            list(overrides) + ["val.sampler.num_clips=8"], device, batches, tol,
                            ["data.decoder=dali"], ["data.decoder=pyav"])
    out["codec"] = codec
    # Views in a different order (each batch's 8 segments rolled by one) must be clearly further away than the
    # match, else the comparison could not tell neighbouring frames apart.
    if out["shapes_equal"]:
        diffs = [float((a.clips.float() - b.clips.cpu().roll(1, dims=1).float()).abs().mean()) for a, b in zip(ref, dev)]
        out["rolled_mean_abs_diff"] = float(np.mean(diffs))
    # Raw decoder: scattered, repeated and last frames of one file against PyAV's decode of every frame.
    from pipelines.pyav_decode import decode_sampled_frames
    suffix = ".mp4" if codec == "h264" else ".webm"
    video = sorted(Path(root, "videos").glob(f"val_*{suffix}"))[0]
    n = 24
    asked = [23, 0, 11, 11, 12, 1, 22, 5]
    reference = decode_sampled_frames(str(video), list(range(n)))
    decoded, _ = dali_decode(str(video), asked, device)
    out["decoder_exactness"] = {"file": video.name, **frame_match(decoded, reference, asked)}
    rolled_apart = out.get("rolled_mean_abs_diff", 0.0) > out["mean_abs_diff"] + 1.0 if out["shapes_equal"] else False
    out["pass"] = bool(out["pass"] and out["decoder_exactness"]["exact"] and rolled_apart)
    return out


def nvdec_seek(path: str, codec: str, device: str, frames: int, gop: int, repeats: int = 3) -> dict:
    """Does fn.decoders.video seek? Time frame 0, the frame before a late keyframe, that keyframe and the last frame;
    a decoder that seeks pays ~one GOP for the frame before the keyframe and ~nothing for the keyframe, one that
    decodes forward from the start pays ~the same for both (and the last frame costs ~`frames` decodes)."""
    if device != "gpu" and codec == "h264":
        raise Skip("DALI's CPU video decoder has no H.264: NVDEC only")
    last_key = (frames - 1) // gop * gop
    points = {"first": 0, "before_last_keyframe": last_key - 1, "last_keyframe": last_key, "last": frames - 1}
    times = {}
    for name, i in points.items():
        video, t = dali_decode(path, [i], device, repeats=repeats)
        times[name] = {"frame": i, **t, "code_read": read_code(video[0])}
    # Frame-exactness on the long file: scattered, repeated, unsorted indices around GOP boundaries.
    asked = sorted({0, 1, 2, gop - 1, gop, gop + 1, frames // 2, last_key - 1, last_key, frames - 2, frames - 1})
    asked = asked[::-1] + [asked[len(asked) // 2]]
    decoded, t_scatter = dali_decode(path, asked, device)
    codes = [read_code(f) for f in decoded]
    before, at = times["before_last_keyframe"]["median_ms"], times["last_keyframe"]["median_ms"]
    seeks = before > 3 * at
    out = {"path": os.path.basename(path), "codec": codec, "device": device, "frames": frames, "gop": gop,
           "times": times, "ratio_last_vs_first": times["last"]["median_ms"] / times["first"]["median_ms"],
           "ratio_before_vs_at_keyframe": before / at,
           "verdict": "seeks to keyframes" if seeks else "decodes forward from the start (no seek)",
           "seeks": seeks,
           "forward_ms_per_frame": (times["last"]["median_ms"] - times["first"]["median_ms"]) / (frames - 1),
           "exactness": {"asked": asked, "read": codes, "exact": codes == asked,
                         "single_frames_exact": all(v["code_read"] == v["frame"] for v in times.values()),
                         "scatter_ms": t_scatter["first_ms"]}}
    out["pass"] = bool(out["exactness"]["exact"] and out["exactness"]["single_frames_exact"])
    return out


def summarise_profile(report: dict) -> dict:
    """The numbers docs/GPU_CHECK.md explains, out of a `tsn profile` report (jobs/profiling/runner.run)."""
    out = {"config": report["config"], "device": report["device"], "gpu": report["machine"].get("gpu"),
           "data": []}
    for d in report.get("data", []):
        row = {"split": d["split"], "batch": d["batch"], "clips_per_s": d["dali"]["clips_per_s"],
               "frames_per_s": d["dali"]["frames_per_s"], "p50_ms": d["dali"]["latency_ms"]["p50"]}
        if "ceiling" in d:
            row.update(ceiling_clips_per_s=d["ceiling"]["clips_per_s"],
                       ceiling_images_per_s=d["ceiling"]["images_per_s"],
                       fraction_of_ceiling=d["fraction_of_ceiling"])
        if "breakdown" in d:
            row["share"] = d["breakdown"]["share"]
        out["data"].append(row)
    if "step" in report:
        s = report["step"]["dali"]
        out["step"] = {"batch": report["step"]["batch"], "clips_per_s": s["clips_per_s"],
                       "data_time_share": s["data_time_share"], "verdict": s["verdict"],
                       "step_ms": s["step_ms"]["mean"], "data_ms": s["data_ms"]["mean"]}
    return out


def profile_recipe(recipe: str, device: str, size: str, data_root: str, videos_per_class: int, repeat: int,
                   warmup: int, iters: int, overrides: list[str], tiny: bool, out_json: str) -> dict:
    """`tsn profile` data + step on the recipe (its loaders built first, as the command does), then the model alone
    at the recipe's batch and at 25x10 / 25x3 test views, each with its peak memory (tests/gpu/torch_tasks.py)."""
    import torch

    from jobs.profiling.model import torch_device
    from jobs.profiling.runner import ProfileOptions, SyntheticData, run, synthetic_overrides
    from jobs.recipes.config import load_config
    from tests.gpu import torch_tasks as tt
    data = SyntheticData(size, data_root, videos_per_class, repeat)
    cfg = load_config(recipe, synthetic_overrides(data, say=print) + list(overrides))
    dev = torch_device(device)
    report = run(cfg, ProfileOptions(modes=("data", "step"), device=device, warmup=warmup, iters=iters), say=print)
    Path(out_json).write_text(json.dumps(report, indent=1, default=str))
    out = summarise_profile(report)
    if dev.type == "cuda":
        # torch's allocator alone: DALI's pools are not in it; device-wide use (both) as the loader left it.
        free, total = torch.cuda.mem_get_info(dev)
        out["step"]["peak_memory_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
        out["device_memory_used_gib"] = (total - free) / 2**30
        torch.cuda.empty_cache()
    r = tt.Run(dev, tiny, deadline=float("inf"), out=Path(out_json).parent)
    out["train_step"] = tt.step_row(cfg, r, cfg.runtime.amp, cfg.model.channels_last)
    out["inference"], _ = tt.inference_rows(cfg, r, channels_last_both=False)
    out["pass"] = None
    return out


def _tsn(*args) -> None:
    """The `tsn` command itself (jobs/cli.py), in this process; a failing command raises."""
    from jobs.cli import cli
    cli.main([str(a) for a in args], prog_name="tsn", standalone_mode=False)


def real_train(work: str, root: str, recipe: str, device: str, epochs: list[int], overrides: list[str]) -> dict:
    """`tsn train` for epochs[0] epochs (validation, checkpoints), `tsn train --resume auto` on to epochs[1], then
    `tsn test` of the last checkpoint on `device` with its per-video scores dumped for test_on_cpu."""
    from jobs.dataprep.synthetic import data_overrides
    from jobs.runtime.checkpoint import find_latest, load_checkpoint
    wd = Path(work) / "real_train"
    shutil.rmtree(wd, ignore_errors=True)
    dev = "cuda" if device == "gpu" else "cpu"
    opts = data_overrides(Path(root), "rawframes") + list(overrides)
    runs = []
    for k, n in enumerate(epochs):
        t0 = time.perf_counter()
        _tsn("train", recipe, "--work-dir", wd, "--device", dev, *(["--resume", "auto"] if k else []),
             "--cfg-options", *opts, f"optim.epochs={n}")
        latest = find_latest(wd)
        state = load_checkpoint(latest)
        runs.append({"epochs": n, "seconds": time.perf_counter() - t0, "latest": latest.name,
                     "epoch": state["epoch"], "iteration": state["iteration"], "best_metric": state["best_metric"]})
    records = [json.loads(line) for line in (wd / "log.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in records if r.get("mode") == "train"]
    val = [r for r in records if r.get("mode") == "val"]
    text = (wd / "train.log").read_text(errors="replace")
    resumed = re.search(r"resumed from \S+: epoch (\d+), iteration (\d+)", text)
    t0 = time.perf_counter()
    _tsn("test", wd / runs[-1]["latest"], "--device", dev, "--dump", wd / f"scores_{device}.npy",
         "--out", wd / f"test_{device}.json")
    test = json.loads((wd / f"test_{device}.json").read_text())
    out = {"recipe": recipe, "device": dev, "runs": runs, "train_log": train, "val_log": val,
           "losses_finite": bool(train) and all(np.isfinite(r["loss"]) for r in train),
           "skipped_steps": sum(r.get("skipped", 0) for r in train),
           "resumed": {"epoch": int(resumed.group(1)), "iteration": int(resumed.group(2))} if resumed else None,
           "checkpoints": sorted(p.name for p in wd.glob("*.pth")), "test": test,
           "test_seconds": time.perf_counter() - t0, "scores": str(wd / f"scores_{device}.npy")}
    first, last = runs[0], runs[-1]
    out["pass"] = bool(out["losses_finite"] and val and out["resumed"] is not None
                       and out["resumed"]["epoch"] == first["epoch"] == epochs[0]
                       and last["epoch"] == epochs[1] and last["iteration"] > first["iteration"]
                       and "best.pth" in out["checkpoints"])
    return out


def test_on_cpu(work: str, device: str) -> dict:
    """`tsn test` of real_train's checkpoint on the CPU against its scores on `device`: the top-1 class of every
    video must agree; the largest logit difference is reported (nvJPEG vs libjpeg-turbo pixels, bf16 vs fp32)."""
    from jobs.evaluation.scores import load_scores
    from jobs.runtime.checkpoint import find_latest
    wd = Path(work) / "real_train"
    _tsn("test", find_latest(wd), "--device", "cpu", "--dump", wd / "scores_cpu_ref.npy",
         "--out", wd / "test_cpu_ref.json")
    ref, dev = load_scores(wd / "scores_cpu_ref.npy"), load_scores(wd / f"scores_{device}.npy")
    top_ref, top_dev = ref.argmax(1), dev.argmax(1)
    part = np.sort(ref, axis=1)
    margin = part[:, -1] - part[:, -2]                         # CPU's top-1 lead over its runner-up, per video
    differ = np.flatnonzero(top_ref != top_dev)
    out = {"videos": len(ref), "top1_equal": int((top_ref == top_dev).sum()),
           "max_abs_logit_diff": float(np.abs(ref - dev).max()), "mean_abs_logit_diff": float(np.abs(ref - dev).mean()),
           "min_cpu_top1_margin": float(margin.min()),
           "disagreeing": [{"video": int(i), "cpu": int(top_ref[i]), "device": int(top_dev[i]),
                            "cpu_margin": float(margin[i])} for i in differ],
           "metrics_cpu": json.loads((wd / "test_cpu_ref.json").read_text()),
           "metrics_device": json.loads((wd / f"test_{device}.json").read_text())}
    out["pass"] = ref.shape == dev.shape and not len(differ)
    return out


def nvdec_too_small(root: str, device: str, overrides: list[str]) -> dict:
    """A VP9 video below NVDEC's 128 x 128: the raw decoder's answer (on the GPU: "Video is too small"), and a
    loader asked for DALI's decoder on it routed to PyAV (jobs/training/loaders.py video_decoder), not failed."""
    from jobs.dataprep.synthetic import data_overrides
    from jobs.recipes.config import load_config
    from jobs.recipes.loaders import build_loader, load_records, split_files, video_decoder, video_infos
    from pipelines.video_index import nvdec_min_size
    video = sorted(Path(root, "videos").glob("val_*.webm"))[0]
    out = {"file": video.name, "size": list(SMALL_SIZE), "nvdec_min_vp9": nvdec_min_size("vp9")}
    try:
        frames, _ = dali_decode(str(video), [0], device)
        out["raw_decode"] = {"decoded": True, "shape": list(frames.shape)}
    except Exception as err:
        out["raw_decode"] = {"decoded": False, "error": str(err).strip().splitlines()[0][:300]}
    cfg = load_config("tsn_r18_synthetic_video_rgb", data_overrides(Path(root), "videos_vp9") + list(overrides)
                      + ["data.decoder=dali", "val.sampler.num_clips=3"])
    infos = video_infos(load_records(cfg, "val"), split_files(cfg, "val")[0], workers=1)
    decoder, misfits = video_decoder("dali", device, infos)
    loader = build_loader(cfg, "val", device=device, device_id=0 if device == "gpu" else None)
    batch = next(iter(loader))
    out.update(decoder=decoder, misfits=[Path(p).name for p in misfits], batch_shape=list(batch.clips.shape),
               clips_on=str(batch.clips.device))
    too_small = "too small" in out["raw_decode"].get("error", "").lower()
    out["pass"] = bool(decoder == "pyav" and too_small) if device == "gpu" else bool(decoder == "dali")
    return out


# cuviddec.h (NVIDIA Video Codec SDK): cudaVideoCodec values and the CUVIDDECODECAPS layout.
_CUVID_CODECS = {"mpeg4": 2, "h264": 4, "hevc": 8, "vp8": 9, "vp9": 10, "av1": 11}


class _DecodeCaps(ctypes.Structure):
    _fields_ = [("eCodecType", ctypes.c_int), ("eChromaFormat", ctypes.c_int), ("nBitDepthMinus8", ctypes.c_uint),
                ("reserved1", ctypes.c_uint * 3), ("bIsSupported", ctypes.c_ubyte), ("nNumNVDECs", ctypes.c_ubyte),
                ("nOutputFormatMask", ctypes.c_ushort), ("nMaxWidth", ctypes.c_uint), ("nMaxHeight", ctypes.c_uint),
                ("nMaxMBCount", ctypes.c_uint), ("nMinWidth", ctypes.c_ushort), ("nMinHeight", ctypes.c_ushort),
                ("bIsHistogramSupported", ctypes.c_ubyte), ("nCounterBitDepth", ctypes.c_ubyte),
                ("nMaxHistogramBins", ctypes.c_ushort), ("reserved3", ctypes.c_uint * 10)]


def nvdec_caps(device: str) -> dict:
    """What this GPU's NVDEC reports for 8-bit 4:2:0 per codec (cuvidGetDecoderCaps, the query DALI's mixed decoder
    makes inside its operator but 2.4 does not expose in Python) against nvdec_supports' documented limits.
    `agrees`: our rule never accepts a size the device refuses (documented minimum >= the device's)."""
    if device != "gpu":
        raise Skip("no NVDEC on a CPU")
    import torch

    from pipelines.video_index import _NVDEC_LIMITS
    torch.zeros(1, device="cuda")                    # makes the primary CUDA context current on this thread
    lib = ctypes.CDLL("libnvcuvid.so.1")
    out = {"gpu": torch.cuda.get_device_name(0), "codecs": {}}
    for codec, value in _CUVID_CODECS.items():
        caps = _DecodeCaps(eCodecType=value, eChromaFormat=1, nBitDepthMinus8=0)     # 1 = cudaVideoChromaFormat_420
        rc = lib.cuvidGetDecoderCaps(ctypes.byref(caps))
        (doc_w, doc_h), doc_max = _NVDEC_LIMITS[codec]
        row = {"rc": rc, "supported": bool(caps.bIsSupported), "nvdecs": caps.nNumNVDECs,
               "min": [caps.nMinWidth, caps.nMinHeight], "max": [caps.nMaxWidth, caps.nMaxHeight],
               "documented_min": [doc_w, doc_h], "documented_max": doc_max}
        row["agrees"] = rc == 0 and (not row["supported"] or (doc_w >= caps.nMinWidth and doc_h >= caps.nMinHeight
                                                               and doc_max <= min(caps.nMaxWidth, caps.nMaxHeight)))
        out["codecs"][codec] = row
    out["pass"] = all(r["agrees"] for r in out["codecs"].values())
    return out


TASKS = {"nvdec_caps": nvdec_caps, "probe_environment": probe_environment, "nvjpeg_smoke": nvjpeg_smoke, "make_data": make_data,
         "make_long": make_long, "loader_parity": loader_parity, "video_parity": video_parity,
         "nvdec_too_small": nvdec_too_small, "nvdec_seek": nvdec_seek, "profile_recipe": profile_recipe,
         "real_train": real_train, "test_on_cpu": test_on_cpu}


def run_jobs(jobs: list[dict]) -> None:
    """Runs each {"task", "params", "out"} in order, writing {"status", "result" | "error", "wall_s"} to "out"."""
    for job in jobs:
        t0 = time.perf_counter()
        print(f"[checks] {job['task']} -> {job['out']}", flush=True)
        try:
            record = {"status": "ok", "result": TASKS[job["task"]](**job["params"])}
        except Skip as why:
            record = {"status": "skipped", "reason": str(why)}
        except Exception as err:
            traceback.print_exc()
            record = {"status": "error", "error": f"{type(err).__name__}: {err}",
                      "traceback": traceback.format_exc()[-4000:]}
        record["wall_s"] = time.perf_counter() - t0
        Path(job["out"]).write_text(json.dumps(record, indent=1, default=str))
        print(f"[checks] {job['task']}: {record['status']} in {record['wall_s']:.1f} s", flush=True)


if __name__ == "__main__":
    run_jobs(json.loads(Path(sys.argv[1]).read_text()))
