"""The `--compare` baselines: OpenCV and decord decode the requested frames, views are cut the way MMAction2 does.

Expectations are independent of the code under test: PIL for JPEG frames, a full sequential PyAV decode for videos,
hand-computed crop offsets for the views, and the DALI loader for whole batches.
"""
from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from jobs.profiling.reference_loader import (
    ReferenceDataset,
    ReferenceSpec,
    build_reference_loader,
    decord_frames,
    mmcv_views,
    opencv_frames,
)
from jobs.recipes.config import load_config
from jobs.recipes.loaders import build_loader
from pipelines.annotations import FrameLayout, VideoRecord
from pipelines.geometry import Augment, View
from pipelines.sampling import Sampler
from tests.helpers import synthetic_overrides

cv2 = pytest.importorskip("cv2")
SMALL = ["data.videos_per_gpu=4", "data.workers=1", "test.sampler.num_clips=3", "model.arch=resnet18"]


def _frames_dir(root):
    return sorted(p for p in (root / "rawframes").iterdir() if p.is_dir())[0]


def test_opencv_frames_are_the_rgb_jpeg_pixels(synthetic_root):
    """cv2.imdecode + BGR->RGB against PIL's decode of the same files: both use libjpeg(-turbo) with the same
    IDCT, so at most 1 grey level apart (rounding of the upsampled chroma); a BGR/RGB mix-up would differ by the
    colour of the disc."""
    folder = _frames_dir(synthetic_root)
    paths = [str(folder / f"img_{i:05d}.jpg") for i in (1, 7, 7, 24)]
    got = opencv_frames(paths)
    for path, img in zip(paths, got):
        want = np.asarray(Image.open(path).convert("RGB")).astype(np.int16)
        assert img.shape == want.shape and img.dtype == np.uint8
        assert np.abs(img.astype(np.int16) - want).max() <= 1
        assert np.abs(img[..., ::-1].astype(np.int16) - want).max() > 10      # the channel order matters
    assert np.array_equal(got[1], got[2]) and got[1] is not got[2]           # a repeated index is a copy


def test_decord_frames_are_the_requested_frames(synthetic_root):
    pytest.importorskip("decord")
    path = sorted((synthetic_root / "videos").glob("*.mp4"))[0]
    with av.open(str(path)) as c:
        ref = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(np.int16)
    idx = [23, 0, 11, 11, 5, 17]
    got = decord_frames(str(path), idx)
    assert got.shape == (len(idx), *ref.shape[1:]) and got.dtype == np.uint8
    # Same FFmpeg H.264 decoder and swscale conversion: pixel-equal up to 1 level (decord ships its own FFmpeg).
    assert np.abs(got.astype(np.int16) - ref[idx]).max() <= 1
    for k, i in enumerate(idx):           # and each one is its own frame, not a neighbour
        dist = np.abs(ref - got[k].astype(np.int16)).mean(axis=(1, 2, 3))
        assert int(np.argmin(dist)) == i


def _image(w, h, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_mmcv_views_resize_the_frame_then_slice():
    """320x240 with Resize(-1, 256): the frame becomes 341x256 (int(320 * 256 / 240 + 0.5)); CenterCrop 224 slices
    [16:240, 58:282] there ((341 - 224) // 2 = 58). The view's box is in source pixels, as geometry.plan_views gives."""
    frame = _image(320, 240)
    aug = Augment(resize="short_side", short_side=256, crop="center", crop_size=224)
    box = (58 * 320 / 341, 16 * 240 / 256, 282 * 320 / 341, 240 * 240 / 256)
    (got,) = mmcv_views(frame, [View(box, 224, 224, mirror=False, invert_flow_x=False)], aug)
    want = cv2.resize(frame, (341, 256), interpolation=cv2.INTER_LINEAR)[16:240, 58:282]
    assert np.array_equal(got, want)


def test_mmcv_views_stretch_the_crop_and_mirror_last():
    """MultiScaleCrop 256x256 at x=84 of a 340x256 frame, then Resize((224, 224)), then Flip: the crop is resized on
    its own (its border pixels stay inside the crop) and mirrored after."""
    frame = _image(340, 256, seed=1)
    aug = Augment(resize="short_side", short_side=256, crop="multiscale", crop_size=224, out_size=224, flip_ratio=0.5)
    views = [View((84, 0, 340, 256), 224, 224, mirror=m, invert_flow_x=False) for m in (False, True)]
    plain, mirrored = mmcv_views(frame, views, aug)
    want = cv2.resize(np.ascontiguousarray(frame[:, 84:340]), (224, 224), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(plain, want)
    assert np.array_equal(mirrored, want[:, ::-1])


def test_opencv_item_equals_an_independent_mmaction_pipeline(synthetic_root):
    """One whole item: frames 1-based from the sampler, 80x64 -> Resize(-1, 64) is the identity, CenterCrop 56 is
    the slice [4:60, 12:68] of each frame (hand-computed offsets), PIL decode for the expectation."""
    folder = _frames_dir(synthetic_root)
    record = VideoRecord(str(folder), (3,), 24)
    sampler = Sampler(num_clips=3, test_mode=True)              # deterministic: indices 4, 12, 20 (+1)
    aug = Augment(resize="short_side", short_side=64, crop="center", crop_size=56)
    spec = ReferenceSpec("frames", "opencv", FrameLayout("img_{:05d}.jpg", 1), sampler, aug, 1, 0)
    clips, label, index = ReferenceDataset([record], spec)[(0, 0)]
    assert (label, index) == (3, 0) and tuple(clips.shape) == (3, 3, 56, 56)
    for f, i in enumerate((5, 13, 21)):
        want = np.asarray(Image.open(folder / f"img_{i:05d}.jpg").convert("RGB"))[4:60, 12:68].astype(np.int16)
        got = clips[f].permute(1, 2, 0).numpy().astype(np.int16)
        assert np.abs(got - want).max() <= 1


@pytest.mark.parametrize("kind,recipe,decoder", [
    ("rawframes", "tsn_r18_synthetic_rgb", "opencv"),
    ("videos", "tsn_r18_synthetic_video_rgb", "decord"),
])
@pytest.mark.parametrize("split", ["train", "test"])
def test_reference_batch_matches_the_dali_loader(synthetic_root, kind, recipe, decoder, split):
    """Same videos, labels, frames and boxes as the DALI loader. Test (CenterCrop of 80x64 frames: plain slices)
    is pixel-equal; train's MultiScaleCrop stretch differs by the rounding of two bilinear resamplers (cv2's
    fixed-point one against the loader's): at most 2 levels."""
    if decoder == "decord":
        pytest.importorskip("decord")
    cfg = load_config(recipe, synthetic_overrides(synthetic_root, kind) + SMALL)
    dali = next(iter(build_loader(cfg, split)))
    ref = next(iter(build_reference_loader(cfg, split, workers=0, decoder=decoder)))
    assert ref.index.tolist() == dali.index.tolist() and ref.labels.tolist() == dali.labels.tolist()
    assert ref.clips.shape == dali.clips.shape and ref.clips.dtype == dali.clips.dtype
    diff = np.abs(ref.clips.numpy().astype(np.int16) - dali.clips.numpy().astype(np.int16))
    if split == "test":
        assert diff.max() == 0
    else:
        assert diff.max() <= 2 and diff.mean() < 0.5
    # A frame off by one would be caught: the disc moves between frames.
    shifted = np.abs(ref.clips.numpy().astype(float) - dali.clips.roll(1, dims=1).numpy().astype(float)).mean()
    assert shifted > diff.mean() + 1.0


def test_reference_rejects_a_decoder_for_the_other_source(synthetic_root):
    cfg = load_config("tsn_r18_synthetic_rgb", synthetic_overrides(synthetic_root) + SMALL)
    with pytest.raises(ValueError, match="decord"):
        build_reference_loader(cfg, "train", workers=0, decoder="decord")
