"""Finding media under a folder: video files by extension, frame folders by their first frame.

Hidden files and folders are skipped everywhere: they are the temp outputs of an unfinished step (`tsn prepare`
writes `.name.part` and renames it when complete).
"""
from __future__ import annotations

import os
from collections.abc import Callable

from pipelines.annotations import FrameLayout, VideoRecord

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".3gp", ".ogv", ".wmv"})


def is_video_file(name: str) -> bool:
    """Whether a file name has a video extension (any case) and is not hidden."""
    base = os.path.basename(name)
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in VIDEO_EXTENSIONS


def is_frame_folder(path: str, layout: FrameLayout) -> bool:
    """Whether `path` is a folder holding the first frame `layout` names (flow: both the x and the y file)."""
    firsts = layout.frame_paths(VideoRecord(path, (0,), None), [layout.start_index])
    return os.path.isdir(path) and all(os.path.isfile(p) for p in firsts)


def find_media(root: str | os.PathLike, is_frames: Callable[[str], bool] | None = None) -> tuple[list[str], list[str]]:
    """(video files, frame folders) under `root`, recursively, each sorted. A folder for which `is_frames` says yes
    is a frame folder and is not searched further; without `is_frames` only videos are looked for."""
    videos, folders = [], []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if is_frames is not None:
            frames = [d for d in dirs if is_frames(os.path.join(folder, d))]
            folders += [os.path.join(folder, d) for d in frames]
            dirs[:] = [d for d in dirs if d not in frames]
        videos += [os.path.join(folder, f) for f in files if is_video_file(f)]
    return sorted(videos), sorted(folders)
