"""torchcodec as a benchmark peer: it loads against PyAV's FFmpeg where the system has none, and it returns the very
frames our decoder and a plain sequential PyAV decode return (frame-exact on H.264 with B-frames).

torchcodec reads LD_LIBRARY_PATH at process start, so its decoding runs in a child started with `environment()`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from jobs.profiling import torchcodec_peer

REPO = Path(__file__).resolve().parents[3]


def test_library_folder_links_every_ffmpeg_library_under_its_soname_major():
    folder = torchcodec_peer.library_dir()
    assert folder is not None
    names = set(os.listdir(folder))
    # PyAV says which FFmpeg it carries: the link names torchcodec's core asks for carry those majors.
    for lib in ("libavutil", "libavcodec", "libavformat", "libswscale", "libswresample"):
        major = av.library_versions[lib][0]
        link = Path(folder) / f"{lib}.so.{major}"
        assert link.name in names and link.resolve().is_file()
        assert Path(os.path.realpath(link)).parent.name == "av.libs"
    assert torchcodec_peer.library_dir() == folder                   # made once per process


def test_environment_appends_the_folder_once():
    env = torchcodec_peer.environment({"LD_LIBRARY_PATH": "/opt/ffmpeg/lib"})
    parts = env["LD_LIBRARY_PATH"].split(os.pathsep)
    assert parts == ["/opt/ffmpeg/lib", torchcodec_peer.library_dir()]      # a system FFmpeg stays first
    again = torchcodec_peer.environment(env)
    assert again["LD_LIBRARY_PATH"] == env["LD_LIBRARY_PATH"]


def sequential_frames(path: Path, indices: list[int]) -> np.ndarray:
    """Every frame decoded in order, no seeking: the independent truth for frame index i."""
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return np.stack([frames[i] for i in indices])


def test_torchcodec_returns_the_frames_of_a_sequential_decode(synthetic_root, tmp_path):
    pytest.importorskip("torchcodec")
    if torchcodec_peer.missing():
        pytest.skip(torchcodec_peer.missing())
    path = sorted((synthetic_root / "videos").glob("*.mp4"))[0]
    indices = [0, 5, 3, 23, 12, 12, 1]                      # out of order, repeated, both ends
    out = tmp_path / "frames.npz"
    code = (f"import numpy as np; from jobs.profiling.torchcodec_peer import frames; "
            f"from pipelines.pyav_decode import decode_sampled_frames as ours; "
            f"p, i = {str(path)!r}, {indices!r}; "
            f"np.savez({str(out)!r}, exact=frames(p, i, 'exact'), approximate=frames(p, i, 'approximate'), "
            f"ours=ours(p, i))")
    env = torchcodec_peer.environment({**os.environ, "PYTHONPATH": str(REPO)})
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got, want = np.load(out), sequential_frames(path, indices)
    for key in ("exact", "approximate", "ours"):
        assert got[key].shape == want.shape and np.array_equal(got[key], want), key


def test_missing_names_the_reason_when_ffmpeg_cannot_load(monkeypatch):
    """With the folder gone from the environment and no system FFmpeg, the probe fails and says why."""
    if not torchcodec_peer.library_dir() or subprocess.run(["ldconfig", "-p"], capture_output=True,
                                                           text=True).stdout.count("libavcodec.so"):
        pytest.skip("a system FFmpeg is installed: torchcodec loads without PyAV's")
    pytest.importorskip("torchcodec")
    torchcodec_peer.missing.cache_clear()
    monkeypatch.setattr(torchcodec_peer, "environment", lambda base=None: dict(os.environ))
    try:
        why = torchcodec_peer.missing()
    finally:
        torchcodec_peer.missing.cache_clear()
    assert why is not None and "cannot load FFmpeg" in why
