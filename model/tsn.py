"""TSN = a 2D ResNet applied to every view, features averaged over views, one dropout + FC (MMAction2 v0.24.1
mmaction/models/recognizers/recognizer2d.py, mmaction/models/heads/tsn_head.py).

A "view" is any frame (RGB) or flow stack the pipeline produced for one video: segments in training,
segments x crops x clips at test time. All views go through one consensus, so the test protocol is only a
question of how many views the pipeline sends.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from model.backbone import (
    ResNetTrunk,
    imagenet_state_dict,
    load_torchvision_weights,
    read_weights_file,
)
from model.config import AVERAGE_CLIPS, TSNConfig


class TSNHead(nn.Module):
    """(B*V, F, h, w) features -> (B, K) logits: avg-pool, mean over the V views, dropout, FC.

    The consensus comes before the FC (MMAction2 TSNHead); at eval this equals the mean of per-view logits
    because dropout is the identity and the FC is affine.
    """

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.4, init_std: float = 0.01):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, num_classes)
        init_fc(self.fc, init_std)

    def forward(self, feats: Tensor, num_views: int) -> Tensor:
        pooled = self.pool(feats).flatten(1)  # (B*V, F)
        video = pooled.view(-1, num_views, pooled.shape[1]).mean(dim=1)  # (B, F)
        return self.fc(self.dropout(video))


def init_fc(fc: nn.Linear, std: float) -> None:
    nn.init.normal_(fc.weight, mean=0.0, std=std)
    nn.init.zeros_(fc.bias)


class TSN(nn.Module):
    """Randomly initialised TSN; `build_tsn` applies `cfg.pretrained`. State-dict keys: `backbone.*` (torchvision
    ResNet names) and `head.fc.{weight,bias}`."""

    def __init__(self, cfg: TSNConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = ResNetTrunk(cfg.arch, cfg.in_channels)
        self.head = TSNHead(self.backbone.out_channels, cfg.num_classes, cfg.dropout, cfg.init_std)
        if cfg.partial_bn:
            for bn in _batchnorms(self)[1:]:
                bn.weight.requires_grad_(False)
                bn.bias.requires_grad_(False)
        if cfg.channels_last:  # NHWC convs are faster under AMP on tensor cores; weights loaded later keep it
            self.to(memory_format=torch.channels_last)

    def features(self, x: Tensor) -> Tensor:
        """(B, V, C, H, W) -> backbone map (B*V, F, H/32, W/32)."""
        if x.dim() != 5:
            raise ValueError(f"TSN expects (B, V, C, H, W), got shape {tuple(x.shape)}")
        x = x.flatten(0, 1)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        """(B, V, C, H, W) float -> logits (B, num_classes)."""
        return self.head(self.features(x), num_views=x.shape[1])

    def train(self, mode: bool = True) -> TSN:
        super().train(mode)
        if mode and (self.cfg.norm_eval or self.cfg.partial_bn):
            bns = _batchnorms(self)
            # partial_bn keeps the first BN (stem) adapting to the new modality/dataset; norm_eval freezes all.
            for bn in bns if self.cfg.norm_eval else bns[1:]:
                bn.eval()
        return self


def _batchnorms(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def build_tsn(cfg: TSNConfig, *, weights_dir: str | None = None) -> TSN:
    """TSN with `cfg.pretrained` applied to the backbone (the head is always N(0, init_std^2), bias 0).

    weights_dir: where the ImageNet file is cached / looked for (default torch.hub.get_dir()/checkpoints).
    Flow stems default to flow_init="random", i.e. MMAction2 behaviour, not the TSN paper's cross-modality init.
    """
    model = TSN(cfg)
    if cfg.pretrained == "imagenet":
        load_torchvision_weights(model.backbone, imagenet_state_dict(cfg.arch, weights_dir), cfg.flow_init)
    elif cfg.pretrained is not None:
        state = read_weights_file(cfg.pretrained, "TSNConfig.pretrained, a torchvision-format state dict")
        load_torchvision_weights(model.backbone, state, cfg.flow_init)
    return model


def param_groups(model: nn.Module, lr: float, weight_decay: float, fc_lr5: bool = False) -> list[dict]:
    """SGD parameter groups. fc_lr5=False: one group. fc_lr5=True: MMAction2's TSMOptimizerConstructor
    (v0.24.1 mmaction/core/optimizer/tsm_optimizer_constructor.py).

    Groups carry a "name" key (torch keeps extra keys), empty groups are dropped, and parameters with
    requires_grad False (partial_bn) are left out. The last nn.Linear is "the last fc".
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not fc_lr5:
        return [{"name": "all", "params": trainable, "lr": lr, "weight_decay": weight_decay}]
    # (name, lr multiplier, weight decay used) in the constructor's order
    spec = [("first_conv_weight", 1, True), ("first_conv_bias", 2, False), ("normal_weight", 1, True),
            ("normal_bias", 2, False), ("bn", 1, False), ("lr5_weight", 5, True), ("lr10_bias", 10, False)]
    buckets: dict[str, list] = {name: [] for name, _, _ in spec}
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    last_fc = linears[-1] if linears else None
    first_conv_seen = False
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and not first_conv_seen:
            first_conv_seen = True
            buckets["first_conv_weight"].append(m.weight)
            buckets["first_conv_bias"] += [m.bias] if m.bias is not None else []
        elif m is last_fc:
            buckets["lr5_weight"].append(m.weight)
            buckets["lr10_bias"] += [m.bias] if m.bias is not None else []
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            buckets["normal_weight"].append(m.weight)
            buckets["normal_bias"] += [m.bias] if m.bias is not None else []
        elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)):
            buckets["bn"] += list(m.parameters(recurse=False))
    grouped = {id(p) for ps in buckets.values() for p in ps}
    leftover = [p for p in trainable if id(p) not in grouped]
    if leftover:
        raise ValueError(f"fc_lr5: {len(leftover)} trainable parameters are in no conv/linear/norm layer")
    return [
        {"name": name, "params": [p for p in buckets[name] if p.requires_grad],
         "lr": lr * mult, "weight_decay": weight_decay if decay else 0.0}
        for name, mult, decay in spec
        if any(p.requires_grad for p in buckets[name])
    ]


def average_clips(logits: Tensor, mode: str | None = "none", num_segs: int = 1) -> Tensor:
    """MMAction2 `average_clip` on (B*num_segs, K) scores -> (B, K).

    TSN's head already returns one row per video, so MMAction2 calls this with num_segs=1: "score" is the
    identity (mean logit over every view) and "prob" is softmax of that mean logit, not a mean of softmaxes.
    """
    mode = "none" if mode is None else mode
    if mode not in AVERAGE_CLIPS:
        raise ValueError(f"average_clips: mode must be one of {AVERAGE_CLIPS} or None, got {mode!r}")
    if mode == "none":
        return logits
    per_video = logits.reshape(-1, num_segs, logits.shape[-1])  # (B, num_segs, K)
    if mode == "prob":
        per_video = per_video.softmax(dim=2)
    return per_video.mean(dim=1)
