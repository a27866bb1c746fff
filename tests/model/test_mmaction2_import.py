"""MMAction2 checkpoint import (key names of MMAction2 v0.24.1 mmaction/models/backbones/resnet.py and
mmaction/models/heads/tsn_head.py).

MMAction2 names are generated here from its module-structure rules (mmcv ConvModule `conv`/`bn` children,
`downsample.conv`/`downsample.bn`, `cls_head.fc_cls`), independently of model.mmaction2's mapping, and paired with
our tensors by state-dict order (backbone before head, conv before bn).
"""
from __future__ import annotations

import pytest
import torch

from model.mmaction2 import convert_checkpoint, load_state, mmaction2_to_tsn
from model.tsn import TSN, TSNConfig

BN_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
DEPTHS = {"resnet18": ((2, 2, 2, 2), False), "resnet50": ((3, 4, 6, 3), True), "resnet101": ((3, 4, 23, 3), True)}


def spec_keys(arch: str) -> list[str]:
    """MMAction2 TSN keys in state-dict order: each ConvModule gives conv.weight then its 5 BN entries."""
    blocks, bottleneck = DEPTHS[arch]

    def conv_module(name: str) -> list[str]:
        return [f"{name}.conv.weight"] + [f"{name}.bn.{e}" for e in BN_ENTRIES]

    keys = conv_module("backbone.conv1")
    for stage, depth in enumerate(blocks, start=1):
        for b in range(depth):
            prefix = f"backbone.layer{stage}.{b}"
            for k in range(1, 4 if bottleneck else 3):
                keys += conv_module(f"{prefix}.conv{k}")
            # first block downsamples when stride 2 (stages 2-4) or the width changes (bottleneck stage 1)
            if b == 0 and (stage > 1 or bottleneck):
                keys += conv_module(f"{prefix}.downsample")
    return keys + ["cls_head.fc_cls.weight", "cls_head.fc_cls.bias"]


def as_mmaction2(model: TSN) -> dict[str, torch.Tensor]:
    ours = model.state_dict()
    names = spec_keys(model.cfg.arch)
    assert len(names) == len(ours)
    return {mm: t.clone() for mm, t in zip(names, ours.values())}


def _model(arch="resnet18", seed=0, **kw) -> TSN:
    torch.manual_seed(seed)
    model = TSN(TSNConfig(arch=arch, num_classes=kw.pop("num_classes", 5), pretrained=None, **kw))
    # non-trivial BN statistics, so that a wrongly paired buffer changes the logits
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return model.eval()


def test_resnet50_has_320_entries_and_appendix_a_rows():
    model = _model("resnet50", num_classes=400)
    names = spec_keys("resnet50")
    assert len(names) == 320
    shapes = {mm: list(t.shape) for mm, t in zip(names, model.state_dict().values())}
    rows = {0: ("backbone.conv1.conv.weight", [64, 3, 7, 7]), 5: ("backbone.conv1.bn.num_batches_tracked", []),
            18: ("backbone.layer1.0.conv3.conv.weight", [256, 64, 1, 1]),
            24: ("backbone.layer1.0.downsample.conv.weight", [256, 64, 1, 1]),
            30: ("backbone.layer1.1.conv1.conv.weight", [64, 256, 1, 1]),
            300: ("backbone.layer4.2.conv1.conv.weight", [512, 2048, 1, 1]),
            317: ("backbone.layer4.2.conv3.bn.num_batches_tracked", []),
            318: ("cls_head.fc_cls.weight", [400, 2048]), 319: ("cls_head.fc_cls.bias", [400])}
    for index, (key, shape) in rows.items():
        assert names[index] == key and shapes[key] == shape
    assert len(spec_keys("resnet101")) == 626


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_mmaction2_state_dict_gives_identical_logits(arch):
    source = _model(arch, seed=0)
    target = _model(arch, seed=1)
    report = load_state(target, as_mmaction2(source))
    assert report.missing == () and report.unexpected == () and len(report.loaded) == len(source.state_dict())
    x = torch.randn(1, 2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(target(x), source(x))


def test_full_checkpoint_and_module_prefix():
    source = _model()
    checkpoint = {"meta": {"epoch": 100}, "state_dict": {f"module.{k}": v for k, v in as_mmaction2(source).items()}}
    mapped = mmaction2_to_tsn(checkpoint)
    assert set(mapped) == set(source.state_dict())
    assert "backbone.layer2.0.downsample.1.running_var" in mapped and "head.fc.bias" in mapped
    report = load_state(_model(seed=3), checkpoint)
    assert report.missing == () and report.unexpected == ()


def test_wrong_shape_is_refused_naming_the_key():
    state = as_mmaction2(_model())
    state["backbone.layer1.0.conv1.conv.weight"] = torch.zeros(64, 64, 5, 5)  # resnet18: a 3x3 conv
    with pytest.raises(ValueError) as err:
        load_state(_model(seed=1), state)
    assert "backbone.layer1.0.conv1.conv.weight" in str(err.value)
    assert "[64, 64, 5, 5]" in str(err.value) and "[64, 64, 3, 3]" in str(err.value)


def test_other_class_count_needs_reinit_head():
    k400 = as_mmaction2(_model(num_classes=400))
    target = _model(num_classes=101, seed=1)
    with pytest.raises(ValueError, match="cls_head.fc_cls.weight"):
        load_state(target, k400)
    head_before = target.head.fc.weight.clone()
    report = load_state(target, k400, reinit_head=True)
    assert report.head_skipped == ("head.fc.weight", "head.fc.bias")
    assert torch.equal(target.head.fc.weight, head_before)
    torch.testing.assert_close(target.backbone.conv1.weight, k400["backbone.conv1.conv.weight"], rtol=0, atol=0)


def test_missing_and_unexpected_keys_are_reported():
    state = as_mmaction2(_model())
    del state["backbone.layer4.1.conv2.bn.running_var"]
    state["backbone.extra.weight"] = torch.zeros(1)
    report = load_state(_model(seed=1), state)
    assert report.missing == ("backbone.layer4.1.bn2.running_var",)
    assert report.unexpected == ("backbone.extra.weight",)


def test_convert_checkpoint_writes_model_and_meta(tmp_path):
    source = _model()
    src, dst = tmp_path / "tsn_mmaction2.pth", tmp_path / "tsn_ours.pth"
    torch.save({"meta": {"epoch": 100, "mmcv_version": "1.1.0"}, "state_dict": as_mmaction2(source)}, src)
    torch.save(convert_checkpoint(torch.load(src, weights_only=True), src.name), dst)
    written = torch.load(dst, map_location="cpu", weights_only=True)
    assert written["meta"]["epoch"] == 100 and written["meta"]["converted_from"] == "tsn_mmaction2.pth"
    assert list(written["model"]) == list(source.state_dict())
    target = _model(seed=2)
    report = load_state(target, written)
    assert report.missing == () and report.unexpected == ()
    x = torch.randn(1, 2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(target(x), source(x))
