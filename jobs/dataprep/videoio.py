"""Video inputs for the media steps: finding them, output sizes, and decoding with PyAV."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from jobs.dataprep.runner import Failure, Task
from jobs.media.discovery import find_media
from pipelines.geometry import rescale_size


@dataclass(frozen=True)
class Resize:
    """Either keep the aspect ratio and set the short side, or force an exact `size` (w, h); neither = keep."""
    short_side: int | None = None
    size: tuple[int, int] | None = None

    def __post_init__(self):
        if self.short_side is not None and self.size is not None:
            raise ValueError("give either a short side or an exact size, not both")
        if (self.short_side is not None and self.short_side < 2) or (self.size and min(self.size) < 2):
            raise ValueError("sizes must be at least 2 px")


def target_size(width: int, height: int, resize: Resize, even: bool = False) -> tuple[int, int]:
    """Output (w, h). Rounds like MMAction2's Resize (int(x + 0.5)); `even` rounds to even numbers,
    which yuv420p (4:2:0 chroma) needs."""
    if resize.size is not None:
        w, h = resize.size
    elif resize.short_side is not None:
        w, h = rescale_size(width, height, resize.short_side)      # the loaders' keep-ratio rule, one definition
    else:
        w, h = width, height
    if even:
        w, h = max(2, 2 * int(w / 2 + 0.5)), max(2, 2 * int(h / 2 + 0.5))
    return w, h


def mirror_path(src: Path, src_root: Path, dst_root: Path, suffix: str = "") -> Path:
    """`src_root/a/b.avi` -> `dst_root/a/b<suffix>`: outputs keep the input's folder levels."""
    return Path(dst_root) / Path(src).relative_to(src_root).with_suffix(suffix)


def plan_tasks(src_root: Path, dst_root: Path, suffix: str) -> tuple[list[Task], list[Failure]]:
    """One task per video under `src_root`, output mirrored under `dst_root`; inputs that would
    share an output (`a.avi` and `a.mkv`) fail up front instead of overwriting each other."""
    tasks, failures, owner = [], [], {}
    for src in map(Path, find_media(src_root)[0]):
        dst = mirror_path(src, src_root, dst_root, suffix)
        if dst in owner:
            failures.append(Failure(str(src), f"output {dst} is already produced from {owner[dst]}"))
            continue
        owner[dst] = src
        tasks.append(Task(src, dst))
    return tasks, failures


def temp_path(final: Path) -> Path:
    """Hidden sibling that a step writes to before renaming it to `final`."""
    return final.with_name(f".{final.name}.part")


def video_frames(path: Path, resize: Resize = Resize(), fmt: str = "rgb24",
                  interpolation: str = "BILINEAR") -> Iterator:
    """Decoded frames of the first video stream as av.VideoFrame in `fmt`, resized; raises on undecodable input.

    Bilinear matches denseflow/OpenCV frame extraction (cv::resize default)."""
    import av  # local: only the media steps need it

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame threads: several times faster on long videos
        n = 0
        for frame in container.decode(stream):
            w, h = target_size(frame.width, frame.height, resize)
            yield frame.reformat(width=w, height=h, format=fmt, interpolation=interpolation)
            n += 1
        if n == 0:
            raise ValueError("no frames could be decoded")
