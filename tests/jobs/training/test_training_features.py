"""`tsn train` features checked through what a run leaves behind (log.jsonl, checkpoints, TensorBoard events, score
dumps), each against an independent expectation: a multi-label (BCE) recipe end to end, `--auto-scale-lr`,
`--load-from` with a head of another class count, gradient clipping that clips, `--tensorboard`, and the lr schedule
as the real training loop applies it, iteration by iteration.

Every run is a tiny ResNet-18 TSN on the session's synthetic dataset (24 training videos of 80x64 frames, 56x56
crops), driven through the `tsn` command line (click's CliRunner on `jobs.cli.cli`), so the tests survive a
reshuffle of the training internals.
"""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from jobs.cli import cli
from model.tsn import TSNConfig, build_tsn
from tests.helpers import ROOT, synthetic_overrides

RECIPE = "tsn_r18_synthetic_rgb"        # lr 0.02 for videos_per_gpu = 16, grad_clip 40, no warm-up
MMIT = "tsn_r101_1x1x5_50e_mmit_rgb"    # the multi-label recipe: BCE x 160, fc_lr5, per-sample mAP
TRAIN_VIDEOS = 24                       # the synthetic_root fixture: 12 classes x 2 training videos
# A small, quiet run: one worker, every iteration logged, fp32.
SMALL = ["data.workers=1", "runtime.log_interval=1", "runtime.amp=false", "runtime.checkpoint_interval=1"]


def train(work_dir: Path, recipe: str, overrides: list[str], *flags: str):
    args = ["train", recipe, "--work-dir", str(work_dir), "--device", "cpu", *flags, "--cfg-options", *overrides]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def json_log(work_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (work_dir / "log.jsonl").read_text().splitlines()]


def train_entries(work_dir: Path) -> list[dict]:
    return [e for e in json_log(work_dir) if e["mode"] == "train"]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def trainable(state: dict) -> dict[str, torch.Tensor]:
    """The parameters of a TSN state dict (BN running statistics and counters are buffers, not parameters)."""
    return {k: v.double() for k, v in state.items() if not k.endswith(("running_mean", "running_var",
                                                                        "num_batches_tracked"))}


def save_model(path: Path, cfg: TSNConfig, seed: int, edit=None) -> Path:
    """A checkpoint in our format ({"model": state_dict}) of a random TSN, BN statistics and affine made non-trivial
    (so that a loader that silently skipped them would be caught)."""
    torch.manual_seed(seed)
    model = build_tsn(cfg)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        if edit:
            edit(model)
    torch.save({"model": model.state_dict()}, path)
    return path


# ------------------------------------------------------------------------------------------ multi-label (BCE)

def colour(label: int) -> int:
    """The synthetic label is colour * 4 + direction (pipelines/synthetic_data.py): a second label 12 + colour."""
    return 12 + label // 4


def multi_label_list(src: Path, dst: Path) -> np.ndarray:
    """`<vid> <frames> <label> <12 + colour>` for every line of `src` (MMAction2's multi-label rawframe lines);
    returns the (N, 15) multi-hot targets in list order."""
    lines, targets = [], []
    for line in src.read_text().splitlines():
        vid, frames, label = line.split()
        lines.append(f"{vid} {frames} {label} {colour(int(label))}\n")
        row = np.zeros(15)
        row[[int(label), colour(int(label))]] = 1.0
        targets.append(row)
    dst.write_text("".join(lines))
    return np.stack(targets)


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """AP of one ranking without ties: the mean, over the positives, of the precision at each positive's rank."""
    order = np.argsort(-scores, kind="stable")
    hits = truth[order] > 0
    ranks = np.flatnonzero(hits) + 1                  # 1-based ranks of the positives
    return float(np.mean(np.arange(1, len(ranks) + 1) / ranks))


def test_multi_label_recipe_trains_with_bce_and_reports_its_map(synthetic_root, tmp_path):
    """The MMIT recipe (BCELossWithLogits x 160 on multi-hot targets, fc_lr5, v0.7.0's per-sample mAP) shrunk to a
    ResNet-18 on 56x56 crops of a 15-class multi-label version of the synthetic set.

    The first step's loss is predictable: the starting checkpoint's classifier has weight 0 and bias b, so every
    video's logits are b whatever its pixels, and one batch holds all 24 training videos (the mean over the batch
    does not depend on the shuffle): loss = 160 x mean over videos and classes of softplus(b) - y b."""
    train_targets = multi_label_list(synthetic_root / "train_list_rawframes.txt", tmp_path / "train.txt")
    val_targets = multi_label_list(synthetic_root / "val_list_rawframes.txt", tmp_path / "val.txt")
    assert (val_targets.sum(axis=0) > 0).all()          # every class has a positive: per-class AP is defined

    bias = torch.linspace(-2.0, 1.5, 15)

    def constant_logits(model):
        model.head.fc.weight.zero_()
        model.head.fc.bias.copy_(bias)

    start = save_model(tmp_path / "start.pth", TSNConfig(arch="resnet18", num_classes=15, pretrained=None), 0,
                       constant_logits)
    prefix = synthetic_root / "rawframes"
    tiny = [f"data.{s}_prefix={prefix}" for s in ("train", "val", "test")] + [
        f"data.train_list={tmp_path / 'train.txt'}", f"data.val_list={tmp_path / 'val.txt'}",
        f"data.test_list={tmp_path / 'val.txt'}", "model.arch=resnet18", "model.pretrained=none",
        "model.num_classes=15", f"data.videos_per_gpu={TRAIN_VIDEOS}", "optim.epochs=1", "runtime.eval_interval=1",
        "train.augment.short_side=64", "train.augment.crop_size=56", "train.augment.out_size=56",
        # the training-time val protocol = the test protocol (5 clips, centre 56 of short side 64): same scores
        "val.augment.short_side=64", "val.augment.crop_size=56", "test.augment.short_side=64",
        "test.augment.crop_size=56"] + SMALL
    work = tmp_path / "work"
    train(work, MMIT, tiny, "--load-from", str(start))

    (first,) = train_entries(work)                     # one iteration: the whole training list in one batch
    b = bias.double().numpy()
    softplus = np.log1p(np.exp(b))
    expected = 160.0 * np.mean(softplus[None, :] - train_targets * b[None, :])
    assert first["loss"] == pytest.approx(expected, rel=1e-5)
    # what softmax cross-entropy on the same multi-hot targets would have logged instead
    log_softmax = b - np.log(np.exp(b).sum())
    assert abs(160.0 * np.mean(-(train_targets * log_softmax).sum(axis=1)) - expected) > 1.0

    (val,) = [e for e in json_log(work) if e["mode"] == "val"]
    assert set(val) == {"mode", "epoch", "mmit_mean_average_precision"}     # the recipe's metric, nothing else

    # `tsn test` of the trained checkpoint (the config stored in it): the dumped scores give the mAPs by hand.
    out, dump = tmp_path / "metrics.json", tmp_path / "scores.npy"
    result = CliRunner().invoke(cli, ["test", str(work / "epoch_1.pth"), "--device", "cpu", "--dump", str(dump),
                                      "--out", str(out), "--eval", "mmit_mean_average_precision",
                                      "--eval", "mean_average_precision"])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    scores = np.load(dump).astype(np.float64)
    assert scores.shape == (12, 15)
    assert all(len(np.unique(row)) == 15 for row in scores)            # no ties: the hand AP is exact
    per_sample = np.mean([average_precision(scores[v], val_targets[v]) for v in range(12)])
    per_class = np.mean([average_precision(scores[:, c], val_targets[:, c]) for c in range(15)])
    assert abs(per_sample - per_class) > 1e-3          # the two definitions really differ on these scores
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["mmit_mean_average_precision"] == pytest.approx(per_sample, abs=1e-9)
    assert metrics["mean_average_precision"] == pytest.approx(per_class, abs=1e-9)
    # the training-time evaluation used the same protocol on the same weights
    assert val["mmit_mean_average_precision"] == pytest.approx(per_sample, abs=1e-6)


# -------------------------------------------------------------------------------------------- --auto-scale-lr

# MMAction2 v0.24.1 mmaction/core/optimizer/tsm_optimizer_constructor.py (fc_lr5=True): the lr multiplier of each
# parameter group.
FC_LR5 = {"first_conv_weight": 1, "first_conv_bias": 2, "normal_weight": 1, "normal_bias": 2, "bn": 1,
          "lr5_weight": 5, "lr10_bias": 10}


def test_auto_scale_lr_is_linear_in_the_global_batch_over_the_recipes_batch(synthetic_root, tmp_path):
    """The recipe's lr 0.02 is for 8 GPUs x its videos_per_gpu = 16, i.e. 128 videos (MMAction2's "this lr is used
    for 8 gpus"; mmengine `Runner.scale_lr`: lr x world_size x batch_size / base_batch_size). One process with
    --cfg-options data.videos_per_gpu=4 trains on 4 videos: lr 0.02 x 4 / 128 in every group, times the group's
    fc_lr5 multiplier."""
    work = tmp_path / "work"
    overrides = synthetic_overrides(synthetic_root) + SMALL + [
        "data.videos_per_gpu=4", "optim.epochs=1", "optim.fc_lr5=true", "optim.lr_steps=[]"]
    train(work, RECIPE, overrides, "--auto-scale-lr", "--no-validate")
    lr = 0.02 * (1 * 4) / (8 * 16)
    lrs = [e["lr"] for e in train_entries(work)]
    assert lrs == pytest.approx([lr] * (TRAIN_VIDEOS // 4), rel=1e-9)
    groups = {g["name"]: g["lr"] for g in load(work / "epoch_1.pth")["optimizer"]["param_groups"]}
    # ResNet convolutions have no bias: those two groups are empty, and left out
    assert set(groups) == set(FC_LR5) - {"first_conv_bias", "normal_bias"}
    assert groups == pytest.approx({name: lr * FC_LR5[name] for name in groups}, rel=1e-9)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_auto_scale_lr_counts_every_rank_of_a_ddp_run(synthetic_root, tmp_path):
    """2 processes (torchrun, gloo) x 2 videos: a global batch of 4, so the same lr 0.02 x 4 / 128 as above."""
    with socket.socket() as s:                          # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    work = tmp_path / "work"
    overrides = synthetic_overrides(synthetic_root) + SMALL + ["data.videos_per_gpu=2", "optim.epochs=1"]
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                          "-m", "jobs.cli", "train", RECIPE, "--work-dir", str(work), "--device", "cpu",
                          "--auto-scale-lr", "--no-validate", "--cfg-options", *overrides],
                         cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "world size 2" in run.stdout
    lrs = [e["lr"] for e in train_entries(work)]
    assert lrs == pytest.approx([0.02 * (2 * 2) / (8 * 16)] * (TRAIN_VIDEOS // 4), rel=1e-9)


# ------------------------------------------------------------------------------- --load-from with a new head

def test_load_from_another_class_count_redraws_the_head_and_keeps_the_backbone(synthetic_root, tmp_path):
    """Fine-tuning as the ActivityNet recipes do (a 400-class K400 checkpoint into a 200-class model): a 5-class
    checkpoint loaded into the 12-class recipe. The backbone (convolutions, BN affine and statistics) must be the
    checkpoint's; the classifier is drawn afresh as the recipe says, N(0, init_std^2) weights and zero bias
    (MMAction2 TSNHead.init_weights, normal_init(fc_cls, std=init_std)).

    What the model was right after loading is read from epoch_1.pth: the run takes its steps at lr 1e-30 (each
    update is far below the float32 spacing of the weights, so no weight moves) and with BN frozen (norm_eval)."""
    start = save_model(tmp_path / "k5.pth", TSNConfig(arch="resnet18", num_classes=5, pretrained=None), 7)
    init_std = 0.03                                     # not the default 0.01: the recipe's value must be used
    overrides = synthetic_overrides(synthetic_root) + SMALL + [
        "data.videos_per_gpu=12", "optim.epochs=1", "optim.lr=1e-30", "model.norm_eval=true",
        f"model.init_std={init_std}"]
    result = train(tmp_path / "work", RECIPE, overrides, "--load-from", str(start), "--no-validate")
    assert "5 -> 12 classes" in result.output

    before, after = load(start)["model"], load(tmp_path / "work" / "epoch_1.pth")["model"]
    backbone = [k for k in before if k.startswith("backbone.")]
    assert set(after) == set(before) and len(backbone) > 100
    for key in backbone:
        assert torch.equal(after[key], before[key]), key
    weight, bias = after["head.fc.weight"].double(), after["head.fc.bias"]
    assert weight.shape == (12, 512) and bias.shape == (12,)
    assert bias.abs().max() < 1e-20                     # zero, up to the 1e-30-lr steps
    # 6144 draws of N(0, 0.03^2): the sample std within 5% (5 standard errors), the mean within 5 standard errors,
    # and 68.3% of the draws within one std (a uniform draw of the same std has 57.7%: the law, not only its scale).
    n = weight.numel()
    assert weight.std().item() == pytest.approx(init_std, rel=0.05)
    assert abs(weight.mean().item()) < 5 * init_std / math.sqrt(n)
    inside = (weight.abs() < init_std).double().mean().item()
    assert inside == pytest.approx(0.6827, abs=5 * math.sqrt(0.6827 * 0.3173 / n))


# --------------------------------------------------------------------------------------- gradient clipping

def test_grad_clip_scales_the_update_to_max_norm(synthetic_root, random_checkpoint, tmp_path):
    """One SGD step (momentum 0, weight decay 0, lr 1) from the same checkpoint on the same batch, with and without
    optim.grad_clip: the update is -g, resp. -g x max_norm / |g| (mmcv OptimizerHook: clip_grad_norm_ over every
    parameter, L2). So the clipped update has norm max_norm and the direction of the unclipped one."""
    max_norm = 0.5
    common = synthetic_overrides(synthetic_root) + SMALL + [
        f"data.videos_per_gpu={TRAIN_VIDEOS}", "optim.epochs=1", "optim.lr=1.0", "optim.momentum=0.0",
        "optim.weight_decay=0.0", "model.dropout=0.0"]
    train(tmp_path / "free", RECIPE, common + ["optim.grad_clip=none"], "--load-from", str(random_checkpoint),
          "--no-validate")
    train(tmp_path / "clip", RECIPE, common + [f"optim.grad_clip={max_norm}"], "--load-from",
          str(random_checkpoint), "--no-validate")
    w0 = trainable(load(random_checkpoint)["model"])
    free = trainable(load(tmp_path / "free" / "epoch_1.pth")["model"])
    clip = trainable(load(tmp_path / "clip" / "epoch_1.pth")["model"])
    d_free = torch.cat([(free[k] - w0[k]).flatten() for k in w0])      # = -lr x g
    d_clip = torch.cat([(clip[k] - w0[k]).flatten() for k in w0])
    g_norm = d_free.norm().item()
    assert g_norm > 4 * max_norm                        # this configuration really exceeds max_norm
    assert d_clip.norm().item() == pytest.approx(max_norm, rel=1e-3)
    torch.testing.assert_close(d_clip, d_free * (max_norm / g_norm), rtol=0, atol=1e-3 * d_clip.abs().max().item())


# ------------------------------------------------------------- the lr schedule in the real loop; TensorBoard

ITERS = TRAIN_VIDEOS // 4                               # iterations per epoch at videos_per_gpu 4


def mmcv_lr(base: float, it: int, iters_per_epoch: int, steps, warmup_iters: int, ratio: float) -> float:
    """mmcv 1.x StepLrUpdaterHook (by_epoch, gamma 0.1) with warmup='linear', by hand: the lr of iteration `it`."""
    lr = base * 0.1 ** sum(it // iters_per_epoch >= s for s in steps)
    if it < warmup_iters:
        lr *= 1 - (1 - it / warmup_iters) * (1 - ratio)
    return lr


@pytest.fixture(scope="module")
def scheduled_run(synthetic_root, tmp_path_factory):
    """3 epochs of 6 iterations; linear warm-up over the first 2 epochs (12 iterations) from 0.1 x lr, across the
    lr x 0.1 step at epoch 1 (0-based); validation after every epoch; TensorBoard on."""
    work = tmp_path_factory.mktemp("scheduled") / "work"
    overrides = synthetic_overrides(synthetic_root) + SMALL + [
        "data.videos_per_gpu=4", "optim.epochs=3", "optim.lr=0.02", "optim.lr_steps=[1]", "optim.warmup_epochs=2",
        "optim.warmup_ratio=0.1", "runtime.eval_interval=1"]
    train(work, RECIPE, overrides, "--tensorboard")
    return work


def test_lr_follows_the_schedule_every_iteration_of_the_real_loop(scheduled_run):
    entries = train_entries(scheduled_run)
    assert [(e["epoch"], e["iter"]) for e in entries] == [(ep, i) for ep in (1, 2, 3) for i in range(1, ITERS + 1)]
    expected = [mmcv_lr(0.02, it, ITERS, (1,), 2 * ITERS, 0.1) for it in range(3 * ITERS)]
    assert [e["lr"] for e in entries] == pytest.approx(expected, rel=1e-9)
    # written out: 0.02 x (0.1 + 0.075 k) for k = 0..5, then 0.002 x (0.1 + 0.075 k) for k = 6..11, then 0.002
    hand = [0.02 * (0.1 + 0.075 * k) for k in range(6)] + [0.002 * (0.1 + 0.075 * k) for k in range(6, 12)]
    assert expected == pytest.approx(hand + [0.002] * 6, rel=1e-9)
    # the scheduler inside each epoch checkpoint counted iterations, not epochs
    for epoch in (1, 2, 3):
        state = load(scheduled_run / f"epoch_{epoch}.pth")
        assert state["scheduler"]["last_epoch"] == epoch * ITERS
        assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(
            mmcv_lr(0.02, epoch * ITERS, ITERS, (1,), 2 * ITERS, 0.1), rel=1e-9)


def test_tensorboard_events_hold_the_training_and_validation_scalars(scheduled_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((scheduled_run / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(events[0]))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/lr", "train/loss", "val/top1_acc", "val/top5_acc", "val/mean_class_accuracy"} <= tags
    # one point per logged iteration at the global step, the values of log.jsonl (float32 in the event file)
    entries = train_entries(scheduled_run)
    for tag in ("lr", "loss"):
        points = acc.Scalars(f"train/{tag}")
        assert [p.step for p in points] == list(range(1, 3 * ITERS + 1))
        assert [p.value for p in points] == pytest.approx([e[tag] for e in entries], rel=1e-6)
    # validation after every epoch, at the step of that epoch's last iteration; accuracies of 12 videos: k / 12
    val = [e for e in json_log(scheduled_run) if e["mode"] == "val"]
    points = acc.Scalars("val/top1_acc")
    assert [p.step for p in points] == [ITERS, 2 * ITERS, 3 * ITERS]
    assert [p.value for p in points] == pytest.approx([e["top1_acc"] for e in val], rel=1e-6)
    assert all(abs(p.value * 12 - round(p.value * 12)) < 1e-5 for p in points)
