"""`tsn predict CONFIG CKPT FOLDER|LIST`: every input gets one row, in batches through the test loader; a list's
labels give the recipe's metrics, equal to compute_metrics on the rows' scores and to `tsn test`'s scores."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from jobs.cli import cli
from jobs.evaluation.metrics import compute_metrics, softmax
from jobs.media.naming import count_frames
from pipelines.synthetic_data import PALETTE
from tests.helpers import colour_checkpoint

RECIPE = "tsn_r18_synthetic_video_rgb"
FAST = ["--cfg-options", "test.sampler.num_clips=2", "data.workers=1", "data.test_videos_per_gpu=8", "--device", "cpu"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    colours = {4 * c: PALETTE[c][1] for c in range(3)}      # <colour>_<direction 0> for red, green, blue
    return colour_checkpoint(tmp_path_factory.mktemp("ckpt") / "colour.pth", colours)


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_folder_every_video_one_row(synthetic_root, checkpoint, tmp_path):
    videos = synthetic_root / "videos"
    out = tmp_path / "rows.jsonl"
    names = (synthetic_root / "classes.txt").read_text().split()
    result = invoke("predict", RECIPE, checkpoint, videos, "--out", out, "--label-map",
                    synthetic_root / "classes.txt", *FAST)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = sorted(str(p) for p in videos.iterdir() if p.suffix in (".mp4", ".webm"))   # 36 x (H.264, VP9)
    assert [r["path"] for r in rows] == expected and len(rows) == 72
    for r in rows:
        assert "labels" not in r and len(r["topk"]) == 5
        assert all(t["name"] == names[t["label"]] for t in r["topk"])
    assert f"72 inputs predicted, written to {out}" in result.output and "top1_acc" not in result.output


def test_folder_recursive_with_frame_folders(synthetic_root, checkpoint, tmp_path):
    root = tmp_path / "mixed"
    (root / "a").mkdir(parents=True)
    (root / "b" / "c").mkdir(parents=True)
    shutil.copy(synthetic_root / "videos" / "val_0000.mp4", root / "a")
    shutil.copy(synthetic_root / "videos" / "val_0001.webm", root / "b" / "c")
    shutil.copy(synthetic_root / "videos" / "val_0003.mp4", root / ".hidden.mp4")
    shutil.copytree(synthetic_root / "rawframes" / "val_0002", root / "frames" / "val_0002")
    (root / "notes.md").write_text("not a video\n")
    out = tmp_path / "rows.csv"
    invoke("predict", RECIPE, checkpoint, root, "--out", out, "--topk", 12, *FAST)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [str(root / "a" / "val_0000.mp4"), str(root / "b" / "c" / "val_0001.webm"),
                                         str(root / "frames" / "val_0002")]
    # The frame folder scores as the single-input command scores it (its JPEG frames, the same recipe switched to
    # frame folders the same way: a video recipe's start_index 0 does not apply to img_00001.jpg files).
    single = json.loads(invoke("predict", RECIPE, checkpoint, root / "frames" / "val_0002", "--json", "--topk", 12,
                               *FAST).output)
    got = {int(rows[2][f"top{i}_label"]): float(rows[2][f"top{i}_score"]) for i in range(1, 13)}
    assert got == pytest.approx({t["label"]: t["score"] for t in single["topk"]}, rel=1e-5, abs=1e-12)


def test_a_folder_with_a_gap_counts_the_same_alone_and_under_a_parent(synthetic_root, checkpoint, tmp_path):
    """One frame-counting rule (jobs/media/naming.py count_frames: every file named like the template): a folder
    whose img_00002.jpg is missing has 23 frames whether it is given alone or found under its parent, so both give
    the same scores. (The consecutive run from img_00001.jpg would be 1 frame: a different clip, other scores.)"""
    folder = tmp_path / "parent" / "gappy"
    shutil.copytree(synthetic_root / "rawframes" / "val_0002", folder)
    (folder / "img_00002.jpg").unlink()
    files = sorted(p.name for p in folder.glob("img_*.jpg"))      # the folder also holds the x_/y_ flow frames
    assert len(files) == 23 and files[0] == "img_00001.jpg" and files[1] == "img_00003.jpg"
    assert count_frames(folder, "img_{:05}.jpg") == 23
    # 3 test clips over 23 frames sample frames 4, 12 and 20 (MMAction2 SampleFrames, test mode): never the gap.
    opts = [*FAST, "--cfg-options", "test.sampler.num_clips=3", "--topk", 12]
    alone = json.loads(invoke("predict", RECIPE, checkpoint, folder, "--json", *opts).output)["topk"]
    out = tmp_path / "rows.jsonl"
    invoke("predict", RECIPE, checkpoint, folder.parent, "--out", out, *opts)
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["path"] == str(folder)
    assert {t["label"]: t["score"] for t in row["topk"]} == pytest.approx(
        {t["label"]: t["score"] for t in alone}, rel=1e-6, abs=1e-12)


def test_list_rows_and_metrics(synthetic_root, checkpoint, tmp_path):
    listing = synthetic_root / "val_list_videos.txt"
    prefix = synthetic_root / "videos"
    out = tmp_path / "rows.csv"
    result = invoke("predict", RECIPE, checkpoint, listing, "--prefix", prefix, "--out", out, "--topk", 12, *FAST)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    lines = [line.split() for line in listing.read_text().splitlines()]
    assert [r["path"] for r in rows] == [str(prefix / name) for name, _ in lines]
    assert [r["labels"] for r in rows] == [label for _, label in lines]
    scores = np.zeros((len(rows), 12))
    for n, r in enumerate(rows):
        for i in range(1, 13):
            scores[n, int(r[f"top{i}_label"])] = float(r[f"top{i}_score"])
    labels = [(int(label),) for _, label in lines]
    metrics = compute_metrics(scores, labels, ("top_k_accuracy", "mean_class_accuracy"), 12)
    printed = dict(line.split(": ") for line in result.output.splitlines() if ": " in line)
    assert set(printed) == set(metrics)
    for k, v in metrics.items():
        assert float(printed[k]) == pytest.approx(v, abs=5e-5)
    # The same scores `tsn test` dumps for this list (softmax of the averaged logits).
    dump = tmp_path / "scores.npy"
    invoke("test", RECIPE, checkpoint, "--list", listing, "--prefix", prefix, "--dump", dump, *FAST)
    np.testing.assert_allclose(scores, softmax(np.load(dump)), rtol=1e-5, atol=1e-12)


def test_list_errors_name_the_file_and_line(synthetic_root, checkpoint, tmp_path):
    listing = tmp_path / "bad.txt"
    listing.write_text("val_0000.mp4 3\nno_such_video.mp4 1\n")
    result = CliRunner().invoke(cli, ["predict", RECIPE, str(checkpoint), str(listing), "--prefix",
                                      str(synthetic_root / "videos"), *FAST])
    assert result.exit_code == 1 and f"{listing}:2" in result.output and "no_such_video.mp4" in result.output
    listing.write_text("val_0000.mp4 three\n")
    result = CliRunner().invoke(cli, ["predict", RECIPE, str(checkpoint), str(listing), *FAST])
    assert result.exit_code == 1 and f"{listing}:1" in result.output
    result = CliRunner().invoke(cli, ["predict", RECIPE, str(checkpoint), str(listing), "--out", "rows.xlsx", *FAST])
    assert result.exit_code == 1 and "rows.xlsx" in result.output
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    result = CliRunner().invoke(cli, ["predict", RECIPE, str(checkpoint), str(empty), *FAST])
    assert result.exit_code == 1 and str(empty) in result.output and "no video files" in result.output
