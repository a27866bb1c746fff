"""`tsn profile CONFIG`: throughput of the data pipeline, the model and the training loop (see jobs/profiling/)."""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not jobs/, goes first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import click

from jobs.console.errors import run as run_command
from jobs.console.options import cfg_options, device_option
from jobs.profiling.runner import MODES, ProfileOptions, SyntheticData


@click.command("profile")
@click.argument("config")
@click.option("--mode", "modes", multiple=True, type=click.Choice(MODES + ("all",)),
              help="What to time (repeatable; default: data, or nothing else when --variant is given).")
@click.option("--split", "splits", multiple=True, type=click.Choice(("train", "val", "test")), default=("train",),
              show_default=True, help="Data mode: which protocol's pipeline (repeatable; test = the recipe's views).")
@click.option("--compare", is_flag=True,
              help="Also run PyTorch DataLoader baselines: OpenCV and PIL (frames); decord, torchcodec (exact and "
                   "approximate seek) and our PyAV decoder (videos). The ratio is to the fastest.")
@device_option("cpu")
@click.option("--warmup", type=int, help="Untimed batches / iterations first (default 5).")
@click.option("--iters", type=int, help="Timed batches in data and step modes (default 30).")
@click.option("--model-iters", type=int, help="Timed videos in model mode (default 195 on a GPU like benchmark.py, 3 "
              "on a CPU); warm-up there defaults to 5 (GPU) or 1 (CPU).")
@click.option("--train-batch", type=int, help="Model mode: videos per training step (default: the recipe's).")
@click.option("--ref-workers", type=int, help="Baseline DataLoader workers (default: data.threads).")
@click.option("--memory-epochs", type=int, default=0, show_default=True,
              help="Data mode: then run the loader N whole epochs, recording each process's resident memory after "
                   "each.")
@click.option("--detail/--no-detail", default=True, show_default=True,
              help="Data mode: also time the variant graphs (decode only, source only, ceiling).")
@click.option("--synthetic", "synthetic_size", help="Run on generated frames of this size: WxH, 340x256, 320p, 256p.")
@click.option("--videos-per-class", type=int, default=8, show_default=True, help="With --synthetic (12 classes).")
@click.option("--repeat", type=int, default=20, show_default=True,
              help="With --synthetic: list each video N times (real-sized epochs for throughput, same files).")
@click.option("--data-root", default="work_dirs/synthetic", show_default=True, help="Where --synthetic data goes.")
@cfg_options
@click.option("--variant", "variant_texts", multiple=True, metavar="[NAME:] KEY=VALUE[; KEY=VALUE ...]",
              help="Also time the loader with these overrides on top (repeatable, one variant each): clips/s, "
                   "ms/batch and share of the base, e.g. --variant \"train.steps=[{kind='grayscale', p=0.5}]\".")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the report as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a PNG bar chart of clips/s.")
def profile_command(config, modes, splits, compare, device, warmup, iters, model_iters, train_batch, ref_workers,
                    memory_epochs, detail, synthetic_size, videos_per_class, repeat, data_root, cfg_options,
                    variant_texts, out, plot):
    """Throughput profile of CONFIG (a recipe name or a .toml path)."""
    from jobs.profiling.report import format_report, write_json
    from jobs.profiling.report import plot as plot_report
    from jobs.profiling.runner import run, synthetic_overrides
    from jobs.profiling.variants import parse_variant
    from jobs.recipes.config import load_config
    from jobs.runtime.devices import dali_device, pick_device
    say = lambda msg: click.echo(msg, err=True)
    synthetic = SyntheticData(synthetic_size, data_root, videos_per_class, repeat) if synthetic_size else None
    overrides = synthetic_overrides(synthetic, say) if synthetic else []
    cfg = load_config(config, overrides + list(cfg_options))
    # Every variant's recipe is loaded (validated) before anything is timed.
    variants = [parse_variant(text) for text in variant_texts]
    variants = [(v, load_config(config, overrides + list(cfg_options) + list(v.overrides))) for v in variants]
    modes = modes or (() if variants else ("data",))
    opts = ProfileOptions(modes=MODES if "all" in modes else tuple(m for m in MODES if m in modes),
                          splits=tuple(splits), device=dali_device(pick_device(device))[0],    # DALI's: cpu | gpu
                          compare=compare, warmup=warmup, iters=iters, model_iters=model_iters, detail=detail,
                          train_batch=train_batch, ref_workers=ref_workers, memory_epochs=memory_epochs)
    report = run(cfg, opts, variants=variants, say=say)
    if synthetic:
        report["synthetic"] = {"size": synthetic.size, "videos_per_class": synthetic.videos_per_class,
                               "repeat": synthetic.repeat,
                               "note": "generated frames (pipelines/synthetic_data.py): "
                                       "throughput is real, data is not"}
    click.echo(format_report(report))
    if out:
        write_json(report, out)
        say(f"report written to {out}")
    if plot:
        plot_report(report, plot)
        say(f"chart written to {plot}")


if __name__ == "__main__":
    run_command(profile_command)
