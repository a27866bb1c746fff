"""Faults that used to hang or kill a run: a NaN loss on one DDP rank, an error on one rank, unusable test data."""
from __future__ import annotations

import json
import math
import os
import queue
import shutil
import subprocess
import sys
import threading

import pytest
import torch

from jobs.recipes.config import load_config
from jobs.runtime.amp import Amp
from jobs.runtime.distributed import Dist
from jobs.runtime.weights import build_model
from jobs.training.loop import Trainer, build_sgd, skips_on_device, train_step
from pipelines.normalize import Normalize
from pipelines.sharding import Shard, epoch_order, shard_videos
from tests.helpers import ROOT, synthetic_overrides

EXACT = ["model.norm_eval=true", "model.dropout=0.0", "data.workers=1", "runtime.log_interval=1",
         "runtime.checkpoint_interval=1", "optim.lr=0.05", "optim.epochs=1", "data.videos_per_gpu=4"]
ENV = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")


def options(items):
    return [x for item in items for x in ("--cfg-options", item)]


class Tiny(torch.nn.Module):
    """(B, V, 3, H, W) float clips -> (B, 3) logits: mean colour, one linear layer."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.fc(x.mean(dim=(1, 3, 4)))


def tiny_trainer(loss_weight: float, lr=0.1, momentum=0.9, wd=0.01, clip=None) -> Trainer:
    torch.manual_seed(0)
    model = Tiny()
    opt = build_sgd(model.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return Trainer(model=model, optimizer=opt, scheduler=sched, scaler=scaler, amp=Amp(False, "cpu", torch.float32),
                   normalize=Normalize(), loss_weight=loss_weight, grad_clip=clip, dist=Dist())


def batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (4, 2, 3, 8, 8), dtype=torch.uint8, generator=g), torch.tensor([0, 1, 2, 1])


def test_skipped_step_is_a_device_side_noop_and_the_next_step_is_plain_sgd(monkeypatch):
    """A non-finite loss leaves parameters and momentum bit-identical without a host sync; the step after a skipped
    FIRST step is the textbook SGD update (buffer = g), i.e. the fused kernel met initialised buffers. Clipping at
    40 does not touch these small gradients (the factor is clamped to exactly 1)."""
    t = tiny_trainer(loss_weight=math.nan, clip=40.0)
    assert skips_on_device(t.optimizer)
    before = [p.detach().clone() for p in t.model.parameters()]

    def no_sync(*_):
        raise AssertionError("train_step synchronised with the host")
    with monkeypatch.context() as m:       # .item() / bool() on a tensor is how a host sync would show up
        m.setattr(torch.Tensor, "item", no_sync)
        m.setattr(torch.Tensor, "__bool__", no_sync)
        out = train_step(t, *batch(0))
    assert math.isnan(out.item())
    assert all(torch.equal(a, b) for a, b in zip(before, t.model.parameters()))
    assert all(torch.count_nonzero(t.optimizer.state[p]["momentum_buffer"]) == 0 for p in t.model.parameters())

    # The next, finite step from the same weights: p' = p - lr * (g + wd * p) (momentum buffer 0 -> g + wd * p).
    t.loss_weight = 1.0
    clips, labels = batch(1)
    ref = Tiny()
    ref.load_state_dict(t.model.state_dict())
    torch.nn.functional.cross_entropy(ref(t.normalize(clips, t.device)), labels).backward()
    expected = [p.detach() - 0.1 * (p.grad + 0.01 * p.detach()) for p in ref.parameters()]
    loss = train_step(t, clips, labels)
    assert math.isfinite(loss.item())
    for got, want in zip(t.model.parameters(), expected):
        torch.testing.assert_close(got.detach(), want, rtol=1e-6, atol=1e-7)


def test_non_finite_gradient_norm_also_skips():
    """Finite loss, but a gradient overflows: the clipped norm is not finite, the step is skipped."""
    t = tiny_trainer(loss_weight=1.0, clip=40.0)
    before = [p.detach().clone() for p in t.model.parameters()]
    t.model.fc.weight.register_hook(lambda g: g * math.inf)
    assert math.isnan(train_step(t, *batch(0)).item())
    assert all(torch.equal(a, b) for a, b in zip(before, t.model.parameters()))


def test_plain_optimizer_still_skips_on_the_host():
    """An optimiser without the device-side hook (plain SGD) takes the host path and skips just the same."""
    t = tiny_trainer(loss_weight=math.nan)
    t.optimizer = torch.optim.SGD(t.model.parameters(), lr=0.1, momentum=0.9)
    t.scheduler = torch.optim.lr_scheduler.LambdaLR(t.optimizer, lambda _: 1.0)
    assert not skips_on_device(t.optimizer)
    before = [p.detach().clone() for p in t.model.parameters()]
    assert math.isnan(train_step(t, *batch(0)).item())
    assert all(torch.equal(a, b) for a, b in zip(before, t.model.parameters()))


@pytest.mark.timeout(600)
def test_nan_loss_on_one_rank_skips_the_step_on_both(synthetic_root, tmp_path):
    """Rank 1's loss at step 2 is NaN (its gradient is not): both ranks skip step 2, none waits, weights agree."""
    out = tmp_path / "out"
    args = ["tsn_r18_synthetic_rgb", "--device", "cpu", "--no-validate", "--work-dir", str(tmp_path / "work")]
    args += options(synthetic_overrides(synthetic_root) + EXACT)
    # Before the fix rank 1 skipped backward alone and rank 0 waited in the gradient all-reduce for 30 minutes.
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29541",
                          "tests/jobs/training/nan_rank_driver.py", str(out), "1", "2", "--", *args],
                         cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:                       # 24 videos / 2 ranks / 4 per batch = 3 steps
        assert len(r["losses"]) == 3
        assert math.isnan(r["losses"][1]) and math.isfinite(r["losses"][0]) and math.isfinite(r["losses"][2])
        assert r["unchanged"] is True     # parameters and momentum bit-identical across the skipped step
    a, b = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    init = build_model(load_config("tsn_r18_synthetic_rgb").model).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.isfinite(v).all() for v in a.values() if v.is_floating_point())
    assert sum(not torch.equal(a[k], init[k]) for k in a if a[k].is_floating_point()) > 10   # steps 1, 3 trained
    log = (tmp_path / "work" / "train.log").read_text()
    assert "iters 2-2: 1 of 1 steps skipped" in log
    records = [json.loads(line) for line in (tmp_path / "work" / "log.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in records if r.get("mode") == "train"] == [0, 1, 0]


def rank_entries(cfg, rank: int, world: int, num_videos: int):
    """Videos `rank` reads in epoch 0, in order (the same pure functions every rank runs)."""
    order = epoch_order(num_videos, epoch=0, seed=cfg.runtime.seed, shuffle=True)
    return shard_videos(order, Shard(rank, world), pad_mark=False)


@pytest.mark.timeout(600)
def test_error_on_one_rank_ends_the_job_promptly(synthetic_root, tmp_path):
    """Rank 1's second batch holds a missing frame folder under the raise policy: the job exits non-zero within 60 s
    of rank 1's error, and the output names rank 1 and the folder."""
    data = tmp_path / "data"
    shutil.copytree(synthetic_root, data, ignore=shutil.ignore_patterns("videos"))
    overrides = synthetic_overrides(data) + EXACT + ["data.on_error=raise"]
    cfg = load_config("tsn_r18_synthetic_rgb", overrides)
    lines = (data / "train_list_rawframes.txt").read_text().splitlines()
    victim = lines[rank_entries(cfg, 1, 2, len(lines))[4]].split()[0]       # rank 1, batch 2, first video
    shutil.rmtree(data / "rawframes" / victim)
    args = ["jobs/train.py", "tsn_r18_synthetic_rgb", "--device", "cpu", "--no-validate",
            "--work-dir", str(tmp_path / "work")] + options(overrides)
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                             "--master_port=29542", *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines_out: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines_out.put(x) for x in proc.stdout], daemon=True)
    reader.start()
    seen = []
    try:
        while not any(victim in x for x in seen):       # start-up, then rank 1 reaches its second batch
            seen.append(lines_out.get(timeout=400))
        # Before the fix the failing rank's exit could hang and rank 0 sat in the all-reduce for 30 minutes.
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    reader.join(timeout=30)
    while not lines_out.empty():
        seen.append(lines_out.get())
    text = "".join(seen)
    assert code != 0
    assert "[rank 1/2]" in text and victim in text


# ---------------------------------------------------------------- tsn test on damaged data

SMALL_TEST = ["data.workers=1", "test.sampler.num_clips=3"]   # 3 test-mode clips of 24 frames: frames 5, 13, 21




@pytest.fixture()
def damaged(synthetic_root, tmp_path):
    """A copy of the synthetic val data with, on list lines 2 and 5, a missing and a truncated video (moov atom cut
    off: unopenable), a missing frame folder and a folder missing a SAMPLED frame, and on line 8 a folder missing a
    frame the 3-clip test sampler never reads (offsets int(8 * (i + 0.5)) = 4, 12, 20 -> files 5, 13, 21)."""
    data = tmp_path / "data"
    shutil.copytree(synthetic_root, data)
    lines = (data / "val_list_rawframes.txt").read_text().splitlines()
    names = [line.split()[0] for line in lines]
    (data / "videos" / f"{names[1]}.mp4").unlink()
    video = data / "videos" / f"{names[4]}.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    shutil.rmtree(data / "rawframes" / names[1])
    (data / "rawframes" / names[4] / "img_00013.jpg").unlink()
    (data / "rawframes" / names[7] / "img_00002.jpg").unlink()
    return data, names


def tsn_test(recipe, checkpoint, data, kind, *extra):
    from click.testing import CliRunner

    from jobs.cli import cli
    args = ["test", recipe, str(checkpoint), "--device", "cpu", *extra]
    return CliRunner().invoke(cli, args + options(synthetic_overrides(data, kind) + SMALL_TEST))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("recipe,kind,reasons", [
    ("tsn_r18_synthetic_video_rgb", "videos", ("missing", "unreadable")),
    ("tsn_r18_synthetic_rgb", "rawframes", ("missing file", "missing file")),
])
def test_allow_partial_evaluates_every_readable_video(damaged, random_checkpoint, tmp_path, recipe, kind, reasons):
    data, names = damaged
    listed = data / f"val_list_{kind}.txt"
    result = tsn_test(recipe, random_checkpoint, data, kind, "--allow-partial", "--out", str(tmp_path / "p.json"))
    assert result.exit_code == 0, result.output
    assert "evaluated 10 of 12 videos" in result.output
    skipped = json.loads((tmp_path / "p.json").read_text())["skipped"]
    assert [s["line"] for s in skipped] == [f"{listed}:2", f"{listed}:5"]
    for s, name, reason in zip(skipped, (names[1], names[4]), reasons):
        assert name in s["path"] and reason in s["reason"]
        assert f"{s['line']}: {s['path']}: " in result.output
    # The same metrics as a list of just the readable lines: no stand-in for a skipped video was counted.
    lines = listed.read_text().splitlines()
    clean = data / f"clean_{kind}.txt"
    clean.write_text("".join(line + "\n" for i, line in enumerate(lines) if i not in (1, 4)))
    whole = tsn_test(recipe, random_checkpoint, data, kind, "--list", str(clean), "--prefix",
                     str(data / ("videos" if kind == "videos" else "rawframes")), "--out", str(tmp_path / "c.json"))
    assert whole.exit_code == 0, whole.output
    assert "evaluated 10 of 10 videos" in whole.output
    partial, full = (json.loads((tmp_path / f).read_text())["metrics"] for f in ("p.json", "c.json"))
    assert partial.keys() == full.keys() and all(abs(partial[k] - full[k]) < 1e-9 for k in full)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("recipe,kind", [("tsn_r18_synthetic_video_rgb", "videos"), ("tsn_r18_synthetic_rgb",
                                                                                       "rawframes")])
def test_without_allow_partial_refuses_up_front_listing_every_unusable_file(damaged, random_checkpoint, recipe,
                                                                             kind):
    data, names = damaged
    listed = data / f"val_list_{kind}.txt"
    result = tsn_test(recipe, random_checkpoint, data, kind)
    assert result.exit_code != 0
    assert "2 unusable videos" in result.output
    assert f"{listed}:2: " in result.output and f"{listed}:5: " in result.output
    assert names[1] in result.output and names[4] in result.output
    assert f"{listed}:8:" not in result.output            # an unsampled frame is no reason to refuse
    assert "test protocol" not in result.output and "evaluated" not in result.output   # before any work
