"""The model's recipe values, importable without torch (`tsn configs` and every `--help` read recipes without
loading torch): `TSNConfig`, the backbones and flow stems it may name, the clip-averaging modes."""
from __future__ import annotations

from dataclasses import dataclass

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
FLOW_INITS = ("random", "cross_modality")
AVERAGE_CLIPS = ("none", "score", "prob")


@dataclass(frozen=True)
class TSNConfig:
    """Model recipe. Defaults = MMAction2's TSN R50 K400 RGB.

    pretrained: "imagenet" (torchvision IMAGENET1K_V1, what MMAction2 0.x loaded), None (Kaiming init) or the
    path of a torchvision-format ResNet .pth. flow_init applies when in_channels != 3 and weights are loaded:
    "random" (default, MMAction2: the 3-channel ImageNet conv1 is skipped, the stem keeps its Kaiming init) or
    "cross_modality" (TSN paper: RGB conv1 averaged over its input channels, replicated to in_channels).
    """

    arch: str = "resnet50"
    num_classes: int = 400
    in_channels: int = 3  # flow: 2 * clip_len (x and y interleaved)
    dropout: float = 0.4
    init_std: float = 0.01
    pretrained: str | None = "imagenet"
    flow_init: str = "random"
    norm_eval: bool = False  # every BN in eval mode whenever train() is called; affine params still learn
    partial_bn: bool = False  # TSN paper: every BN but the first frozen (eval mode, affine requires_grad False)
    channels_last: bool = False

    def __post_init__(self):
        def bad(name: str, why: str):
            raise ValueError(f"TSNConfig.{name}: {why}, got {getattr(self, name)!r}")

        if self.arch not in ARCHS:
            bad("arch", f"must be one of {ARCHS}")
        for name in ("num_classes", "in_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                bad(name, "must be a positive int")
        if not 0.0 <= self.dropout < 1.0:
            bad("dropout", "must be in [0, 1)")
        if not self.init_std > 0.0:
            bad("init_std", "must be > 0")
        if self.pretrained is not None and (not isinstance(self.pretrained, str) or not self.pretrained):
            bad("pretrained", "must be None, 'imagenet' or a file path")
        if self.flow_init not in FLOW_INITS:
            bad("flow_init", f"must be one of {FLOW_INITS}")
        for name in ("norm_eval", "partial_bn", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "must be a bool")
