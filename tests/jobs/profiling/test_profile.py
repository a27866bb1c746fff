"""`tsn profile` and `tsn bench data-benchmark` on the synthetic set: report structure and internal consistency.

No timing thresholds: only that numbers are positive and that the counts behind them are right (clips = batches x
batch size, the timed window = the sum of the timed latencies). The arithmetic on the timings (rates, percentiles,
shares) is checked with hand-computed values on a fake clock in test_timing.py.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from click.testing import CliRunner

from jobs.cli import cli
from jobs.profiling.data_benchmark import AUGMENTS, BENCH_PROTOCOLS, SIZES, eval_recipe, format_grid, train_recipe
from jobs.profiling.reference_loader import build_reference_loader
from jobs.profiling.report import format_data, format_report
from jobs.profiling.runner import ProfileOptions, run
from jobs.profiling.timing import latency_summary
from jobs.recipes.config import load_config
from jobs.recipes.loaders import build_loader
from tests.helpers import synthetic_overrides

RECIPE = "tsn_r18_synthetic_rgb"
SMALL = ["data.videos_per_gpu=4", "data.workers=1", "test.sampler.num_clips=3", "model.arch=resnet18"]


@pytest.fixture(scope="module")
def cfg(synthetic_root):
    return load_config(RECIPE, synthetic_overrides(synthetic_root) + SMALL)


@pytest.fixture(scope="module")
def report(cfg):
    opts = ProfileOptions(modes=("data", "model", "step"), splits=("train", "test"), compare=True, warmup=1, iters=3,
                          train_batch=2, model_iters=3)
    return run(cfg, opts, say=lambda m: None)


def check_rates(r: dict, batch: int, batches: int):
    assert r["clips_per_s"] > 0 and r["seconds"] > 0
    # every timed batch is a full batch of the split (24 train / 12 val videos, batches of 4 / 1): none lost
    assert (r["batches"], r["clips"]) == (batches, batches * batch)
    # the timed window covers exactly the timed batches (no warm-up inside it)
    assert math.isclose(r["seconds"], r["latency_ms"]["mean"] * r["batches"] / 1e3, rel_tol=1e-9)
    check_latency(r["latency_ms"])


def check_latency(lat: dict):
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["mean"] > 0


def test_data_mode_train_and_test(report):
    train, test = report["data"]
    assert (train["split"], test["split"]) == ("train", "test")
    assert (train["frames_per_clip"], train["views_per_clip"]) == (3, 3)
    assert (test["frames_per_clip"], test["views_per_clip"]) == (3, 3)       # 3 clips x 1 centre crop
    assert (train["batch"], test["batch"]) == (4, 1)                          # the recipe's test batch: 1 video
    for d in (train, test):
        # 3 timed batches per loader; the source alone is timed over max(2, 3 // 2) = 2 batches
        for r in [d["dali"], d["reference"], d["stages"]["graph"], d["stages"]["decode_only"]]:
            check_rates(r, d["batch"], 3)
        check_rates(d["stages"]["source_only"], d["batch"], 2)
        assert d["ratio"] > 0 and d["ceiling"]["images_per_s"] > 0 and d["fraction_of_ceiling"] > 0
        # The ceiling: the decoder at the loader's thread count, or at one per core where that is fewer and faster.
        assert d["ceiling"]["threads"] in (d["threads"], min(d["threads"], os.cpu_count()))
        assert set(d["breakdown"]["share"]) == {"decode", "augment", "host", "source_one_process"}
        # Frames: the OpenCV baseline (what MMAction2 runs) first, PIL as an extra row, each timed like the loader.
        assert [r["decoder"] for r in d["references"]] == ["opencv", "pil"]
        assert d["reference"] is max(d["references"], key=lambda r: r["clips_per_s"])      # the fastest baseline
        for r in d["references"]:
            check_rates(r, d["batch"], 3)
        # memory: the main process holds torch + DALI (hundreds of MiB); one entry per DALI worker (data.workers=1)
        assert d["memory_mb"]["main"] > 100 and len(d["memory_mb"]["workers"]) == 1
        assert 10 < d["memory_mb"]["workers"][0] < d["memory_mb"]["main"] * 4
        # A forked worker shares most of its RSS with the main process: its own part is smaller, and not zero.
        assert 0 < d["memory_mb"]["workers_private"][0] < d["memory_mb"]["workers"][0]


def test_model_mode(report, cfg):
    m = report["model"]
    inf, train = m["inference"], m["train_step"]
    assert inf["views"] == 3 and inf["input"] == [3, 56, 56]
    # one video per timed call: videos/s is 1 / mean latency, i.e. the window holds exactly the 3 timed calls
    assert inf["iters"] == 3 and math.isclose(inf["videos_per_s"], 1e3 / inf["latency_ms"]["mean"], rel_tol=1e-9)
    check_latency(inf["latency_ms"])
    assert train["batch"] == 2 and train["views"] == 3 and train["step_ms"] > 0
    assert train["iters"] == 3                                            # min(iters, 5) timed steps
    assert math.isclose(train["clips_per_s"], 2e3 / train["step_ms"], rel_tol=1e-9)   # 2 videos per step


def test_step_mode(report):
    s = report["step"]
    for name in ("dali", "reference"):
        r = s[name]
        assert r["iters"] == 3 and r["clips"] == 3 * 4
        assert r["verdict"] in ("loader-bound", "model-bound")
        total = (r["data_ms"]["mean"] + r["step_ms"]["mean"]) * r["iters"] / 1e3
        assert math.isclose(r["seconds"], total, rel_tol=1e-6)
    assert s["ratio"] > 0


def test_report_text(report):
    text = format_report(report)
    for needle in ("DALI loader", "reference DataLoader", "decode-only ceiling", "videos/s", "data share"):
        assert needle in text
    for d in report["data"]:     # one row per baseline, each with the DALI loader's ratio to it
        lines = format_data(d).splitlines()
        for r in d["references"]:
            row = next(line for line in lines if line.startswith(f"reference DataLoader: {r['decoder']}"))
            assert row.split()[-1] == f"{r['ratio']:.2f}x"


def test_compare_on_videos_has_every_peer_and_the_fastest_is_the_headline(synthetic_root):
    pytest.importorskip("decord")
    from jobs.profiling.torchcodec_peer import missing
    cfg = load_config("tsn_r18_synthetic_video_rgb", synthetic_overrides(synthetic_root, "videos") + SMALL)
    opts = ProfileOptions(modes=("data",), splits=("train",), compare=True, warmup=1, iters=2, detail=False)
    (d,) = run(cfg, opts, say=lambda m: None)["data"]
    torchcodec = [] if missing() else ["torchcodec", "torchcodec-approx"]
    assert [r["decoder"] for r in d["references"]] == ["decord", *torchcodec, "pyav"]
    for r in d["references"]:
        check_rates(r, d["batch"], 2)                         # iters=2 timed batches of a full batch each
        assert math.isclose(r["ratio"], d["dali"]["clips_per_s"] / r["clips_per_s"])
        assert r["cpu_ms_per_clip"] >= 0          # /proc/stat counts 10 ms ticks: 2 tiny batches may read 0
    # The headline is the fastest of what users run (decord, torchcodec), never our own decoder in a DataLoader.
    peers = [r for r in d["references"] if r["decoder"] != "pyav"]
    assert d["reference"] is max(peers, key=lambda r: r["clips_per_s"]) and d["ratio"] == d["reference"]["ratio"]
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


def test_latency_summary_empty_and_by_hand():
    assert math.isnan(latency_summary([])["p50"])
    lat = latency_summary([0.003, 0.001, 0.002, 0.010])      # 1, 2, 3, 10 ms: linear percentiles
    # p50 at rank 1.5 -> 2.5; p90 at rank 2.7 -> 3 + 0.7 x 7 = 7.9; p99 at rank 2.97 -> 3 + 0.97 x 7 = 9.79
    assert lat == pytest.approx({"mean": 4.0, "p50": 2.5, "p90": 7.9, "p99": 9.79, "max": 10.0})


def test_bench_grid_recipes_exist_and_table_layout():
    for size in SIZES:
        for augment in AUGMENTS:
            load_config(train_recipe(augment, size))
        for protocol in BENCH_PROTOCOLS:
            load_config(eval_recipe(size, protocol))
    rows = [{"config": "a", "resolution": "340x256", "training augmentation": "MultiScaleCrop",
             "testing protocol": p, "top1 acc": 50.0, "top5 acc": 90.0, "train clips/s": 10.0,
             "test videos/s": 1.0, "test views/s": 250.0} for p in BENCH_PROTOCOLS.values()]
    lines = format_grid(rows).splitlines()
    assert lines[0].split()[:2] == ["config", "resolution"] and len(lines) == 4
    assert lines[2].startswith("a ") and lines[3].startswith("x ")     # the model zoo's "x" for the second protocol


def test_memory_by_epoch_has_one_row_per_whole_epoch(cfg):
    """--memory-epochs: after timing, N whole epochs, each process's RSS after each (main + one per DALI worker)."""
    opts = ProfileOptions(modes=("data",), splits=("train",), warmup=1, iters=1, detail=False, memory_epochs=2)
    (d,) = run(cfg, opts, say=lambda m: None)["data"]
    rows = d["memory_by_epoch_mb"]
    assert len(rows) == 2 and all(r["main"] > 100 and len(r["workers"]) == len(d["memory_mb"]["workers"])
                                  for r in rows)
    assert "memory over 2 epochs" in format_data(d)


def test_private_memory_counts_what_a_process_writes():
    """64 MiB written by this process show up as 64 MiB more private memory (and RSS): the meter of a leak."""
    import numpy as np

    from jobs.profiling.data import private_mb, rss_mb
    before, rss_before = private_mb(os.getpid()), rss_mb(os.getpid())
    block = np.ones(64 << 20, np.uint8)
    assert 60 <= private_mb(os.getpid()) - before <= 72 and 60 <= rss_mb(os.getpid()) - rss_before <= 72
    del block


def test_machine_cpu_seconds_counts_a_busy_core():
    """The CPU column's source: one core spinning for 0.5 s adds about 0.5 busy seconds (other load only adds)."""
    import time

    from jobs.profiling.timing import machine_cpu_seconds
    before, start = machine_cpu_seconds(), time.perf_counter()
    while time.perf_counter() - start < 0.5:
        pass
    busy = machine_cpu_seconds() - before
    assert 0.4 <= busy <= 0.5 * (os.cpu_count() or 1) + 0.1
