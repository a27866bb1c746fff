"""Video files through the same loader as frame folders: PyAV seeking path, DALI CPU decoder (VP9), bad inputs."""
from __future__ import annotations

import json
import shutil

import av
import pytest
import torch

from jobs.recipes.config import load_config
from jobs.recipes.loaders import DataError, build_loader
from jobs.training.trainer import train
from tests.helpers import synthetic_overrides

SMALL = ["data.workers=1", "data.videos_per_gpu=4", "data.val_videos_per_gpu=4", "data.test_videos_per_gpu=1"]


@pytest.mark.parametrize("recipe,split,shape", [
    ("tsn_r50_video_1x1x8_100e_kinetics400_rgb", "train", (4, 8, 3, 224, 224)),
    ("tsn_r50_video_1x1x8_100e_kinetics400_rgb", "val", (4, 8, 3, 224, 224)),
    ("tsn_r50_video_1x1x8_100e_kinetics400_rgb", "test", (1, 75, 3, 256, 256)),      # 25 clips x ThreeCrop 256
    ("tsn_r50_video_dense_1x1x8_100e_kinetics400_rgb", "train", (4, 8, 3, 224, 224)),
    ("tsn_r50_video_dense_1x1x8_100e_kinetics400_rgb", "test", (1, 80, 3, 224, 224)),  # 8 clips x 10 positions
])
def test_video_recipes_on_h264(synthetic_root, recipe, split, shape):
    cfg = load_config(recipe, synthetic_overrides(synthetic_root, "videos") + SMALL)
    loader = build_loader(cfg, split)
    batch = next(iter(loader))
    assert tuple(batch.clips.shape) == shape and batch.clips.dtype == torch.uint8
    assert all(r.total_frames == 24 for r in loader.source.records)       # from the video index


def test_dali_cpu_decoder_equals_pyav_path(synthetic_root):
    """VP9 through DALI's own CPU video decoder vs PyAV seeking: same indices, same crops, same pixels."""
    base = synthetic_overrides(synthetic_root, "videos_vp9") + SMALL + ["val.sampler.num_clips=8"]
    pyav = next(iter(build_loader(load_config("tsn_r18_synthetic_video_rgb", base + ["data.decoder=pyav"]), "val")))
    dali = next(iter(build_loader(load_config("tsn_r18_synthetic_video_rgb", base + ["data.decoder=dali"]), "val")))
    assert torch.equal(pyav.index, dali.index)
    diff = (pyav.clips.float() - dali.clips.float()).abs().mean().item()
    assert diff < 2.5, f"DALI VP9 decode vs PyAV: mean abs diff {diff:.2f}"
    shifted = (pyav.clips.float() - dali.clips.roll(1, dims=1).float()).abs().mean().item()
    assert shifted > diff + 1.0          # a frame off by one would be caught


@pytest.fixture()
def bad_videos(synthetic_root, tmp_path):
    """A val-sized list with one of each bad input, plus good videos (list order = line numbers)."""
    src = synthetic_root / "videos"
    dst = tmp_path / "videos"
    shutil.copytree(src, dst)
    good = sorted(p.name for p in dst.glob("val_*.mp4"))
    (dst / "zero.mp4").write_bytes(b"")
    (dst / "text.mp4").write_text("this is not a video\n")
    data = (dst / good[0]).read_bytes()
    (dst / "truncated.mp4").write_bytes(data[: len(data) // 2])
    short = dst / "short.mp4"                                   # 2 frames: fewer than the 3 segments asked for
    with av.open(str(src / good[1])) as inp, av.open(str(short), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 80, 64, "yuv420p"
        for i, frame in enumerate(inp.decode(video=0)):
            if i == 2:
                break
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")))
        out.mux(stream.encode())
    names = ["zero.mp4", "text.mp4", "truncated.mp4", "missing.mp4", "short.mp4"] + good[2:8]
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"{n} {i % 12}\n" for i, n in enumerate(names)))
    return tmp_path, lst, dst


@pytest.mark.timeout(300)
def test_bad_videos_raise_in_test_naming_the_file(bad_videos):
    _root, lst, videos = bad_videos
    cfg = load_config("tsn_r18_synthetic_video_rgb", [f"data.test_list={lst}", f"data.test_prefix={videos}"] + SMALL)
    with pytest.raises(DataError) as err:
        build_loader(cfg, "test")
    text = str(err.value)
    for line, name in ((1, "zero.mp4"), (2, "text.mp4"), (4, "missing.mp4")):
        assert f"list.txt:{line}: " in text and name in text


@pytest.mark.timeout(300)
def test_training_skips_and_reports_bad_videos_and_finishes(bad_videos):
    root, lst, videos = bad_videos
    work = root / "work"
    overrides = [f"data.{s}_{k}={v}" for s in ("train", "val") for k, v in (("list", lst), ("prefix", videos))]
    cfg = load_config("tsn_r18_synthetic_video_rgb", overrides + SMALL + [
        "optim.epochs=1", "data.max_bad_fraction=0.5", "data.on_error=skip", "runtime.eval_interval=1"])
    metrics = train(cfg, str(work), device="cpu")
    assert (work / "epoch_1.pth").is_file() and "top1_acc" in metrics
    bad = [json.loads(line) for line in (work / "bad_samples.jsonl").read_text().splitlines()]
    lines = {b["line"].rsplit(":", 1)[1] for b in bad}
    assert {"1", "2", "4"} <= lines                               # zero-byte, text, missing
    assert all(b["reason"] and b["path"] and "rank" in b for b in bad)
    assert "fewer frames than a sample needs" in (work / "train.log").read_text()   # short.mp4: padded, counted
    assert any("unreadable" in b["reason"] or "zero" in b["reason"] for b in bad)  # the index's own reason
