"""Helpers of the GPU check (tests/gpu/checks.py, gpu_check.py) that the CPU can verify on its own."""
from __future__ import annotations

import sys
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch

from tests.gpu import checks
from tests.gpu.gpu_check import _failure, run_process, verdict, worst


@pytest.mark.parametrize("codec,suffix", [("h264", ".mp4"), ("vp9", ".webm")])
def test_bar_code_survives_the_codec_and_gops_are_fixed(tmp_path, codec, suffix):
    info = checks.write_coded_video(tmp_path / f"coded{suffix}", codec, frames=40, gop=10)
    assert info["frames"] == 40 and info["keyframes"] == [0, 10, 20, 30]
    with av.open(info["path"]) as c:                         # PyAV: an independent decoder
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert [checks.read_code(f) for f in frames] == list(range(40))


def test_code_frame_bits_by_hand():
    img = checks.code_frame(0b1010_0000_0101)                 # bits 0, 2, 9 and 11
    white = [b for b in range(checks.CODE_BITS) if img[10, b * checks.BAR + 8, 0] == 255]
    assert white == [0, 2, 9, 11]
    assert checks.read_code(img) == 0b1010_0000_0101
    assert checks.read_code(checks.code_frame(2999)) == 2999


def test_frame_match_finds_the_asked_frames_and_catches_an_off_by_one():
    ref = np.stack([checks.code_frame(i) for i in range(10)])
    noisy = np.clip(ref[[3, 3, 9]].astype(np.int16) + np.random.default_rng(0).integers(-3, 4, ref[:3].shape),
                    0, 255).astype(np.uint8)
    good = checks.frame_match(noisy, ref, [3, 3, 9])
    assert good["exact"] and good["closest"] == [3, 3, 9] and good["min_margin"] > 0
    off = checks.frame_match(ref[[4, 3, 9]], ref, [3, 3, 9])
    assert not off["exact"] and off["closest"] == [4, 3, 9] and off["min_margin"] < 0


def _batch(clips, index):
    return SimpleNamespace(clips=clips, index=torch.tensor(index), labels=torch.zeros(len(index), dtype=torch.int64))


def test_compare_batches_by_hand():
    a = torch.full((2, 3, 3, 8, 8), 100, dtype=torch.uint8)
    b = a.clone()
    b[0] += 2                                                  # half the pixels off by 2, none by more
    r = checks.compare_batches([_batch(a, [0, 1])], [_batch(b, [0, 1])])
    assert r["shapes_equal"] and r["index_equal"]
    assert r["max_abs_diff"] == 2.0 and r["mean_abs_diff"] == pytest.approx(1.0)
    assert r["batches"][0]["frac_over_16"] == 0.0
    swapped = checks.compare_batches([_batch(a, [0, 1])], [_batch(a, [1, 0])])
    assert not swapped["index_equal"]
    other = checks.compare_batches([_batch(a, [0, 1])], [_batch(a[:, :2], [0, 1])])
    assert not other["shapes_equal"] and other["mean_abs_diff"] is None


def test_process_fates_are_named(tmp_path):
    crash = run_process([sys.executable, "-c", "import os; os.abort()"], 60, tmp_path / "crash.log")
    assert crash["returncode"] == -6 and not crash["timed_out"]
    assert _failure(crash, "x")["status"] == "crashed" and "SIGABRT" in _failure(crash, "x")["error"]
    hang = run_process([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"], 2,
                       tmp_path / "hang.log")
    assert hang["timed_out"] and "started" in hang["tail"] and _failure(hang, "x")["status"] == "timeout"


def test_verdicts():
    assert verdict({"status": "crashed"}) == verdict({"status": "timeout"}) == "ERROR"
    assert verdict({"status": "ok", "result": {"pass": False}}) == "FAIL"
    assert verdict({"status": "ok", "result": {"pass": True}}) == "pass"
    assert verdict({"status": "ok", "result": {}}) == "ok"
    assert worst(["pass", "skipped", "FAIL", "ok"]) == "FAIL" and worst(["skipped", "pass"]) == "pass"


def test_flow_flip_detector_on_real_loaders(synthetic_root):
    """val has no flip (flip count must be 0); train flips half the videos (some must be found) on the same set."""
    from jobs.dataprep.synthetic import data_overrides
    from jobs.recipes.config import load_config
    from jobs.recipes.loaders import build_loader
    cfg = load_config("tsn_r50_320p_1x1x3_110e_kinetics400_flow", data_overrides(synthetic_root, "flow") + [
        "data.workers=1", "data.videos_per_gpu=8", "data.val_videos_per_gpu=12"])
    val = list(build_loader(cfg, "val"))
    counted = checks.flow_flips(val, synthetic_root / "val_list_flow.txt")
    assert counted["flipped_views"] == 0 and counted["unflipped_views"] > 0
    train = list(build_loader(cfg, "train"))
    counted = checks.flow_flips(train, synthetic_root / "train_list_flow.txt")
    assert counted["flipped_views"] > 0 and counted["unflipped_views"] > 0


def test_made_data_is_reused_only_for_the_same_params(tmp_path):
    calls = []

    def make():
        calls.append(1)
        return {"n": len(calls)}

    first = checks._stamped(tmp_path / "d", {"size": (160, 128)}, make)
    again = checks._stamped(tmp_path / "d", {"size": (160, 128)}, make)         # tuples come back as lists
    other = checks._stamped(tmp_path / "d", {"size": (96, 64)}, make)
    assert (first, again, other) == ({"n": 1, "reused": False}, {"n": 1, "reused": True}, {"n": 2, "reused": False})
