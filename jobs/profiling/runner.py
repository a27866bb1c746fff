"""`tsn profile CONFIG`: throughput of the data pipeline, the model, and the training loop; which one limits speed.

Modes (repeat --mode, or `all`): data (the loader alone: clips/s, frames/s, batch latency percentiles, decode vs
augmentation share, the decode-only ceiling; --compare adds a PyTorch DataLoader baseline at the same core count),
model (MMAction2 benchmark.py-style inference videos/s at the recipe's test views, and the training step alone) and
step (the real training loop: data_time share). --variant adds the recipe and variants of it (override sets,
e.g. augmentation steps) timed side by side (jobs/profiling/variants.py). Output: a table, --out JSON, --plot PNG.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass

from jobs.recipes.config import Config

MODES = ("data", "model", "step")


@dataclass(frozen=True)
class ProfileOptions:
    """What `tsn profile` times and how long: the command's knobs, passed as one value."""

    modes: tuple[str, ...] = ("data",)      # of MODES
    splits: tuple[str, ...] = ("train",)    # data mode: which protocol's pipeline
    device: str = "cpu"                     # where the DALI graph runs: "cpu" | "gpu"
    compare: bool = False                   # also the PyTorch DataLoader baselines
    warmup: int | None = None               # untimed batches / iterations (None: defaults())
    iters: int | None = None                # timed batches in data and step modes (None: defaults())
    model_iters: int | None = None          # timed videos in model mode (None: defaults())
    detail: bool = True                     # data mode: also the decode-only / source-only graphs, the ceiling
    train_batch: int | None = None          # model mode: videos per training step (None: the recipe's)
    ref_workers: int | None = None          # baseline DataLoader workers (None: data.threads)
    memory_epochs: int = 0                  # data mode: whole epochs run after timing, memory recorded after each

    def __post_init__(self):
        unknown = [m for m in self.modes if m not in MODES]
        if unknown:
            raise ValueError(f"profile modes must be among {MODES}, got {unknown}")


@dataclass(frozen=True)
class SyntheticData:
    """`tsn profile --synthetic`: generated JPEG frames instead of the recipe's data."""

    size: str                               # WxH, 340x256, 320p, 256p
    root: str = "work_dirs/synthetic"       # cached here
    videos_per_class: int = 8
    repeat: int = 20                        # each video listed this many times (real-sized epochs, same files)


def machine() -> dict:
    import nvidia.dali
    import PIL
    import torch
    info = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "dali": nvidia.dali.__version__, "torch": torch.__version__,
            "pillow": PIL.__version__, "torch_threads": torch.get_num_threads()}
    if torch.cuda.device_count():       # device_count() does not initialise the CUDA driver; is_available() does
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def defaults(mode: str, device: str, warmup: int | None, iters: int | None) -> tuple[int, int]:
    """benchmark.py's 5 warm-up + 195 timed videos on a GPU; on a CPU one 250-view ResNet-50 video takes seconds."""
    cpu = device != "gpu"
    if mode == "model":
        return (warmup if warmup is not None else (1 if cpu else 5)), (iters or (3 if cpu else 195))
    return (5 if warmup is None else warmup), (iters or 30)


def run(cfg: Config, opts: ProfileOptions, *, variants: list | None = None, say=print) -> dict:
    """The whole profile as one dict (the JSON written by --out). variants: [(Variant, its Config)]."""
    modes, splits, device, compare, detail = opts.modes, opts.splits, opts.device, opts.compare, opts.detail
    warmup, iters, ref_workers = opts.warmup, opts.iters, opts.ref_workers
    from jobs.profiling.data import prepare_data, profile_data
    from jobs.profiling.model import prepare_step, profile_model, profile_step
    from jobs.profiling.variants import profile_variants
    from jobs.recipes.loaders import settings
    rows = None
    if variants:        # first, and each loader closed after its timing: nothing else is built yet
        w, n = defaults("data", device, warmup, iters)
        rows = profile_variants(cfg, variants, splits=splits, device=device, warmup=w, batches=n, say=say)
    # Every DALI pipeline first: on the CPU their workers fork, which is only safe before CUDA is initialised (GPU
    # pipelines spawn theirs, pipelines/workers.py); machine() asks CUDA for the GPU's name, so it comes after.
    prepared = [prepare_data(cfg, s, device=device, detail=detail) for s in splits] if "data" in modes else []
    step_loader = prepare_step(cfg, device) if "step" in modes else None
    report = {"config": cfg.name, "device": device, "machine": machine(), "modes": list(modes),
              "loader_settings": settings(cfg, device).describe()}
    if rows is not None:
        report["variants"] = rows
    if prepared:
        w, n = defaults("data", device, warmup, iters)
        report["data"] = [profile_data(cfg, p, batches=n, warmup=w, device=device, compare=compare,
                                       ref_workers=ref_workers, memory_epochs=opts.memory_epochs, say=say)
                          for p in prepared]
    if step_loader is not None:
        w, n = defaults("step", device, warmup, iters)
        report["step"] = profile_step(cfg, step_loader, device=device, warmup=w, iters=n, compare=compare,
                                      ref_workers=ref_workers, say=say)
    if "model" in modes:
        w, n = defaults("model", device, warmup, opts.model_iters)
        report["model"] = profile_model(cfg, device=device, warmup=w, iters=n, train_batch=opts.train_batch, say=say)
    return report


def synthetic_overrides(data: SyntheticData, say) -> list[str]:
    from jobs.dataprep.synthetic import ensure_dataset, overrides, parse_size
    w, h = parse_size(data.size)
    say(f"synthetic data: {w}x{h} JPEG frames, {data.videos_per_class} training videos per class (cached under "
        f"{data.root})")
    return overrides(ensure_dataset(data.root, w, h, videos_per_class=data.videos_per_class), repeat=data.repeat)


