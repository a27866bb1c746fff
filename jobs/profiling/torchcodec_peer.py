"""torchcodec as a peer of the benchmarks: what a user writes today with PyTorch's own, maintained video decoder.

    decoder = torchcodec.decoders.VideoDecoder(path, seek_mode=..., num_ffmpeg_threads=1, dimension_order="NHWC")
    frames = decoder.get_frames_at(indices).data          # (F, H, W, 3) uint8 RGB, frame-exact in "exact" mode

`seek_mode="exact"` scans the file once at open and maps frame indices to timestamps from it; "approximate" trusts
the container header's fps and duration (no scan; exact only on constant-frame-rate files). One FFmpeg thread, as
torchcodec defaults to and as the loader workers that fill the cores want (the same for decord and for ours).

torchcodec uses the system's FFmpeg shared libraries (major versions 4 to 9) and ships none. Where the system has
none, the benchmarks point it at the FFmpeg that PyAV's wheel bundles (the very libraries our own decoder runs):
`library_dir()` makes a folder of links under the names torchcodec asks for, and processes started with
`environment()` (LD_LIBRARY_PATH, read by the dynamic loader at process start only) can load torchcodec. So a
torchcodec baseline always runs in a spawned process, which starts with that environment.
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SEEK_MODES = ("exact", "approximate")
# The libraries torchcodec's core links against: FFmpeg's name -> its soname major for one FFmpeg release line is
# read from PyAV's bundled files (libavcodec-<hash>.so.<major>.<minor>.<micro>).
_LIBRARIES = ("avutil", "avcodec", "avformat", "avdevice", "avfilter", "swscale", "swresample")


def frames(path: str, indices, seek_mode: str = "exact", threads: int = 1) -> np.ndarray:
    """(F, H, W, 3) uint8 RGB: frames `indices` (presentation order) of `path`, one decoder opened per clip."""
    from torchcodec.decoders import VideoDecoder
    decoder = VideoDecoder(path, seek_mode=seek_mode, num_ffmpeg_threads=threads, dimension_order="NHWC")
    return decoder.get_frames_at([int(i) for i in indices]).data.numpy()


def _pyav_libraries() -> list[Path]:
    """Every shared library in PyAV's wheel (auditwheel's av.libs folder): FFmpeg's and what they link."""
    import importlib.util
    spec = importlib.util.find_spec("av")
    if spec is None or spec.origin is None:
        return []
    return sorted((Path(spec.origin).parent.parent / "av.libs").glob("lib*.so*"))


@functools.lru_cache(maxsize=1)
def library_dir() -> str | None:
    """A folder of links to PyAV's bundled libraries: `libavcodec.so.<major>` (the name torchcodec's core asks for)
    for each FFmpeg library, and every bundled file under its own name (the FFmpeg files find their dependencies
    through $ORIGIN, which is the folder of the link, not of its target). None without PyAV's FFmpeg.

    Kept in the temp folder under a name made of the linked files' names, so a PyAV upgrade makes a new one."""
    libs = _pyav_libraries()
    links = {path.name: path for path in libs}
    for path in libs:
        m = re.match(r"lib([a-z]+)-[0-9a-f]+\.so\.(\d+)", path.name)
        if m and m.group(1) in _LIBRARIES:
            links[f"lib{m.group(1)}.so.{m.group(2)}"] = path
    if len(links) - len(libs) != len(_LIBRARIES):
        return None
    import hashlib
    tag = hashlib.sha1("".join(str(p) for p in libs).encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"tsn-ffmpeg-{tag}"
    folder.mkdir(exist_ok=True)
    for name, target in links.items():
        link = folder / name
        if not link.is_symlink():
            tmp = folder / f".{name}.{os.getpid()}"
            tmp.symlink_to(target)
            os.replace(tmp, link)         # atomic: two processes making the folder at once both succeed
    return str(folder)


def environment(base: dict | None = None) -> dict:
    """`base` (default os.environ) with PyAV's FFmpeg after any system FFmpeg on LD_LIBRARY_PATH."""
    env = dict(os.environ if base is None else base)
    folder = library_dir()
    if folder is not None:
        parts = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
        if folder not in parts:
            env["LD_LIBRARY_PATH"] = os.pathsep.join([*parts, folder])
    return env


@contextlib.contextmanager
def loadable_environment():
    """Processes started inside this block (spawned pools, subprocesses) can load torchcodec; this process's own
    environment is restored on leaving it."""
    saved = dict(os.environ)
    os.environ.update(environment(saved))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@functools.lru_cache(maxsize=1)
def missing() -> str | None:
    """Why torchcodec cannot run here, or None. Checked in a child process started with `environment()`."""
    import importlib.util
    if importlib.util.find_spec("torchcodec") is None:
        return "torchcodec baseline skipped: the torchcodec package is not installed (pip install 'tsn-dali[peers]')"
    # The core libraries load on a decoder's first use, not on import: open something that is not a video.
    probe = ("from torchcodec.decoders import VideoDecoder\n"
             "try:\n    VideoDecoder(b'not a video')\n"
             "except RuntimeError as e:\n    if 'Could not load libtorchcodec' in str(e): raise\n"
             "except Exception:\n    pass\n")
    done = subprocess.run([sys.executable, "-c", probe], env=environment(), capture_output=True, text=True,
                          timeout=120)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return f"torchcodec baseline skipped: it cannot load FFmpeg here (neither the system's nor PyAV's): {last}"
    return None


