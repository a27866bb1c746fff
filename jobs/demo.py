"""`tsn demo` (= `make demo`): the whole product on the built-in synthetic dataset, end to end, on a CPU.

Generate the data if absent -> train an RGB TSN and a flow TSN (ResNet-18, from scratch) -> test both with their
recipes' test protocol, dumping scores -> fuse RGB + flow 1:1 -> print a model-zoo style table, and write it
(fusion.json, fusion.md) with the training curves of both streams (curves.png) into the work dir.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not jobs/, goes first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import time

import click

from jobs.console.errors import run as run_command
from jobs.console.options import cfg_options, device_option

STREAMS = (("rgb", "tsn_r18_synthetic_rgb", "rawframes"), ("flow", "tsn_r18_synthetic_flow", "flow"))


def run(data: Path, work_dir: Path, extra: tuple[str, ...] = (), device: str | None = "cpu") -> list[dict]:
    from jobs.dataprep.synthetic import data_overrides
    from jobs.evaluation.fusion import format_table, fuse, read_labels
    from jobs.evaluation.tester import test_checkpoint
    from jobs.recipes.config import load_config
    from jobs.reporting import ReportError, plot_curves, read_run, write_fusion
    from jobs.runtime import checkpoint as ckpt
    from jobs.training.trainer import train
    from pipelines.synthetic_data import SyntheticSpec, make_synthetic_dataset
    start = time.perf_counter()
    if not (data / "classes.txt").is_file():
        click.echo(f"generating the synthetic dataset in {data} ...")
        make_synthetic_dataset(data, SyntheticSpec())
    dumps = []
    for stream, recipe, kind in STREAMS:
        cfg = load_config(recipe, data_overrides(data, kind) + list(extra))
        out = work_dir / stream
        click.echo(f"\n== training {recipe} ({cfg.optim.epochs} epochs) -> {out}")
        train(cfg, str(out), device=device)
        best = out / "best.pth" if (out / "best.pth").is_file() else ckpt.find_latest(out)
        click.echo(f"== testing {best.name} with the recipe's test protocol")
        dump = out / "scores.npy"
        test_checkpoint(cfg, str(best), device=device, dump=str(dump), out=str(out / "test_metrics.json"))
        dumps.append(str(dump))
    labels = read_labels(str(data / "val_list_rawframes.txt"))
    rows = fuse(dumps, [1.0, 1.0], labels, apply_softmax=False)
    for row, name in zip(rows, ("tsn_r18_synthetic_rgb", "tsn_r18_synthetic_flow", "two-stream [1:1]")):
        row["name"] = name
    click.echo(f"\nsynthetic dataset, {len(labels)} val videos, 12 classes (chance 8.33%)")
    click.echo(format_table(rows))
    as_json, as_md = write_fusion(rows, work_dir)
    click.echo(f"fusion table written to {as_json} and {as_md}")
    try:
        curves = work_dir / "curves.png"
        plot_curves([read_run(work_dir / stream, f"{stream} ({recipe})") for stream, recipe, _ in STREAMS], curves,
                    "tsn demo: synthetic dataset")
        click.echo(f"training curves written to {curves}")
    except ReportError as err:          # matplotlib missing: the table above is the demo's result, keep it
        click.echo(f"no training curves: {err}")
    click.echo(f"demo finished in {time.perf_counter() - start:.0f} s")
    return rows


@click.command("demo")
@click.option("--data", default="data/synthetic", show_default=True, type=click.Path(path_type=Path),
              help="Synthetic dataset folder (generated if absent).")
@click.option("--work-dir", default="work_dirs/demo", show_default=True, type=click.Path(path_type=Path))
@cfg_options
@device_option("cpu")
def demo_command(data, work_dir, cfg_options, device):
    """Train, test and fuse RGB + flow TSNs on the synthetic dataset (about 5-10 minutes on 2 CPU cores)."""
    run(data, work_dir, tuple(cfg_options), device)


if __name__ == "__main__":
    run_command(demo_command)
