"""`tsn bench video-decode`: generated files, the TSN indices, and ratios that are quotients of the measured rates.

No timing thresholds. The frames our decoder returns are checked against decord's, an independent decoder.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

import av
import numpy as np
import pytest
from click.testing import CliRunner

from jobs.cli import cli
from jobs.profiling.video_decode_bench import (
    Clip,
    Decord,
    Kind,
    Ours,
    compare,
    make_videos,
    parse_variant,
    protocol_clips,
    same_frames,
    samplers,
)
from pipelines.pyav_decode import DecodeOptions

RECIPE = "tsn_r50_video_1x1x8_100e_kinetics400_rgb"
decord = pytest.importorskip("decord")


def keyframes(path) -> tuple[int, int, list[int]]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        keys = [f.key_frame for f in c.decode(s)]
        return s.width, s.height, [i for i, k in enumerate(keys) if k]


def test_generated_files_have_the_kind_layout(tmp_path):
    raw = Kind("raw", 64, 48, 20, 8)
    (path,) = make_videos(tmp_path, raw, 1)
    w, h, keys = keyframes(path)
    assert (w, h) == (64, 48) and keys[0] == 0 and np.all(np.diff(keys + [20]) <= 8)
    prepared = Kind("prepared", 64, 48, 40, 40, resized=True)
    (path,) = make_videos(tmp_path, prepared, 1)
    w, h, keys = keyframes(path)
    assert (w, h) == (342, 256) and keys == [0, 16, 32]        # `tsn prepare resize`: short side 256, GOP 16
    assert make_videos(tmp_path, prepared, 1) == [path]         # kept and reused


def test_protocol_indices_are_the_recipe_samplers(synthetic_root):
    paths = sorted((synthetic_root / "videos").glob("*.mp4"))[:2]
    s = samplers(RECIPE)
    train, test = protocol_clips(paths, s["train"], 3), protocol_clips(paths, s["test"], 2)
    assert len(train) == 6 and all(len(c.indices) == 8 for c in train)
    # train: 8 segments of 24 // 8 = 3 frames, one draw in each
    assert all(np.array_equal(c.indices // 3, np.arange(8)) for c in train)
    assert len({tuple(c.indices) for c in train[:3]}) > 1                  # a new draw each epoch
    # test: 25 centred clips on 24 frames, int(k * 24 / 25 + 12 / 25): every frame once, frame 12 twice
    want = list(range(13)) + list(range(12, 24))
    assert all(c.indices.tolist() == want for c in test)


def test_ours_returns_decords_frames_and_ratios_are_quotients(synthetic_root):
    paths = sorted((synthetic_root / "videos").glob("*.mp4"))[:3]
    clips = protocol_clips(paths, samplers(RECIPE)["train"], 2)
    noskip = parse_variant("skip_nonref=0")
    assert noskip.options == DecodeOptions(skip_nonref=False)
    decoders = [Decord(), Ours(), noskip]
    assert same_frames(decoders, clips) == {"ours": 0, "ours[skip_nonref=0]": 0}
    out = compare(decoders, clips, rounds=2, pool=None)
    for label in ("ours", "ours[skip_nonref=0]"):
        runs, ref = out["runs"][label], out["runs"]["decord"]
        assert len(runs) == 2 and all(r > 0 for r in runs)
        assert math.isclose(out["ratio"][label]["median"], np.median([a / b for a, b in zip(runs, ref)]))
        cpu, cref = out["cpu_runs"][label], out["cpu_runs"]["decord"]
        assert math.isclose(out["cpu_ratio"][label]["median"], np.median([b / a for a, b in zip(cpu, cref)]))
        assert out["ratio"][label]["min"] <= out["ratio"][label]["median"] <= out["ratio"][label]["max"]
    # decord is the only peer here: the ratio to the fastest peer of each round is the ratio to decord.
    assert out["vs_fastest"].keys() == {"ours", "ours[skip_nonref=0]"}
    assert out["vs_fastest"]["ours"] == out["ratio"]["ours"]


def test_vs_fastest_divides_by_the_fastest_peer_of_each_round():
    """compare() with stand-in decoders of known speed: the ratio is to the faster peer, round by round."""
    clips = [Clip("x", np.arange(3))] * 3
    decoders = [Sleeper("slow peer", 0.03), Sleeper("fast peer", 0.015), Sleeper("ours", 0.01, peer=False)]
    out = compare(decoders, clips, rounds=2, pool=None)
    runs = out["runs"]
    want = sorted(o / max(a, b) for o, a, b in zip(runs["ours"], runs["slow peer"], runs["fast peer"]))
    got = out["vs_fastest"]
    assert got.keys() == {"ours"}
    assert math.isclose(got["ours"]["min"], want[0]) and math.isclose(got["ours"]["max"], want[1])
    assert all(f > s for f, s in zip(runs["fast peer"], runs["slow peer"]))   # the stand-ins are what they claim


@dataclass(frozen=True)
class Sleeper:
    """A decoder that takes `seconds` per clip."""

    label: str
    seconds: float
    peer: bool = True

    def __call__(self, path, indices):
        time.sleep(self.seconds)


def test_parse_variant_rejects_unknown_options():
    assert parse_variant("threads=2,thread_type=FRAME").options == DecodeOptions(threads=2, thread_type="FRAME")
    with pytest.raises(ValueError, match="unknown option 'thread'"):
        parse_variant("thread=2")


def test_cli_rows_and_json(tmp_path):
    out = tmp_path / "rows.json"
    args = ["bench", "video-decode", "--kinds", "1", "--files", "2", "--epochs", "2", "--rounds", "1",
            "--workers", "2", "--data-root", str(tmp_path / "data"), "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [(r["protocol"], r["clips"], r["frames_per_clip"]) for r in rows] == [("train", 4, 8), ("test", 4, 25)]
    from jobs.profiling.torchcodec_peer import missing
    peers = {} if missing() else {"torchcodec[exact]": 0, "torchcodec[approximate]": 0}
    # Every decoder returns decord's very frames (frame-exact on H.264 with B-frames).
    assert all(r["max_abs_diff_vs_decord"] == {**peers, "ours": 0} for r in rows)
    table_rows = [line for line in result.output.splitlines() if line.startswith("synthetic")]
    labels = ["decord", *peers, "ours"]                        # one line per decoder and protocol
    assert [line.split()[5] for line in table_rows] == labels * 2
