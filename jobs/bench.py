"""`tsn bench data-benchmark`: the model zoo's "Kinetics-400 Data Benchmark" grid, shortened to run on one machine.

Grid: preprocessing (340x256, short side 320, short side 256) x training augmentation (MultiScaleCrop,
RandomResizedCrop) x test protocol (25 frames x 10 crops, 25 frames x 3 crops), with the shipped
tsn_r50_{augmentation}_{size}_1x1x3_100e_kinetics400_rgb and tsn_r50_test_{size}_1x1x25_{10,3}crop recipes, made
small with --cfg-options (ResNet-18, random init, few videos, few epochs). Each cell reports accuracy and the
throughput of the pipelines it ran: training clips/s and test videos/s (views/s). By default the data is the
synthetic set generated at each frame size: its accuracies are a smoke check, not model-zoo numbers.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not jobs/, goes first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import json
from dataclasses import dataclass

import click

from jobs.config import load_config
from jobs.profile_report import table

SIZES = {"340x256": "340x256", "320p": "short-side 320", "256p": "short-side 256"}
AUGMENTS = {"multiscalecrop": "MultiScaleCrop", "randomresizedcrop": "RandomResizedCrop"}
PROTOCOLS = {"10crop": "25x10 frames", "3crop": "25x3 frames"}
SMOKE_NOTE = ("accuracy on synthetic data is a smoke check of the grid (does every cell train and test?), "
              "not a model-zoo number; throughput is measured on this machine")


@dataclass(frozen=True)
class Small:
    """The shortening applied to every recipe of the grid."""

    epochs: int = 1
    arch: str = "resnet18"
    batch: int = 8
    lr: float = 0.01
    throughput_batches: int = 6

    def overrides(self, data: list[str]) -> list[str]:
        return data + [f"model.arch={self.arch}", "model.pretrained=none", f"data.videos_per_gpu={self.batch}",
                       "data.workers=1", "data.threads=2", f"optim.epochs={self.epochs}", f"optim.lr={self.lr}",
                       "optim.lr_steps=[]", f"runtime.checkpoint_interval={self.epochs}",
                       f"runtime.eval_interval={self.epochs}", "runtime.log_interval=1000", "runtime.keep_last=1"]


def train_recipe(augment: str, size: str) -> str:
    return f"tsn_r50_{augment}_{size}_1x1x3_100e_kinetics400_rgb"


def eval_recipe(size: str, protocol: str) -> str:
    return f"tsn_r50_test_{size}_1x1x25_{protocol}_100e_kinetics400_rgb"


def clips_per_s(cfg, split: str, batches: int, device: str) -> dict:
    from jobs.profile_data import prepare_data, profile_data
    d = profile_data(cfg, prepare_data(cfg, split, device=device, detail=False), batches=batches, warmup=2,
                     device=device, say=lambda m: None)
    return {"clips_per_s": d["dali"]["clips_per_s"], "views_per_s": d["dali"]["views_per_s"]}


def run_cell(size: str, augment: str, data: list[str], small: Small, work_dir: Path, device: str, say) -> list[dict]:
    """Train one (size, augmentation) recipe, then test it with both protocols; one row per protocol."""
    from jobs import test as test_job
    from jobs import train as train_job
    cfg = load_config(train_recipe(augment, size), small.overrides(data))
    cell_dir = work_dir / cfg.name
    say(f"[{size} {augment}] training {small.arch} for {small.epochs} epochs")
    train_job.run(cfg, str(cell_dir), validate_every=False, device="cuda" if device == "gpu" else "cpu")
    checkpoint = cell_dir / f"epoch_{small.epochs}.pth"
    train_speed = clips_per_s(cfg, "train", small.throughput_batches, device)
    rows = []
    for protocol in PROTOCOLS:
        tcfg = load_config(eval_recipe(size, protocol), small.overrides(data) + ["data.train_list=", "data.val_list="])
        say(f"[{size} {augment}] testing {PROTOCOLS[protocol]}")
        result = test_job.run(tcfg, str(checkpoint), device="cuda" if device == "gpu" else "cpu", say=lambda m: None)
        metrics = result["metrics"]
        test_speed = clips_per_s(tcfg, "test", small.throughput_batches, device)
        rows.append({"config": cfg.name, "resolution": SIZES[size], "training augmentation": AUGMENTS[augment],
                     "testing protocol": PROTOCOLS[protocol], "top1 acc": 100 * metrics["top1_acc"],
                     "top5 acc": 100 * metrics["top5_acc"], "train clips/s": train_speed["clips_per_s"],
                     "test videos/s": test_speed["clips_per_s"], "test views/s": test_speed["views_per_s"],
                     "videos tested": result["evaluated"]})
    return rows


def first_videos(list_file: Path, n: int) -> list[str]:
    """A test list cut to its first n videos (written beside it), as an override; none for n = 0."""
    if n <= 0:
        return []
    short = list_file.with_name(f"{list_file.stem}_first{n}.txt")
    short.write_text("".join(list_file.read_text().splitlines(keepends=True)[:n]))
    return [f"data.test_list={short}"]


def format_grid(rows: list[dict]) -> str:
    """The model zoo's layout: config named on the first row of each pair, 'x' on the second."""
    header = ["config", "resolution", "training augmentation", "testing protocol", "top1 acc", "top5 acc",
              "train clips/s", "test videos/s", "test views/s"]
    body, last = [], None
    for r in rows:
        name = r["config"] if r["config"] != last else "x"
        last = r["config"]
        body.append([name] + [r[h] for h in header[1:]])
    return table(header, body)


@click.group("bench")
def bench():
    """Benchmark grids from the model zoo."""


@bench.command("data-benchmark")
@click.option("--sizes", default=",".join(SIZES), show_default=True, help="Preprocessings to run (comma list).")
@click.option("--augments", default=",".join(AUGMENTS), show_default=True, help="Training augmentations.")
@click.option("--epochs", type=int, default=1, show_default=True, help="Training epochs per cell.")
@click.option("--videos-per-class", type=int, default=2, show_default=True,
              help="Synthetic training videos per class (12 classes).")
@click.option("--val-per-class", type=int, default=1, show_default=True, help="Synthetic test videos per class.")
@click.option("--test-videos", type=int, default=4, show_default=True,
              help="Test on the first N videos of the test list (0 = all): 25x10 views are ~all the run time.")
@click.option("--arch", default="resnet18", show_default=True, help="Backbone (the model zoo used resnet50).")
@click.option("--batch", type=int, default=8, show_default=True, help="Training videos per batch.")
@click.option("--throughput-batches", type=int, default=6, show_default=True, help="Timed batches per pipeline.")
@click.option("--device", type=click.Choice(("cpu", "gpu")), default="cpu", show_default=True)
@click.option("--data-root", default="work_dirs/synthetic", show_default=True, help="Synthetic data cache.")
@click.option("--work-dir", default="work_dirs/data_benchmark", show_default=True, help="Checkpoints and logs.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the rows as JSON.")
def data_benchmark(sizes, augments, epochs, videos_per_class, val_per_class, test_videos, arch, batch,
                   throughput_batches, device, data_root, work_dir, out):
    """Run the Kinetics-400 Data Benchmark grid on synthetic frames of each preprocessing's size."""
    from jobs.synthetic_data import ensure_dataset, overrides, parse_size
    say = lambda msg: click.echo(msg, err=True)
    small = Small(epochs=epochs, arch=arch, batch=batch, throughput_batches=throughput_batches)
    rows = []
    for size in sizes.split(","):
        if size not in SIZES:
            raise click.BadParameter(f"{size!r}: choose from {', '.join(SIZES)}", param_hint="--sizes")
        w, h = parse_size(size)
        folder = ensure_dataset(data_root, w, h, videos_per_class=videos_per_class, val_per_class=val_per_class)
        for augment in augments.split(","):
            if augment not in AUGMENTS:
                raise click.BadParameter(f"{augment!r}: choose from {', '.join(AUGMENTS)}", param_hint="--augments")
            data = overrides(folder) + first_videos(folder / "val_list_rawframes.txt", test_videos)
            rows += run_cell(size, augment, data, small, Path(work_dir), device, say)
    click.echo(f"Kinetics-400 Data Benchmark grid ({arch}, {epochs} epoch(s), {videos_per_class} training videos per "
               f"class, {test_videos or 'all'} test videos, synthetic frames, device {device})")
    click.echo(format_grid(rows))
    click.echo(f"note: {SMOKE_NOTE}")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps({"rows": rows, "note": SMOKE_NOTE, "small": small.__dict__}, indent=2))


if __name__ == "__main__":
    bench()
