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

from tests.gpu.gpu_check import SECTIONS, main, render_markdown
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
                           str(work)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "report.json").read_text()), (out / "report.md").read_text(), out, proc.stdout


@pytest.mark.timeout(900)
def test_report_has_every_section_and_the_cpu_checks_pass(dry_run):
    report, _, _, _ = dry_run
    assert report["mode"] == "dry-run" and list(report["sections"]) == list(SECTIONS)
    items = {s: sec["items"] for s, sec in report["sections"].items()}
    for sec in items.values():
        for record in sec.values():
            assert record["status"] in ("ok", "skipped"), record       # nothing crashed, hung or ran out of time
    env = items["environment"]["probe"]["result"]
    assert env["dali"]["version"] and env["pyav"]["version"] and "libnvcuvid.so.1" in env["libraries"]
    assert items["environment"]["dali_smoke"]["result"]["jpeg"]["mean_abs_diff_vs_pil"] < 3.0
    # CPU stands in for the GPU: the GPU's graph on DALI's CPU backend against the CPU fast path, same videos.
    for name, shape in SHAPES.items():
        r = items["parity"][name]["result"]
        assert r["pass"] and r["index_equal"] and r["batches"][0]["shape_ref"] == shape, name
        assert r["batches"][0]["shape_dev"] == shape and r["mean_abs_diff"] < 3.0, name
    assert items["parity"]["flow_x_inversion"]["result"]["inverted_views"] > 0
    assert items["video"]["h264"]["status"] == "skipped" and "H.264" in items["video"]["h264"]["reason"]
    vp9 = items["video"]["vp9"]["result"]
    assert vp9["pass"] and vp9["decoder_exactness"]["exact"] and vp9["batches"][0]["shape_ref"] == [4, 8, 3, 56, 56]
    seek = items["nvdec_seek"]["vp9"]["result"]
    assert seek["exactness"]["exact"] and seek["exactness"]["single_frames_exact"]
    assert {t["frame"] for t in seek["times"].values()} == {0, 249, 250, 299}     # 300 frames, GOP 50
    amp = next(iter(items["amp_train"].values()))["result"]
    assert amp["iterations"] == 2 and amp["finite"] and amp["amp_dtype"] == "bfloat16" and not amp["grad_scaler"]
    prof = items["profile"]["tsn_r50_1x1x3_100e_kinetics400_rgb"]["result"]
    assert prof["data"][0]["clips_per_s"] > 0 and prof["data"][0]["ceiling_clips_per_s"] > 0
    assert 0.0 <= prof["step"]["data_time_share"] <= 1.0 and prof["model"]["inference_videos_per_s"] > 0
    tests = items["gpu_tests"]["pytest"]["result"]["tests"]
    assert len(tests) >= 1 and all("amp" in t["nodeid"] for t in tests)           # the dry run selects -k amp
    if not torch.cuda.device_count():
        assert all(t["status"] == "skipped" for t in tests)


@pytest.mark.timeout(900)
def test_markdown_renders_and_logs_come_back(dry_run):
    _, markdown, out, stdout = dry_run
    assert markdown.startswith("# GPU check report (dry-run)")
    for name in SECTIONS:
        assert f"\n## {name}: " in markdown
    assert table_rows_consistent(markdown)
    assert "| three_crop | tsn_r50_test_340x256_1x1x25_3crop_100e_kinetics400_rgb | test | pass |" in markdown
    assert markdown.splitlines()[0] in stdout                           # printed too (the device returns the tail)
    assert sorted(p.name for p in out.iterdir()) == ["logs.tar.gz", "report.json", "report.md"]
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = tar.getnames()
    assert "logs/parity.log" in names and "logs/gpu_tests__pytest.log" in names
    assert any(n.startswith("profile_") for n in names)


def test_a_budget_too_small_still_writes_a_complete_report(tmp_path):
    assert main(["--dry-run", "--budget", "20", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "w")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert list(report["sections"]) == list(SECTIONS)
    records = [r for sec in report["sections"].values() for r in sec["items"].values()]
    assert records and all(r["status"] == "not_run" for r in records)
    assert {r["reason"] for r in records} == {"global budget of 20 s used up", "needs data/synthetic"}
    assert table_rows_consistent((tmp_path / "out" / "report.md").read_text())


def test_an_unexpected_result_shape_is_shown_raw_not_fatal(tmp_path):
    main(["--dry-run", "--budget", "20", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "w")])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    report["sections"]["amp_train"]["items"]["odd"] = {"status": "ok", "result": {"losses": ["tensor(2.9)"]}}
    markdown = render_markdown(report)
    assert "## amp_train: " in markdown and "(not rendered: KeyError" in markdown and "tensor(2.9)" in markdown
    assert "\n## profile: " in markdown                                  # the sections after it still render
