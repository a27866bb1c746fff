"""`tsn prepare frames`: one folder of RGB JPEGs per video (`img_00001.jpg`, ...).

Each folder is written under a hidden temp name and renamed when the last frame is on disk, so a
folder that exists is complete and the list's `total_frames` (files counted on disk) is exactly what
was decoded — never the empty or half folders that an interrupted denseflow run leaves behind.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jobs.dataprep.runner import Task
from jobs.dataprep.videoio import Resize, temp_path, video_frames
from jobs.media.naming import frame_name, is_flow_template
from pipelines.workers import unfinished


@dataclass(frozen=True)
class FrameOptions:
    resize: Resize = field(default_factory=Resize)
    template: str = "img_{:05}.jpg"
    start_index: int = 1  # MMAction2 rawframe datasets count from 1 (ActivityNet configs: 0)
    quality: int = 95  # JPEG quality; 95 is what mmcv.imwrite / denseflow write

    def __post_init__(self):
        if is_flow_template(self.template):
            raise ValueError(f"{self.template!r} is a flow template; RGB frames need one index field")
        if self.start_index < 0:
            raise ValueError("start index must be >= 0")


def save_jpeg(path: Path, pixels: np.ndarray, quality: int) -> None:
    """Write an (H, W, 3) RGB or (H, W) gray uint8 array."""
    from PIL import Image

    Image.fromarray(pixels).save(path, format="JPEG", quality=quality)


def fresh_temp_dir(final: Path) -> Path:
    """Empty hidden sibling of `final`; leftovers of an interrupted run are discarded."""
    tmp = temp_path(final)
    unfinished(tmp)                 # removed even if this worker is killed mid-task (pipelines/workers.py)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def publish_dir(tmp: Path, final: Path) -> None:
    """Make the finished folder visible under its real name in one rename."""
    os.rename(tmp, final)


def extract_frames(task: Task, opts: FrameOptions) -> None:
    """Decode `task.src` into the JPEG folder `task.dst`."""
    tmp = temp_path(task.dst)
    try:    # made inside the try: a stop (ParentDied) right after the mkdir still removes it
        fresh_temp_dir(task.dst)
        for i, frame in enumerate(video_frames(task.src, opts.resize, "rgb24")):
            save_jpeg(tmp / frame_name(opts.template, opts.start_index + i), frame.to_ndarray(), opts.quality)
        publish_dir(tmp, task.dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
