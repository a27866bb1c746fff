"""`tsn export`, `tsn plot` and the demo's end-of-run files, driven through the CLI as a user would."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from jobs.cli import cli
from jobs.recipes.config import load_config
from jobs.reporting import read_run, summarize
from jobs.runtime.weights import build_model

RGB = "tsn_r18_synthetic_rgb"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_export_verify_then_tampered_check_only_fails(tmp_path):
    ckpt = tmp_path / "random.pth"
    torch.manual_seed(0)
    torch.save({"model": build_model(load_config(RGB).model).state_dict()}, ckpt)
    out = tmp_path / "tsn.pt"
    no_data = f"data.test_list={tmp_path / 'missing.txt'}"
    result = invoke("export", RGB, ckpt, "--format", "torchscript", "--out", out, "--views", "2", "--size", "64",
                    "--dynamic-batch", "--verify", "--cfg-options", no_data)
    assert result.exit_code == 0, result.output
    assert "clips (B, 2, 3, 64, 64) uint8" in result.output and "logits (B, 12)" in result.output
    assert "real-clip check skipped" in result.output and "verified" in result.output

    extra = {"tsn.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(out), _extra_files=extra)
        with torch.no_grad():
            module.tsn.backbone.conv1.weight.mul_(1.05)      # a subtly wrong stem
        torch.jit.save(module, str(out), _extra_files=extra)
    result = invoke("export", RGB, ckpt, "--format", "torchscript", "--out", out, "--check-only", "--cfg-options",
                    no_data)
    assert result.exit_code == 1
    assert "max abs difference" in result.output and str(out) in result.output and "FAILED" in result.output

    result = invoke("export", ckpt, "--format", "onnx", "--out", tmp_path / "x.onnx")   # a bare state dict
    assert result.exit_code == 1 and "holds no config" in result.output and "tsn export RECIPE CKPT" in result.output


def test_plot_command_writes_png_and_summary(tmp_path):
    for name, losses in (("rgb", (2.0, 1.0)), ("flow", (3.0, 2.5))):
        lines = [{"mode": "train", "epoch": e, "iter": 4, "lr": 0.01, "loss": loss, "time": 0.3, "data_time": 0.1,
                  "memory": 0} for e, loss in zip((1, 2), losses)]
        lines += [{"mode": "val", "epoch": 2, "top1_acc": 0.625, "mean_class_accuracy": 0.5}]
        (tmp_path / name).mkdir()
        (tmp_path / name / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "curves.png"
    result = invoke("plot", tmp_path / "rgb", tmp_path / "flow" / "log.jsonl", "--out", out, "--summary")
    assert result.exit_code == 0, result.output
    # 0.3 s step + 0.1 s data per iteration: 0.4 s, data share 0.1 / 0.4 = 25%
    assert result.output.count("time per iteration: 0.4000 s") == 2 and "data_time share: 25.0%" in result.output
    assert "best top1_acc: 0.6250 at epoch 2 (of 2)" in result.output
    assert "Analyze train time of rgb" in result.output and "Analyze train time of flow" in result.output
    with Image.open(out) as img:
        assert img.format == "PNG" and min(img.size) > 0
    assert invoke("plot", tmp_path / "rgb").exit_code == 2                      # nothing asked for
    missing = invoke("plot", tmp_path / "none", "--summary")
    assert missing.exit_code == 1 and "no such log" in missing.output


def _iteration_weighted(lines, key):
    """Mean per iteration from the raw lines: a line at iter i stands for i - (previous line's iter) iterations."""
    total = count = 0.0
    prev = {}
    for x in lines:
        k = x["iter"] - prev.get(x["epoch"], 0)
        prev[x["epoch"]] = x["iter"]
        total += x[key] * k
        count += k
    return total / count


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_demo_writes_curves_and_fusion_table(synthetic_root, tmp_path):
    work = tmp_path / "demo"
    result = invoke("demo", "--data", synthetic_root, "--work-dir", work, "--cfg-options", "optim.epochs=1",
                    "data.videos_per_gpu=8", "runtime.log_interval=1", "test.sampler.num_clips=2")
    assert result.exit_code == 0, result.output
    assert f"training curves written to {work / 'curves.png'}" in result.output
    assert str(work / "fusion.json") in result.output and str(work / "fusion.md") in result.output
    with Image.open(work / "curves.png") as img:
        assert img.format == "PNG" and min(img.size) > 0

    rows = json.loads((work / "fusion.json").read_text())
    assert [r["name"] for r in rows] == ["tsn_r18_synthetic_rgb", "tsn_r18_synthetic_flow", "two-stream [1:1]"]
    labels = np.array([int(line.split()[-1]) for line in (synthetic_root / "val_list_rawframes.txt").read_text()
                       .splitlines()])
    rgb, flow = np.load(work / "rgb" / "scores.npy"), np.load(work / "flow" / "scores.npy")
    assert rows[0]["top1_acc"] == pytest.approx(np.mean(rgb.argmax(1) == labels))
    assert rows[2]["top1_acc"] == pytest.approx(np.mean((rgb + flow).argmax(1) == labels))
    md = (work / "fusion.md").read_text().splitlines()
    assert md[4].startswith("| two-stream [1:1] | ") and f"{100 * rows[2]['top1_acc']:.2f}" in md[4]

    # the real logger's lines read back: 24 train videos / 8 = 3 iterations, one line each
    raw = [json.loads(x) for x in (work / "rgb" / "log.jsonl").read_text().splitlines()]
    train = [x for x in raw if x["mode"] == "train"]
    s = summarize(read_run(work / "rgb"), include_outliers=True)
    assert [x["iter"] for x in train] == [1, 2, 3] and s.iterations == 3
    assert s.step_time == pytest.approx(_iteration_weighted(train, "time"))
    assert s.data_time == pytest.approx(_iteration_weighted(train, "data_time"))
    val = [x for x in raw if x["mode"] == "val"]
    assert (s.best_epoch, s.best_value) == (1, val[0]["top1_acc"])
