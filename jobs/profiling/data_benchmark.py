"""`tsn bench data-benchmark`: the model zoo's "Kinetics-400 Data Benchmark" grid, shortened to run on one machine.

Grid: preprocessing (340x256, short side 320, short side 256) x training augmentation (MultiScaleCrop,
RandomResizedCrop) x test protocol (25 frames x 10 crops, 25 frames x 3 crops), with the shipped
tsn_r50_{augmentation}_{size}_1x1x3_100e_kinetics400_rgb and tsn_r50_test_{size}_1x1x25_{10,3}crop recipes, made
small with --cfg-options (ResNet-18, random init, few videos, few epochs). Each cell reports accuracy and the
throughput of the pipelines it ran: training clips/s and test videos/s (views/s). By default the data is the
synthetic set generated at each frame size: its accuracies are a smoke check, not model-zoo numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jobs.profiling.report import table
from jobs.recipes.config import load_config

SIZES = {"340x256": "340x256", "320p": "short-side 320", "256p": "short-side 256"}
AUGMENTS = {"multiscalecrop": "MultiScaleCrop", "randomresizedcrop": "RandomResizedCrop"}
BENCH_PROTOCOLS = {"10crop": "25x10 frames", "3crop": "25x3 frames"}
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
    from jobs.profiling.data import prepare_data, profile_data
    d = profile_data(cfg, prepare_data(cfg, split, device=device, detail=False), batches=batches, warmup=2,
                     device=device, say=lambda m: None)
    return {"clips_per_s": d["dali"]["clips_per_s"], "views_per_s": d["dali"]["views_per_s"]}


def run_cell(size: str, augment: str, data: list[str], small: Small, work_dir: Path, device: str, say) -> list[dict]:
    """Train one (size, augmentation) recipe, then test it with both protocols; one row per protocol."""
    from jobs.evaluation.tester import test_checkpoint
    from jobs.training.trainer import train
    cfg = load_config(train_recipe(augment, size), small.overrides(data))
    cell_dir = work_dir / cfg.name
    say(f"[{size} {augment}] training {small.arch} for {small.epochs} epochs")
    train(cfg, str(cell_dir), validate_every=False, device="cuda" if device == "gpu" else "cpu")
    checkpoint = cell_dir / f"epoch_{small.epochs}.pth"
    train_speed = clips_per_s(cfg, "train", small.throughput_batches, device)
    rows = []
    for protocol in BENCH_PROTOCOLS:
        tcfg = load_config(eval_recipe(size, protocol), small.overrides(data) + ["data.train_list=", "data.val_list="])
        say(f"[{size} {augment}] testing {BENCH_PROTOCOLS[protocol]}")
        result = test_checkpoint(tcfg, str(checkpoint), device="cuda" if device == "gpu" else "cpu", say=lambda m: None)
        metrics = result["metrics"]
        test_speed = clips_per_s(tcfg, "test", small.throughput_batches, device)
        rows.append({"config": cfg.name, "resolution": SIZES[size], "training augmentation": AUGMENTS[augment],
                     "testing protocol": BENCH_PROTOCOLS[protocol], "top1 acc": 100 * metrics["top1_acc"],
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


