"""MMAction2 annotation lists: rawframe lists, video lists, and where a sampled frame lives on disk.

Formats (one video per line, whitespace separated):
  rawframes            <frame_dir> <total_frames> <label>
  rawframes+offset     <frame_dir> <offset> <total_frames> <label>
  rawframes multi      <frame_dir> <total_frames> <label_1> <label_2> ...
  videos               <relative/path.ext> <label> [<label_2> ...]
Blank lines and lines whose first field starts with '#' are skipped. A malformed line (or one that is not UTF-8
text) raises AnnotationError("file:line: reason") at load time, never later inside a worker. The same module writes
the lines (`format_rawframe_line`, `format_video_line`), so what `tsn prepare` writes is what the loaders read.
"""
from __future__ import annotations

import os
import string
from dataclasses import dataclass

from .errors import UserError


class AnnotationError(UserError, ValueError):
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


def is_flow_modality(modality: str) -> bool:
    """Two-channel optical flow (x, y frame pairs) rather than RGB: the one test of flow-ness (FrameLayout and the
    recipes' DataConfig both ask this)."""
    return modality == "Flow"


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
        want = 2 if self.is_flow else 1      # Flow: ("x" | "y", index); RGB: (index,)
        if len(fields) != want:
            raise ValueError(f"filename_tmpl {self.filename_tmpl!r} does not fit modality {self.modality}: "
                             f"expected {want} placeholder(s), found {len(fields)}")

    @property
    def is_flow(self) -> bool:
        """Optical flow: two grey images (x, y) per frame index instead of one RGB image."""
        return is_flow_modality(self.modality)

    def frame_paths(self, record: VideoRecord, indices) -> list[str]:
        """Files for 0-based sampled indices that already include start_index (as the samplers return them).

        RGB: one path per index. Flow: two per index, interleaved [x_0, y_0, x_1, y_1, ...] (MMAction2
        v0.24.1 mmaction/datasets/pipelines/loading.py RawFrameDecode).
        """
        files = []
        for i in indices:
            n = int(i) + record.offset
            if self.is_flow:
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


def _decode(raw: bytes, where: str) -> str:
    """One line's bytes -> text; a list is UTF-8 text (a BOM on line 1 is dropped), never binary."""
    if b"\0" in raw:
        raise AnnotationError(f"{where}: not UTF-8 text (NUL byte at column {raw.index(0) + 1}: a binary file?)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise AnnotationError(f"{where}: not UTF-8 text (byte 0x{raw[err.start]:02x} at column {err.start + 1})") \
            from None


def _text_lines(list_file: str, what: str = "annotation list"):
    """("file:line", text) of every line (a UTF-8 BOM on line 1 dropped); a missing or unreadable file, or a line
    that is not UTF-8 text, is an AnnotationError."""
    if os.path.isdir(list_file):
        raise AnnotationError(f"{list_file}: is a folder, not a list file")
    if not os.path.isfile(list_file):
        raise AnnotationError(f"{list_file}: {what} not found")
    try:
        f = open(list_file, "rb")   # bytes: the decode error of a bad line names that line
    except OSError as err:
        raise AnnotationError(f"{list_file}: cannot read ({err.strerror})") from None
    with f:
        for n, raw in enumerate(f, start=1):
            where = f"{list_file}:{n}"
            text = _decode(raw, where)
            yield where, text.removeprefix("\ufeff") if n == 1 else text


def _lines(list_file: str):
    """("file:line", tokens) of every entry: blank lines and lines whose first token starts with '#' are skipped."""
    for where, line in _text_lines(list_file):
        tokens = line.split()
        if tokens and not tokens[0].startswith("#"):
            yield where, tokens


def _check_labels(labels: list[int], where: str, multi_class: bool, num_classes: int | None) -> tuple[int, ...]:
    if not labels:
        raise AnnotationError(f"{where}: no label")
    if not multi_class and len(labels) != 1:
        raise AnnotationError(f"{where}: expected one label, got {len(labels)} (multi-label list without multi_class?)")
    for lab in labels:
        if lab < 0 or (num_classes is not None and lab >= num_classes):
            raise AnnotationError(f"{where}: label {lab} outside [0, {num_classes})")
    return tuple(labels)


def _rawframe_record(tokens: list[str], where: str, data_prefix: str, with_offset: bool, multi_class: bool,
                     num_classes: int | None) -> VideoRecord:
    head = 3 if with_offset else 2            # tokens before the label(s)
    if len(tokens) < head + 1 or (not multi_class and len(tokens) != head + 1):
        fmt = "<frame_dir> " + ("<offset> " if with_offset else "") + "<total_frames> <label>"
        raise AnnotationError(f"{where}: expected '{fmt}', got {len(tokens)} fields")
    numbers = _ints(tokens[1:head], where, "offset/total_frames")
    offset, total = (numbers if with_offset else [0, numbers[0]])
    if total < 0 or offset < 0:
        raise AnnotationError(f"{where}: negative frame count or offset")
    labels = _check_labels(_ints(tokens[head:], where, "labels"), where, multi_class, num_classes)
    return VideoRecord(os.path.join(data_prefix, tokens[0]), labels, total, offset, where)


def _video_record(tokens: list[str], where: str, data_prefix: str, multi_class: bool,
                  num_classes: int | None) -> VideoRecord:
    if len(tokens) < 2 or (not multi_class and len(tokens) != 2):
        raise AnnotationError(f"{where}: expected '<video_path> <label>', got {len(tokens)} fields")
    labels = _check_labels(_ints(tokens[1:], where, "labels"), where, multi_class, num_classes)
    return VideoRecord(os.path.join(data_prefix, tokens[0]), labels, None, 0, where)


def _non_empty(records: list[VideoRecord], list_file: str) -> list[VideoRecord]:
    if not records:
        raise AnnotationError(f"{list_file}: the list has no entries")
    return records


def load_rawframe_list(list_file: str, *, data_prefix: str = "", with_offset: bool = False,
                       multi_class: bool = False, num_classes: int | None = None) -> list[VideoRecord]:
    """Parse a rawframe list (see module docstring)."""
    return _non_empty([_rawframe_record(tokens, where, data_prefix, with_offset, multi_class, num_classes)
                       for where, tokens in _lines(list_file)], list_file)


def load_video_list(list_file: str, *, data_prefix: str = "", multi_class: bool = False,
                    num_classes: int | None = None) -> list[VideoRecord]:
    """Parse a video list `<path> <label> [...]`; total_frames stays None until the index is read."""
    return _non_empty([_video_record(tokens, where, data_prefix, multi_class, num_classes)
                       for where, tokens in _lines(list_file)], list_file)


# The single-label kinds, told apart by their field count (a multi-label list has no fixed count).
_KINDS = {2: "videos", 3: "rawframes", 4: "rawframes with offset"}


def load_labels(list_file: str, *, num_classes: int | None = None) -> list[int]:
    """The label of every entry of a single-label list of any kind, in list order (what `tsn fuse` scores against).

    The kind comes from the first entry's field count (2: videos, 3: rawframes, 4: rawframes with offset);
    every other entry must have the same count.
    """
    labels, kind = [], None
    for where, tokens in _lines(list_file):
        if kind is None:
            if len(tokens) not in _KINDS:
                raise AnnotationError(f"{where}: expected a single-label list line ('<video_path> <label>', "
                                      f"'<frame_dir> <total_frames> <label>' or '<frame_dir> <offset> "
                                      f"<total_frames> <label>'), got {len(tokens)} fields")
            kind = len(tokens)
        elif len(tokens) != kind:
            raise AnnotationError(f"{where}: {len(tokens)} fields, but the first entry ({_KINDS[kind]}) has {kind}")
        if kind == 2:
            record = _video_record(tokens, where, "", False, num_classes)
        else:
            record = _rawframe_record(tokens, where, "", kind == 4, False, num_classes)
        labels.append(record.label)
    if not labels:
        raise AnnotationError(f"{list_file}: the list has no entries")
    return labels


# ------------------------------------------------------------------------------------------------ writing

def _path_field(path: str) -> str:
    if not path or any(ch.isspace() for ch in path) or path.startswith("#"):
        # Lines are split on whitespace and '#' starts a comment: such a path would corrupt its line.
        raise ValueError(f"{path!r} cannot be a list path (empty, whitespace, or a leading '#')")
    return path


def _label_fields(labels) -> str:
    labels = tuple(labels)
    if not labels or any(not isinstance(lab, int) or lab < 0 for lab in labels):
        raise ValueError(f"labels must be one or more integers >= 0, got {labels!r}")
    return " ".join(str(lab) for lab in labels)


def format_rawframe_line(frame_dir: str, total_frames: int, labels, offset: int | None = None) -> str:
    """`<frame_dir> [<offset>] <total_frames> <label> [<label> ...]`: the line load_rawframe_list reads back."""
    counts = (total_frames,) if offset is None else (offset, total_frames)
    if any(not isinstance(c, int) or c < 0 for c in counts):
        raise ValueError(f"offset/total_frames must be integers >= 0, got {counts!r}")
    return " ".join([_path_field(frame_dir), *map(str, counts), _label_fields(labels)])


def format_video_line(path: str, labels) -> str:
    """`<video_path> <label> [<label> ...]`: the line load_video_list reads back."""
    return f"{_path_field(path)} {_label_fields(labels)}"


def load_class_names(path: str, num_classes: int | None = None) -> tuple[str, ...]:
    """classes.txt: one name per line, line index = label (`tsn prepare filelist` and the synthetic set write it)."""
    lines = [(where, text.strip()) for where, text in _text_lines(path, "class-name file")]
    while lines and not lines[-1][1]:
        lines.pop()                               # trailing blank lines
    for where, name in lines:
        if not name:
            raise AnnotationError(f"{where}: empty class name (line index = label, so no gaps)")
    if not lines:
        raise AnnotationError(f"{path}: no class names")
    if num_classes is not None and len(lines) != num_classes:
        raise AnnotationError(f"{path}: {len(lines)} class names for {num_classes} classes")
    return tuple(name for _, name in lines)
