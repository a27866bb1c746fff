"""Synthetic dataset: list formats, determinism, flow semantics, video decodability."""
from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from pipelines.synthetic_data import (
    SyntheticSpec,
    class_names,
    make_synthetic_dataset,
    object_centres,
    plan_videos,
    quantise_flow,
)

TINY = SyntheticSpec(seed=7, num_colours=2, num_directions=2, train_per_class=2,
                     val_per_class=1, num_frames=12)
KINDS = ("rawframes", "flow", "videos", "videos_vp9")
B_FRAME = 3  # av.video.frame.PictureType.B; frame.pict_type is a plain int in PyAV 18


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synthetic")
    return out, make_synthetic_dataset(out, TINY)


def read_list(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


def load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def pixel_at(centre: np.ndarray) -> tuple[int, int]:
    """Nearest pixel (col, row) to a wrapped disc centre."""
    col, row = np.rint(centre).astype(int)
    return int(col) % TINY.width, int(row) % TINY.height


def decode(path: Path) -> tuple[np.ndarray, list[int], str, object]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return (np.stack([f.to_ndarray(format="rgb24") for f in frames]),
                [f.pict_type for f in frames], stream.codec_context.name,
                stream.average_rate)


def test_classes_and_summary(tiny):
    out, summary = tiny
    names = (out / "classes.txt").read_text().splitlines()
    assert names == class_names(TINY) == ["red_right", "red_left", "green_right", "green_left"]
    assert len(set(names)) == TINY.num_colours * TINY.num_directions == summary["num_classes"]
    assert summary["counts"] == {"train": 8, "val": 4}
    assert sorted(summary["lists"]) == sorted(f"{s}_{k}" for s in ("train", "val") for k in KINDS)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["classes.txt", "rawframes", "videos"] + [f"{s}_list_{k}.txt" for s in ("train", "val")
                                                  for k in KINDS])


@pytest.mark.parametrize("split", ["train", "val"])
def test_lists_match_files_on_disk(tiny, split):
    out, summary = tiny
    per_class = TINY.train_per_class if split == "train" else TINY.val_per_class
    raw = read_list(out / f"{split}_list_rawframes.txt")
    flow = read_list(out / f"{split}_list_flow.txt")
    mp4 = read_list(out / f"{split}_list_videos.txt")
    webm = read_list(out / f"{split}_list_videos_vp9.txt")
    assert len(raw) == len(flow) == len(mp4) == len(webm) == summary["counts"][split]
    labels = [int(r[2]) for r in raw]
    assert sorted(labels) == sorted(list(range(TINY.num_classes)) * per_class)
    for (vid, n, label), (fvid, fn, flabel), (vname, vlabel), (wname, wlabel) in zip(
            raw, flow, mp4, webm):
        assert vid.startswith(f"{split}_") and len(vid) == len(split) + 5
        assert (fvid, flabel, vlabel, wlabel) == (vid, label, label, label)
        assert (vname, wname) == (f"{vid}.mp4", f"{vid}.webm")
        assert int(n) == TINY.num_frames and int(fn) == TINY.num_frames - 1
        frame_dir = out / "rawframes" / vid
        # start_index 1, templates img_{:05}.jpg and {}_{:05d}.jpg, no gaps.
        for prefix, count in (("img", int(n)), ("x", int(fn)), ("y", int(fn))):
            files = sorted(p.name for p in frame_dir.glob(f"{prefix}_*.jpg"))
            assert files == [f"{prefix}_{i:05d}.jpg" for i in range(1, count + 1)]
        assert (out / "videos" / vname).is_file() and (out / "videos" / wname).is_file()


def all_files(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_per_seed(tiny, tmp_path):
    out, _ = tiny
    again, other = tmp_path / "again", tmp_path / "other"
    make_synthetic_dataset(again, TINY)
    make_synthetic_dataset(other, SyntheticSpec(**{**TINY.__dict__, "seed": 8}))
    # Every file, JPEGs and encoded streams included, is byte-identical for the same seed.
    first, second = all_files(out), all_files(again)
    assert sorted(first) == sorted(second)
    assert [k for k in first if first[k] != second[k]] == []
    differs = False
    for vid in ("train_0000", "val_0001"):
        for frame in ("img_00001.jpg", "img_00012.jpg", "x_00003.jpg", "y_00011.jpg"):
            a = load(out / "rawframes" / vid / frame)
            np.testing.assert_array_equal(a, load(again / "rawframes" / vid / frame))
            differs |= not np.array_equal(a, load(other / "rawframes" / vid / frame))
        for ext in ("mp4", "webm"):
            a = decode(out / "videos" / f"{vid}.{ext}")[0]
            np.testing.assert_array_equal(a, decode(again / "videos" / f"{vid}.{ext}")[0])
            differs |= not np.array_equal(a, decode(other / "videos" / f"{vid}.{ext}")[0])
    assert differs


def test_worker_count_does_not_change_output(tmp_path):
    spec = SyntheticSpec(seed=3, num_colours=2, num_directions=2, train_per_class=4,
                         val_per_class=0, num_frames=4, width=32, height=32, videos=False)
    make_synthetic_dataset(tmp_path / "serial", spec, workers=1)
    make_synthetic_dataset(tmp_path / "parallel", spec, workers=2)  # 16 videos -> 2 processes
    serial, parallel = all_files(tmp_path / "serial"), all_files(tmp_path / "parallel")
    # classes.txt + rawframes/flow lists for both splits (val is empty) + 16 * (4 img + 3 x + 3 y)
    assert len(serial) == 5 + 16 * 10
    assert serial == parallel


def test_quantisation_matches_denseflow_convention():
    q = quantise_flow(np.array([-25.0, -20.0, 0.0, 2.0, 20.0, 30.0]))
    assert q.tolist() == [0, 0, 128, round(22 * 255 / 40), 255, 255]


def test_flow_encodes_known_motion(tiny):
    out, _ = tiny
    for p in plan_videos(TINY):
        frame_dir = out / "rawframes" / p.vid
        # Direction semantics: d = 0 is "right" (+x), d = 1 is "left" (-x); y is image-down.
        d = p.label % TINY.num_directions
        assert math.copysign(1, p.velocity[0]) == (1 if d == 0 else -1)
        assert 2.0 <= math.hypot(*p.velocity) <= 3.0
        expected = quantise_flow(np.array(p.velocity))
        centres = object_centres(p, TINY)
        for t in (1, TINY.num_frames // 2, TINY.num_frames - 1):  # 1-based flow index
            xy = [load(frame_dir / f"{a}_{t:05d}.jpg").astype(int) for a in "xy"]
            col, row = pixel_at(centres[t - 1])
            for axis in range(2):
                assert abs(xy[axis][row, col] - int(expected[axis])) <= 2
                # Far from the disc (half a frame away on the torus) nothing moves.
                far = xy[axis][(row + TINY.height // 2) % TINY.height,
                               (col + TINY.width // 2) % TINY.width]
                assert abs(far - 128) <= 2
            assert (xy[0][row, col] > 136) == (d == 0) and (xy[0][row, col] < 120) == (d == 1)
            # Motion only inside the disc: the moving area is about pi * r^2.
            moving = (np.abs(xy[0] - 128) > 4) | (np.abs(xy[1] - 128) > 4)
            assert 0.75 < moving.sum() / (math.pi * p.radius**2) < 1.25
        # The disc carries its class colour: the dominant channel at its centre.
        col, row = pixel_at(centres[0])
        rgb = load(frame_dir / "img_00001.jpg")[row, col]
        assert int(np.argmax(rgb)) == (0 if p.label // TINY.num_directions == 0 else 1)


def test_videos_decode_to_the_rgb_frames(tiny):
    out, _ = tiny
    for row in read_list(out / "val_list_rawframes.txt") + read_list(
            out / "train_list_rawframes.txt")[:3]:
        vid = row[0]
        jpegs = np.stack([load(out / "rawframes" / vid / f"img_{t:05d}.jpg")
                          for t in range(1, TINY.num_frames + 1)]).astype(float)
        for ext, codec in (("mp4", "h264"), ("webm", "vp9")):
            frames, types, name, rate = decode(out / "videos" / f"{vid}.{ext}")
            assert name == codec and rate == 25
            assert frames.shape == (TINY.num_frames, TINY.height, TINY.width, 3)
            # Same content in the same order: small codec-vs-JPEG error per frame, and
            # clearly smaller than against the neighbouring frame (the disc moves 2-3 px).
            err = np.abs(frames - jpegs).mean(axis=(1, 2, 3))
            shifted = np.abs(frames[1:] - jpegs[:-1]).mean(axis=(1, 2, 3))
            assert err.max() < 6, (vid, ext, err)
            assert (err[1:] < shifted).all(), (vid, ext, err, shifted)
            if ext == "mp4":
                assert B_FRAME in types, (vid, types)  # B-frames really are in the stream


def test_spec_validation():
    with pytest.raises(ValueError, match="width and height must be even"):
        SyntheticSpec(width=81)
    with pytest.raises(ValueError, match="num_colours must be in 1.."):
        SyntheticSpec(num_colours=99)
    with pytest.raises(ValueError, match="num_frames must be >= 2"):
        SyntheticSpec(num_frames=1)
