"""Build the recipe's model and start it from a checkpoint: ours, or MMAction2's (converted on the fly)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from model.mmaction2 import load_state
from model.tsn import TSN, TSNConfig, build_tsn


def read_weights(path: str) -> dict:
    """A checkpoint file -> its state dict (our {'model': ...}, MMAction2's {'state_dict': ...}, or bare)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint {path} not found") from None
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        return checkpoint["model"]
    return checkpoint


def build_model(cfg: TSNConfig, load_from: str | None = None, say: Callable[[str], None] = print) -> TSN:
    """The recipe's TSN; with `load_from`, every tensor comes from that file (a head of another size is re-drawn)."""
    if not load_from:
        return build_tsn(cfg)
    # The file replaces the backbone: skip fetching ImageNet weights only to overwrite them.
    model = build_tsn(dataclasses.replace(cfg, pretrained=None))
    state = read_weights(load_from)
    head = state.get("head.fc.weight", state.get("cls_head.fc_cls.weight"))
    report = load_state(model, state, reinit_head=True)
    if report.head_skipped and head is not None:
        say(f"cls_head re-initialised: {head.shape[0]} -> {cfg.num_classes} classes")
    say(f"weights from {load_from}: {report.summary()}")
    return model


def load_for_eval(cfg: TSNConfig, checkpoint: str) -> TSN:
    """A model for test/predict: every tensor must come from the checkpoint (strict, same class count)."""
    model = build_tsn(dataclasses.replace(cfg, pretrained=None))
    load_state(model, read_weights(checkpoint), strict=True)
    return model


__all__ = ["build_model", "load_for_eval", "read_weights"]
