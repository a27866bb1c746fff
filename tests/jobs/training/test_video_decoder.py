"""Which decoder a video loader uses: NVDEC's per-codec size limits route a too-small video to the CPU decoder.

Real files: the synthetic set's VP9 and H.264 videos at 96 x 64 (below NVDEC's VP9 minimum of 128 x 128, above its
H.264 minimum of 48 x 16, NVIDIA Video Codec SDK, NVDEC programming guide "Video Decoder Capabilities") and at
160 x 128 (inside both), probed by the real video index. No GPU is needed: the choice is made from the index.
"""
from __future__ import annotations

import logging

import pytest

from jobs.dataprep.synthetic import data_overrides
from jobs.recipes.config import load_config
from jobs.recipes.loaders import build_loader, load_records, split_files, video_decoder, video_infos
from pipelines.synthetic_data import SyntheticSpec, make_synthetic_dataset
from pipelines.video_index import nvdec_min_size, nvdec_supports

RECIPE = "tsn_r18_synthetic_video_rgb"
SMALL = ["data.workers=1", "data.val_videos_per_gpu=2", "val.sampler.num_clips=3"]


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """{(width, height): root} of two one-colour, one-direction synthetic sets (1 train + 1 val video each)."""
    out = {}
    for w, h in ((96, 64), (160, 128)):
        root = tmp_path_factory.mktemp(f"syn{w}x{h}")
        make_synthetic_dataset(root, SyntheticSpec(num_colours=1, num_directions=2, train_per_class=1,
                                                   val_per_class=1, num_frames=12, width=w, height=h))
        out[w, h] = root
    return out


def _infos(root, kind):
    cfg = load_config(RECIPE, data_overrides(root, kind) + SMALL)
    records = load_records(cfg, "val")
    return cfg, video_infos(records, split_files(cfg, "val")[0], workers=1)


def test_per_codec_minimums_by_hand():
    assert nvdec_min_size("vp9") == (128, 128) and nvdec_min_size("h264") == (48, 16)
    assert nvdec_min_size("hevc") == (144, 144) and nvdec_min_size("mjpeg") is None
    assert not nvdec_supports("vp9", "yuv420p", 127, 128) and nvdec_supports("vp9", "yuv420p", 128, 128)
    assert not nvdec_supports("hevc", "yuv420p", 160, 128) and nvdec_supports("hevc", "yuv420p", 160, 144)
    assert nvdec_supports("h264", "yuv420p", 48, 16) and not nvdec_supports("h264", "yuv420p", 47, 16)
    assert not nvdec_supports("h264", "yuv420p", 4097, 64) and nvdec_supports("vp9", "yuv420p", 8192, 128)
    assert not nvdec_supports("vp9", "yuv444p", 256, 256)


def test_a_vp9_video_too_small_for_nvdec_goes_to_the_cpu_decoder(sets, caplog):
    _, infos = _infos(sets[96, 64], "videos_vp9")
    assert {(i.codec, i.width, i.height) for i in infos.values()} == {("vp9", 96, 64)}
    with caplog.at_level(logging.WARNING):
        decoder, misfits = video_decoder("auto", "gpu", infos)
    assert decoder == "pyav" and sorted(misfits) == sorted(infos)
    assert "outside NVDEC's limits" in caplog.text and "vp9 yuv420p 96x64" in caplog.text
    # An explicit data.decoder=dali is routed the same way: failing inside DALI would cost the video.
    assert video_decoder("dali", "gpu", infos)[0] == "pyav"
    # On a CPU nothing changes: auto is PyAV, dali is DALI's CPU decoder (VP9 has no size minimum there).
    assert video_decoder("auto", "cpu", infos) == ("pyav", []) and video_decoder("dali", "cpu", infos) == ("dali", [])


def test_videos_inside_nvdec_limits_stay_on_nvdec(sets):
    _, vp9 = _infos(sets[160, 128], "videos_vp9")
    _, h264 = _infos(sets[96, 64], "videos")            # H.264's minimum is 48 x 16: 96 x 64 is fine
    assert video_decoder("auto", "gpu", vp9) == ("dali", [])
    assert video_decoder("auto", "gpu", h264) == ("dali", []) and video_decoder("pyav", "gpu", h264)[0] == "pyav"


def test_the_routed_loader_reads_the_small_video(sets):
    """What the GPU loader falls back to (PyAV) delivers the small VP9 videos' clips."""
    cfg, _ = _infos(sets[96, 64], "videos_vp9")
    loader = build_loader(cfg, "val", device="cpu")
    batch = next(iter(loader))
    assert tuple(batch.clips.shape) == (2, 3, 3, 56, 56) and sorted(batch.index.tolist()) == [0, 1]
