"""Mixed precision: one AMP code path for training and evaluation."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Amp:
    """One AMP code path: bf16 autocast where supported (CPU, Ampere+), else fp16 with a GradScaler."""

    enabled: bool
    device_type: str
    dtype: torch.dtype

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)


def make_amp(enabled: bool, device: torch.device) -> tuple[Amp, torch.amp.GradScaler]:
    bf16 = device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported())
    amp = Amp(enabled, device.type, torch.bfloat16 if bf16 else torch.float16)
    # bf16 has fp32's exponent range: loss scaling is only needed (and only enabled) for fp16.
    return amp, torch.amp.GradScaler(device.type, enabled=enabled and not bf16)
