"""uint8 clips -> the model's float input, on the training device (MMAction2 v0.24.1
mmaction/datasets/pipelines/augmentations.py Normalize).

Done after the host-to-device copy: 4x fewer bytes cross the bus, and on a GPU the arithmetic is free compared to
the network. RGB: (v - mean_c) / std_c per channel. Flow: mean/std are given for (x, y) and apply to the
alternating channels [x_t, y_t, x_t+1, ...] of a 2 * clip_len stack.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # a recipe holds a Normalize: reading one (`tsn configs`, `--help`) must not load torch
    import torch


@dataclass(frozen=True)
class Normalize:
    mean: tuple[float, ...] = (123.675, 116.28, 103.53)
    std: tuple[float, ...] = (58.395, 57.12, 57.375)

    def __post_init__(self):
        if len(self.mean) != len(self.std) or len(self.mean) not in (2, 3):
            raise ValueError("mean and std need 3 values (RGB) or 2 values (flow x, y), the same number each")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")

    def __call__(self, clips: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
        """(B, V, C, H, W) uint8 -> float32 on `device`; C must be 3 (RGB) or even (flow)."""
        clips = clips.to(device, non_blocking=True) if device is not None else clips
        c = clips.shape[2]
        reps = c // len(self.mean)
        if reps * len(self.mean) != c:
            raise ValueError(f"{c} channels do not fit a normalisation with {len(self.mean)} values")
        mean, std = _constants(self.mean, self.std, reps, clips.device)
        return (clips.float() - mean) / std


_CACHE: dict = {}


def _constants(mean: tuple, std: tuple, reps: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 1, C, 1, 1) mean and std on `device`, made once: building them per batch is a host-to-device copy that
    synchronises the host with a GPU pipeline every step."""
    import torch
    key = (mean, std, reps, str(device))
    if key not in _CACHE:
        c = reps * len(mean)
        _CACHE[key] = tuple(torch.tensor(v, dtype=torch.float32).repeat(reps).view(1, 1, c, 1, 1).to(device)
                            for v in (mean, std))
    return _CACHE[key]
