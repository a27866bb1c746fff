"""Helpers shared by test modules (fixtures live in conftest.py)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]     # the repository root


def synthetic_overrides(root, kind: str = "rawframes") -> list[str]:
    """--cfg-options that point a recipe's train/val/test lists at the synthetic set (kind: rawframes|flow|videos)."""
    from jobs.dataprep.synthetic import data_overrides
    return data_overrides(root, kind)


def colour_checkpoint(path, colours: dict[int, tuple[int, int, int]], recipe: str = "tsn_r18_synthetic_video_rgb"):
    """A TSN checkpoint of `recipe` whose logits are computable from the pixels: label L scores
    2 m_L . f - |m_L|^2 = |f|^2 - |f - m_L|^2, the nearest colour among `colours` ({label: RGB}); any other label
    scores -100 - L (far below, distinct: no ties, and softmax does not underflow to 0 in float64).

    The trunk passes the normalised RGB through unchanged: the stem conv is a centre tap per colour channel, its BN
    adds 4 so ReLU keeps every value (normalised pixels lie in about [-2.2, 2.7]), every residual branch is zero and
    every downsample a 1x1 identity, so the pooled feature f is the views' normalised mean colour + 4 (channels 0-2;
    the stem's max-pool is the identity on uniform colour). m_L is the same transform of colours[L].
    """
    import torch

    from jobs.recipes.config import load_config
    from jobs.runtime.weights import build_model
    cfg = load_config(recipe)
    model = build_model(cfg.model, say=lambda _: None)
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith("running_var") or (key.endswith(".weight") and value.dim() == 1):
            value.fill_(1.0)        # BN: identity scale (running_var 1, weight 1)
        elif value.is_floating_point():
            value.zero_()           # conv weights, BN bias and running_mean, the FC
    for c in range(3):
        state["backbone.conv1.weight"][c, c, 3, 3] = 1.0
        for layer in (2, 3, 4):
            state[f"backbone.layer{layer}.0.downsample.0.weight"][c, c, 0, 0] = 1.0
    state["backbone.bn1.bias"][:3] = 4.0
    mean, std = torch.tensor(cfg.normalize.mean), torch.tensor(cfg.normalize.std)
    state["head.fc.bias"].copy_(-100.0 - torch.arange(cfg.model.num_classes, dtype=torch.float32))
    for label, rgb in colours.items():
        m = (torch.tensor(rgb, dtype=torch.float32) - mean) / std + 4.0
        state["head.fc.weight"][label, :3] = 2 * m
        state["head.fc.bias"][label] = -(m * m).sum()
    torch.save({"model": state}, path)
    return path
