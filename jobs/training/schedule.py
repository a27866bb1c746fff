"""The learning-rate schedule of every recipe: MMAction2's step policy (lr x gamma at each milestone epoch), with an
optional linear warm-up (mmcv `StepLrUpdaterHook`, `warmup="linear"`), evaluated per iteration."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepSchedule:
    """lr factor at iteration `it`: gamma ** (milestones passed by its epoch), times an optional linear warm-up."""

    iters_per_epoch: int
    steps: tuple[int, ...]
    gamma: float = 0.1
    warmup_iters: int = 0
    warmup_ratio: float = 0.1

    def __call__(self, it: int) -> float:
        factor = self.gamma ** sum(it // self.iters_per_epoch >= s for s in self.steps)
        if it < self.warmup_iters:
            factor *= self.warmup_ratio + (1 - self.warmup_ratio) * it / self.warmup_iters
        return factor
