"""`python -m tests.gpu.gpu_check --dry-run`: every CPU-side part of the GPU check runs here and writes its report.

Not marked gpu: this is what CI can check of the one command the GPU machine will run (docs/GPU_CHECK.md).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile

import pytest
import torch

from tests.gpu.gpu_check import (
    DRY_PLAN,
    GPU_PLAN,
    PROFILE_RECIPES,
    PROTOCOLS,
    RESERVE_S,
    SECTIONS,
    group_tasks,
    main,
    plan_tasks,
    render_markdown,
)
from tests.helpers import ROOT

# (B, V, C, H, W) of each protocol's batch with the check's overrides (4 videos per batch, 1 per test batch, 3 test
# clips), by hand from the recipes: 3 segments x 224 crops; ThreeCrop 256 (3 clips x 3 crops); TenCrop 224 (3 x 10);
# dense 8 clips; flow 3 segments of 5 (x, y) pairs = 10 channels.
SHAPES = {"multiscale_crop": [4, 3, 3, 224, 224], "random_resized_crop": [4, 3, 3, 224, 224],
          "center_crop": [4, 3, 3, 224, 224], "three_crop": [1, 9, 3, 256, 256], "ten_crop": [1, 30, 3, 224, 224],
          "dense": [4, 8, 3, 224, 224], "flow_x_inversion": [4, 3, 10, 224, 224]}


def table_rows_consistent(markdown: str) -> bool:
    """Every markdown table's rows have as many cells as its header (escaped pipes are not separators)."""
    width = None
    for line in markdown.splitlines():
        if not line.startswith("|"):
            width = None
            continue
        cells = len(re.split(r"(?<!\\)\|", line)) - 2
        if width is None:
            width = cells
        elif cells != width:
            return False
    return True


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    out, work = tmp / "out", tmp / "work"
    proc = subprocess.run([sys.executable, "-m", "tests.gpu.gpu_check", "--dry-run", "--out", str(out), "--work",
                           str(work)], cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "report.json").read_text()), (out / "report.md").read_text(), out, proc.stdout


@pytest.mark.parametrize("plan", [GPU_PLAN, DRY_PLAN], ids=["gpu", "dry"])
def test_timeouts_add_up_to_at_most_the_budget(plan, tmp_path):
    tasks = plan_tasks(plan, tmp_path)
    assert sum(t.timeout for t in tasks) <= plan.budget_s - RESERVE_S + 1e-6      # shares are floats
    assert all(t.timeout > 0 for t in tasks if not t.collect)


def test_the_order_is_by_value_and_a_process_is_one_section(tmp_path):
    tasks = plan_tasks(GPU_PLAN, tmp_path)
    first = list(dict.fromkeys(t.section for t in tasks))
    assert first == list(SECTIONS)                         # each section's tasks together, in SECTIONS order
    assert SECTIONS[:5] == ("environment", "data", "profile", "real_train", "gpu_tests")
    groups = group_tasks(tasks)
    assert all(len({t.section for t in g}) == 1 for g in groups)
    by_key = {t.key: g for g in groups for t in g}
    # nvJPEG alone with the probe (no NVDEC in that process), parity in one process, NVDEC in its own.
    assert [t.item for t in by_key["environment/nvjpeg"]] == ["probe", "nvjpeg"]
    assert len(by_key["parity/dense"]) == len(PROTOCOLS)
    assert [t.item for t in by_key["nvdec/vp9"]] == ["h264", "vp9", "too_small", "caps"]
    assert [t.key for t in tasks[:5]] == ["environment/probe", "environment/nvjpeg", "data/synthetic",
                                         f"profile/{PROFILE_RECIPES[0]}", f"profile/{PROFILE_RECIPES[1]}"]
    # The GPU run collects the torch-only results of the parts-only calls: no process, no time of its own.
    assert all(t.collect and t.timeout == 0 for t in tasks if t.section == "torch")


@pytest.mark.timeout(1500)
def test_report_has_every_section_and_the_cpu_checks_pass(dry_run):
    report, _, _, _ = dry_run
    assert report["mode"] == "dry-run" and list(report["sections"]) == list(SECTIONS)
    assert report["timeouts_s"] <= report["budget_s"] - RESERVE_S + 1e-6
    items = {s: sec["items"] for s, sec in report["sections"].items()}
    for sec in items.values():
        for record in sec.values():
            assert record["status"] in ("ok", "skipped"), record       # nothing crashed, hung or ran out of time
    env = items["environment"]["probe"]["result"]
    assert env["dali"]["version"] and env["pyav"]["version"] and "libnvcuvid.so.1" in env["libraries"]
    assert "problems" in env["install"]
    nvjpeg = items["environment"]["nvjpeg"]["result"]
    assert nvjpeg["shape"] == [128, 192, 3] and nvjpeg["mean_abs_diff_vs_pil"] < 3.0
    sets = items["data"]["synthetic"]["result"]
    assert sets["synthetic"]["size"] == [160, 128] and sets["synthetic_small"]["size"] == [96, 64]
    assert sets["synthetic"]["counts"]["train"] == 24 and sets["synthetic_tests"]["size"] == [80, 64]
    # CPU stands in for the GPU: the GPU's graph on DALI's CPU backend against the CPU fast path, same videos.
    for name, shape in SHAPES.items():
        r = items["parity"][name]["result"]
        assert r["pass"] and r["index_equal"] and r["batches"][0]["shape_ref"] == shape, name
        assert r["batches"][0]["shape_dev"] == shape and r["mean_abs_diff"] < 3.0, name
    assert items["parity"]["flow_x_inversion"]["result"]["inverted_views"] > 0
    assert items["nvdec"]["h264"]["status"] == "skipped" and "H.264" in items["nvdec"]["h264"]["reason"]
    vp9 = items["nvdec"]["vp9"]["result"]
    assert vp9["pass"] and vp9["decoder_exactness"]["exact"] and vp9["batches"][0]["shape_ref"] == [4, 8, 3, 56, 56]
    small = items["nvdec"]["too_small"]["result"]
    # DALI's CPU decoder has no minimum: the 96 x 64 VP9 decodes, and no routing happens on a CPU.
    assert small["raw_decode"] == {"decoded": True, "shape": [1, 64, 96, 3]} and small["decoder"] == "dali"
    assert small["batch_shape"] == [2, 3, 3, 56, 56] and small["nvdec_min_vp9"] == [128, 128]
    assert items["nvdec"]["caps"]["status"] == "skipped"
    seek = items["nvdec_seek"]["vp9"]["result"]
    assert seek["exactness"]["exact"] and seek["exactness"]["single_frames_exact"]
    assert {t["frame"] for t in seek["times"].values()} == {0, 249, 250, 299}     # 300 frames, GOP 50
    prof = items["profile"]["tsn_r50_1x1x3_100e_kinetics400_rgb"]["result"]
    assert prof["data"][0]["clips_per_s"] > 0 and prof["data"][0]["ceiling_clips_per_s"] > 0
    assert 0.0 <= prof["step"]["data_time_share"] <= 1.0
    # Toy sizes: 1 of the 25 clips, so TenCrop gives 10 views and ThreeCrop 3; batch 1 x 3 segments.
    assert [(i["protocol"], i["views"]) for i in prof["inference"]] == [("25x10", 10), ("25x3", 3)]
    assert all(i["videos_per_s"] > 0 for i in prof["inference"]) and prof["train_step"]["batch"] == [1, 3, 3, 64, 64]
    train = items["real_train"]["train_resume_test"]["result"]
    # 24 training videos / 8 per batch = 3 iterations per epoch; epoch 1, then --resume auto to epoch 2.
    assert [(r["epoch"], r["iteration"]) for r in train["runs"]] == [(1, 3), (2, 6)]
    assert train["resumed"] == {"epoch": 1, "iteration": 3} and len(train["val_log"]) == 2
    assert {"best.pth", "epoch_1.pth", "epoch_2.pth"} <= set(train["checkpoints"]) and train["losses_finite"]
    assert train["test"]["evaluated"] == train["test"]["total"] == 12
    cpu = items["real_train"]["test_on_cpu"]["result"]
    assert cpu["videos"] == cpu["top1_equal"] == 12 and cpu["max_abs_logit_diff"] < 1e-4     # CPU against CPU
    tests = items["gpu_tests"]["pytest"]["result"]["tests"]
    assert len(tests) >= 1 and all("amp" in t["nodeid"] for t in tests)           # the dry run selects -k amp
    if not torch.cuda.device_count():
        assert all(t["status"] == "skipped" for t in tests)
    parts = {k: r["result"]["tasks"] for k, r in items["torch"].items()}
    assert list(parts) == ["part1", "part2", "part3", "part4"]
    for name in ("train_step_r50", "train_step_r101"):
        rows = parts["part1" if name.endswith("r50") else "part2"][name]["result"]["rows"]
        assert {(r["amp"], r["channels_last"]) for r in rows} == {(True, False), (False, True)}
        assert all(r["losses_finite"] and r["clips_per_s"] > 0 for r in rows)
    assert [r["cudnn_benchmark"] for r in parts["part2"]["cudnn_benchmark"]["result"]["rows"]] == [False, True]
    assert {(r["protocol"], r["views"]) for r in parts["part3"]["inference"]["result"]["rows"]} == {("25x10", 10),
                                                                                                ("25x3", 3)}
    nccl = parts["part4"]["nccl"]["result"]
    assert nccl["backend"] == "gloo" and nccl["pass"] and nccl["all_reduce_max"][1] == float("inf")
    assert parts["part4"]["tvl1"]["status"] == "ok"


@pytest.mark.timeout(1500)
def test_markdown_renders_and_logs_come_back(dry_run):
    _, markdown, out, stdout = dry_run
    assert markdown.startswith("# GPU check report (dry-run)")
    for name in SECTIONS:
        assert f"\n## {name}: " in markdown
    assert table_rows_consistent(markdown)
    assert "| three_crop | tsn_r50_test_340x256_1x1x25_3crop_100e_kinetics400_rgb | test | pass |" in markdown
    assert "| run 2 (--resume auto) | 2 | 2 | 6 |" in markdown
    assert markdown.splitlines()[0] in stdout                           # printed too (the device returns the tail)
    assert sorted(p.name for p in out.iterdir()) == ["logs.tar.gz", "report.json", "report.md"]
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = tar.getnames()
    assert "logs/parity.log" in names and "logs/gpu_tests__pytest.log" in names and "logs/nvdec.log" in names
    assert any(n.startswith("profile_") for n in names) and "real_train/train.log" in names
    assert "torch/torch_nccl.json" in names


def test_a_budget_too_small_still_writes_a_complete_report(tmp_path):
    assert main(["--dry-run", "--budget", "20", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "w")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert list(report["sections"]) == list(SECTIONS)
    records = [r for sec in report["sections"].values() for r in sec["items"].values()]
    assert records and all(r["status"] == "not_run" for r in records)
    assert {r["reason"] for r in records} == {"global budget of 20 s used up", "needs data/synthetic",
                                              "needs real_train/train_resume_test"}
    assert table_rows_consistent((tmp_path / "out" / "report.md").read_text())


def test_an_unexpected_result_shape_is_shown_raw_not_fatal(tmp_path):
    main(["--dry-run", "--budget", "20", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "w")])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    report["sections"]["real_train"]["items"]["train_resume_test"] = {"status": "ok",
                                                                      "result": {"runs": ["tensor(2.9)"]}}
    markdown = render_markdown(report)
    assert "## real_train: " in markdown and "(not rendered: " in markdown and "tensor(2.9)" in markdown
    assert "\n## gpu_tests: " in markdown                                # the sections after it still render
