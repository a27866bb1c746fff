"""Shipped recipes (jobs/recipes/*.toml) against MMAction2's TSN configs, and the config system's behaviour.

The expected values below are an independent table of MMAction2's configs/recognition/tsn/*.py (v0.7.0 values;
v0.24.1 where v0.7.0 cannot run as written: flow normalization / in_channels, MMIT test crop, ActivityNet
load_from), not derived from the TOML files.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from jobs.recipes.config import (
    CONFIG_DIR,
    Config,
    ConfigError,
    dump_config,
    load_config,
    shipped_configs,
)
from jobs.recipes.loaders import batch_size

IMNET_MEAN = (123.675, 116.28, 103.53)
FLOW_MEAN = (128.0, 128.0)

# The template: v0.7.0 configs/recognition/tsn/tsn_r50_1x1x3_100e_kinetics400_rgb.py. Columns:
#   K, arch, dropout, init_std | lr, wd, clip, lr_steps, epochs | videos_per_gpu |
#   train (clip_len, num_clips, dense), train crop | val (crop, size) | test (crop, size), test num_clips |
#   modality, source, normalize mean
TEMPLATE = {
    "K": 400, "arch": "resnet50", "drop": 0.4, "std": 0.01,
    "lr": 0.01, "wd": 1e-4, "clip": 40.0, "steps": (40, 80), "ep": 100,
    "vpg": 32,
    "train": (1, 3, False), "train_crop": "multiscale",
    "val": ("center", 224),
    "test": ("ten", 224), "test_clips": 25,
    "modality": "RGB", "source": "frames", "mean": IMNET_MEAN,
}


def row(**changes):
    unknown = set(changes) - set(TEMPLATE)
    assert not unknown, unknown
    return {**TEMPLATE, **changes}


RRC_320 = {"train_crop": "random_resized", "val": ("center", 256), "test": ("three", 256)}

EXPECTED = {
    # (a) Kinetics-400 RGB
    "tsn_r50_1x1x3_100e_kinetics400_rgb": row(),
    "tsn_r50_dense_1x1x5_100e_kinetics400_rgb": row(
        drop=0.5, std=0.001, lr=0.03, clip=20.0, vpg=16, train=(1, 5, True), test=("center", 224), test_clips=8),
    "tsn_r50_dense_1x1x8_100e_kinetics400_rgb": row(
        lr=0.005, vpg=12, train=(1, 8, True), test=("center", 224), test_clips=8),
    "tsn_r50_320p_1x1x3_100e_kinetics400_rgb": row(**RRC_320),
    "tsn_r50_320p_1x1x8_100e_kinetics400_rgb": row(lr=0.00375, vpg=12, train=(1, 8, False), **RRC_320),
    "tsn_r50_video_1x1x8_100e_kinetics400_rgb": row(
        train=(1, 8, False), test=("three", 256), source="video"),
    "tsn_r50_video_dense_1x1x8_100e_kinetics400_rgb": row(
        train=(1, 8, True), test=("center", 224), test_clips=8, source="video"),
    "tsn_r50_256p_1x1x3_100e_kinetics400_rgb": row(),
    "tsn_r50_256p_1x1x8_100e_kinetics400_rgb": row(lr=0.00375, vpg=12, train=(1, 8, False), **RRC_320),
    # (b) Kinetics-400 flow (v0.24.1 normalization and in_channels)
    "tsn_r50_320p_1x1x3_110e_kinetics400_flow": row(
        lr=0.005, steps=(70, 100), ep=110, train=(5, 3, False), train_crop="random_resized",
        modality="Flow", mean=FLOW_MEAN),
    "tsn_r50_320p_1x1x8_110e_kinetics400_flow": row(
        lr=0.001875, steps=(70, 100), ep=110, vpg=12, train=(5, 8, False), train_crop="random_resized",
        modality="Flow", mean=FLOW_MEAN),
    # (c) UCF-101
    "tsn_r50_1x1x3_80e_ucf101_rgb": row(
        K=101, drop=0.8, std=0.001, lr=0.001, wd=5e-4, steps=(30, 60), ep=80, mean=(104.0, 117.0, 128.0)),
    "tsn_r50_1x1x3_75e_ucf101_rgb": row(
        K=101, drop=0.4, std=0.001, lr=0.00128, wd=5e-4, steps=(), ep=75, **RRC_320),
    # (d) Something-Something
    "tsn_r50_1x1x8_50e_sthv1_rgb": row(
        K=174, drop=0.5, std=0.01, lr=0.02, wd=5e-4, clip=20.0, steps=(20, 40), ep=50, vpg=16,
        train=(1, 8, False), test_clips=8),
    "tsn_r50_1x1x16_50e_sthv1_rgb": row(
        K=174, drop=0.5, std=0.001, lr=0.01, wd=5e-4, clip=20.0, steps=(20, 40), ep=50, vpg=4,
        train=(1, 16, False), test=("center", 224), test_clips=8),
    "tsn_r50_1x1x8_50e_sthv2_rgb": row(
        K=174, drop=0.5, std=0.01, lr=0.02, wd=1e-4, clip=40.0, steps=(20, 40), ep=50, vpg=16,
        train=(1, 8, False), test_clips=8),
    "tsn_r50_1x1x16_50e_sthv2_rgb": row(
        K=174, drop=0.5, std=0.001, lr=0.005, wd=5e-4, clip=20.0, steps=(20, 40), ep=50, vpg=4,
        train=(1, 16, False), test_clips=16),
    # (e) MiT / MMIT
    "tsn_r50_1x1x6_100e_mit_rgb": row(
        K=339, lr=0.005, vpg=16, train=(1, 6, False), test=("three", 256), test_clips=6),
    "tsn_r101_1x1x5_50e_mmit_rgb": row(
        K=313, arch="resnet101", drop=0.5, lr=0.01, clip=20.0, steps=(20, 40), ep=50, vpg=16,
        train=(1, 5, False), test=("center", 256), test_clips=5),
    # (f) ActivityNet
    "tsn_r50_320p_1x1x8_50e_activitynet_video_rgb": row(
        K=200, drop=0.8, lr=0.001, steps=(20, 40), ep=50, vpg=8, train=(1, 8, False), **RRC_320),
    "tsn_r50_320p_1x1x8_50e_activitynet_clip_rgb": row(
        K=200, drop=0.8, lr=0.001, steps=(20, 40), ep=50, vpg=8, train=(1, 8, False), **RRC_320),
    "tsn_r50_320p_1x1x8_150e_activitynet_video_flow": row(
        K=200, drop=0.8, lr=0.001, steps=(60, 120), ep=150, vpg=8, train=(5, 8, False),
        train_crop="random_resized", modality="Flow", mean=FLOW_MEAN),
    "tsn_r50_320p_1x1x8_150e_activitynet_clip_flow": row(
        K=200, drop=0.8, lr=0.001, steps=(60, 120), ep=150, vpg=8, train=(5, 8, False),
        train_crop="random_resized", modality="Flow", mean=FLOW_MEAN),
    # (g) data_benchmark: training configs
    "tsn_r50_multiscalecrop_340x256_1x1x3_100e_kinetics400_rgb": row(),
    "tsn_r50_multiscalecrop_320p_1x1x3_100e_kinetics400_rgb": row(),
    "tsn_r50_multiscalecrop_256p_1x1x3_100e_kinetics400_rgb": row(),
    "tsn_r50_randomresizedcrop_340x256_1x1x3_100e_kinetics400_rgb": row(train_crop="random_resized"),
    "tsn_r50_randomresizedcrop_320p_1x1x3_100e_kinetics400_rgb": row(**RRC_320),
    "tsn_r50_randomresizedcrop_256p_1x1x3_100e_kinetics400_rgb": row(**RRC_320),
    # (g) data_benchmark: test-only configs (K400 1x1x3 model, only the test pipeline differs)
    "tsn_r50_test_340x256_1x1x25_10crop_100e_kinetics400_rgb": row(),
    "tsn_r50_test_320p_1x1x25_10crop_100e_kinetics400_rgb": row(),
    "tsn_r50_test_256p_1x1x25_10crop_100e_kinetics400_rgb": row(),
    "tsn_r50_test_340x256_1x1x25_3crop_100e_kinetics400_rgb": row(test=("three", 256)),
    "tsn_r50_test_320p_1x1x25_3crop_100e_kinetics400_rgb": row(test=("three", 256)),
    "tsn_r50_test_256p_1x1x25_3crop_100e_kinetics400_rgb": row(test=("three", 256)),
    # synthetic demo recipes (brief of the demo, not MMAction2)
    "tsn_r18_synthetic_rgb": row(
        K=12, arch="resnet18", drop=0.5, lr=0.02, steps=(15,), ep=20, vpg=16, val=("center", 56), test=("center", 56)),
    "tsn_r18_synthetic_flow": row(
        K=12, arch="resnet18", drop=0.5, lr=0.02, steps=(15,), ep=20, vpg=16, train=(5, 3, False),
        val=("center", 56), test=("center", 56), modality="Flow", mean=FLOW_MEAN),
    "tsn_r18_synthetic_video_rgb": row(
        K=12, arch="resnet18", drop=0.5, lr=0.02, steps=(15,), ep=20, vpg=16, val=("center", 56), test=("center", 56),
        source="video"),
}


@pytest.fixture(scope="module")
def cfgs() -> dict[str, Config]:
    return {name: load_config(name) for name in shipped_configs()}


# ------------------------------------------------------------------------------------------ shipped recipes

def test_every_model_zoo_row_is_shipped():
    shipped = set(shipped_configs())
    missing = sorted(set(EXPECTED) - shipped)
    assert not missing, f"recipes missing from jobs/configs: {missing}"
    assert not [n for n in shipped if n.startswith("_")], "bases must not be listed as recipes"
    untested = sorted(shipped - set(EXPECTED))
    assert not untested, f"shipped recipes without an expected row in this test: {untested}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recipe_matches_spec(cfgs, name):
    cfg, exp = cfgs[name], EXPECTED[name]
    assert cfg.name == name
    m, o, d = cfg.model, cfg.optim, cfg.data
    assert (m.num_classes, m.arch, m.dropout, m.init_std) == (exp["K"], exp["arch"], exp["drop"], exp["std"])
    assert o.lr == pytest.approx(exp["lr"]) and o.weight_decay == pytest.approx(exp["wd"])
    assert (o.grad_clip, o.lr_steps, o.epochs, o.momentum, o.gamma) == (exp["clip"], exp["steps"], exp["ep"], 0.9, 0.1)
    assert d.videos_per_gpu == exp["vpg"]
    ts = cfg.train.sampler
    assert (ts.clip_len, ts.num_clips, ts.dense, ts.test_mode, ts.frame_interval) == (*exp["train"], False, 1)
    assert cfg.train.augment.crop == exp["train_crop"]
    assert (cfg.val.augment.crop, cfg.val.augment.crop_size) == exp["val"]
    assert (cfg.test.augment.crop, cfg.test.augment.crop_size) == exp["test"]
    assert cfg.test.sampler.num_clips == exp["test_clips"]
    assert (d.modality, d.source) == (exp["modality"], exp["source"])
    assert cfg.normalize.mean == pytest.approx(exp["mean"])
    # the same temporal unit in all three splits; val/test never flip
    assert cfg.val.sampler.clip_len == cfg.test.sampler.clip_len == ts.clip_len
    assert cfg.val.augment.flip_ratio == cfg.test.augment.flip_ratio == 0.0
    assert cfg.runtime.average_clips == "none"


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if "synthetic" not in n))
def test_model_zoo_common_settings(cfgs, name):
    cfg = cfgs[name]
    assert cfg.model.pretrained == "imagenet"
    expected_in = 2 * cfg.train.sampler.clip_len if cfg.data.is_flow else 3
    assert cfg.model.in_channels == expected_in
    for split in (cfg.train, cfg.val, cfg.test):
        assert split.augment.resize in ("short_side", "none")
        assert split.augment.short_side == 256
    if cfg.train.augment.crop in ("multiscale", "random_resized"):
        assert cfg.train.augment.out_size == 224
    assert cfg.test.sampler.test_mode == cfg.val.sampler.test_mode
    # Unset in the recipe: the device's default, 2 videos per test batch on the CPU, 4 on a GPU (MMAction2 v0.18+
    # tests one video per batch; per-video results do not depend on it, tests/jobs/evaluation/test_test_batch.py).
    assert cfg.data.test_videos_per_gpu is None
    assert (batch_size(cfg, "test", "cpu"), batch_size(cfg, "test", "gpu")) == (2, 4)


def test_template(cfgs):
    cfg = cfgs["tsn_r50_1x1x3_100e_kinetics400_rgb"]
    d = cfg.data
    assert d.train_list == "data/kinetics400/kinetics400_train_list_rawframes.txt"
    assert d.val_list == d.test_list == "data/kinetics400/kinetics400_val_list_rawframes.txt"
    assert d.train_prefix == "data/kinetics400/rawframes_train"
    assert d.val_prefix == d.test_prefix == "data/kinetics400/rawframes_val"
    assert (d.filename_tmpl, d.first_index, d.with_offset, d.workers) == ("img_{:05}.jpg", 1, False, 4)
    assert cfg.normalize.std == pytest.approx((58.395, 57.12, 57.375))
    aug = cfg.train.augment
    got = (aug.resize, aug.short_side, aug.crop_size, aug.out_size, aug.flip_ratio)
    assert got == ("short_side", 256, 224, 224, 0.5)
    assert aug.scales == (1.0, 0.875, 0.75, 0.66)
    assert (aug.max_wh_scale_gap, aug.random_crop, aug.num_fixed_crops) == (1, False, 5)
    assert cfg.val.sampler.num_clips == 3 and cfg.val.sampler.test_mode and cfg.test.sampler.test_mode
    assert (cfg.runtime.checkpoint_interval, cfg.runtime.eval_interval) == (5, 5)
    assert cfg.runtime.metrics == ("top_k_accuracy", "mean_class_accuracy")
    assert (cfg.optim.loss, cfg.optim.fc_lr5, cfg.optim.warmup_epochs) == ("cross_entropy", False, 0)
    assert (cfg.model.norm_eval, cfg.model.partial_bn) == (False, False)
    # multiscalecrop_340x256 is the template on the same frames
    other = cfgs["tsn_r50_multiscalecrop_340x256_1x1x3_100e_kinetics400_rgb"]
    assert dataclasses.replace(other, name=cfg.name) == cfg


@pytest.mark.parametrize("res,suffix", [("340x256", ""), ("320p", "_320p"), ("256p", "_256p")])
def test_data_benchmark_frame_sets(cfgs, res, suffix):
    for kind in ("multiscalecrop", "randomresizedcrop"):
        d = cfgs[f"tsn_r50_{kind}_{res}_1x1x3_100e_kinetics400_rgb"].data
        assert d.train_list == f"data/kinetics400/kinetics400_train_list_rawframes{suffix}.txt"
        assert d.test_list == d.val_list == f"data/kinetics400/kinetics400_val_list_rawframes{suffix}.txt"
        assert d.train_prefix == f"data/kinetics400/rawframes_train{suffix}"
        assert d.test_prefix == d.val_prefix == f"data/kinetics400/rawframes_val{suffix}"
    for crops in ("10crop", "3crop"):
        cfg = cfgs[f"tsn_r50_test_{res}_1x1x25_{crops}_100e_kinetics400_rgb"]
        assert cfg.data.test_list == f"data/kinetics400/kinetics400_val_list_rawframes{suffix}.txt"
        assert cfg.data.test_prefix == f"data/kinetics400/rawframes_val{suffix}"
        assert cfg.data.train_list == "" and cfg.data.val_list == ""      # test-only
        assert cfg.test.sampler.test_mode and cfg.test.augment.short_side == 256


def test_320p_and_256p_rows(cfgs):
    for name in ("tsn_r50_320p_1x1x3_100e_kinetics400_rgb", "tsn_r50_320p_1x1x8_100e_kinetics400_rgb"):
        d = cfgs[name].data
        assert d.train_list == "data/kinetics400/kinetics400_train_list_rawframes_320p.txt"
        assert d.val_prefix == "data/kinetics400/rawframes_val_320p"
    for name in ("tsn_r50_256p_1x1x3_100e_kinetics400_rgb", "tsn_r50_256p_1x1x8_100e_kinetics400_rgb"):
        d = cfgs[name].data
        assert d.train_list == "data/kinetics400/kinetics400_train_list_rawframes_256p.txt"
        assert d.test_prefix == "data/kinetics400/rawframes_val_256p"
    # the 256p 1x1x3 checkpoint came from data_benchmark/multiscalecrop_256p: same recipe
    a = cfgs["tsn_r50_256p_1x1x3_100e_kinetics400_rgb"]
    b = cfgs["tsn_r50_multiscalecrop_256p_1x1x3_100e_kinetics400_rgb"]
    assert dataclasses.replace(a, name=b.name) == b
    # the 256p 1x1x8 row = the 320p 1x1x8 recipe on 256p frames
    a, b = cfgs["tsn_r50_256p_1x1x8_100e_kinetics400_rgb"], cfgs["tsn_r50_320p_1x1x8_100e_kinetics400_rgb"]
    assert dataclasses.replace(a, name=b.name, data=b.data) == b
    r = cfgs["tsn_r50_320p_1x1x8_100e_kinetics400_rgb"].runtime
    assert (r.checkpoint_interval, r.eval_interval) == (1, 2)


def test_dense_recipes(cfgs):
    c5 = cfgs["tsn_r50_dense_1x1x5_100e_kinetics400_rgb"]
    assert c5.train.augment.num_fixed_crops == 13 and c5.train.sampler.sample_range == 64
    # quirk: trains with 5 clips, evaluates DenseSampleFrames(1,1,8) x 10 positions
    for s in (c5.val.sampler, c5.test.sampler):
        assert (s.dense, s.num_clips, s.test_mode, s.num_sample_positions, s.num_offsets) == (True, 8, True, 10, 80)
    assert c5.data.val_videos_per_gpu == 4
    assert (c5.runtime.checkpoint_interval, c5.runtime.eval_interval) == (1, 2)
    c8 = cfgs["tsn_r50_dense_1x1x8_100e_kinetics400_rgb"]
    assert c8.train.augment.num_fixed_crops == 13 and c8.test.sampler.num_offsets == 80
    assert (c8.runtime.checkpoint_interval, c8.runtime.eval_interval) == (1, 5)


def test_video_recipes(cfgs):
    for name in ("tsn_r50_video_1x1x8_100e_kinetics400_rgb", "tsn_r50_video_dense_1x1x8_100e_kinetics400_rgb"):
        cfg = cfgs[name]
        assert cfg.data.first_index == 0
        assert cfg.data.train_list == "data/kinetics400/kinetics400_train_list_videos.txt"
        assert cfg.data.val_prefix == "data/kinetics400/videos_val"
        assert cfg.train.augment.resize == "none"            # no Resize(-1, 256) before MultiScaleCrop
        assert cfg.train.augment.num_fixed_crops == 5
        assert cfg.val.augment.resize == cfg.test.augment.resize == "short_side"
        assert cfg.runtime.checkpoint_interval == 1
    assert cfgs["tsn_r50_video_dense_1x1x8_100e_kinetics400_rgb"].data.val_videos_per_gpu == 1
    assert cfgs["tsn_r50_video_dense_1x1x8_100e_kinetics400_rgb"].test.sampler.dense


@pytest.mark.parametrize("name", [n for n in EXPECTED if EXPECTED[n]["modality"] == "Flow"])
def test_flow_recipes(cfgs, name):
    cfg = cfgs[name]
    assert cfg.model.in_channels == 10 == 2 * cfg.train.sampler.clip_len
    assert cfg.normalize.mean == cfg.normalize.std == (128.0, 128.0)
    assert cfg.val.sampler.clip_len == cfg.test.sampler.clip_len == 5


def test_kinetics_flow_data(cfgs):
    for n in (3, 8):
        d = cfgs[f"tsn_r50_320p_1x1x{n}_110e_kinetics400_flow"].data
        assert (d.filename_tmpl, d.first_index) == ("{}_{:05d}.jpg", 1)
        assert d.train_list == "data/kinetics400/kinetics_flow_train_list.txt"
        assert d.test_list == "data/kinetics400/kinetics_flow_val_list.txt"
        assert d.train_prefix == "data/kinetics400/rawframes_train_320p"
        assert cfgs[f"tsn_r50_320p_1x1x{n}_110e_kinetics400_flow"].train.augment.flip_ratio == 0.5


def test_ucf101(cfgs):
    c80 = cfgs["tsn_r50_1x1x3_80e_ucf101_rgb"]
    assert c80.normalize.std == (1.0, 1.0, 1.0)                  # quirk: std 1, mean [104, 117, 128]
    assert c80.data.train_list == "data/ucf101/ucf101_train_split_1_rawframes.txt"
    assert c80.data.test_list == "data/ucf101/ucf101_val_split_1_rawframes.txt"
    assert c80.data.train_prefix == "data/ucf101/rawframes/"
    c75 = cfgs["tsn_r50_1x1x3_75e_ucf101_rgb"]
    assert c75.normalize.std == pytest.approx((58.395, 57.12, 57.375))
    assert c75.optim.lr_steps == ()                              # constant lr


def test_something_something(cfgs):
    v1_8, v1_16 = cfgs["tsn_r50_1x1x8_50e_sthv1_rgb"], cfgs["tsn_r50_1x1x16_50e_sthv1_rgb"]
    for cfg in (v1_8, v1_16):
        assert cfg.model.norm_eval is True
        assert (cfg.data.filename_tmpl, cfg.data.first_index) == ("{:05}.jpg", 1)
        assert cfg.data.train_list == "data/sthv1/sthv1_train_list_rawframes.txt"
        assert cfg.data.val_prefix == "data/sthv1/rawframes"
        assert cfg.train.augment.num_fixed_crops == 13
        assert cfg.val.sampler.test_mode and cfg.test.sampler.test_mode
    assert v1_8.train.augment.flip_ratio == 0.0
    assert v1_16.train.augment.flip_ratio == 0.5                 # sic
    assert v1_16.val.sampler.num_clips == v1_16.test.sampler.num_clips == 8     # quirk: 8 clips, not 16
    assert (v1_16.runtime.checkpoint_interval, v1_16.runtime.eval_interval) == (1, 2)
    v2_8, v2_16 = cfgs["tsn_r50_1x1x8_50e_sthv2_rgb"], cfgs["tsn_r50_1x1x16_50e_sthv2_rgb"]
    for cfg in (v2_8, v2_16):
        assert cfg.data.filename_tmpl == "img_{:05}.jpg"
        assert cfg.data.train_list == "data/sthv2/sthv2_train_list_rawframes.txt"
        assert cfg.train.augment.flip_ratio == 0.0 and cfg.train.augment.num_fixed_crops == 5
        assert not cfg.val.sampler.test_mode and not cfg.test.sampler.test_mode   # quirk: random eval offsets
        assert cfg.val.sampler.num_clips == cfg.train.sampler.num_clips
    assert (v2_8.data.workers, v2_16.data.workers) == (2, 4)
    assert (v2_16.runtime.checkpoint_interval, v2_16.runtime.eval_interval) == (1, 2)


def test_mit_and_mmit(cfgs):
    mit = cfgs["tsn_r50_1x1x6_100e_mit_rgb"]
    aug = mit.train.augment
    assert (aug.scales, aug.max_wh_scale_gap, aug.random_crop) == ((1.0, 0.8), 0, False)
    assert mit.data.train_prefix == "data/mit/rawframes/training"
    assert mit.data.val_prefix == mit.data.test_prefix == "/data/mit/rawframes/validation/"     # sic
    assert mit.data.train_list == "data/mit/mit_train_list_rawframes.txt"
    assert mit.runtime.eval_interval == mit.optim.epochs                 # no evaluation dict upstream
    mmit = cfgs["tsn_r101_1x1x5_50e_mmit_rgb"]
    assert mmit.data.multi_class is True
    assert (mmit.optim.loss, mmit.optim.loss_weight, mmit.optim.fc_lr5) == ("bce", 160.0, True)
    assert mmit.runtime.metrics == ("mmit_mean_average_precision",)
    assert mmit.data.train_list == "data/mmit/mmit_train_list_rawframes.txt"
    assert mmit.data.val_prefix == "/data/mmit/rawframes/validation/"   # sic


@pytest.mark.parametrize("kind", ["video", "clip"])
def test_activitynet(cfgs, kind):
    rgb = cfgs[f"tsn_r50_320p_1x1x8_50e_activitynet_{kind}_rgb"]
    flow = cfgs[f"tsn_r50_320p_1x1x8_150e_activitynet_{kind}_flow"]
    assert rgb.runtime.load_from == "tsn_r50_320p_1x1x8_100e_kinetics400_rgb_20200702-ef80e3d7.pth"
    assert flow.runtime.load_from == "tsn_r50_320p_1x1x8_110e_kinetics400_flow_20200705-1f39486b.pth"
    assert (rgb.data.filename_tmpl, flow.data.filename_tmpl) == ("image_{:05d}.jpg", "flow_{}_{:05d}.jpg")
    for cfg in (rgb, flow):
        d = cfg.data
        assert (d.first_index, d.with_offset) == (0, True)
        assert d.train_list == f"data/ActivityNet/anet_train_{kind}.txt"
        assert d.val_list == f"data/ActivityNet/anet_val_{kind}.txt"
        assert d.test_list == "data/ActivityNet/anet_val_clip.txt"
        assert cfg.train.augment.flip_ratio == 0.5
    assert rgb.data.train_prefix == "data/ActivityNet/rgb" and flow.data.train_prefix == "data/ActivityNet/flow"
    assert (rgb.runtime.checkpoint_interval, flow.runtime.checkpoint_interval) == (1, 5)


def test_synthetic_recipes(cfgs):
    for name in ("tsn_r18_synthetic_rgb", "tsn_r18_synthetic_flow", "tsn_r18_synthetic_video_rgb"):
        cfg = cfgs[name]
        assert cfg.model.pretrained is None                       # "none" in TOML
        assert (cfg.data.workers, cfg.data.threads, cfg.runtime.amp) == (1, 2, False)
        aug = cfg.train.augment
        assert (aug.short_side, aug.crop, aug.crop_size, aug.out_size) == (64, "multiscale", 56, 56)
        assert (cfg.runtime.eval_interval, cfg.runtime.checkpoint_interval, cfg.runtime.log_interval) == (5, 1, 5)
        assert cfg.val.sampler.num_clips == 3 and cfg.test.sampler.num_clips == 25
        assert cfg.data.train_list.startswith("data/synthetic/")
    assert cfgs["tsn_r18_synthetic_flow"].train.augment.flip_ratio == 0.0   # flip would change the direction class
    assert cfgs["tsn_r18_synthetic_flow"].data.filename_tmpl == "{}_{:05d}.jpg"
    assert cfgs["tsn_r18_synthetic_flow"].data.train_list == "data/synthetic/train_list_flow.txt"
    assert cfgs["tsn_r18_synthetic_video_rgb"].data.train_list == "data/synthetic/train_list_videos.txt"
    assert cfgs["tsn_r18_synthetic_video_rgb"].data.first_index == 0


def test_version_choices_are_commented():
    """Every place that takes the v0.24.1 definition over v0.7.0 says so in the file."""
    for name in ("tsn_r50_320p_1x1x3_110e_kinetics400_flow", "tsn_r50_320p_1x1x8_110e_kinetics400_flow",
                 "tsn_r50_1x1x6_100e_mit_rgb", "tsn_r101_1x1x5_50e_mmit_rgb",
                 "tsn_r50_320p_1x1x8_50e_activitynet_video_rgb", "tsn_r50_320p_1x1x8_50e_activitynet_clip_rgb",
                 "tsn_r50_320p_1x1x8_150e_activitynet_video_flow", "tsn_r50_320p_1x1x8_150e_activitynet_clip_flow"):
        assert "v0.24.1 over v0.7.0" in (CONFIG_DIR / f"{name}.toml").read_text(), name
    for name in ("tsn_r50_1x1x8_50e_sthv2_rgb", "tsn_r50_1x1x16_50e_sthv2_rgb", "tsn_r50_1x1x16_50e_sthv1_rgb",
                 "tsn_r50_1x1x3_80e_ucf101_rgb", "tsn_r50_dense_1x1x5_100e_kinetics400_rgb"):
        assert "QUIRK" in (CONFIG_DIR / f"{name}.toml").read_text(), name


# ------------------------------------------------------------------------------------------ config system

BASE = CONFIG_DIR / "_base_tsn_r50_rgb.toml"


def _recipe(tmp_path: Path, body: str, name: str = "recipe.toml", base: Path | str = BASE) -> Path:
    path = tmp_path / name
    path.write_text(f'base = "{base}"\n{body}')
    return path


def test_unknown_key_names_file_and_key(tmp_path):
    path = _recipe(tmp_path, "[model]\ndropuot = 0.5\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert str(path) in str(err.value) and "model.dropuot" in str(err.value)
    path = _recipe(tmp_path, "[train.augment]\nflip = 0.5\n", name="other.toml")
    with pytest.raises(ConfigError, match=r"train\.augment\.flip: unknown key"):
        load_config(str(path))


def test_wrong_type_names_key(tmp_path):
    path = _recipe(tmp_path, '[model]\ndropout = "high"\n')
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert str(path) in str(err.value) and "model.dropout" in str(err.value)


def test_bad_value_names_section(tmp_path):
    path = _recipe(tmp_path, '[train.augment]\ncrop = "diagonal"\n')
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert str(path) in str(err.value) and "train.augment" in str(err.value) and "diagonal" in str(err.value)


def test_recipe_cannot_be_a_base_and_flow_checks_in_channels(tmp_path):
    path = _recipe(tmp_path, "[model]\nin_channels = 3\n",
                   base=CONFIG_DIR / "tsn_r50_320p_1x1x3_110e_kinetics400_flow.toml")
    # a shipped recipe names a base itself, so it cannot be used as one
    with pytest.raises(ConfigError, match="one level only"):
        load_config(str(path))
    with pytest.raises(ConfigError, match="in_channels"):
        load_config("tsn_r50_320p_1x1x3_110e_kinetics400_flow", ["model.in_channels=3"])


def test_two_level_inheritance_is_refused(tmp_path):
    _recipe(tmp_path, "[optim]\nlr = 0.1\n", name="middle.toml")
    top = _recipe(tmp_path, "[optim]\nepochs = 3\n", name="top.toml", base="middle.toml")
    with pytest.raises(ConfigError, match="one level only"):
        load_config(str(top))


def test_relative_base_and_merge(tmp_path):
    path = _recipe(tmp_path, "[optim]\nlr = 0.5\n[train.augment]\ncrop = \"random_resized\"\n")
    cfg = load_config(str(path))
    assert cfg.name == "recipe"
    assert cfg.optim.lr == 0.5 and cfg.optim.epochs == 100            # merged key by key
    assert cfg.train.augment.crop == "random_resized" and cfg.train.augment.flip_ratio == 0.5


def test_cfg_options_overrides():
    cfg = load_config("tsn_r50_1x1x3_100e_kinetics400_rgb",
                      ["optim.lr=0.02", "data.train_list=foo.txt", "train.augment.scales=[1, 0.8]",
                       "optim.lr_steps=[]", "model.pretrained=none", "data.videos_per_gpu=8"])
    assert cfg.optim.lr == 0.02 and isinstance(cfg.optim.lr, float)
    assert cfg.data.train_list == "foo.txt"
    assert cfg.train.augment.scales == (1.0, 0.8) and all(type(s) is float for s in cfg.train.augment.scales)
    assert cfg.optim.lr_steps == ()
    assert cfg.model.pretrained is None
    assert cfg.data.videos_per_gpu == 8 and type(cfg.data.videos_per_gpu) is int
    # untouched values stay
    assert cfg.data.val_list == "data/kinetics400/kinetics400_val_list_rawframes.txt"
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        load_config("tsn_r50_1x1x3_100e_kinetics400_rgb", ["optim.lr=fast"])
    with pytest.raises(ConfigError, match="optim.lrr"):
        load_config("tsn_r50_1x1x3_100e_kinetics400_rgb", ["optim.lrr=0.1"])


def test_unknown_recipe_name():
    with pytest.raises(ConfigError, match="no such config"):
        load_config("tsn_r50_no_such_recipe")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dump_round_trip(tmp_path, name):
    cfg = load_config(name)
    path = tmp_path / f"{name}.json"
    dump_config(cfg, path)
    json.loads(path.read_text())
    assert load_config(str(path)) == cfg
