"""Frames are decoded by their content, as MMAction2 does (v0.24.1 RawFrameDecode -> mmcv.imfrombytes ->
cv2.imdecode): a PNG saved under a `.jpg` name is a frame like any other, on the CPU graph and on the GPU's graph
(here on the CPU backend); only bytes no decoder reads are bad samples.

The PNG twin of the synthetic set holds, under the same `.jpg` names, PNG files of PIL's decode of every JPEG frame.
PNG is lossless, so its pixels are PIL's decode of the PNG (the independent reference of tests/pipelines/reference.py
opens the files with PIL, which also goes by content) and, frame for frame, what the JPEG twin decodes to.
"""
from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from jobs.recipes.config import load_config
from jobs.recipes.loaders import build_loader
from pipelines.jpeg import BadJpeg, image_size
from tests.helpers import synthetic_overrides
from tests.pipelines.reference import compare_with_reference

SMALL = ["data.videos_per_gpu=2", "data.val_videos_per_gpu=2", "data.test_videos_per_gpu=1", "data.workers=1"]


def png_bytes(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def png_root(synthetic_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("png_twin")
    shutil.copytree(synthetic_root, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("videos"))
    for frame in (root / "rawframes").glob("*/img_*.jpg"):
        frame.write_bytes(png_bytes(np.asarray(Image.open(frame).convert("RGB"))))
    return root


def test_sizes_come_from_the_content():
    pixels = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    png = png_bytes(pixels)
    assert image_size(np.frombuffer(png, np.uint8)) == (53, 37)
    bmp = io.BytesIO()
    Image.fromarray(pixels).save(bmp, format="BMP")
    assert image_size(bmp.getvalue()) == (53, 37)
    with pytest.raises(BadJpeg, match="truncated PNG"):
        image_size(png[: len(png) // 2])
    with pytest.raises(BadJpeg, match="not a JPEG .* nor a PNG"):
        image_size(b"<html>404</html>")


CASES = [
    ("tsn_r18_synthetic_rgb", "train", [], False),                                         # ROI decode + host resample
    ("tsn_r18_synthetic_rgb", "train", [], True),                                          # the GPU's graph
    ("tsn_r50_1x1x3_100e_kinetics400_rgb", "test", ["test.sampler.num_clips=2"], False),    # TenCrop, full decode
]


@pytest.mark.parametrize("recipe,split,extra,gpu_graph", CASES)
def test_png_named_jpg_loads_the_pixels_of_its_jpeg_twin(synthetic_root, png_root, recipe, split, extra, gpu_graph):
    cfg = load_config(recipe, synthetic_overrides(png_root) + SMALL + extra)
    loader = build_loader(cfg, split, gpu_graph=gpu_graph)
    batches = list(loader)                                  # the whole epoch: no frame is a bad sample
    assert loader.bad_samples() == [] and len(batches) == len(loader)
    for view_got, view_ref, err in compare_with_reference(cfg, split, loader, batches[0]):
        assert err < 6.0, f"mean abs diff {err:.2f} from PIL's decode of the PNG"   # one fused resample vs two
        if view_ref.std() > 5:
            wrong = np.abs(view_got.astype(float) - view_ref[:, :, ::-1].astype(float)).mean()
            assert wrong > 4 * err + 0.25, f"mirror control {wrong:.3f} vs {err:.3f}"
    # Frame for frame the PNGs hold the JPEG twin's decoded pixels: the same batches, to the last bit, when DALI's
    # libjpeg-turbo decodes the JPEGs as PIL's does.
    twin = load_config(recipe, synthetic_overrides(synthetic_root) + SMALL + extra)
    jpeg_batch = next(iter(build_loader(twin, split, gpu_graph=gpu_graph)))
    assert torch.equal(jpeg_batch.index, batches[0].index)
    assert torch.equal(jpeg_batch.clips, batches[0].clips)


@pytest.mark.gpu
def test_png_named_jpg_on_the_gpu(png_root):
    """The mixed decoder (nvImageCodec: nvJPEG for JPEG, its CPU codecs for PNG) goes by content as well."""
    cfg = load_config("tsn_r18_synthetic_rgb", synthetic_overrides(png_root) + SMALL)
    loader = build_loader(cfg, "val", device="gpu", device_id=0)
    batch = next(iter(loader))
    batch.clips = batch.clips.cpu()
    for _, _, err in compare_with_reference(cfg, "val", loader, batch):
        assert err < 6.0, f"mean abs diff {err:.2f} from PIL's decode of the PNG"
