"""`tsn profile CONFIG`: throughput of the data pipeline, the model, and the training loop; which one limits speed.

Modes (repeat --mode, or `all`): data (the loader alone: clips/s, frames/s, batch latency percentiles, decode vs
augmentation share, the decode-only ceiling; --compare adds a PyTorch DataLoader baseline at the same core count),
model (MMAction2 benchmark.py-style inference videos/s at the recipe's test views, and the training step alone) and
step (the real training loop: data_time share). Output: a table, --out JSON, --plot PNG.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not jobs/, goes first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import os
import platform

import click

from jobs.config import Config, load_config
from jobs.options import cfg_options

MODES = ("data", "model", "step")


def machine() -> dict:
    import nvidia.dali
    import PIL
    import torch
    info = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "dali": nvidia.dali.__version__, "torch": torch.__version__,
            "pillow": PIL.__version__, "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def defaults(mode: str, device: str, warmup: int | None, iters: int | None) -> tuple[int, int]:
    """benchmark.py's 5 warm-up + 195 timed videos on a GPU; on a CPU one 250-view ResNet-50 video takes seconds."""
    cpu = device != "gpu"
    if mode == "model":
        return (warmup if warmup is not None else (1 if cpu else 5)), (iters or (3 if cpu else 195))
    return (5 if warmup is None else warmup), (iters or 30)


def run(cfg: Config, *, modes: tuple[str, ...], splits: tuple[str, ...] = ("train",), device: str = "cpu",
        compare: bool = False, warmup: int | None = None, iters: int | None = None, detail: bool = True,
        train_batch: int | None = None, ref_workers: int | None = None, model_iters: int | None = None,
        say=print) -> dict:
    """The whole profile as one dict (the JSON written by --out)."""
    report = {"config": cfg.name, "device": device, "machine": machine(), "modes": list(modes)}
    from jobs.profile_data import prepare_data, profile_data
    from jobs.profile_model import prepare_step, profile_model, profile_step
    # Every DALI pipeline first: their workers fork, which DALI refuses once a CUDA context exists (GPU runs).
    prepared = [prepare_data(cfg, s, device=device, detail=detail) for s in splits] if "data" in modes else []
    step_loader = prepare_step(cfg, device) if "step" in modes else None
    if prepared:
        w, n = defaults("data", device, warmup, iters)
        report["data"] = [profile_data(cfg, p, batches=n, warmup=w, device=device, compare=compare,
                                       ref_workers=ref_workers, say=say) for p in prepared]
    if step_loader is not None:
        w, n = defaults("step", device, warmup, iters)
        report["step"] = profile_step(cfg, step_loader, device=device, warmup=w, iters=n, compare=compare,
                                      ref_workers=ref_workers, say=say)
    if "model" in modes:
        w, n = defaults("model", device, warmup, model_iters)
        report["model"] = profile_model(cfg, device=device, warmup=w, iters=n, train_batch=train_batch, say=say)
    return report


def synthetic_overrides(size: str, root: str, videos_per_class: int, repeat: int, say) -> list[str]:
    from jobs.synthetic_data import ensure_dataset, overrides, parse_size
    w, h = parse_size(size)
    say(f"synthetic data: {w}x{h} JPEG frames, {videos_per_class} training videos per class (cached under {root})")
    return overrides(ensure_dataset(root, w, h, videos_per_class=videos_per_class), repeat=repeat)


@click.command("profile")
@click.argument("config")
@click.option("--mode", "modes", multiple=True, type=click.Choice(MODES + ("all",)), default=("data",),
              show_default=True, help="What to time (repeatable).")
@click.option("--split", "splits", multiple=True, type=click.Choice(("train", "val", "test")), default=("train",),
              show_default=True, help="Data mode: which protocol's pipeline (repeatable; test = the recipe's views).")
@click.option("--compare", is_flag=True, help="Also run the PyTorch DataLoader baseline (PIL/PyAV workers).")
@click.option("--device", type=click.Choice(("cpu", "gpu")), default="cpu", show_default=True,
              help="gpu: nvJPEG/NVDEC pipeline and a CUDA model.")
@click.option("--warmup", type=int, help="Untimed batches / iterations first (default 5).")
@click.option("--iters", type=int, help="Timed batches in data and step modes (default 30).")
@click.option("--model-iters", type=int, help="Timed videos in model mode (default 195 on a GPU like benchmark.py, 3 "
              "on a CPU); warm-up there defaults to 5 (GPU) or 1 (CPU).")
@click.option("--train-batch", type=int, help="Model mode: videos per training step (default: the recipe's).")
@click.option("--ref-workers", type=int, help="Baseline DataLoader workers (default: data.threads).")
@click.option("--detail/--no-detail", default=True, show_default=True,
              help="Data mode: also time the variant graphs (decode only, source only, ceiling).")
@click.option("--synthetic", "synthetic_size", help="Run on generated frames of this size: WxH, 340x256, 320p, 256p.")
@click.option("--videos-per-class", type=int, default=8, show_default=True, help="With --synthetic (12 classes).")
@click.option("--repeat", type=int, default=20, show_default=True,
              help="With --synthetic: list each video N times (real-sized epochs for throughput, same files).")
@click.option("--data-root", default="work_dirs/synthetic", show_default=True, help="Where --synthetic data goes.")
@cfg_options
@click.option("--out", type=click.Path(dir_okay=False), help="Write the report as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a PNG bar chart of clips/s.")
def profile_command(config, modes, splits, compare, device, warmup, iters, model_iters, train_batch, ref_workers,
                    detail, synthetic_size, videos_per_class, repeat, data_root, cfg_options, out, plot):
    """Throughput profile of CONFIG (a recipe name or a .toml path)."""
    from jobs.profile_report import format_report, write_json
    from jobs.profile_report import plot as plot_report
    say = lambda msg: click.echo(msg, err=True)
    overrides = []
    if synthetic_size:
        overrides = synthetic_overrides(synthetic_size, data_root, videos_per_class, repeat, say)
    cfg = load_config(config, overrides + list(cfg_options))
    chosen = MODES if "all" in modes else tuple(m for m in MODES if m in modes)
    report = run(cfg, modes=chosen, splits=splits, device=device, compare=compare, warmup=warmup, iters=iters,
                 detail=detail, train_batch=train_batch, ref_workers=ref_workers, model_iters=model_iters, say=say)
    if synthetic_size:
        report["synthetic"] = {"size": synthetic_size, "videos_per_class": videos_per_class, "repeat": repeat,
                               "note": "generated frames (pipelines/synthetic.py): throughput is real, data is not"}
    click.echo(format_report(report))
    if out:
        write_json(report, out)
        say(f"report written to {out}")
    if plot:
        plot_report(report, plot)
        say(f"chart written to {plot}")


if __name__ == "__main__":
    profile_command()
