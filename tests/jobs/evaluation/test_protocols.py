"""`tsn test --protocol`: each named protocol gives the views per video the MMAction2 TSN model zoo states
(v0.7.0 configs/recognition/tsn/*.py test pipelines), counted through pipelines.layout.ClipLayout.

Hand counts: 25 segment clips x TenCrop 224 (after short side 256) = 250 views; x ThreeCrop 256 = 75;
DenseSampleFrames 8 clips x 10 positions, CenterCrop 224 = 80. Flow keeps its 5-frame stacks: a view is one stack
of 2 x 5 = 10 channels, so views = clips x crops as for RGB.
"""
from __future__ import annotations

import numpy as np
import pytest

from jobs.evaluation.protocols import PROTOCOLS, with_protocol
from jobs.recipes.config import load_config
from pipelines.layout import ClipLayout

RGB = "tsn_r50_1x1x3_100e_kinetics400_rgb"         # val: 3 clips CenterCrop 224; test: 25 clips TenCrop 224
FLOW = "tsn_r50_320p_1x1x3_110e_kinetics400_flow"  # clip_len 5
VIDEO = "tsn_r50_video_1x1x8_100e_kinetics400_rgb"  # test: 25 clips ThreeCrop 256; val 8 clips CenterCrop 224

# protocol -> (views, crops, out side) for RGB, from the model zoo's wording
RGB_VIEWS = {"tencrop25": (250, 10, 224), "threecrop25": (75, 3, 256), "dense": (80, 1, 224)}


def layout(cfg, split) -> ClipLayout:
    return ClipLayout.of(split.sampler, split.augment, flow=cfg.data.is_flow)


def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("protocol", sorted(RGB_VIEWS))
@pytest.mark.parametrize("recipe", [RGB, VIDEO, "tsn_r18_synthetic_rgb"])
def test_rgb_protocol_views(recipe, protocol):
    cfg = load_config(recipe)
    test = with_protocol(cfg, protocol).test
    lay = layout(cfg, test)
    views, crops, side = RGB_VIEWS[protocol]
    assert (lay.views, lay.crops, lay.channels, lay.out_w, lay.out_h) == (views, crops, 3, side, side)
    s, a = test.sampler, test.augment
    assert (s.clip_len, s.frame_interval, s.test_mode) == (1, 1, True)
    assert (a.resize, a.short_side, a.flip_ratio) == ("short_side", 256, 0.0)


def test_protocol_frame_indices_follow_mmaction2_sampling():
    """The samplers the protocols build, called on a 300-frame video (start_index 1): MMAction2 v0.24.1
    SampleFrames(1, 1, 25, test_mode) and DenseSampleFrames(1, 1, 8, test_mode) frame numbers, written out."""
    cfg = load_config(RGB)
    clips25 = [7, 19, 31, 43, 55, 67, 79, 91, 103, 115, 127, 139, 151, 163, 175, 187, 199, 211, 223, 235,
               247, 259, 271, 283, 295]
    for protocol in ("tencrop25", "threecrop25"):
        assert with_protocol(cfg, protocol).test.sampler(300, 1, rng()).tolist() == clips25
    dense = with_protocol(cfg, "dense").test.sampler(300, 1, rng()).reshape(10, 8)
    starts = [1, 27, 53, 79, 105, 132, 158, 184, 210, 237]          # 10 positions, each 8 frames 8 apart
    assert dense.tolist() == [[s + 8 * i for i in range(8)] for s in starts]


@pytest.mark.parametrize("protocol, views", [("tencrop25", 250), ("threecrop25", 75), ("dense", 80)])
def test_flow_keeps_its_clip_length(protocol, views):
    cfg = load_config(FLOW)
    test = with_protocol(cfg, protocol).test
    lay = layout(cfg, test)
    assert test.sampler.clip_len == 5
    assert (lay.views, lay.channels) == (views, 10)
    # views per crop = clips (one 5-frame stack each); decoded images per video = clips x 5 x (x, y)
    assert lay.views_per_crop == lay.clips == {"tencrop25": 25, "threecrop25": 25, "dense": 80}[protocol]
    assert lay.frames_per_video == lay.clips * 10


def test_flow_tencrop_frame_indices():
    """SampleFrames(5, 1, 25, test_mode) on 299 frames (MMAction2 v0.24.1 loading.py): clip starts written out."""
    test = with_protocol(load_config(FLOW), "tencrop25").test
    starts = [6, 18, 30, 42, 54, 65, 77, 89, 101, 113, 124, 136, 148, 160, 172, 183, 195, 207, 219, 231, 242, 254,
              266, 278, 290]
    assert test.sampler(299, 1, rng()).reshape(25, 5).tolist() == [list(range(s, s + 5)) for s in starts]


@pytest.mark.parametrize("recipe, views, side", [(RGB, 3, 224), (VIDEO, 8, 224), (FLOW, 3, 224),
                                                 ("tsn_r50_320p_1x1x3_100e_kinetics400_rgb", 3, 256)])
def test_center_is_the_recipes_val_protocol(recipe, views, side):
    cfg = load_config(recipe)
    out = with_protocol(cfg, "center")
    assert out.test == cfg.val and out.val == cfg.val and out.train == cfg.train
    lay = layout(cfg, out.test)
    assert (lay.views, lay.crops, lay.out_w) == (views, 1, side)


def test_recipe_protocol_is_unchanged():
    cfg = load_config(VIDEO)
    assert with_protocol(cfg, "recipe") == cfg
    assert layout(cfg, cfg.test).views == 75                      # the recipe's own 25 clips x ThreeCrop 256


def test_only_the_test_split_changes():
    cfg = load_config(RGB)
    for protocol in PROTOCOLS:
        out = with_protocol(cfg, protocol)
        assert (out.train, out.val, out.data, out.model, out.optim) == (cfg.train, cfg.val, cfg.data, cfg.model,
                                                                         cfg.optim)


def test_unknown_protocol_raises_naming_the_choices():
    with pytest.raises(ValueError, match=r"protocol must be one of .*tencrop25.*got 'fivecrop'"):
        with_protocol(load_config(RGB), "fivecrop")
