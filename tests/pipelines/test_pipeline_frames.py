"""DALI frame-folder pipelines (CPU backend) built from shipped recipes, on the synthetic frames.

Shapes are checked against the views MMAction2's pipelines give per video (M = crops x clips x clip_len, v0.24.1
mmaction/datasets/pipelines/formatting.py FormatShape); pixels against an independent two-step computation in the
style of MMAction2 (PIL decode -> cv2 INTER_LINEAR resize to the short side -> crop -> cv2 resize -> flip ->
flow x inversion), using the same per-video geometry draws.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from jobs.training.config import load_config
from jobs.training.loaders import build_loader
from pipelines.annotations import FrameLayout
from pipelines.geometry import plan_views, rescale_size
from pipelines.sampling import video_rng
from tests.helpers import synthetic_overrides

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


def first_batch(cfg, split):
    loader = build_loader(cfg, split)
    return loader, next(iter(loader))


@pytest.mark.parametrize("recipe,split,kind,shape", SHAPES)
def test_recipe_batch_shapes(synthetic_root, recipe, split, kind, shape):
    cfg = load_config(recipe, synthetic_overrides(synthetic_root, kind) + SMALL)
    loader, batch = first_batch(cfg, split)
    b = 2 if split != "test" else 1
    assert tuple(batch.clips.shape) == (b, *shape)
    assert batch.clips.dtype.is_floating_point is False
    assert batch.labels.shape == (b,) and batch.index.shape == (b,)
    records = loader.source.records
    assert [records[i].label for i in batch.index.tolist()] == batch.labels.tolist()


def reference_views(cfg, split, record, video, epoch=0):
    """Independent pixels for one video: list over views of (frames, H, W, C) uint8."""
    d, part = cfg.data, getattr(cfg, split)
    flow = d.modality == "Flow"
    rng = video_rng(cfg.runtime.seed, epoch, video)
    indices = part.sampler(record.total_frames, d.first_index, rng)
    files = FrameLayout(d.filename_tmpl, d.first_index, d.modality).frame_paths(record, indices)
    images = [np.asarray(Image.open(f).convert("L" if flow else "RGB")) for f in files]
    h, w = images[0].shape[:2]
    views = plan_views(w, h, part.augment, flow=flow, rng=rng)
    aug = part.augment
    rw, rh = rescale_size(w, h, aug.short_side) if aug.resize == "short_side" else (w, h)
    out = []
    for view in views:
        # Undo the source mapping to get the integer box MMAction2 crops from the resized frame.
        x1, y1, x2, y2 = (round(v) for v in (view.box[0] * rw / w, view.box[1] * rh / h,
                                              view.box[2] * rw / w, view.box[3] * rh / h))
        frames = []
        for i, img in enumerate(images):
            resized = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_LINEAR)
            crop = cv2.resize(resized[y1:y2, x1:x2], (view.out_w, view.out_h), interpolation=cv2.INTER_LINEAR)
            if view.mirror:
                crop = crop[:, ::-1]
            if view.invert_flow_x and i % 2 == 0:
                crop = 255 - crop
            frames.append(crop.reshape(view.out_h, view.out_w, -1))
        out.append(np.stack(frames))
    return out


def as_frames(clip, flow):
    """(V, C, H, W) of one video -> (V * k, H, W, c) in sample order (flow: x, y, x, y, ...)."""
    v, c, h, w = clip.shape
    if flow:
        return clip.reshape(v * c, 1, h, w).permute(0, 2, 3, 1).numpy()
    return clip.permute(0, 2, 3, 1).numpy()


PIXEL_CASES = [
    ("tsn_r50_1x1x3_100e_kinetics400_rgb", "train", "rawframes", []),                       # MultiScaleCrop + flip
    ("tsn_r50_320p_1x1x3_100e_kinetics400_rgb", "train", "rawframes", []),                  # RandomResizedCrop
    ("tsn_r50_1x1x3_100e_kinetics400_rgb", "val", "rawframes", []),                         # CenterCrop 224
    ("tsn_r50_1x1x3_100e_kinetics400_rgb", "test", "rawframes", ["test.sampler.num_clips=2"]),       # TenCrop
    ("tsn_r50_320p_1x1x3_100e_kinetics400_rgb", "test", "rawframes", ["test.sampler.num_clips=2"]),  # ThreeCrop
    ("tsn_r50_320p_1x1x3_110e_kinetics400_flow", "train", "flow", ["train.augment.flip_ratio=1.0"]),  # flow Flip
]


@pytest.mark.parametrize("recipe,split,kind,extra", PIXEL_CASES)
def test_pixels_match_independent_computation(synthetic_root, recipe, split, kind, extra):
    cfg = load_config(recipe, synthetic_overrides(synthetic_root, kind) + SMALL + extra)
    flow = cfg.data.modality == "Flow"
    loader, batch = first_batch(cfg, split)
    for clip, video in zip(batch.clips, batch.index.tolist()):
        ref = reference_views(cfg, split, loader.source.records[video], video)
        got = as_frames(clip, flow).reshape(len(ref), -1, *ref[0].shape[1:])
        for view_got, view_ref in zip(got, ref):
            err = np.abs(view_got.astype(float) - view_ref.astype(float)).mean()
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
