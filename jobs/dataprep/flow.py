"""`tsn prepare flow`: TV-L1 optical flow between consecutive grayscale frames, stored as 8-bit JPEGs.

Matches the published TSN flow (MMAction2 v0.24.1 tools/flow_extraction.py): OpenCV DualTVL1 with
default parameters, each component clipped to [-bound, bound] and quantised as
uint8((f + bound) * 255 / (2 * bound)) with truncation, so 0 px -> 127 and +-20 px -> 255/0. Flow k
(between frames k and k+1) is written as index start_index + k in `x_...`/`y_...` files, so a video
of N frames gives N - 1 flow frames.
Farneback is offered as a fast preview; it is NOT the algorithm behind the published numbers and
`flow_meta.json` says so. OpenCV comes from the optional extra `[flow]` and is imported lazily.
TV-L1 has two backends: OpenCV's CPU code, or jobs/dataprep/tvl1_torch.py (the same scheme in PyTorch, batched
over frame pairs, on a CPU or a CUDA device; equal to OpenCV's flow within the tolerance docs/DATASETS.md gives).
"""
from __future__ import annotations

import functools
import json
import multiprocessing
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from jobs.dataprep.frames import fresh_temp_dir, publish_dir, save_jpeg
from jobs.dataprep.runner import Failure, Task
from jobs.dataprep.videoio import Resize, plan_tasks, temp_path, video_frames
from jobs.media.naming import frame_name, frame_regex, is_flow_template, list_frames

ALGORITHMS = ("tvl1", "farneback")
BACKENDS = ("auto", "opencv", "torch")
# The usual OpenCV-tutorial settings; only a preview, so they are not tuned.
FARNEBACK = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2,
             "flags": 0}
INSTALL_HINT = ("optical flow needs OpenCV with the contrib modules: "
                "pip install 'tsn-dali[flow]'  (= opencv-contrib-python-headless)")


@dataclass(frozen=True)
class FlowOptions:
    algo: str = "tvl1"
    bound: float = 20.0
    template: str = "{}_{:05d}.jpg"  # x_00001.jpg / y_00001.jpg
    rgb_template: str = "img_{:05}.jpg"  # frames read (frame input) or also written (--with-rgb)
    start_index: int = 1
    resize: Resize = field(default_factory=Resize)  # video input only; frame input is used at its stored size
    with_rgb: bool = False  # video input: also store the RGB frames, so RGB and flow counts always agree
    quality: int = 95
    # "auto" becomes "opencv" on a CPU (faster there, docs/DATASETS.md) and "torch" on a CUDA device.
    backend: str = "auto"
    device: str = "cpu"  # torch backend: "cpu", "cuda" or "cuda:N"
    batch_size: int = 0  # torch backend: frame pairs per call; 0 = from the free device memory

    def __post_init__(self):
        if self.algo not in ALGORITHMS:
            raise ValueError(f"algo must be one of {ALGORITHMS}, got {self.algo!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be cpu, cuda or cuda:N, got {self.device!r}")
        if self.batch_size < 0:
            raise ValueError("batch_size must be >= 0 (0 = automatic)")
        if self.backend == "auto":  # frozen: the resolved backend is what every later step reads
            object.__setattr__(self, "backend", "opencv" if self.device == "cpu" or self.algo != "tvl1" else "torch")
        if self.backend == "torch" and self.algo != "tvl1":
            raise ValueError("the torch backend computes TV-L1 only; use --backend opencv for farneback")
        if self.backend == "opencv" and self.device != "cpu":
            raise ValueError("OpenCV (and so farneback) runs on the CPU here; TV-L1 on CUDA is --backend torch")
        if self.bound <= 0:
            raise ValueError("bound must be > 0")
        if not is_flow_template(self.template) or is_flow_template(self.rgb_template):
            raise ValueError("flow template needs 2 fields (direction, index), RGB template 1")


def quantize(flow: np.ndarray, bound: float = 20.0) -> np.ndarray:
    """float flow (any shape) -> uint8, truncating: -bound -> 0, 0 -> 127, +bound -> 255."""
    clipped = np.clip(flow.astype(np.float64), -bound, bound)
    return ((clipped + bound) * 255.0 / (2.0 * bound)).astype(np.uint8)


def load_cv2():
    try:
        import cv2
    except ImportError:
        raise RuntimeError(INSTALL_HINT) from None
    if not hasattr(cv2, "optflow"):
        raise RuntimeError("this OpenCV lacks cv2.optflow (contrib); " + INSTALL_HINT)
    return cv2


def flow_function(algo: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """(prev gray, next gray) uint8 (H, W) -> float32 flow (H, W, 2), channel 0 = x (right), 1 = y (down)."""
    cv2 = load_cv2()
    cv2.setNumThreads(1)  # parallelism comes from the worker processes; avoid oversubscription
    if algo == "tvl1":
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        return lambda prev, nxt: tvl1.calc(prev, nxt, None)
    return lambda prev, nxt: cv2.calcOpticalFlowFarneback(prev, nxt, None, **FARNEBACK)


def algorithm_record(opts: FlowOptions, source: str) -> dict:
    """What flow_meta.json stores: enough to tell two flow folders apart, and whether it is publishable."""
    cv2 = load_cv2()
    backend = {"backend": opts.backend}
    if opts.backend == "torch":
        import torch

        from jobs.dataprep.tvl1_torch import TVL1Params

        if opts.device != "cpu":  # refuse before any worker starts, not once per video
            index = int(opts.device.partition(":")[2] or 0)
            if index >= torch.cuda.device_count():  # device_count: does not initialise CUDA in this process
                raise RuntimeError(f"device {opts.device} requested but torch sees "
                                   f"{torch.cuda.device_count()} CUDA device(s)")
        params = TVL1Params().record()  # the same numbers as OpenCV's getters (tested)
        note = ("TV-L1 in PyTorch with OpenCV DualTVL1's scheme and defaults, as MMAction2's flow_extraction.py; "
                "the published TSN flow is TV-L1")
        backend.update(torch=torch.__version__, device=opts.device)
    elif opts.algo == "tvl1":
        t = cv2.optflow.DualTVL1OpticalFlow_create()
        params = {"tau": t.getTau(), "lambda": t.getLambda(), "theta": t.getTheta(),
                  "nscales": t.getScalesNumber(), "warps": t.getWarpingsNumber(), "epsilon": t.getEpsilon(),
                  "inner_iterations": t.getInnerIterations(), "outer_iterations": t.getOuterIterations(),
                  "scale_step": t.getScaleStep(), "gamma": t.getGamma(), "median_filtering": t.getMedianFiltering()}
        note = "OpenCV DualTVL1 defaults, as MMAction2's flow_extraction.py; the published TSN flow is TV-L1"
    else:
        params = dict(FARNEBACK)
        note = "Farneback is NOT the published TSN algorithm (TV-L1): accuracy will differ"
    return {"algorithm": opts.algo, "published_algorithm": opts.algo == "tvl1", "note": note,
            "bound": opts.bound, "quantisation": "uint8((clip(f, -b, b) + b) * 255 / (2 b)), truncated",
            "params": params, **backend, "opencv": cv2.__version__, "template": opts.template,
            "start_index": opts.start_index, "source": source,
            "resize": asdict(opts.resize) if source == "videos" else None,
            "frame_count": "flow frames = RGB frames - 1"}


def write_meta(dst_root: Path, opts: FlowOptions, source: str) -> dict:
    """Write flow_meta.json; refuse to add flow of another algorithm/bound/naming to an existing folder."""
    record = algorithm_record(opts, source)
    path = Path(dst_root) / "flow_meta.json"
    if path.exists():
        old = json.loads(path.read_text())
        keys = ("algorithm", "bound", "template", "start_index", "params")
        if any(old.get(k) != record[k] for k in keys):
            raise ValueError(f"{path} records different flow settings ({ {k: old.get(k) for k in keys[:4]} }); "
                             "use another output folder")
        # The backends agree within the documented tolerance, so a run may be resumed with the other one;
        # the record then lists every backend that wrote into the folder.
        used = set(old.get("backends", [old.get("backend", "opencv")])) | {record["backend"]}
        if len(used) > 1:
            record["backends"] = sorted(used)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def plan(src_root: Path, dst_root: Path, source: str, rgb_template: str) -> tuple[str, list[Task], list[Failure]]:
    """(source kind, tasks, failures): video files, or else folders holding RGB frames named like `rgb_template`."""
    if Path(src_root).resolve() == Path(dst_root).resolve():
        raise ValueError("write flow to another folder than its input (resume relies on finished folders)")
    if source in ("auto", "videos"):
        tasks, failures = plan_tasks(src_root, dst_root, "")
        if tasks or failures or source == "videos":
            return "videos", tasks, failures
    pattern = frame_regex(rgb_template)
    tasks = []
    for folder, dirs, files in os.walk(src_root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if any(pattern.fullmatch(f) for f in files):
            tasks.append(Task(Path(folder), Path(dst_root) / Path(folder).relative_to(src_root)))
    return "frames", sorted(tasks, key=lambda t: t.src), []


def _gray_frames(task: Task, opts: FlowOptions, source: str, tmp: Path) -> Iterator[np.ndarray]:
    """Grayscale frames of one input; with --with-rgb the RGB frames are stored on the way."""
    import cv2

    if source == "frames":
        for path in list_frames(task.src, opts.rgb_template):
            gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if gray is None:
                raise ValueError(f"cannot read frame {path.name}")
            yield gray
        return
    for i, frame in enumerate(video_frames(task.src, opts.resize, "rgb24")):
        rgb = frame.to_ndarray()
        if opts.with_rgb:
            save_jpeg(tmp / frame_name(opts.rgb_template, opts.start_index + i), rgb, opts.quality)
        yield cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


@functools.lru_cache(maxsize=4)
def _torch_device(device: str):
    """The torch device, checked once per process; workers compute with one thread each, as OpenCV does."""
    import torch

    if multiprocessing.parent_process() is not None:
        torch.set_num_threads(1)  # parallelism comes from the worker processes
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device} requested but torch sees no CUDA device")
    return torch.device(device)


def _torch_flows(frames: list[np.ndarray], opts: FlowOptions) -> np.ndarray:
    """k + 1 grayscale frames (H, W) uint8 -> k flows (k, H, W, 2) float32 on opts.device, in batches; a batch
    that runs out of device memory is split in halves (the automatic size is an estimate)."""
    import torch

    from jobs.dataprep.tvl1_torch import auto_batch_size, tvl1_flow

    device = _torch_device(opts.device)
    stack = torch.from_numpy(np.stack(frames)).to(device)
    batch = opts.batch_size or auto_batch_size(*frames[0].shape, device)
    out, start = [], 0
    while start < len(frames) - 1:
        end = min(start + batch, len(frames) - 1)
        try:
            out.append(tvl1_flow(stack[start:end], stack[start + 1:end + 1]).permute(0, 2, 3, 1).cpu().numpy())
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
            batch = max(1, batch // 2)
            torch.cuda.empty_cache()
            continue
        start = end
    return np.concatenate(out)


def _batch_pairs(opts: FlowOptions) -> int:
    """Frame pairs handed over per call: 1 for OpenCV; the torch backend takes up to 256 (or --batch-size) at a
    time, so a long video never sits in memory whole, and splits them into device batches itself."""
    return 1 if opts.backend == "opencv" else max(opts.batch_size, 256)


def _write_flows(flows: np.ndarray, tmp: Path, opts: FlowOptions, k: int) -> int:
    """Quantise and store flows (m, H, W, 2) as flow frames k .. k + m - 1; return k + m."""
    for flow in flows:
        q = quantize(flow, opts.bound)
        for c, direction in enumerate("xy"):
            save_jpeg(tmp / frame_name(opts.template, opts.start_index + k, direction), q[..., c], opts.quality)
        k += 1
    return k


def extract_flow(task: Task, opts: FlowOptions, source: str) -> None:
    """Flow folder `task.dst` for one video or frame folder (written under a temp name, then renamed)."""
    if opts.backend == "opencv":
        calc = flow_function(opts.algo)

        def compute(frames: list[np.ndarray]) -> np.ndarray:  # 2 frames -> (1, H, W, 2)
            return calc(frames[0], frames[1])[None]
    else:
        compute = functools.partial(_torch_flows, opts=opts)
    tmp = temp_path(task.dst)
    try:    # made inside the try: a stop (ParentDied) right after the mkdir still removes it
        fresh_temp_dir(task.dst)
        pending: list[np.ndarray] = []  # frames whose flows are not written yet; the last one starts the next
        k = 0  # flows written
        for n, gray in enumerate(_gray_frames(task, opts, source, tmp)):
            if pending and gray.shape != pending[-1].shape:
                raise ValueError(f"frame {n} is {gray.shape}, frame {n - 1} was {pending[-1].shape}")
            pending.append(gray)
            if len(pending) == _batch_pairs(opts) + 1:
                k = _write_flows(compute(pending), tmp, opts, k)
                pending = pending[-1:]
        if len(pending) >= 2:
            k = _write_flows(compute(pending), tmp, opts, k)
        if k == 0:
            raise ValueError("flow needs at least 2 frames")
        publish_dir(tmp, task.dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
