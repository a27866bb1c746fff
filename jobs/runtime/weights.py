"""Build the recipe's model and start it from a checkpoint: ours, or MMAction2's (converted on the fly)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

from jobs.runtime.checkpoint import Checkpoint, CheckpointError, as_checkpoint
from model.backbone import WeightsUnavailable
from model.mmaction2 import load_state
from model.tsn import TSN, TSNConfig, build_tsn
from pipelines.errors import UserError


class InitialWeightsError(UserError):
    """The recipe's initial weights cannot be had: ImageNet offline and not cached, a missing `pretrained` file."""


SHOWN = 3   # mismatching keys named in an error message (then "and N more")


def _listed(items: list[str]) -> str:
    more = f" (and {len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return "; ".join(items[:SHOWN]) + more


def _fit(model: TSN, source: Checkpoint, cfg: TSNConfig, *, strict: bool, reinit_head: bool):
    """load_state, with a refusal turned into a CheckpointError that names the file and the keys/shapes that differ."""
    meta = source.meta
    trained = f"; the checkpoint says {meta['arch']}, {meta['num_classes']} classes" \
        if {"arch", "num_classes"} <= set(meta) else ""
    fits = f"does not fit the model ({cfg.arch}, {cfg.num_classes} classes{trained})"
    try:
        report = load_state(model, source.weights, reinit_head=reinit_head)
    except ValueError as err:        # shapes differ: every line after the first names a key and both shapes
        raise CheckpointError(f"{source.path}: {fits}: shape mismatch: "
                              f"{_listed([line.strip() for line in str(err).splitlines()[1:]])}") from None
    if strict and (report.missing or report.unexpected):
        parts = [f"{len(keys)} {label} keys: {_listed(list(keys))}"
                 for label, keys in (("missing", report.missing), ("unexpected", report.unexpected)) if keys]
        raise CheckpointError(f"{source.path}: {fits}: {', '.join(parts)}")
    return report


def build_model(cfg: TSNConfig, load_from: str | Checkpoint | None = None,
                say: Callable[[str], None] = print) -> TSN:
    """The recipe's TSN; with `load_from`, every tensor comes from that file (a head of another size is re-drawn)."""
    if not load_from:
        try:
            return build_tsn(cfg)
        except WeightsUnavailable as err:     # model/ cannot import the UserError base: name it a user error here
            raise InitialWeightsError(str(err)) from err
    source = as_checkpoint(load_from)          # first: a bad file fails before any model is built
    # The file replaces the backbone: skip fetching ImageNet weights only to overwrite them.
    model = build_tsn(dataclasses.replace(cfg, pretrained=None))
    state = source.weights
    head = state.get("head.fc.weight", state.get("cls_head.fc_cls.weight"))
    report = _fit(model, source, cfg, strict=False, reinit_head=True)
    if report.head_skipped and head is not None:
        say(f"cls_head re-initialised: {head.shape[0]} -> {cfg.num_classes} classes")
    say(f"weights from {source.path}: {report.summary()}")
    return model


def load_for_eval(cfg: TSNConfig, checkpoint: str | Checkpoint) -> TSN:
    """A model for test/predict: every tensor must come from the checkpoint (strict, same class count)."""
    source = as_checkpoint(checkpoint)
    model = build_tsn(dataclasses.replace(cfg, pretrained=None))
    _fit(model, source, cfg, strict=True, reinit_head=False)
    return model


__all__ = ["build_model", "load_for_eval"]
