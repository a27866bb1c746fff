"""MMAction2 0.x/1.x TSN checkpoints -> this project's TSN (key names: MMAction2 v0.24.1
mmaction/models/backbones/resnet.py `ResNet._load_torchvision_checkpoint`, mmaction/models/heads/tsn_head.py).

MMAction2 wraps every conv+BN pair in an mmcv ConvModule (`<name>.conv`, `<name>.bn`); torchvision names the
BN after the conv (`conv2` -> `bn2`) and numbers the downsample pair (`downsample.0`, `downsample.1`).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor, nn

HEAD_KEYS = ("head.fc.weight", "head.fc.bias")
_HEAD = {"cls_head.fc_cls.weight": "head.fc.weight", "cls_head.fc_cls.bias": "head.fc.bias"}
# backbone.[layerS.B.]{convK|downsample}.{conv|bn}.<tensor>
_CONV_MODULE = re.compile(r"backbone\.(?P<block>(?:layer\d+\.\d+\.)?)(?P<name>conv\d+|downsample)\.(?P<kind>conv|bn)\.")


def unwrap_state_dict(checkpoint: Mapping) -> dict[str, Tensor]:
    """Bare state dict from an mmcv checkpoint ({"state_dict", "meta"}), ours ({"model", "meta"}) or a bare one."""
    for key in ("state_dict", "model"):
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def mmaction2_key(key: str) -> str:
    """One MMAction2 key -> our key; keys already in our naming (or unknown) come back unchanged."""
    if key in _HEAD:
        return _HEAD[key]
    m = _CONV_MODULE.match(key)
    if m is None:
        return key
    name, kind = m["name"], m["kind"]
    if name == "downsample":
        ours = "downsample.0" if kind == "conv" else "downsample.1"
    else:
        ours = name if kind == "conv" else name.replace("conv", "bn")
    return f"backbone.{m['block']}{ours}.{key[m.end():]}"


def mmaction2_to_tsn(state_dict: Mapping) -> dict[str, Tensor]:
    """Rename an MMAction2 TSN state dict (or full checkpoint) to our keys; a leading `module.` is stripped."""
    return {mmaction2_key(k): v for k, v in unwrap_state_dict(state_dict).items()}


@dataclass(frozen=True)
class LoadReport:
    loaded: tuple[str, ...]
    missing: tuple[str, ...]  # in the model, not in the file: keep their current values
    unexpected: tuple[str, ...]  # in the file, not in the model: ignored
    head_skipped: tuple[str, ...] = ()  # classifier of another class count, left as initialised (reinit_head)

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors"]
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                            ("head re-initialised, not loaded", self.head_skipped)):
            if keys:
                parts.append(f"{label}: {', '.join(keys)}")
        return "; ".join(parts)


def load_state(model: nn.Module, state_dict: Mapping, *, reinit_head: bool = False) -> LoadReport:
    """Load an MMAction2 or own-format state dict (or checkpoint) into `model`.

    Shape mismatches are refused (ValueError naming every key and both shapes): a silently skipped tensor is how
    a model ends up half-random. The one exception: reinit_head=True lets a classifier of a different class
    count be skipped, keeping the model's freshly initialised head (fine-tuning K400 -> UCF-101). Missing and
    unexpected keys are reported; whether they are acceptable is the caller's call (jobs/runtime/weights.py).
    """
    raw = unwrap_state_dict(state_dict)
    src = {mmaction2_key(k): v for k, v in raw.items()}
    original = {mmaction2_key(k): k for k in raw}  # error messages name the key as it is in the file
    own = model.state_dict()
    mismatched, head_skipped, take = [], [], {}
    for key, value in src.items():
        if key not in own:
            continue
        if value.shape == own[key].shape:
            take[key] = value
        elif reinit_head and key in HEAD_KEYS:
            head_skipped.append(key)
        else:
            name = key if original[key] == key else f"{original[key]} (-> {key})"
            mismatched.append(f"{name}: checkpoint {list(value.shape)} vs model {list(own[key].shape)}")
    if mismatched:
        raise ValueError("shape mismatch, refusing to load:\n  " + "\n  ".join(mismatched))
    missing = tuple(k for k in own if k not in src)
    unexpected = tuple(k for k in src if k not in own)
    model.load_state_dict(take, strict=False)
    return LoadReport(tuple(take), missing, unexpected, tuple(head_skipped))


def convert_checkpoint(checkpoint: Mapping, source_name: str) -> dict:
    """An MMAction2 checkpoint as read ({"state_dict", "meta"}) -> {"model": our state dict, "meta": its meta +
    provenance}. Reading and writing files is the caller's (jobs/runtime/checkpoint.py owns the file format)."""
    state = mmaction2_to_tsn(checkpoint)
    unknown = [k for k in state if not k.startswith("backbone.") and k not in HEAD_KEYS]
    if unknown:
        raise ValueError(f"{source_name}: keys that are not part of a TSN (ResNet + TSNHead): {unknown}")
    meta = dict(checkpoint["meta"]) if isinstance(checkpoint.get("meta"), Mapping) else {}
    meta["converted_from"] = source_name
    return {"model": state, "meta": meta}
