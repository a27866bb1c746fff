"""The file-list model (samples, splits) and writing MMAction2-format lists and class files.

Lines written (MMAction2 v0.24.1 mmaction/datasets/{rawframe,video}_dataset.py, tools/data/build_file_list.py):
  rawframes            `<frame_dir> <total_frames> <label> [<label> ...]`
  rawframes with clip  `<frame_dir> <offset> <total_frames> <label>`   (ActivityNet trimmed clips)
  videos               `<relpath.ext> <label> [<label> ...]`
Paths are relative to the split's root (the config's `data.*_prefix`), with '/' separators.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from jobs.media.discovery import is_video_file
from jobs.media.naming import count_frames
from pipelines import annotations
from pipelines.annotations import format_rawframe_line, format_video_line


class OfficialAnnotationError(annotations.AnnotationError):
    """A malformed official annotation file; the message starts with `file:line:`."""


@dataclass(frozen=True)
class Sample:
    """One annotated video. `candidates` are root-relative paths without extension, most likely first
    (e.g. `class/vid` then `vid`), because the same dataset is stored 1- or 2-level deep by different tools."""
    candidates: tuple[str, ...]
    labels: tuple[int, ...]
    segment: tuple[float, float] | None = None  # trimmed clip [t0, t1] in seconds (ActivityNet)
    duration: float | None = None  # video duration in seconds, needed to turn `segment` into frames


@dataclass(frozen=True)
class Split:
    name: str  # output file stem, e.g. "ucf101_train_split_1"
    role: str  # "train" | "val" | "test": selects the root directory the paths are relative to
    samples: tuple[Sample, ...]


@dataclass(frozen=True)
class Annotations:
    classes: tuple[str, ...]  # line index = label
    splits: tuple[Split, ...]
    flip_pairs: tuple[tuple[int, int], ...] = ()  # (label, label under horizontal flip), both directions
    notes: tuple[str, ...] = ()  # things the user should know about how labels were assigned


@dataclass(frozen=True)
class Found:
    relpath: str  # what goes in the list: folder (rawframes) or file with extension (videos)
    num_frames: int | None  # None for videos: the loader counts them


class Disk:
    """Finds samples under one root, listing each directory at most once (K400 has ~240k entries)."""

    def __init__(self, root: Path, fmt: str, template: str):
        if fmt not in ("rawframes", "videos"):
            raise ValueError(f"format must be 'rawframes' or 'videos', got {fmt!r}")
        self.root, self.fmt, self.template = Path(root), fmt, template
        self._listings: dict[str, dict[str, str]] = {}

    def _listing(self, parent: str) -> dict[str, str]:
        """stem -> entry name in `root/parent`: frame folders for rawframes, video files for videos.

        Hidden entries are skipped: they are the temp outputs of an unfinished extraction."""
        if parent not in self._listings:
            entries: dict[str, str] = {}
            try:
                with os.scandir(self.root / parent) as it:
                    for e in it:
                        stem = os.path.splitext(e.name)[0]
                        if e.name.startswith("."):
                            continue
                        if self.fmt == "rawframes" and e.is_dir():
                            entries[e.name] = e.name
                        elif self.fmt == "videos" and e.is_file() and is_video_file(e.name):
                            entries.setdefault(stem, e.name)
            except (FileNotFoundError, NotADirectoryError):
                pass
            self._listings[parent] = entries
        return self._listings[parent]

    def find(self, sample: Sample) -> Found | str:
        """The first candidate present on disk, or the reason none is usable."""
        reason = "not found under " + str(self.root)
        for cand in sample.candidates:
            parent, _, stem = cand.rpartition("/")
            name = self._listing(parent).get(stem)
            if name is None:
                continue
            relpath = f"{parent}/{name}" if parent else name
            if any(ch.isspace() for ch in relpath):
                # List lines are split on whitespace, so such a path would corrupt its line.
                reason = f"{relpath!r} contains whitespace: rename folders (spaces -> '_') and rebuild"
                continue
            if self.fmt == "videos":
                return Found(relpath, None)
            try:
                n = count_frames(self.root / relpath, self.template)
            except ValueError as err:  # x/y flow counts differ: an extraction was cut short
                reason = str(err)
                continue
            if n > 0:
                return Found(relpath, n)
            reason = f"{relpath}: no frames named like {self.template!r}"
        return reason



def list_line(found: Found, labels: tuple[int, ...], clip: tuple[int, int] | None = None) -> str:
    """One list line (formatted by pipelines/annotations.py, which reads it back); `clip` = (offset, num_frames)
    for trimmed-clip lists."""
    if clip is not None:
        return format_rawframe_line(found.relpath, clip[1], labels, offset=clip[0])
    if found.num_frames is None:
        return format_video_line(found.relpath, labels)
    return format_rawframe_line(found.relpath, found.num_frames, labels)


def write_lines(path: Path, lines: Iterable[str]) -> None:
    """Write atomically (UTF-8): a crash never leaves a half list that looks complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)


def write_classes(path: Path, classes: tuple[str, ...]) -> None:
    """classes.txt: one name per line, line index = label (the label map checkpoints should carry)."""
    for name in classes:
        if "\n" in name or not name.strip():
            raise ValueError(f"class name {name!r} cannot be written one per line")
    write_lines(path, list(classes))


def write_flip_map(path: Path, pairs: tuple[tuple[int, int], ...]) -> None:
    """flip_label_map.txt: `<label> <label after horizontal flip>`; unlisted labels map to themselves."""
    write_lines(path, [f"{a} {b}" for a, b in sorted(pairs)])


def write_report(path: Path, records: list[dict]) -> None:
    """JSON lines, one object per problem input (always rewritten, so no stale report survives a good run)."""
    write_lines(path, [json.dumps(r, sort_keys=True) for r in records])


def annotation_file(ann_dir: Path, names: tuple[str, ...], required: bool = True) -> Path | None:
    """The first of `names` present in `ann_dir` (official name first, then common renamings)."""
    for name in names:
        if (Path(ann_dir) / name).is_file():
            return Path(ann_dir) / name
    if required:
        raise FileNotFoundError(f"none of {', '.join(names)} found in {ann_dir}")
    return None


def numbered_lines(path: Path):
    """(line number, stripped text) for each non-blank line; copes with a BOM and CRLF (UCF-101 uses CRLF)."""
    for lineno, raw in enumerate(Path(path).read_bytes().splitlines(), 1):   # \n, \r\n and \r, as text mode
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError:
            raise OfficialAnnotationError(f"{path}:{lineno}: not UTF-8 text") from None
        if line.strip():
            yield lineno, line.strip()
