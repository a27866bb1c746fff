"""`tsn prepare check --full` decodes every frame: JPEGs with intact headers but a scrambled body, a JPEG DALI's
decoder raises on, and a video cut mid-stream, all of which the header/index checks pass."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from jobs.cli import cli
from jobs.dataprep import fullcheck
from pipelines.jpeg import jpeg_size
from tests.helpers import synthetic_overrides


def scan_start(data: bytes) -> int:
    """Offset just past the SOS segment header: where the entropy-coded data begins."""
    pos = 2
    while data[pos + 1] != 0xDA:
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")


def scramble(path, seed: int):
    """Random bytes between the SOS header and the final FFD9; every header and the EOI marker stay intact."""
    data = bytearray(path.read_bytes())
    start = scan_start(bytes(data))
    data[start:-2] = np.random.default_rng(seed).integers(0, 256, len(data) - 2 - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def huge_sof(path):
    """The SOF marker claims 65535 x 65535: a consistent header jpeg_size accepts, a frame DALI's decoder rejects."""
    data = bytearray(path.read_bytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))


def pil_pixels(path) -> np.ndarray | None:
    """(H, W, 3) float pixels as PIL decodes them, None where PIL refuses the file."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), np.float64)
    except OSError:
        return None


def broken(path, original) -> bool:
    """PIL (an independent libjpeg build) refuses the file, or decodes it to pixels far from the original frame's."""
    pixels = pil_pixels(path)
    return pixels is None or float(np.abs(pixels - pil_pixels(original)).mean()) > 20.0


@pytest.fixture()
def damaged(synthetic_root, tmp_path):
    """Synthetic val data: list line 3's folder has every JPEG body scrambled, line 6's every SOF enlarged; the VP9
    video of line 4 is cut at 60 % (WebM keeps no index: it still opens)."""
    data = tmp_path / "data"
    shutil.copytree(synthetic_root, data)
    names = [line.split()[0] for line in (data / "val_list_rawframes.txt").read_text().splitlines()]
    for k, frame in enumerate(sorted((data / "rawframes" / names[2]).glob("img_*.jpg"))):
        scramble(frame, k)
    for frame in sorted((data / "rawframes" / names[5]).glob("img_*.jpg")):
        huge_sof(frame)
    webm = data / "videos" / f"{names[3]}.webm"
    webm.write_bytes(webm.read_bytes()[: int(webm.stat().st_size * 0.6)])
    return data, names


def check(data, kind, recipe, *extra):
    opts = [x for item in synthetic_overrides(data, kind) for x in ("--cfg-options", item)]
    return CliRunner().invoke(cli, ["prepare", "check", recipe, "--split", "val", *extra, *opts])


def report(path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        out.setdefault(row["line"].rsplit(":", 1)[1], set()).add(row["problem"])
    return out


@pytest.mark.timeout(600)
def test_full_decodes_frames_and_videos_the_cheap_check_passes(synthetic_root, damaged, tmp_path):
    data, names = damaged
    scrambled = sorted((data / "rawframes" / names[2]).glob("img_*.jpg"))
    assert all(jpeg_size(np.fromfile(f, np.uint8)) == (80, 64) for f in scrambled)   # headers intact
    assert all(broken(f, synthetic_root / "rawframes" / names[2] / f.name) for f in scrambled)   # bodies are not

    frames_list = data / "val_list_rawframes.txt"
    original = frames_list.read_text().splitlines()
    clean = tmp_path / "clean.txt"
    quick = check(data, "rawframes", "tsn_r18_synthetic_rgb", "--clean-list", str(clean), "--report",
                  str(tmp_path / "quick.jsonl"))
    assert quick.exit_code == 0, quick.output                 # stat and header checks see nothing wrong
    assert clean.read_text().splitlines() == original

    full = check(data, "rawframes", "tsn_r18_synthetic_rgb", "--full", "--workers", "2", "--clean-list", str(clean),
                 "--report", str(tmp_path / "full.jsonl"))
    assert full.exit_code == 1, full.output
    assert "corrupt_frame: 2" in full.output
    assert report(tmp_path / "full.jsonl") == {"3": {"corrupt_frame"}, "6": {"corrupt_frame"}}
    assert clean.read_text().splitlines() == [line for i, line in enumerate(original) if i not in (2, 5)]
    reasons = [json.loads(x)["reason"] for x in (tmp_path / "full.jsonl").read_text().splitlines()]
    assert reasons[0].startswith("24 of 24 frames") and reasons[1].startswith("24 of 24 frames")

    vp9_list = data / "val_list_videos_vp9.txt"
    original = vp9_list.read_text().splitlines()
    quick = check(data, "videos_vp9", "tsn_r18_synthetic_video_rgb", "--clean-list", str(clean), "--report",
                  str(tmp_path / "vquick.jsonl"))
    assert "4" not in {k for k, v in report(tmp_path / "vquick.jsonl").items() if v & {"truncated", "unreadable"}}
    assert clean.read_text().splitlines() == original         # the cut WebM passes the index
    full = check(data, "videos_vp9", "tsn_r18_synthetic_video_rgb", "--full", "--workers", "2", "--clean-list",
                 str(clean), "--report", str(tmp_path / "vfull.jsonl"))
    assert full.exit_code == 1, full.output
    assert "truncated" in report(tmp_path / "vfull.jsonl")["4"]
    assert clean.read_text().splitlines() == original[:3] + original[4:]


@pytest.mark.timeout(300)
def test_full_check_resumes_from_its_cache_and_redoes_changed_entries(damaged, tmp_path, monkeypatch):
    data, names = damaged
    first = check(data, "rawframes", "tsn_r18_synthetic_rgb", "--full", "--workers", "0")
    assert first.exit_code == 1
    cache = data / "val_list_rawframes.txt.full_check.jsonl"
    assert len(cache.read_text().splitlines()) == 12                   # one line per folder

    decoded = []
    real = fullcheck.check_folders
    monkeypatch.setattr(fullcheck, "check_folders", lambda jobs: decoded.extend(j.path for j in jobs) or real(jobs))
    again = check(data, "rawframes", "tsn_r18_synthetic_rgb", "--full", "--workers", "0")
    assert again.exit_code == 1 and decoded == []                       # all from the cache
    assert again.output == first.output

    scramble(data / "rawframes" / names[0] / "img_00007.jpg", 99)       # a folder that was fine changes
    third = check(data, "rawframes", "tsn_r18_synthetic_rgb", "--full", "--workers", "0")
    assert decoded == [str(data / "rawframes" / names[0])]              # only it is decoded again
    assert "corrupt_frame: 3" in third.output
