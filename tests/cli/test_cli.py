"""The `tsn` CLI and the `python jobs/<job>.py` entry points, driven as a user would."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from jobs.cli import cli
from jobs.evaluation import tester
from jobs.recipes.config import load_config
from tests.helpers import ROOT as ROOT
from tests.helpers import synthetic_overrides

JOBS = ["train", "test", "fuse", "predict", "demo", "prepare", "profile", "bench", "convert", "configs", "export",
        "plot"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_help_lists_every_job():
    out = invoke("--help").output
    for job in JOBS:
        assert f"  {job} " in out, job


@pytest.mark.parametrize("script", ["profile", "train"])
def test_jobs_run_as_scripts(script):
    """`python jobs/<job>.py --help` works as a real process, with jobs/ first on sys.path as Python puts it
    (jobs/profile.py must not shadow the stdlib `profile`). Every other command and subcommand is run as a script in
    one interpreter by tests/cli/test_layout.py."""
    result = subprocess.run([sys.executable, f"jobs/{script}.py", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Usage:" in result.stdout or "usage:" in result.stdout


def test_configs_lists_model_zoo_names():
    out = invoke("configs").output.split()
    assert "tsn_r50_1x1x3_100e_kinetics400_rgb" in out and "tsn_r101_1x1x5_50e_mmit_rgb" in out
    assert not any(name.startswith("_") for name in out)


def test_bad_config_is_a_clean_error(tmp_path):
    """In-process too (CliRunner runs the group standalone): one line on stderr, exit status 1."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[model]\ndropout = "high"\n')
    result = CliRunner().invoke(cli, ["train", str(bad)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"tsn train: error: {bad}: model.dropout: expected float")
    result = CliRunner().invoke(cli, ["train", "tsn_r50_no_such_recipe"])
    assert result.exit_code == 1 and "no such config" in result.stderr


def test_fuse_command_table_and_coefficients(tmp_path):
    labels = tmp_path / "list.txt"
    labels.write_text("a 5 0\nb 5 1\nc 5 2\nd 5 1\n")
    rgb = np.array([[2, 1, 0], [0, 1, 3], [0, 0, 1], [1, 2, 0]], np.float32)     # top-1 hits: a, d (+c)
    flow = np.array([[1, 0, 0], [0, 3, 1], [2, 0, 0], [3, 0, 0]], np.float32)
    np.save(tmp_path / "rgb.npy", rgb)
    np.save(tmp_path / "flow.npy", flow)
    out = tmp_path / "fused.json"
    result = invoke("fuse", tmp_path / "rgb.npy", tmp_path / "flow.npy", "--coefficients", "1", "2",
                    "--labels", labels, "--out", out)
    assert "fused [1:2]" in result.output
    rows = json.loads(out.read_text())
    fused = rgb + 2 * flow                                       # independent: argmax per row -> 0, 1, 0, 0
    assert rows[2]["top1_acc"] == pytest.approx(np.mean(fused.argmax(1) == np.array([0, 1, 2, 1])))
    assert rows[0]["top1_acc"] == pytest.approx(np.mean(rgb.argmax(1) == np.array([0, 1, 2, 1])))




def test_convert_mmaction2_round_trip(random_checkpoint, tmp_path):
    ours = torch.load(random_checkpoint)["model"]
    from model.mmaction2 import mmaction2_key
    inverse = {}
    for key, value in ours.items():   # write MMAction2 names (mmcv ConvModule conv/bn children)
        name = key.replace("backbone.", "").replace("head.fc.", "cls_head.fc_cls.")
        if name.startswith("cls_head"):
            inverse[name] = value
            continue
        parts = name.split(".")
        layer, leaf = parts[:-2], parts[-2:]
        if "downsample" in name:
            mm = ".".join(parts[:3]) + (".conv." if parts[3] == "0" else ".bn.") + parts[-1]
        elif leaf[0].startswith("bn"):
            mm = ".".join(layer + ["conv" + leaf[0][2:], "bn", leaf[1]])
        else:
            mm = ".".join(layer + [leaf[0], "conv", leaf[1]])
        inverse["backbone." + mm] = value
    assert all(mmaction2_key(k) in ours for k in inverse)
    src = tmp_path / "mm.pth"
    torch.save({"meta": {"epoch": 1}, "state_dict": {"module." + k: v for k, v in inverse.items()}}, src)
    result = invoke("convert", "mmaction2", src, tmp_path / "ours.pth")
    assert "12 classes" in result.output
    converted = torch.load(tmp_path / "ours.pth")["model"]
    assert converted.keys() == ours.keys() and all(torch.equal(converted[k], ours[k]) for k in ours)


def test_predict_frame_folder_and_video(synthetic_root, random_checkpoint, tmp_path):
    labels = synthetic_root / "classes.txt"
    folder = sorted((synthetic_root / "rawframes").glob("val_*"))[0]
    opts = ["--cfg-options", "data.workers=1", "--topk", "3", "--json", "--label-map", labels, "--device", "cpu"]
    out = json.loads(invoke("predict", "tsn_r18_synthetic_rgb", random_checkpoint, folder, *opts).output)
    names = labels.read_text().split()
    assert len(out["topk"]) == 3 and all(r["name"] == names[r["label"]] for r in out["topk"])
    # the same video through `tsn test`'s path (its val-list line, dumped logits), softmax taken here by torch
    line = tmp_path / "one.txt"
    line.write_text((synthetic_root / "val_list_rawframes.txt").read_text().splitlines()[0] + "\n")
    assert line.read_text().split()[0] == folder.name
    cfg = load_config("tsn_r18_synthetic_rgb", synthetic_overrides(synthetic_root) + ["data.workers=1"])
    tester.test_checkpoint(cfg, str(random_checkpoint), device="cpu", dump=str(tmp_path / "s.npy"),
                           list_file=str(line), say=lambda _: None)
    probs = torch.from_numpy(np.load(tmp_path / "s.npy")[0]).double().softmax(0)
    top = probs.argsort(descending=True)[:3]
    assert [r["label"] for r in out["topk"]] == top.tolist()
    np.testing.assert_allclose([r["score"] for r in out["topk"]], probs[top].numpy(), rtol=1e-5, atol=1e-6)
    video = synthetic_root / "videos" / (folder.name + ".mp4")
    out = json.loads(invoke("predict", "tsn_r18_synthetic_rgb", random_checkpoint, video, *opts).output)
    assert len(out["topk"]) == 3


def test_prepare_check_finds_problems(synthetic_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic_root, data, ignore=shutil.ignore_patterns("videos"))
    victim = sorted((data / "rawframes").glob("val_*"))[2]
    (victim / "img_00007.jpg").unlink()
    overrides = [x for item in synthetic_overrides(data) for x in ("--cfg-options", item)]
    clean = tmp_path / "clean.txt"
    result = CliRunner().invoke(cli, ["prepare", "check", "tsn_r18_synthetic_rgb", "--split", "val", "--full",
                                      "--clean-list", str(clean), *overrides])
    assert result.exit_code == 1
    assert "missing_frames: 1" in result.output
    original = (data / "val_list_rawframes.txt").read_text().splitlines()
    assert clean.read_text().splitlines() == original[:2] + original[3:]
