"""DALI frame-folder pipelines (CPU backend) built from shipped recipes, on the synthetic frames.

Shapes are checked against the views MMAction2's pipelines give per video (M = crops x clips x clip_len, v0.24.1
mmaction/datasets/pipelines/formatting.py FormatShape); pixels against an independent two-step computation in the
style of MMAction2 (PIL decode -> cv2 INTER_LINEAR resize to the short side -> crop -> cv2 resize -> flip ->
flow x inversion), using the same per-video geometry draws.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jobs.recipes.config import load_config
from jobs.recipes.loaders import build_loader
from tests.helpers import synthetic_overrides
from tests.pipelines.reference import compare_with_reference

SMALL = ["data.videos_per_gpu=2", "data.val_videos_per_gpu=2", "data.test_videos_per_gpu=1", "data.workers=1"]

# (recipe, split, list kind, expected per-video (V, C, H, W)): crops x clips (x clip_len for RGB) views.
SHAPES = [
    ("tsn_r50_1x1x3_100e_kinetics400_rgb", "train", "rawframes", (3, 3, 224, 224)),
    ("tsn_r50_1x1x3_100e_kinetics400_rgb", "val", "rawframes", (3, 3, 224, 224)),
    ("tsn_r50_1x1x3_100e_kinetics400_rgb", "test", "rawframes", (250, 3, 224, 224)),
    ("tsn_r50_320p_1x1x3_100e_kinetics400_rgb", "train", "rawframes", (3, 3, 224, 224)),
    ("tsn_r50_320p_1x1x3_100e_kinetics400_rgb", "val", "rawframes", (3, 3, 256, 256)),
    ("tsn_r50_320p_1x1x3_100e_kinetics400_rgb", "test", "rawframes", (75, 3, 256, 256)),
    ("tsn_r50_dense_1x1x8_100e_kinetics400_rgb", "train", "rawframes", (8, 3, 224, 224)),
    ("tsn_r50_dense_1x1x8_100e_kinetics400_rgb", "test", "rawframes", (80, 3, 224, 224)),
    ("tsn_r50_320p_1x1x3_110e_kinetics400_flow", "train", "flow", (3, 10, 224, 224)),
    ("tsn_r50_320p_1x1x3_110e_kinetics400_flow", "val", "flow", (3, 10, 224, 224)),
    ("tsn_r50_320p_1x1x3_110e_kinetics400_flow", "test", "flow", (250, 10, 224, 224)),
]


def first_batch(cfg, split, gpu_graph=False):
    loader = build_loader(cfg, split, gpu_graph=gpu_graph)
    return loader, next(iter(loader))


@pytest.mark.parametrize("recipe,split,kind,shape", SHAPES)
def test_recipe_batch_shapes(synthetic_root, recipe, split, kind, shape):
    cfg = load_config(recipe, synthetic_overrides(synthetic_root, kind) + SMALL)
    loader, batch = first_batch(cfg, split)
    b = 2 if split != "test" else 1
    assert tuple(batch.clips.shape) == (b, *shape)
    assert batch.clips.dtype == torch.uint8                     # normalised later, on the training device
    assert batch.labels.shape == (b,) and batch.index.shape == (b,)
    records = loader.source.records
    assert [records[i].label for i in batch.index.tolist()] == batch.labels.tolist()


PIXEL_CASES = [
    ("tsn_r50_1x1x3_100e_kinetics400_rgb", "train", "rawframes", []),                       # MultiScaleCrop + flip
    ("tsn_r50_320p_1x1x3_100e_kinetics400_rgb", "train", "rawframes", []),                  # RandomResizedCrop
    ("tsn_r50_1x1x3_100e_kinetics400_rgb", "val", "rawframes", []),                         # CenterCrop 224
    ("tsn_r50_1x1x3_100e_kinetics400_rgb", "test", "rawframes", ["test.sampler.num_clips=2"]),       # TenCrop
    ("tsn_r50_320p_1x1x3_100e_kinetics400_rgb", "test", "rawframes", ["test.sampler.num_clips=2"]),  # ThreeCrop
    ("tsn_r50_320p_1x1x3_110e_kinetics400_flow", "train", "flow", ["train.augment.flip_ratio=1.0"]),  # flow Flip
    ("tsn_r50_dense_1x1x8_100e_kinetics400_rgb", "test", "rawframes", ["test.sampler.num_sample_positions=2"]),  # dense
]


@pytest.mark.parametrize("gpu_graph", [False, True], ids=["cpu-graph", "gpu-graph"])
@pytest.mark.parametrize("recipe,split,kind,extra", PIXEL_CASES)
def test_pixels_match_independent_computation(synthetic_root, recipe, split, kind, extra, gpu_graph):
    """Both graph variants (the CPU's ROI decode + host resample, and the GPU's full decode + DALI resample, here on
    the CPU backend) against the independent two-step reference."""
    cfg = load_config(recipe, synthetic_overrides(synthetic_root, kind) + SMALL + extra)
    flow = cfg.data.is_flow
    loader, batch = first_batch(cfg, split, gpu_graph)
    for view_got, view_ref, err in compare_with_reference(cfg, split, loader, batch):
        # One fused resample vs MMAction2's two: small interpolation differences only.
        assert err < 6.0, f"{recipe} {split}: mean abs diff {err:.2f}"
        if flow or view_ref.std() > 5:
            # The check can fail: the mirror image of the reference is far off.
            wrong = np.abs(view_got.astype(float) - view_ref[:, :, ::-1].astype(float)).mean()
            assert wrong > 4 * err + 0.25, f"mirror control {wrong:.3f} vs {err:.3f}"


def test_flow_flip_inverts_x_only(synthetic_root):
    """Flip on flow: x channels become 255 - mirrored x, y channels are only mirrored (MMAction2 v0.24.1
    augmentations.py Flip, and its test_augmentations Flip flow row)."""
    base = synthetic_overrides(synthetic_root, "flow") + SMALL + ["train.augment.crop=center", "train.augment.crop_size=224"]
    plain = first_batch(load_config("tsn_r50_320p_1x1x3_110e_kinetics400_flow", base + ["train.augment.flip_ratio=0.0"]), "train")[1]
    flipped = first_batch(load_config("tsn_r50_320p_1x1x3_110e_kinetics400_flow", base + ["train.augment.flip_ratio=1.0"]), "train")[1]
    assert plain.index.tolist() == flipped.index.tolist()
    a, b = plain.clips.int(), flipped.clips.int()
    assert torch_equal(b[:, :, 0::2], 255 - a[:, :, 0::2].flip(-1))
    assert torch_equal(b[:, :, 1::2], a[:, :, 1::2].flip(-1))


def torch_equal(x, y, tol=1):
    return int((x - y).abs().max()) <= tol
