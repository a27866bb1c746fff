"""torchvision ResNet trunk (no avgpool/fc) and its ImageNet initialisation.

Parameter names are torchvision's (`conv1.weight`, `bn1.*`, `layer1.0.conv1.weight`, ...), so an ImageNet file
loads by name; MMAction2 names are translated in `model/mmaction2.py`.
"""
from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from model.config import ARCHS, FLOW_INITS

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 60.0  # a firewalled network drops packets; without a timeout the download would hang


class WeightsUnavailable(RuntimeError):
    """Initial weights that cannot be had (offline and not cached, or a `pretrained` file missing or unreadable);
    the message names the file and where to put it."""


def _torchvision_resnet(arch: str):
    """(constructor, IMAGENET1K_V1 weights) for `arch`.

    V1 = the original ImageNet-1k weights that MMAction2 0.x loaded via `torchvision://resnetXX` (MMAction2 v0.24.1
    mmaction/models/backbones/resnet.py `init_weights`).
    """
    # Imported here: torchvision.models pulls in torch._dynamo (~4 s), which a command that fails on its recipe or
    # list, or only lists recipes, never needs.
    import torchvision
    tv = torchvision.models
    table = {
        "resnet18": (tv.resnet18, tv.ResNet18_Weights.IMAGENET1K_V1),
        "resnet34": (tv.resnet34, tv.ResNet34_Weights.IMAGENET1K_V1),
        "resnet50": (tv.resnet50, tv.ResNet50_Weights.IMAGENET1K_V1),
        "resnet101": (tv.resnet101, tv.ResNet101_Weights.IMAGENET1K_V1),
        "resnet152": (tv.resnet152, tv.ResNet152_Weights.IMAGENET1K_V1),
    }
    if arch not in table:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    return table[arch]


class ResNetTrunk(nn.Module):
    """Stem + layer1..4 of a torchvision ResNet: (N, C_in, H, W) -> (N, F, H/32, W/32), F = 512 or 2048."""

    def __init__(self, arch: str, in_channels: int = 3):
        super().__init__()
        build, _ = _torchvision_resnet(arch)
        net = build(weights=None)
        # Flow stacks have 2*clip_len channels; only the stem conv's input width changes (7x7, stride 2, no bias).
        self.conv1 = net.conv1 if in_channels == 3 else nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1, self.relu, self.maxpool = net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels: int = net.fc.in_features
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def init_weights(module: nn.Module) -> None:
    """MMAction2's `pretrained=None` init: Kaiming normal (fan_out, relu) convs, BN weight 1 / bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def imagenet_file(arch: str, weights_dir: str | None = None) -> tuple[str, str]:
    """(url, local path) of the IMAGENET1K_V1 file; the directory defaults to torch.hub.get_dir()/checkpoints."""
    _, weights = _torchvision_resnet(arch)
    folder = weights_dir or os.path.join(torch.hub.get_dir(), "checkpoints")
    return weights.url, os.path.join(folder, os.path.basename(urlparse(weights.url).path))


def imagenet_state_dict(arch: str, weights_dir: str | None = None) -> dict[str, Tensor]:
    """Load the cached ImageNet file, or download it once; offline, fail fast naming the file to place."""
    url, path = imagenet_file(arch, weights_dir)
    if os.path.isfile(path):
        return read_weights_file(path, f"cached ImageNet weights for {arch}; delete it to download it again")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return torch.hub.load_state_dict_from_url(
            url, model_dir=os.path.dirname(path), map_location="cpu", progress=False, check_hash=True, weights_only=True
        )
    except Exception as err:  # URLError, timeout, hash mismatch: all mean "get the file by hand"
        raise WeightsUnavailable(
            f"ImageNet weights for {arch} are not available and could not be downloaded ({err}). "
            f"Download {url} on a connected machine and place the file {os.path.basename(path)} in "
            f"{os.path.dirname(path)} (torch.hub.get_dir()/checkpoints unless weights_dir is given), "
            f"or set pretrained to the path of a torchvision-format .pth, or pretrained=None."
        ) from err
    finally:
        socket.setdefaulttimeout(previous)


def read_weights_file(path: str, what: str) -> dict[str, Tensor]:
    """A torchvision-format state dict file (tensors only: weights_only); WeightsUnavailable if it cannot be read."""
    if not os.path.isfile(path):
        raise WeightsUnavailable(f"{path}: no such file ({what})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated zip, not a torch file, a non-tensor pickle
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise WeightsUnavailable(f"{path}: cannot be read as {what} ({first})") from None


def load_torchvision_weights(trunk: ResNetTrunk, state: Mapping[str, Tensor], flow_init: str = "random") -> None:
    """Copy a torchvision ResNet state dict into `trunk`; the trunk keys left at their init are logged.

    A stem whose input width differs from the file's [64, 3, 7, 7] conv1 is handled by `flow_init`:
    "random" (MMAction2) keeps the Kaiming init; "cross_modality" (TSN paper) averages the RGB filters over
    their 3 input channels and replicates the mean to every input channel -> [64, C_in, 7, 7].
    Any other shape mismatch means the file belongs to another arch, and is an error.
    """
    if flow_init not in FLOW_INITS:
        raise ValueError(f"flow_init must be one of {FLOW_INITS}, got {flow_init!r}")
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    own = trunk.state_dict()
    new, kept = {}, []
    for key, target in own.items():
        if key not in state:
            kept.append(key)
            continue
        src = state[key]
        if key == "conv1.weight" and src.shape != target.shape and src.shape[1] == 3:
            if flow_init == "cross_modality":
                new[key] = src.mean(dim=1, keepdim=True).expand_as(target).clone()
            else:
                kept.append(key)
            continue
        if src.shape != target.shape:
            raise ValueError(f"{key}: shape {list(src.shape)} in the weights file vs {list(target.shape)} in model")
        new[key] = src
    trunk.load_state_dict(new, strict=False)
    unused = sorted(set(state) - set(own))
    # Old torchvision files carry no num_batches_tracked buffers; they stay 0, as in MMAction2.
    skipped = [k for k in kept if not k.endswith("num_batches_tracked")]
    if skipped:
        log.warning("ImageNet init: kept the construction-time init for %s (flow_init=%r)", skipped, flow_init)
    if "conv1.weight" in new and trunk.conv1.in_channels != 3:
        log.info("ImageNet init: conv1 cross-modality init (RGB filter mean replicated to %d channels)",
                 trunk.conv1.in_channels)
    if unused:
        log.info("ImageNet init: not loaded from the file: %s", unused)
