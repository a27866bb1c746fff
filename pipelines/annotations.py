"""MMAction2 annotation lists: rawframe lists, video lists, and where a sampled frame lives on disk.

Formats (one video per line, whitespace separated):
  rawframes            <frame_dir> <total_frames> <label>
  rawframes+offset     <frame_dir> <offset> <total_frames> <label>
  rawframes multi      <frame_dir> <total_frames> <label_1> <label_2> ...
  videos               <relative/path.ext> <label> [<label_2> ...]
A malformed line raises AnnotationError("file:line: reason") at load time, never later inside a worker.
"""
from __future__ import annotations

import os
import string
from dataclasses import dataclass


class AnnotationError(ValueError):
    """A list file that cannot be used as written; the message starts with `file:line:`."""


@dataclass(frozen=True)
class VideoRecord:
    path: str                     # frame folder or video file, already joined to the data prefix
    labels: tuple[int, ...]       # one label, or several for multi-label lists
    total_frames: int | None      # None for video lists until the video index fills it in
    offset: int = 0               # with_offset lists (ActivityNet clips): file index = start_index + i + offset;
                                  # videos: frame index = i + offset (a window of a longer video)
    source: str = ""              # "list_file:line" — where this record came from, for error messages
    problem: str = ""             # why the video index found it unusable ("" = fine)

    @property
    def label(self) -> int:
        return self.labels[0]


MODALITIES = ("RGB", "Flow")       # MMAction2's spellings, the only ones the project uses


@dataclass(frozen=True)
class FrameLayout:
    """How the frames of a rawframe record are named (MMAction2 `filename_tmpl`, `start_index`, `modality`)."""

    filename_tmpl: str = "img_{:05}.jpg"   # RGB: tmpl.format(i); Flow: tmpl.format("x"|"y", i)
    start_index: int = 1
    modality: str = "RGB"                  # "RGB" | "Flow"

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be 'RGB' or 'Flow', got {self.modality!r}")
        fields = [f for _, f, _, _ in string.Formatter().parse(self.filename_tmpl) if f is not None]
        if not fields:
            raise ValueError(f"filename_tmpl {self.filename_tmpl!r} has no placeholder")
        want = 2 if self.modality == "Flow" else 1      # Flow: ("x" | "y", index); RGB: (index,)
        if len(fields) != want:
            raise ValueError(f"filename_tmpl {self.filename_tmpl!r} does not fit modality {self.modality}: "
                             f"expected {want} placeholder(s), found {len(fields)}")

    def frame_paths(self, record: VideoRecord, indices) -> list[str]:
        """Files for 0-based sampled indices that already include start_index (as the samplers return them).

        RGB: one path per index. Flow: two per index, interleaved [x_0, y_0, x_1, y_1, ...] (MMAction2
        v0.24.1 mmaction/datasets/pipelines/loading.py RawFrameDecode).
        """
        files = []
        for i in indices:
            n = int(i) + record.offset
            if self.modality == "Flow":
                files.append(os.path.join(record.path, self.filename_tmpl.format("x", n)))
                files.append(os.path.join(record.path, self.filename_tmpl.format("y", n)))
            else:
                files.append(os.path.join(record.path, self.filename_tmpl.format(n)))
        return files


def _ints(tokens: list[str], where: str, what: str) -> list[int]:
    try:
        return [int(t) for t in tokens]
    except ValueError:
        raise AnnotationError(f"{where}: {what} must be integers, got {' '.join(tokens)!r}") from None


def _lines(list_file: str):
    if not os.path.isfile(list_file):
        raise AnnotationError(f"{list_file}: annotation list not found")
    with open(list_file, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            tokens = line.split()
            if tokens and not tokens[0].startswith("#"):
                yield f"{list_file}:{n}", tokens


def _check_labels(labels: list[int], where: str, multi_class: bool, num_classes: int | None) -> tuple[int, ...]:
    if not labels:
        raise AnnotationError(f"{where}: no label")
    if not multi_class and len(labels) != 1:
        raise AnnotationError(f"{where}: expected one label, got {len(labels)} (multi-label list without multi_class?)")
    for lab in labels:
        if lab < 0 or (num_classes is not None and lab >= num_classes):
            raise AnnotationError(f"{where}: label {lab} outside [0, {num_classes})")
    return tuple(labels)


def load_rawframe_list(list_file: str, *, data_prefix: str = "", with_offset: bool = False,
                       multi_class: bool = False, num_classes: int | None = None) -> list[VideoRecord]:
    """Parse a rawframe list (see module docstring)."""
    records = []
    head = 3 if with_offset else 2            # tokens before the label(s)
    for where, tokens in _lines(list_file):
        if len(tokens) < head + 1 or (not multi_class and len(tokens) != head + 1):
            fmt = "<frame_dir> " + ("<offset> " if with_offset else "") + "<total_frames> <label>"
            raise AnnotationError(f"{where}: expected '{fmt}', got {len(tokens)} fields")
        numbers = _ints(tokens[1:head], where, "offset/total_frames")
        offset, total = (numbers if with_offset else [0, numbers[0]])
        if total < 0 or offset < 0:
            raise AnnotationError(f"{where}: negative frame count or offset")
        labels = _check_labels(_ints(tokens[head:], where, "labels"), where, multi_class, num_classes)
        records.append(VideoRecord(os.path.join(data_prefix, tokens[0]), labels, total, offset, where))
    if not records:
        raise AnnotationError(f"{list_file}: the list has no entries")
    return records


def load_video_list(list_file: str, *, data_prefix: str = "", multi_class: bool = False,
                    num_classes: int | None = None) -> list[VideoRecord]:
    """Parse a video list `<path> <label> [...]`; total_frames stays None until the index is read."""
    records = []
    for where, tokens in _lines(list_file):
        if len(tokens) < 2 or (not multi_class and len(tokens) != 2):
            raise AnnotationError(f"{where}: expected '<video_path> <label>', got {len(tokens)} fields")
        labels = _check_labels(_ints(tokens[1:], where, "labels"), where, multi_class, num_classes)
        records.append(VideoRecord(os.path.join(data_prefix, tokens[0]), labels, None, 0, where))
    if not records:
        raise AnnotationError(f"{list_file}: the list has no entries")
    return records
