"""The module that is exported: the pipeline's uint8 clips -> normalisation -> TSN (consensus inside) -> logits."""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from jobs.exporting.spec import ExportError
from jobs.recipes.config import Config
from jobs.runtime.checkpoint import Checkpoint
from jobs.runtime.weights import load_for_eval
from model.tsn import TSN
from pipelines.normalize import Normalize


class ExportedTSN(nn.Module):
    """(B, V, C, H, W) uint8 (or normalised float32) -> (B, num_classes) fp32 logits.

    uint8 input is normalised here exactly as `pipelines.normalize.Normalize` does for training and `tsn test`:
    (v - mean_c) / std_c, the flow (x, y) pair repeated over the 2 * clip_len interleaved channels. TSN's forward
    (model/tsn.py) then averages the V views' pooled features before the FC, so the consensus is in the graph.
    """

    def __init__(self, tsn: TSN, normalize: Normalize | None, channels: int):
        super().__init__()
        self.tsn = tsn
        self.normalize_inside = normalize is not None
        if normalize is not None:
            reps, rest = divmod(channels, len(normalize.mean))
            if rest:
                raise ExportError(f"{channels} channels do not fit a normalisation with {len(normalize.mean)} values")
            # (1, 1, C, 1, 1): broadcasts over batch, views and pixels
            self.register_buffer("mean", torch.tensor(normalize.mean).repeat(reps).view(1, 1, channels, 1, 1))
            self.register_buffer("std", torch.tensor(normalize.std).repeat(reps).view(1, 1, channels, 1, 1))

    def forward(self, clips: Tensor) -> Tensor:
        x = clips.to(torch.float32)
        if self.normalize_inside:
            x = (x - self.mean) / self.std
        return self.tsn(x)


def load_tsn(cfg: Config, checkpoint: str | Checkpoint) -> TSN:
    """The checkpoint's TSN for `cfg` in eval mode, every tensor from the checkpoint (strict; a file that is missing,
    damaged or of another model raises a CheckpointError naming it)."""
    # channels_last only changes the memory layout of eager convs; the exported graph gets plain NCHW weights.
    return load_for_eval(dataclasses.replace(cfg.model, channels_last=False), checkpoint).eval()


def wrap(tsn: TSN, cfg: Config, input: str) -> ExportedTSN:
    return ExportedTSN(tsn, cfg.normalize if input == "uint8" else None, cfg.model.in_channels).eval()
