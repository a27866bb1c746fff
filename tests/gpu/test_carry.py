"""Wheel carrying (tests/gpu/carry.py) on small fake files: split, verify, join, install."""
from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from tests.gpu import carry


def _files(tmp_path, sizes):
    rng = np.random.default_rng(7)
    paths = []
    for i, n in enumerate(sizes):
        p = tmp_path / "wheels" / f"pkg{i}-1.0-py3-none-any.whl"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        paths.append(p)
    return paths


def test_plan_parts_by_hand():
    assert carry.plan_parts(25_123, 7_000) == carry.Layout(4, 6_281)      # ceil(25123/7000) = 4, ceil(25123/4)
    assert carry.plan_parts(100, 7_000) == carry.Layout(1, 100)
    assert carry.plan_parts(14_000, 7_000) == carry.Layout(2, 7_000)
    with pytest.raises(carry.CarryError):
        carry.plan_parts(0, 10)


def test_split_then_join_gives_back_every_byte(tmp_path):
    files = _files(tmp_path, [5_000, 123, 20_000])
    originals = [f.read_bytes() for f in files]
    m = carry.split(files, tmp_path / "parts", 7_000)
    assert [p["bytes"] for p in m["parts"]] == [6_281, 6_281, 6_281, 6_280]
    for p in m["parts"]:
        folder = tmp_path / "parts" / p["name"]
        assert sorted(x.name for x in folder.iterdir()) == ["chunk.bin", "manifest.json"]
        assert hashlib.sha256((folder / "chunk.bin").read_bytes()).hexdigest() == p["sha256"]
    # The chunks in order are the files in order.
    stream = b"".join((tmp_path / "parts" / p["name"] / "chunk.bin").read_bytes() for p in m["parts"])
    assert stream == b"".join(originals)
    joined = carry.join(tmp_path / "parts", tmp_path / "joined")
    assert [j.name for j in joined] == [f.name for f in files]
    assert [j.read_bytes() for j in joined] == originals
    assert [w["sha256"] for w in m["wheels"]] == [hashlib.sha256(b).hexdigest() for b in originals]


def test_missing_damaged_and_mixed_parts_are_refused(tmp_path):
    files = _files(tmp_path, [9_000, 9_000])
    parts = tmp_path / "parts"
    carry.split(files, parts, 7_000)                                   # 3 parts of 6000
    (parts / "p2" / "chunk.bin").unlink()
    _, intact, missing, damaged = carry.check_parts(parts)
    assert (intact, missing, damaged) == (["p1", "p3"], ["p2"], [])
    with pytest.raises(carry.CarryError, match="missing parts \\['p2'\\]"):
        carry.join(parts, tmp_path / "joined")
    carry.split(files, parts, 7_000)
    data = bytearray((parts / "p3" / "chunk.bin").read_bytes())
    data[100] ^= 1
    (parts / "p3" / "chunk.bin").write_bytes(bytes(data))
    assert carry.check_parts(parts)[3] == ["p3"]
    with pytest.raises(carry.CarryError, match="damaged parts \\['p3'\\]"):
        carry.join(parts, tmp_path / "joined")
    # A part left over from another split (different manifest) must not be combined with this one.
    carry.split(files, parts, 7_000)
    other = _files(tmp_path / "o", [10])
    carry.split(other, tmp_path / "other_parts", 7_000)
    (parts / "p9").mkdir()
    (parts / "p9" / "manifest.json").write_text((tmp_path / "other_parts" / "p1" / "manifest.json").read_text())
    with pytest.raises(carry.CarryError, match="different splits"):
        carry.check_parts(parts)


def test_split_clears_an_older_split(tmp_path):
    files = _files(tmp_path, [9_000, 9_000])
    carry.split(files, tmp_path / "parts", 2_000)                      # 9 parts
    m = carry.split(files, tmp_path / "parts", 7_000)                  # 3 parts: p4..p9 must be gone
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["p1", "p2", "p3"] == [
        p["name"] for p in m["parts"]]


def test_select_wheels_takes_exactly_the_pinned_set(tmp_path):
    for req, _ in carry.WHEELS:
        name, version = req.split("==")
        (tmp_path / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(b"x")
    (tmp_path / "unrelated-1.0-py3-none-any.whl").write_bytes(b"x")
    chosen = carry.select_wheels(tmp_path)
    assert len(chosen) == len(carry.WHEELS) and "unrelated-1.0-py3-none-any.whl" not in [c.name for c in chosen]
    next(tmp_path.glob("av-*.whl")).unlink()
    with pytest.raises(carry.CarryError, match="av==18.1.0"):
        carry.select_wheels(tmp_path)


def _tiny_wheel(path, payload: str):
    """A minimal valid wheel: carrydemo/__init__.py plus dist-info (METADATA, WHEEL, RECORD)."""
    files = {"carrydemo/__init__.py": payload.encode(),
             "carrydemo-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: carrydemo\nVersion: 0.1\n",
             "carrydemo-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                              b"Tag: py3-none-any\n"}

    def digest(b):
        return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b"=").decode()

    record = "".join(f"{n},{digest(b)},{len(b)}\n" for n, b in files.items()) + "carrydemo-0.1.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
        z.writestr("carrydemo-0.1.dist-info/RECORD", record)


def test_cli_split_then_install_a_real_wheel(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _tiny_wheel(wheels / "carrydemo-0.1-py3-none-any.whl", "VALUE = 42\n" + "# padding\n" * 500)
    m = carry.split(sorted(wheels.glob("*.whl")), tmp_path / "parts", 1_000)
    assert len(m["parts"]) >= 2                                         # the wheel really was cut
    assert carry.main(["status", "--parts", str(tmp_path / "parts")]) == 0
    target = tmp_path / "site"
    assert carry.main(["install", "--parts", str(tmp_path / "parts"), "--joined", str(tmp_path / "joined"),
                       "--target", str(target)]) == 0
    out = subprocess.run([sys.executable, "-c", "import carrydemo; print(carrydemo.VALUE)"],
                         env={"PYTHONPATH": str(target)}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "42"
    manifest = json.loads((tmp_path / "parts" / "p1" / "manifest.json").read_text())
    (tmp_path / "parts" / manifest["parts"][-1]["name"] / "chunk.bin").unlink()
    assert carry.main(["install", "--parts", str(tmp_path / "parts"), "--joined", str(tmp_path / "joined"),
                       "--target", str(target)]) == 2


def test_partial_join_rebuilds_exactly_the_wheels_whose_parts_arrived(tmp_path):
    files = _files(tmp_path, [3_000, 2_000, 9_000, 500])     # stream offsets 0, 3000, 5000, 14000; 14500 bytes
    originals = [f.read_bytes() for f in files]
    parts = tmp_path / "parts"
    m = carry.split(files, parts, 5_000)                      # 3 parts of 4834 (last 4832): [0,4834) [4834,9668) ...
    assert [p["bytes"] for p in m["parts"]] == [4_834, 4_834, 4_832]
    for name in ("p2", "p3"):
        (parts / name / "chunk.bin").unlink()                 # only p1 has arrived
    rebuilt, waiting = carry.join_available(parts, tmp_path / "joined")
    assert [r.name for r in rebuilt] == [files[0].name] and rebuilt[0].read_bytes() == originals[0]
    assert waiting == [f.name for f in files[1:]]             # file 1 straddles p1/p2: it waits too
    carry.split(files, parts, 5_000)
    (parts / "p3" / "chunk.bin").unlink()                     # p1 and p2: files 0 and 1 complete, 2 and 3 not
    rebuilt, waiting = carry.join_available(parts, tmp_path / "joined")
    assert [r.read_bytes() for r in rebuilt] == originals[:2] and waiting == [f.name for f in files[2:]]
    carry.split(files, parts, 5_000)
    data = bytearray((parts / "p1" / "chunk.bin").read_bytes())
    data[10] ^= 1
    (parts / "p1" / "chunk.bin").write_bytes(bytes(data))      # a damaged part counts as not arrived
    rebuilt, waiting = carry.join_available(parts, tmp_path / "joined")
    assert [r.name for r in rebuilt] == [files[2].name, files[3].name] and waiting == [f.name for f in files[:2]]


def test_pyav_and_the_small_wheels_travel_first_and_dali_last():
    names = [req.split("==")[0] for req, _ in carry.WHEELS]
    assert names[0] == "av" and names[-1] == "nvidia-dali-cuda130"
    assert names.index("nvidia-nvimgcodec-cu13") == len(names) - 2
