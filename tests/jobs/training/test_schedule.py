"""jobs.training.schedule.StepSchedule and the trainer's LambdaLR wiring against MMAction2's step policy.

MMAction2's TSN configs use `lr_config = dict(policy='step', step=[s1, s2])` (mmcv 1.x `StepLrUpdaterHook`,
gamma 0.1, by_epoch=True): with the 0-based epoch e, lr = base_lr x gamma ** (number of s_i with e >= s_i).
The optional warm-up is mmcv's `warmup='linear'`, per iteration i < warmup_iters:
    lr = regular_lr x (1 - (1 - i / warmup_iters) x (1 - warmup_ratio))
The expected numbers below are written out by hand from those two rules.
"""
from __future__ import annotations

import pytest
import torch

from jobs.recipes.config import load_config
from jobs.training import trainer
from jobs.training.schedule import StepSchedule
from tests.helpers import synthetic_overrides


def factors(schedule: StepSchedule, n: int) -> list[float]:
    return [schedule(i) for i in range(n)]


def test_milestones_are_epoch_boundaries_in_iterations():
    # 4 iterations an epoch, steps [2, 3]: epochs 0-1 (iterations 0-7) x1, epoch 2 (8-11) x0.1, epoch 3+ x0.01
    s = StepSchedule(iters_per_epoch=4, steps=(2, 3))
    expected = [1.0] * 8 + [0.1] * 4 + [0.01] * 4
    assert factors(s, 16) == pytest.approx(expected, rel=1e-12)
    # the last iteration before a milestone still has the old factor, the first one after it the new one
    assert (s(7), s(8), s(11), s(12)) == pytest.approx((1.0, 0.1, 0.1, 0.01), rel=1e-12)
    assert s(10_000) == pytest.approx(0.01, rel=1e-12)          # no third milestone


def test_gamma_powers_and_constant_schedule():
    s = StepSchedule(iters_per_epoch=1, steps=(1, 2, 3), gamma=0.5)
    assert factors(s, 5) == pytest.approx([1.0, 0.5, 0.25, 0.125, 0.125], rel=1e-12)
    assert factors(StepSchedule(iters_per_epoch=3, steps=()), 7) == [1.0] * 7      # step=[]: constant lr
    # a milestone at epoch 0 applies from the very first iteration (e >= s_i with e = 0)
    assert StepSchedule(iters_per_epoch=5, steps=(0,))(0) == pytest.approx(0.1, rel=1e-12)


def test_linear_warmup_from_ratio_to_one():
    # warm-up over 5 iterations from 0.1: 0.1, 0.28, 0.46, 0.64, 0.82, then 1 (steps of 0.9 / 5 = 0.18)
    s = StepSchedule(iters_per_epoch=100, steps=(), warmup_iters=5, warmup_ratio=0.1)
    assert factors(s, 7) == pytest.approx([0.1, 0.28, 0.46, 0.64, 0.82, 1.0, 1.0], rel=1e-12)
    # warmup_ratio 0.5 over 2 iterations: 0.5, 0.75, 1
    s = StepSchedule(iters_per_epoch=10, steps=(), warmup_iters=2, warmup_ratio=0.5)
    assert factors(s, 3) == pytest.approx([0.5, 0.75, 1.0], rel=1e-12)


def test_warmup_multiplies_the_decayed_lr_across_a_milestone():
    # 2 iterations an epoch, step at epoch 1, warm-up over 4 iterations from 0.2 (0.2, 0.4, 0.6, 0.8):
    # iterations 2 and 3 are in epoch 1 (x0.1) and still warming up -> 0.06, 0.08; iteration 4 -> 0.1
    s = StepSchedule(iters_per_epoch=2, steps=(1,), warmup_iters=4, warmup_ratio=0.2)
    assert factors(s, 6) == pytest.approx([0.2, 0.4, 0.06, 0.08, 0.1, 0.1], rel=1e-12)


def mmcv_step_lr(base: float, it: int, iters_per_epoch: int, steps, warmup_iters: int, ratio: float) -> float:
    """The lr MMAction2 uses in iteration `it` (mmcv StepLrUpdaterHook, gamma 0.1, by_epoch, linear warm-up)."""
    epoch = it // iters_per_epoch
    regular = base
    for s in steps:
        if epoch >= s:
            regular *= 0.1
    if it >= warmup_iters:
        return regular
    return regular * (1 - (1 - it / warmup_iters) * (1 - ratio))


def test_trainer_lr_sequence_matches_mmaction2_step_policy(synthetic_root, tmp_path, monkeypatch):
    """train() builds the schedule from the recipe (iterations per epoch = len(train loader)); the lr each optimiser
    step uses must follow MMAction2's policy. The epoch body is replaced by one that only steps the optimiser and the
    scheduler as engine.train_step does, so what is checked is the wiring, not the network."""
    seen = []          # (global iteration, lr of every param group) at the moment its optimizer.step() runs

    def fake_epoch(t, loader, epoch, first_iter, log, log_interval, stop=None):
        it = first_iter
        for _ in range(len(loader)):
            seen.append((it, [g["lr"] for g in t.optimizer.param_groups]))
            t.optimizer.step()        # no gradients: parameters stay, but the step counter keeps LambdaLR quiet
            t.scheduler.step()
            it += 1
        return it

    monkeypatch.setattr(trainer, "train_one_epoch", fake_epoch)
    # 24 training videos / 8 = 3 iterations an epoch; 3 epochs, steps [1, 2], warm-up 2 epochs (6 iterations)
    cfg = load_config("tsn_r18_synthetic_rgb", synthetic_overrides(synthetic_root) + [
        "data.workers=1", "data.videos_per_gpu=8", "optim.epochs=3", "optim.lr=0.02", "optim.lr_steps=[1, 2]",
        "optim.warmup_epochs=2", "optim.warmup_ratio=0.1", "runtime.checkpoint_interval=100"])
    trainer.train(cfg, str(tmp_path / "work"), validate_every=False, device="cpu")
    # by hand: 0.02 x (0.1, 0.25, 0.4), 0.002 x (0.55, 0.7, 0.85), 0.0002 x 3
    hand = [0.002, 0.005, 0.008, 0.0011, 0.0014, 0.0017, 0.0002, 0.0002, 0.0002]
    assert [it for it, _ in seen] == list(range(9))
    assert all(len(set(lrs)) == 1 for _, lrs in seen)            # fc_lr5 off: every group has the recipe lr
    assert [lrs[0] for _, lrs in seen] == pytest.approx(hand, rel=1e-9)
    assert hand == pytest.approx([mmcv_step_lr(0.02, i, 3, (1, 2), 6, 0.1) for i in range(9)], rel=1e-9)


def test_lambda_lr_steps_once_per_iteration():
    """A bare LambdaLR over StepSchedule, stepped like engine.train_step: the lr read after the k-th
    scheduler.step() is the lr of iteration k."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, StepSchedule(iters_per_epoch=2, steps=(1, 2)))
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(6):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    # iterations 0-1 epoch 0, 2-3 epoch 1, 4-6 epoch 2+
    assert lrs == pytest.approx([0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001, 0.0001], rel=1e-9)
