"""`tsn predict --window/--stride` on generated videos whose colour (= class, for a checkpoint that classifies mean
colour) changes at a known time: the timeline, VFR timestamps, the plot, and frames decoded per window."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from jobs.cli import cli
from pipelines.readers import PyAVReader
from pipelines.synthetic_data import PALETTE
from tests.helpers import colour_checkpoint

RECIPE = "tsn_r18_synthetic_video_rgb"
RED, GREEN = 0, 4                       # labels of red_<dir 0> and green_<dir 0> (3 colours x 4 directions)
FAST = ["--cfg-options", "test.sampler.num_clips=5", "data.workers=1", "--device", "cpu"]


def write_video(path, pts_ms: list[int], colours: list[tuple[int, int, int]], rate: int = 25):
    """H.264 (B-frames) in MP4, frame i shown from pts_ms[i] on, filled with colours[i] plus mild noise."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate, options={"bf": "2", "g": "12", "preset": "veryfast",
                                                                     "threads": "1"})
        stream.width, stream.height, stream.pix_fmt = 80, 64, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for pts, rgb in zip(pts_ms, colours):
            img = np.clip(np.asarray(rgb, float) + rng.normal(0, 2, (64, 80, 3)), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def two_colour_cfr(path, seconds: float, change_s: float, fps: int = 25):
    """Red for t < change_s, green after, constant rate."""
    n = int(seconds * fps)
    pts = [i * 1000 // fps for i in range(n)]
    return write_video(path, pts, [PALETTE[0][1] if p < change_s * 1000 else PALETTE[1][1] for p in pts], fps)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return colour_checkpoint(tmp_path_factory.mktemp("ckpt") / "colour.pth", {RED: PALETTE[0][1],
                                                                               GREEN: PALETTE[1][1]})


def predict(*args, catch=False):
    result = CliRunner().invoke(cli, ["predict", RECIPE, *[str(a) for a in args]], catch_exceptions=catch)
    return result


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_timeline_switches_class_at_the_change(tmp_path, checkpoint):
    video = two_colour_cfr(tmp_path / "red_then_green.mp4", seconds=8, change_s=4)
    out, plot = tmp_path / "timeline.jsonl", tmp_path / "timeline.png"
    result = predict(checkpoint, video, "--window", 2, "--stride", 1, "--out", out, "--plot", plot, "--topk", 2,
                     *FAST)
    assert result.exit_code == 0, result.output
    rows = read_rows(out)
    # 8 s, windows of 2 s every 1 s: starts 0..6 (the last ends at 8 s); at 25 fps window k = frames [25k, 25k+50).
    assert [(r["start"], r["end"]) for r in rows] == [(k, k + 2) for k in range(7)]
    assert [(r["start_frame"], r["end_frame"]) for r in rows] == [(25 * k, 25 * k + 50) for k in range(7)]
    top1 = [r["topk"][0]["label"] for r in rows]
    for r, label in zip(rows, top1):
        if r["end"] <= 4:
            assert label == RED, rows
        elif r["start"] >= 4:
            assert label == GREEN, rows
    # The one window straddling 4 s is [3, 5): either is right; the switch is within one window of the change.
    assert all(len(r["topk"]) == 2 and r["topk"][0]["score"] >= r["topk"][1]["score"] for r in rows)
    assert rows[0]["topk"][0]["score"] > 0.99          # logit margin ~15 (tests/helpers.py colour_checkpoint)
    with Image.open(plot) as img:
        assert img.format == "PNG" and img.size == (1100, 450)


def test_vfr_windows_follow_timestamps(tmp_path, checkpoint):
    # 10 fps for 4 s (40 frames), then 40 fps for 4 s (160 frames): mean 25 fps, so fps arithmetic would put the
    # change (frame 40) at 1.6 s instead of 4 s.
    pts = list(range(0, 4000, 100)) + list(range(4000, 8000, 25))
    colours = [PALETTE[0][1] if p < 4000 else PALETTE[1][1] for p in pts]
    video = write_video(tmp_path / "vfr.mp4", pts, colours)
    result = predict(checkpoint, video, "--window", 1, *FAST)        # no --out: JSON lines on stdout
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert "8 windows of 1 s, stride 1 s" in result.stderr
    assert [(r["start"], r["end"]) for r in rows] == [(k, k + 1) for k in range(8)]   # ends at 7.975 + 0.025 s
    expected = [(10 * k, 10 * k + 10) for k in range(4)] + [(40 + 40 * k, 80 + 40 * k) for k in range(4)]
    assert [(r["start_frame"], r["end_frame"]) for r in rows] == expected
    assert [r["topk"][0]["label"] for r in rows] == [RED] * 4 + [GREEN] * 4


@dataclass(frozen=True)
class CountingReader(PyAVReader):
    """The real PyAV reader, logging what each call asked for (it runs in DALI's worker processes: a file)."""

    log: str = ""

    def read(self, record, indices):
        clip = super().read(record, indices)
        with open(self.log, "a") as f:
            f.write(json.dumps({"offset": record.offset, "frames": record.total_frames,
                                "indices": [int(i) for i in indices], "decoded": len(clip.data)}) + "\n")
        return clip


@pytest.mark.parametrize("seconds", [8, 32])
def test_frames_decoded_per_window_do_not_grow_with_the_video(tmp_path, checkpoint, monkeypatch, seconds):
    log = tmp_path / "reads.jsonl"
    monkeypatch.setattr("jobs.recipes.loaders.PyAVReader", functools.partial(CountingReader, log=str(log)))
    video = two_colour_cfr(tmp_path / "long.mp4", seconds=seconds, change_s=seconds / 2)
    out = tmp_path / "t.jsonl"
    result = predict(checkpoint, video, "--window", 2, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    reads = read_rows(log)
    windows = seconds // 2
    assert len(read_rows(out)) == windows and len(reads) == windows
    # Every window is read once: 5 sampled frames (test.sampler.num_clips=5, clip_len 1) of its own 50-frame range,
    # whatever the video's length: TSN test offsets 5, 15, 25, 35, 45 (segment centres of 50 / 5).
    assert sorted(r["offset"] for r in reads) == [50 * k for k in range(windows)]
    for r in reads:
        assert r["frames"] == 50 and r["decoded"] == 5 and r["indices"] == [5, 15, 25, 35, 45]


def test_window_errors_are_clean(tmp_path, checkpoint):
    result = predict(checkpoint, tmp_path / "missing.mp4", "--window", 2, *FAST, catch=True)
    assert result.exit_code != 0 and "missing.mp4" in result.output
    video = two_colour_cfr(tmp_path / "v.mp4", seconds=2, change_s=1)
    result = predict(checkpoint, video, "--stride", 1, *FAST, catch=True)
    assert result.exit_code != 0 and "--window" in result.output
    result = predict(checkpoint, video, "--window", 0, *FAST, catch=True)
    assert result.exit_code != 0 and "--window" in result.output
