"""`tsn profile` and `tsn bench data-benchmark` on the synthetic set: report structure and internal consistency.

No timing thresholds: only that numbers are positive and agree with each other (frames/s = clips/s x frames per
clip, ordered percentiles, shares in [0, 1], ratios = quotients of the reported rates).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from jobs.cli import cli
from jobs.profiling.data_benchmark import AUGMENTS, PROTOCOLS, SIZES, eval_recipe, format_grid, train_recipe
from jobs.profiling.reference_loader import build_reference_loader
from jobs.profiling.report import format_data, format_report
from jobs.profiling.runner import run
from jobs.profiling.timing import latency_summary
from jobs.training.config import load_config
from jobs.training.loaders import build_loader
from tests.helpers import synthetic_overrides

RECIPE = "tsn_r18_synthetic_rgb"
SMALL = ["data.videos_per_gpu=4", "data.workers=1", "test.sampler.num_clips=3", "model.arch=resnet18"]


@pytest.fixture(scope="module")
def cfg(synthetic_root):
    return load_config(RECIPE, synthetic_overrides(synthetic_root) + SMALL)


@pytest.fixture(scope="module")
def report(cfg):
    return run(cfg, modes=("data", "model", "step"), splits=("train", "test"), compare=True, warmup=1, iters=3,
               train_batch=2, model_iters=3, say=lambda m: None)


def check_rates(r: dict, frames_per_clip: int, views_per_clip: int):
    assert r["clips_per_s"] > 0 and r["batches"] > 0 and r["seconds"] > 0
    assert math.isclose(r["frames_per_s"], r["clips_per_s"] * frames_per_clip)
    assert math.isclose(r["views_per_s"], r["clips_per_s"] * views_per_clip)
    assert math.isclose(r["clips_per_s"], r["clips"] / r["seconds"])
    check_latency(r["latency_ms"])


def check_latency(lat: dict):
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["mean"] > 0


def test_data_mode_train_and_test(report):
    train, test = report["data"]
    assert (train["split"], test["split"]) == ("train", "test")
    assert (train["frames_per_clip"], train["views_per_clip"]) == (3, 3)
    assert (test["frames_per_clip"], test["views_per_clip"]) == (3, 3)       # 3 clips x 1 centre crop
    for d in (train, test):
        for r in [d["dali"], d["reference"], *d["stages"].values()]:
            check_rates(r, d["frames_per_clip"], d["views_per_clip"])
        assert math.isclose(d["ratio"], d["dali"]["clips_per_s"] / d["reference"]["clips_per_s"])
        # Frames: the OpenCV baseline (what MMAction2 runs) first, PIL as an extra row; each with its own ratio.
        assert [r["decoder"] for r in d["references"]] == ["opencv", "pil"] and d["reference"]["decoder"] == "opencv"
        for r in d["references"]:
            check_rates(r, d["frames_per_clip"], d["views_per_clip"])
            assert math.isclose(r["ratio"], d["dali"]["clips_per_s"] / r["clips_per_s"])
        c = d["ceiling"]
        assert c["images_per_s"] > 0 and math.isclose(c["clips_per_s"], c["images_per_s"] / d["frames_per_clip"])
        assert math.isclose(d["fraction_of_ceiling"], d["dali"]["clips_per_s"] / c["clips_per_s"])
        shares = d["breakdown"]["share"]
        assert set(shares) == {"decode", "augment", "host", "source_one_process"}
        assert all(0.0 <= v <= 1.0 for v in shares.values())
        assert "per-operator" in d["breakdown"]["note"]


def test_model_mode(report, cfg):
    m = report["model"]
    inf, train = m["inference"], m["train_step"]
    assert inf["views"] == 3 and inf["input"] == [3, 56, 56]
    assert inf["videos_per_s"] > 0 and math.isclose(inf["views_per_s"], inf["videos_per_s"] * inf["views"])
    check_latency(inf["latency_ms"])
    assert train["batch"] == 2 and train["views"] == 3 and train["step_ms"] > 0
    assert math.isclose(train["clips_per_s"], 2 * train["iters"] / (train["latency_ms"]["mean"] * train["iters"] / 1e3))


def test_step_mode(report):
    s = report["step"]
    for name in ("dali", "reference"):
        r = s[name]
        assert r["iters"] == 3 and r["clips"] == 3 * 4
        assert 0.0 <= r["data_time_share"] <= 1.0
        assert r["verdict"] in ("loader-bound", "model-bound")
        total = (r["data_ms"]["mean"] + r["step_ms"]["mean"]) * r["iters"] / 1e3
        assert math.isclose(r["seconds"], total, rel_tol=1e-6)
    assert math.isclose(s["ratio"], s["dali"]["clips_per_s"] / s["reference"]["clips_per_s"])


def test_report_text(report):
    text = format_report(report)
    for needle in ("DALI loader", "reference DataLoader", "decode-only ceiling", "videos/s", "data share"):
        assert needle in text
    for d in report["data"]:     # one row per baseline, each with the DALI loader's ratio to it
        lines = format_data(d).splitlines()
        for r in d["references"]:
            row = next(line for line in lines if line.startswith(f"reference DataLoader: {r['decoder']}"))
            assert row.split()[-1] == f"{r['ratio']:.2f}x"


def test_compare_on_videos_has_decord_and_pyav_rows(synthetic_root):
    pytest.importorskip("decord")
    cfg = load_config("tsn_r18_synthetic_video_rgb", synthetic_overrides(synthetic_root, "videos") + SMALL)
    (d,) = run(cfg, modes=("data",), splits=("train",), compare=True, warmup=1, iters=2, detail=False,
               say=lambda m: None)["data"]
    assert [r["decoder"] for r in d["references"]] == ["decord", "pyav"] and d["reference"]["decoder"] == "decord"
    for r in d["references"]:
        check_rates(r, d["frames_per_clip"], d["views_per_clip"])
        assert math.isclose(r["ratio"], d["dali"]["clips_per_s"] / r["clips_per_s"])
    assert "reference DataLoader: decord" in format_report({"config": "x", "device": "cpu", "data": [d]})


def test_pil_reference_loader_does_the_same_work(cfg):
    """Same videos, labels, frames and boxes as the DALI loader: pixels differ only by interpolation details."""
    dali = next(iter(build_loader(cfg, "train")))
    ref = next(iter(build_reference_loader(cfg, "train", workers=0, decoder="pil")))
    assert ref.index.tolist() == dali.index.tolist() and ref.labels.tolist() == dali.labels.tolist()
    assert ref.clips.shape == dali.clips.shape and ref.clips.dtype == dali.clips.dtype
    err = np.abs(ref.clips.numpy().astype(float) - dali.clips.numpy().astype(float)).mean()
    assert err < 6.0


def test_cli_writes_json_and_png(synthetic_root, tmp_path):
    out, png = tmp_path / "p.json", tmp_path / "p.png"
    args = [RECIPE, "--mode", "data", "--warmup", "1", "--iters", "2", "--no-detail", "--out", str(out),
            "--plot", str(png)]
    for o in synthetic_overrides(synthetic_root) + SMALL:
        args += ["--cfg-options", o]
    result = CliRunner().invoke(cli, ["profile", *args])
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert saved["config"] == RECIPE and saved["data"][0]["dali"]["clips_per_s"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "DALI loader" in result.output


def test_latency_summary_empty_and_ordered():
    assert math.isnan(latency_summary([])["p50"])
    lat = latency_summary([0.003, 0.001, 0.002, 0.010])
    assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"] == 10.0


def test_bench_grid_recipes_exist_and_table_layout():
    for size in SIZES:
        for augment in AUGMENTS:
            load_config(train_recipe(augment, size))
        for protocol in PROTOCOLS:
            load_config(eval_recipe(size, protocol))
    rows = [{"config": "a", "resolution": "340x256", "training augmentation": "MultiScaleCrop",
             "testing protocol": p, "top1 acc": 50.0, "top5 acc": 90.0, "train clips/s": 10.0,
             "test videos/s": 1.0, "test views/s": 250.0} for p in PROTOCOLS.values()]
    lines = format_grid(rows).splitlines()
    assert lines[0].split()[:2] == ["config", "resolution"] and len(lines) == 4
    assert lines[2].startswith("a ") and lines[3].startswith("x ")     # the model zoo's "x" for the second protocol
