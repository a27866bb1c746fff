"""Every expected error as a user meets it: one line `tsn <job>: error: ...` naming the file (and line), exit status
1, no traceback; `tsn --debug` / TSN_DEBUG=1 show the traceback, a bug keeps it.

The errors run in this interpreter (`tsn`: click's CliRunner through the group's own handling, jobs/console/errors.py
`run`, exactly what the console script calls); what only a new process shows (the traceback on stderr, `python
jobs/<job>.py`) runs as real subprocesses (`tsn_process`)."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import traceback
import zipfile
from types import SimpleNamespace

import click
import pytest
import torch
from click.testing import CliRunner

from jobs.cli import cli
from jobs.console import errors
from jobs.recipes.config import config_dict, load_config
from jobs.runtime.checkpoint import write_checkpoint
from jobs.runtime.weights import build_model
from tests.helpers import ROOT, synthetic_overrides

RECIPE = "tsn_r18_synthetic_rgb"
FAST = ["data.workers=1", "data.videos_per_gpu=4", "optim.epochs=1", "test.sampler.num_clips=3"]


def tsn(*args, env: dict | None = None) -> SimpleNamespace:
    """`tsn ARGS` in this interpreter, without TSN_DEBUG: (returncode, stdout, stderr) as a process would give them;
    an exception that escapes (a bug, or an expected error not recognised) is written to stderr with its traceback,
    as the interpreter would."""
    result = CliRunner().invoke(cli, [str(a) for a in args], env={errors.DEBUG_ENV: None, **(env or {})})
    stderr = result.stderr
    if result.exc_info is not None and result.exc_info[0] is not SystemExit:
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=stderr)


def tsn_process(*args, script: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m jobs.cli ARGS` (or `python jobs/<script>.py ARGS`) from the repo root, without TSN_DEBUG."""
    argv = [sys.executable, f"jobs/{script}.py"] if script else [sys.executable, "-m", "jobs.cli"]
    environ = {k: v for k, v in os.environ.items() if k != errors.DEBUG_ENV}
    environ.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run(argv + [str(a) for a in args], cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=300)


def opts(items) -> list[str]:
    return [x for item in items for x in ("--cfg-options", item)]


def one_line_error(result, job: str, *needles: str) -> str:
    """Assert the one-line error shape; returns the error line."""
    assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"tsn {job}: error: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr[-3000:])
    return lines[0]


@pytest.fixture(scope="module")
def data(synthetic_root):
    return synthetic_overrides(synthetic_root)


@pytest.fixture(scope="module")
def good_checkpoint(synthetic_root, data, tmp_path_factory):
    """A random-weight checkpoint in our format, carrying the resolved config of the synthetic recipe."""
    cfg = load_config(RECIPE, data + FAST)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "good.pth"
    write_checkpoint({"model": build_model(cfg.model).state_dict(), "config": config_dict(cfg), "epoch": 1}, path)
    return path


def write(tmp_path, name, content) -> str:
    path = tmp_path / name
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return str(path)


# ------------------------------------------------------------------------------------------------ configs

def test_unknown_config_key(tmp_path):
    bad = write(tmp_path, "bad.toml", "[model]\narch = 'resnet18'\ndropuot = 0.5\n")
    one_line_error(tsn("train", bad), "train", f"{bad}: model.dropuot: unknown key")


def test_wrong_value_type(tmp_path):
    bad = write(tmp_path, "bad.toml", '[model]\ndropout = "high"\n')
    one_line_error(tsn("train", bad), "train", f"{bad}: model.dropout: expected float, got str 'high'")


def test_toml_syntax_error(tmp_path):
    bad = write(tmp_path, "bad.toml", "[model]\narch = 'resnet18'\n[optim\nlr = 0.1\n")
    one_line_error(tsn("train", bad), "train", f"{bad}:", "(at line 3")


def test_unknown_recipe_name():
    one_line_error(tsn("train", "tsn_r50_no_such_recipe"), "train", "tsn_r50_no_such_recipe: no such config file")


def test_bad_cfg_option_value_names_recipe(data):
    line = one_line_error(tsn("train", RECIPE, *opts(data + ["optim.lr=fast"])), "train")
    assert "optim.lr: expected float, got str 'fast'" in line and f"{RECIPE}.toml" in line


# ------------------------------------------------------------------------------------------------ lists

@pytest.mark.parametrize("text,needle", [
    ("train_0000 24 0\ntrain_0001 24\n", ":2: expected '<frame_dir> <total_frames> <label>', got 2 fields"),
    ("train_0000 24 0\ntrain_0001 twenty 1\n", ":2: offset/total_frames must be integers, got 'twenty'"),
    ("# comment\ntrain_0000 24 140\n", ":2: label 140 outside [0, 12)"),
    ("# only a comment\n\n", ": the list has no entries"),
])
def test_malformed_train_list(synthetic_root, tmp_path, data, text, needle):
    bad = write(tmp_path, "list.txt", text)
    result = tsn("train", RECIPE, "--work-dir", tmp_path / "work", *opts(data + FAST + [f"data.train_list={bad}"]))
    one_line_error(result, "train", bad + needle)


def test_non_utf8_list_names_file_and_line(tmp_path, data):
    bad = write(tmp_path, "list.txt", b"train_0000 24 0\ntrain_0001 24 1\ntr\xe9in_0002 24 2\n")   # Latin-1 'e'
    result = tsn("train", RECIPE, "--work-dir", tmp_path / "work", *opts(data + FAST + [f"data.train_list={bad}"]))
    one_line_error(result, "train", f"{bad}:3: not UTF-8 text (byte 0xe9 at column 3)")


def test_binary_list(tmp_path, data):
    bad = write(tmp_path, "list.txt", b"train_0000 24 0\n\x00\x01\x02\x03 24 1\n")
    result = tsn("prepare", "check", RECIPE, *opts(data + [f"data.train_list={bad}"]))
    one_line_error(result, "prepare check", f"{bad}:2: not UTF-8 text (NUL byte")


def test_missing_list_in_train_and_check(tmp_path, data):
    gone = str(tmp_path / "nope.txt")
    one_line_error(tsn("train", RECIPE, "--work-dir", tmp_path / "w", *opts(data + FAST + [f"data.train_list={gone}"])),
                   "train", f"{gone}: annotation list not found")
    one_line_error(tsn("prepare", "check", RECIPE, *opts(data + [f"data.train_list={gone}"])), "prepare check",
                   f"{gone}: annotation list not found")


def test_missing_data_folder(tmp_path, data):
    gone = str(tmp_path / "no_frames_here")
    result = tsn("train", RECIPE, "--work-dir", tmp_path / "work", *opts(data + FAST + [f"data.train_prefix={gone}"]))
    one_line_error(result, "train", f"{gone}: no such data folder (data.train_prefix;")


def test_too_many_bad_samples(synthetic_root, tmp_path, data):
    """9 of 12 frame folders missing, max_bad_fraction 0.1: the epoch runs, then training stops naming the log."""
    real = (synthetic_root / "train_list_rawframes.txt").read_text().splitlines()[:3]
    bad = write(tmp_path, "list.txt", "".join(line + "\n" for line in real)
                + "".join(f"gone_{i} 24 {i} \n" for i in range(9)))
    work = tmp_path / "work"
    result = tsn("train", RECIPE, "--work-dir", work, "--no-validate",
                 *opts(data + FAST + [f"data.train_list={bad}", "data.max_bad_fraction=0.1"]))
    line = one_line_error(result, "train", f"{bad}:4: missing file", str(work / "bad_samples.jsonl"))
    assert "9 of 12 videos unreadable (max_bad_fraction=0.1)" in line


@pytest.mark.parametrize("damage,reason", [
    # a missing frame is found before any work (every sampled frame is stat'ed up front) and listed
    (lambda frame: frame.unlink(), "1 of the 24 sampled frame files missing"),
    # a frame that is there but not a JPEG is found when read, inside a DALI worker
    (lambda frame: frame.write_bytes(b"<html>404</html>"), "not a JPEG"),
])
def test_bad_frame_under_raise_policy_names_line_and_file(synthetic_root, tmp_path, good_checkpoint, damage, reason):
    """Evaluation raises on unreadable videos, naming line and file; an error raised in DALI's worker process
    crosses it intact."""
    folder = sorted((synthetic_root / "rawframes").glob("val_*"))[0]
    shutil.copytree(folder, tmp_path / "frames" / folder.name)
    frame = tmp_path / "frames" / folder.name / "img_00007.jpg"
    damage(frame)
    bad = write(tmp_path, "list.txt", f"{folder.name} 24 0\n")
    result = tsn("test", good_checkpoint, "--device", "cpu",
                 *opts([f"data.test_list={bad}", f"data.test_prefix={tmp_path / 'frames'}", "test.sampler.num_clips=24"]))
    one_line_error(result, "test", f"{bad}:1: ", str(frame), reason)


def test_incomplete_evaluation_refuses_a_headline(synthetic_root, tmp_path, good_checkpoint):
    lines = (synthetic_root / "val_list_rawframes.txt").read_text().splitlines()[:2]
    bad = write(tmp_path, "list.txt", lines[0] + "\ngone_0 24 1\n" + lines[1] + "\n")
    result = tsn("test", good_checkpoint, "--device", "cpu",
                 *opts([f"data.test_list={bad}", "data.on_error=skip", "data.max_bad_fraction=1.0",
                        "test.sampler.num_clips=3"]))
    one_line_error(result, "test", "only 2 of 3 videos were evaluated: refusing a headline number")


def test_check_reports_missing_folders_and_corrupt_frames(synthetic_root, tmp_path, data):
    lines = (synthetic_root / "val_list_rawframes.txt").read_text().splitlines()[:3]
    for line in lines[:2]:
        shutil.copytree(synthetic_root / "rawframes" / line.split()[0], tmp_path / "frames" / line.split()[0])
    (tmp_path / "frames" / lines[1].split()[0] / "img_00005.jpg").write_bytes(b"\xff\xd8 cut short")
    bad = write(tmp_path, "list.txt", "".join(line + "\n" for line in lines))      # line 3: folder not copied
    result = tsn("prepare", "check", RECIPE, "--full",
                 *opts(data + [f"data.train_list={bad}", f"data.train_prefix={tmp_path / 'frames'}"]))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    counts = dict(line.split(": ") for line in result.stdout.splitlines() if ": " in line and "report" not in line)
    assert {k.strip(): int(v) for k, v in counts.items()} == {"ok": 1, "missing": 1, "corrupt_frame": 1}
    report = [json.loads(line) for line in open(bad + ".check.jsonl")]
    assert {(r["line"], r["problem"]) for r in report} == {(f"{bad}:2", "corrupt_frame"), (f"{bad}:3", "missing")}


def test_check_reports_unusable_videos(synthetic_root, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    good = sorted((synthetic_root / "videos").glob("val_*.mp4"))[0]
    shutil.copy(good, videos / good.name)
    (videos / "zero.mp4").write_bytes(b"")
    (videos / "text.mp4").write_text("not a video\n")
    bad = write(tmp_path, "list.txt", f"{good.name} 0\nzero.mp4 1\ntext.mp4 2\nmissing.mp4 3\n")
    result = tsn("prepare", "check", "tsn_r18_synthetic_video_rgb",
                 *opts([f"data.train_list={bad}", f"data.train_prefix={videos}", "data.workers=1"]))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    report = {r["line"]: (r["problem"], r["reason"]) for r in map(json.loads, open(bad + ".check.jsonl"))}
    assert report[f"{bad}:2"] == ("unreadable", "empty file (0 bytes)")
    assert report[f"{bad}:3"][0] == "unreadable" and report[f"{bad}:4"] == ("missing", "file not found")
    assert f"{bad}:1" not in report


def test_bad_videos_in_test_are_one_error_listing_each(synthetic_root, tmp_path, good_checkpoint):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "zero.mp4").write_bytes(b"")
    (videos / "text.mp4").write_text("not a video\n")
    bad = write(tmp_path, "list.txt", "zero.mp4 1\ntext.mp4 2\n")
    result = tsn("test", "tsn_r18_synthetic_video_rgb", good_checkpoint, "--device", "cpu",
                 *opts([f"data.test_list={bad}", f"data.test_prefix={videos}", "data.workers=1"]))
    line = one_line_error(result, "test", f"{bad}:1: {videos / 'zero.mp4'}: unreadable (empty file (0 bytes))",
                          f"{bad}:2: {videos / 'text.mp4'}: unreadable")
    assert line == f"tsn test: error: 2 unusable videos in {bad}:"


# ------------------------------------------------------------------------------------------------ checkpoints

def test_missing_checkpoint(tmp_path):
    gone = tmp_path / "epoch_9.pth"
    one_line_error(tsn("test", gone), "test", f"{gone}: checkpoint not found")
    result = tsn("export", RECIPE, gone, "--format", "onnx", "--out", tmp_path / "x.onnx")
    assert one_line_error(result, "export", f"{gone}: checkpoint not found").endswith("checkpoint not found")


def test_missing_resume_and_load_from(tmp_path, data):
    gone = tmp_path / "gone.pth"
    one_line_error(tsn("train", RECIPE, "--work-dir", tmp_path / "w", "--resume", gone, *opts(data + FAST)), "train",
                   f"{gone}: checkpoint not found")
    one_line_error(tsn("train", RECIPE, "--work-dir", tmp_path / "w", "--load-from", gone, *opts(data + FAST)), "train",
                   f"{gone}: checkpoint not found")


def test_truncated_checkpoint(tmp_path, good_checkpoint):
    cut = write(tmp_path, "cut.pth", good_checkpoint.read_bytes()[:good_checkpoint.stat().st_size // 2])
    one_line_error(tsn("test", cut), "test", f"{cut}: truncated (zip archive incomplete)")


def test_empty_checkpoint(tmp_path):
    empty = write(tmp_path, "empty.pth", b"")
    one_line_error(tsn("test", RECIPE, empty), "test", f"{empty}: empty file")


def test_corrupt_checkpoints(tmp_path):
    text = write(tmp_path, "notes.pth", "these are not weights\n")
    one_line_error(tsn("test", RECIPE, text), "test", f"{text}: not a torch checkpoint")
    other_zip = tmp_path / "other.pth"
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("readme.txt", "a zip archive, but not one torch.save wrote")
    one_line_error(tsn("test", other_zip), "test", f"{other_zip}: not a torch checkpoint")


def test_resume_from_corrupt_checkpoint(tmp_path, data, good_checkpoint):
    cut = write(tmp_path, "epoch_3.pth", good_checkpoint.read_bytes()[:1000])
    result = tsn("train", RECIPE, "--work-dir", tmp_path / "w", "--resume", cut, *opts(data + FAST))
    one_line_error(result, "train", f"{cut}: truncated")


@pytest.fixture(scope="module")
def other_checkpoints(tmp_path_factory):
    """Checkpoints of another class count (20) and another architecture (resnet34), old layout (recipe name)."""
    cfg = load_config(RECIPE).model
    folder = tmp_path_factory.mktemp("other")
    out = {}
    for name, model_cfg in (("classes20", dataclasses.replace(cfg, num_classes=20)),
                            ("resnet34", dataclasses.replace(cfg, arch="resnet34"))):
        out[name] = folder / f"{name}.pth"
        torch.save({"model": build_model(model_cfg).state_dict(), "config": RECIPE,
                    "meta": {"arch": model_cfg.arch, "num_classes": model_cfg.num_classes}}, out[name])
    return out


def test_checkpoint_of_another_class_count(other_checkpoints, data):
    path = other_checkpoints["classes20"]
    one_line_error(tsn("test", RECIPE, path, *opts(data)), "test",
                   f"{path}: does not fit the model (resnet18, 12 classes; the checkpoint says resnet18, 20 classes)",
                   "head.fc.weight: checkpoint [20, 512] vs model [12, 512]")


def test_checkpoint_of_another_architecture(other_checkpoints, data):
    path = other_checkpoints["resnet34"]
    line = one_line_error(tsn("test", RECIPE, path, *opts(data)), "test", f"{path}: does not fit the model (resnet18")
    # resnet34 has 3 blocks in layer1 where resnet18 has 2: layer1.2.* are the first keys the model lacks
    assert "unexpected keys: backbone.layer1.2.conv1.weight" in line


def test_predict_with_checkpoint_of_another_class_count(synthetic_root, other_checkpoints):
    path = other_checkpoints["classes20"]
    folder = sorted((synthetic_root / "rawframes").glob("val_*"))[0]
    one_line_error(tsn("predict", path, folder, "--device", "cpu"), "predict", "head.fc.weight: checkpoint [20, 512]")


# ------------------------------------------------------------------------------------------------ weights

def test_offline_imagenet_weights(tmp_path, data):
    """pretrained = "imagenet", nothing cached, no network (a proxy that refuses): the file to place is named."""
    result = tsn("train", RECIPE, "--work-dir", tmp_path / "w", *opts(data + FAST + ["model.pretrained=imagenet"]),
                 env={"TORCH_HOME": str(tmp_path / "torch"), "https_proxy": "http://127.0.0.1:9",
                      "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""})
    one_line_error(result, "train", "ImageNet weights for resnet18 are not available", "resnet18-f37072fd.pth",
                   str(tmp_path / "torch" / "hub" / "checkpoints"))


def test_missing_pretrained_file(tmp_path, data):
    gone = tmp_path / "resnet18_imagenet.pth"
    result = tsn("train", RECIPE, "--work-dir", tmp_path / "w", *opts(data + FAST + [f"model.pretrained={gone}"]))
    one_line_error(result, "train", f"{gone}: no such file (TSNConfig.pretrained")


# ------------------------------------------------------------------------------------------------ debug, scripts, bugs

def test_debug_flag_and_env_show_the_traceback(tmp_path):
    bad = write(tmp_path, "bad.toml", "[model]\nfoo = 1\n")
    for result in (tsn_process("--debug", "train", bad), tsn_process("train", bad, env={errors.DEBUG_ENV: "1"})):
        assert result.returncode == 1
        assert "Traceback (most recent call last)" in result.stderr
        assert "jobs.recipes.config.ConfigError: " in result.stderr and "model.foo: unknown key" in result.stderr


def test_scripts_report_errors_the_same_way(tmp_path):
    bad = write(tmp_path, "bad.toml", "[model]\nfoo = 1\n")
    one_line_error(tsn_process(bad, script="train"), "train", f"{bad}: model.foo: unknown key")
    one_line_error(tsn_process(tmp_path / "gone.pth", script="test"), "test", "gone.pth: checkpoint not found")
    one_line_error(tsn_process("check", "tsn_nope", script="prepare"), "prepare check", "tsn_nope: no such config file")
    one_line_error(tsn_process("test", tmp_path / "gone.pth"), "test", "gone.pth: checkpoint not found")   # the group
    debug = tsn_process("--debug", bad, script="train")
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr


def test_unexpected_errors_keep_their_traceback():
    @click.command("boom")
    def boom():
        raise ZeroDivisionError("a bug, not a user error")

    with pytest.raises(ZeroDivisionError):
        errors.run(boom, [])
    assert errors.expected_message(ZeroDivisionError("x")) is None
    assert errors.expected_message(KeyError("x")) is None


def test_usage_errors_stay_clicks(tmp_path):
    result = tsn("train", "--no-such-option")
    assert result.returncode == 2 and "No such option '--no-such-option'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_in_process_runner_shows_what_escapes(monkeypatch):
    """A bug inside a command (here: no recipe folder object at all) reaches the in-process `tsn`'s stderr as a
    traceback, so `one_line_error` fails on it as it would on a process's stderr."""
    monkeypatch.setattr("jobs.recipes.config.CONFIG_DIR", None)
    result = tsn("configs")
    assert result.returncode == 1 and "Traceback (most recent call last)" in result.stderr
    assert "AttributeError" in result.stderr
    with pytest.raises(AssertionError):
        one_line_error(result, "configs")
