"""TSN model: shapes, consensus, ImageNet/flow-stem init, BN modes, parameter counts, fc_lr5 groups.

Reference behaviour: MMAction2 v0.24.1 mmaction/models/heads/tsn_head.py, mmaction/models/backbones/resnet.py,
mmaction/core/optimizer/tsm_optimizer_constructor.py; parameter counts are those of its ResNet-50/101 TSN modules."""
from __future__ import annotations

import logging
import os
import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from model.backbone import imagenet_file
from model.tsn import (
    TSN,
    TSNConfig,
    TSNHead,
    average_clips,
    build_tsn,
    param_groups,
)


def _cfg(**kw) -> TSNConfig:
    return TSNConfig(**{"arch": "resnet18", "num_classes": 7, "pretrained": None, **kw})


def _bns(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.fixture
def fake_imagenet(tmp_path, monkeypatch):
    """A random torchvision resnet18 saved where torch.hub caches IMAGENET1K_V1; the network is never used."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_network)
    torch.manual_seed(123)
    state = torchvision.models.resnet18(weights=None).state_dict()
    _, path = imagenet_file("resnet18")
    assert path.startswith(str(tmp_path))
    os.makedirs(os.path.dirname(path))
    torch.save(state, path)
    return state


def _no_network(url, *args, **kwargs):
    raise urllib.error.URLError(f"offline test: refusing to fetch {url}")


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.parametrize("in_channels", [3, 10])
def test_forward_shapes(arch, in_channels):
    model = TSN(_cfg(arch=arch, in_channels=in_channels)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, in_channels, 64, 64))
    assert out.shape == (2, 7)
    assert model.backbone.conv1.weight.shape == (64, in_channels, 7, 7)


def test_head_vector_from_mmaction2_unit_test():
    """MMAction2 v0.24.1 tests/test_models/test_head.py: TSNHead(num_classes=4, in_channels=2048), input
    (8, 2048, 7, 7) with num_segs 8 -> (1, 4)."""
    head = TSNHead(2048, 4)
    assert isinstance(head.dropout, nn.Dropout) and head.dropout.p == 0.4
    assert head.fc.weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert torch.count_nonzero(head.fc.bias) == 0
    assert head(torch.rand(8, 2048, 7, 7), num_views=8).shape == (1, 4)


def test_consensus_before_fc_equals_mean_of_view_logits_at_eval():
    model = TSN(_cfg()).eval()
    x = torch.randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        video = model(x)
        per_view = model(x.reshape(6, 1, 3, 64, 64)).reshape(2, 3, 7)
    torch.testing.assert_close(video, per_view.mean(dim=1), rtol=1e-4, atol=1e-5)


def test_rejects_non_5d_input():
    with pytest.raises(ValueError, match="B, V, C, H, W"):
        TSN(_cfg())(torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize("field, value", [("arch", "resnet9"), ("num_classes", 0), ("dropout", 1.0),
                                          ("flow_init", "mean"), ("init_std", 0.0), ("norm_eval", 1)])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"TSNConfig.{field}"):
        _cfg(**{field: value})


def test_imagenet_rgb_loads_every_backbone_tensor(fake_imagenet):
    model = build_tsn(_cfg(pretrained="imagenet"))
    for key, value in model.backbone.state_dict().items():
        if key in fake_imagenet:
            torch.testing.assert_close(value, fake_imagenet[key], rtol=0, atol=0)
    assert model.head.fc.weight.shape == (7, 512)


def test_flow_random_init_skips_conv1_and_logs_it(fake_imagenet, caplog):
    with caplog.at_level(logging.WARNING, logger="model.backbone"):
        model = build_tsn(_cfg(pretrained="imagenet", in_channels=10))
    assert "conv1.weight" in caplog.text
    conv1 = model.backbone.conv1.weight
    # kept Kaiming fan_out init: std = sqrt(2 / (64 * 7 * 7))
    assert conv1.std().item() == pytest.approx((2 / (64 * 49)) ** 0.5, rel=0.1)
    torch.testing.assert_close(model.backbone.bn1.weight, fake_imagenet["bn1.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.backbone.layer4[1].conv2.weight, fake_imagenet["layer4.1.conv2.weight"])


def test_flow_cross_modality_init_is_rgb_channel_mean_replicated(fake_imagenet):
    model = build_tsn(_cfg(pretrained="imagenet", in_channels=10, flow_init="cross_modality"))
    rgb = fake_imagenet["conv1.weight"]  # (64, 3, 7, 7)
    conv1 = model.backbone.conv1.weight  # (64, 10, 7, 7)
    assert conv1.shape == (64, 10, 7, 7)
    for c in range(10):                  # every input channel holds (R + G + B) / 3 of the RGB filter
        torch.testing.assert_close(conv1[:, c], (rgb[:, 0] + rgb[:, 1] + rgb[:, 2]) / 3)


def test_pretrained_path_loads_torchvision_file(fake_imagenet, tmp_path):
    path = tmp_path / "mine.pth"
    torch.save(fake_imagenet, path)
    model = build_tsn(_cfg(pretrained=str(path)))
    torch.testing.assert_close(model.backbone.conv1.weight, fake_imagenet["conv1.weight"], rtol=0, atol=0)


def test_offline_imagenet_error_names_file_and_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_network)
    with pytest.raises(RuntimeError) as err:
        build_tsn(_cfg(arch="resnet50", pretrained="imagenet"))
    message = str(err.value)
    assert "resnet50-0676ba61.pth" in message
    assert os.path.join(str(tmp_path), "hub", "checkpoints") in message


def test_norm_eval_keeps_running_stats():
    model = TSN(_cfg(norm_eval=True)).train()
    before = [bn.running_mean.clone() for bn in _bns(model)]
    model(torch.randn(2, 2, 3, 32, 32))
    assert model.training and model.head.dropout.training
    assert all(not bn.training and bn.weight.requires_grad for bn in _bns(model))
    for bn, old in zip(_bns(model), before):
        torch.testing.assert_close(bn.running_mean, old, rtol=0, atol=0)


def test_partial_bn_freezes_all_but_the_first_bn():
    model = TSN(_cfg(partial_bn=True)).train()
    first, *rest = _bns(model)
    assert first is model.backbone.bn1
    before = [bn.running_mean.clone() for bn in rest]
    first_before = first.running_mean.clone()
    model(torch.randn(2, 2, 3, 32, 32))
    assert first.training and first.weight.requires_grad
    assert not torch.equal(first.running_mean, first_before)
    for bn, old in zip(rest, before):
        assert not bn.training and not bn.weight.requires_grad and not bn.bias.requires_grad
        torch.testing.assert_close(bn.running_mean, old, rtol=0, atol=0)


@pytest.mark.parametrize("arch, classes, in_channels, expected", [
    ("resnet50", 400, 3, 24_327_632), ("resnet50", 400, 10, 24_349_584), ("resnet101", 313, 3, 43_141_497)])
def test_parameter_counts_match_spec(arch, classes, in_channels, expected):
    with torch.device("meta"):  # counting needs no storage
        model = TSN(TSNConfig(arch=arch, num_classes=classes, in_channels=in_channels, pretrained=None))
    assert sum(p.numel() for p in model.parameters()) == expected


def test_fc_lr5_groups_multipliers_and_coverage():
    model = TSN(_cfg(arch="resnet50"))
    groups = param_groups(model, lr=0.1, weight_decay=1e-4, fc_lr5=True)
    by_name = {g["name"]: g for g in groups}
    expected = {"first_conv_weight": (0.1, 1e-4), "normal_weight": (0.1, 1e-4), "bn": (0.1, 0.0),
                "lr5_weight": (0.5, 1e-4), "lr10_bias": (1.0, 0.0)}  # no conv has a bias: those groups are dropped
    assert {n: (pytest.approx(g["lr"]), g["weight_decay"]) for n, g in by_name.items()} == expected
    assert by_name["first_conv_weight"]["params"] == [model.backbone.conv1.weight]
    assert by_name["lr5_weight"]["params"] == [model.head.fc.weight]
    assert by_name["lr10_bias"]["params"] == [model.head.fc.bias]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
    torch.optim.SGD(groups, lr=0.1, momentum=0.9)  # torch accepts the extra "name" key


def test_param_groups_without_fc_lr5_and_with_partial_bn():
    model = TSN(_cfg(partial_bn=True))
    (single,) = param_groups(model, lr=0.01, weight_decay=5e-4)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert single["params"] == trainable and single["lr"] == 0.01 and single["weight_decay"] == 5e-4
    grouped = param_groups(model, 0.01, 5e-4, fc_lr5=True)
    assert sum(len(g["params"]) for g in grouped) == len(trainable)


def test_average_clips_modes():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    assert torch.equal(average_clips(logits, "none"), logits)
    assert torch.equal(average_clips(logits, None), logits)
    assert torch.equal(average_clips(logits, "score"), logits)  # TSN: num_segs = 1
    e = torch.exp(torch.tensor(1.0))
    prob = torch.tensor([[1, e, e * e], [1, 1, 1]]) / torch.tensor([[1 + e + e * e], [3.0]])   # e^x / sum e^x
    torch.testing.assert_close(average_clips(logits, "prob"), prob)
    torch.testing.assert_close(average_clips(logits, "score", num_segs=2), logits.mean(0, keepdim=True))
    with pytest.raises(ValueError, match="mode"):
        average_clips(logits, "max")


def test_channels_last_forward_matches():
    torch.manual_seed(0)
    ref = TSN(_cfg()).eval()
    nhwc = TSN(_cfg(channels_last=True)).eval()
    nhwc.load_state_dict(ref.state_dict())
    assert nhwc.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(1, 2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(nhwc(x), ref(x), rtol=1e-4, atol=1e-5)
