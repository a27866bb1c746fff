"""Moments in Time (MiT, single label) and Multi-Moments in Time (M-MiT, multi-label).

Assumed layouts (official releases, as MMAction2 reads them):
- `moments_categories.txt`: lines `<class name>,<index>` (0-based). Which file you pass decides the
  version: v1 has 339 classes, v2 305; labels are exactly these indices.
- MiT `trainingSet.csv` / `validationSet.csv`: no header, rows `<class>/<file>.mp4,<class>,...`
  (trailing annotator-agreement columns are ignored). The class comes from the second column,
  or from the path's folder when that column is absent (MMAction2 uses the folder).
- M-MiT `trainingSet.csv` / `validationSet.csv` (`.txt` in some copies): rows `<path>,<l1>,<l2>,...`;
  MMAction2 parses the labels as integers; class names are accepted too and mapped through the
  category file. Lines become `<path> <n> <l1> <l2> ...` (multi-label rawframes / videos lists).
Paths are relative to the split's own root (`videos/training`, `videos/validation`).
"""
from __future__ import annotations

import csv
import posixpath
from pathlib import Path

from jobs.dataprep.listio import (
    Annotations,
    OfficialAnnotationError,
    Sample,
    Split,
    annotation_file,
    numbered_lines,
)


def read_categories(path: Path) -> tuple[str, ...]:
    by_index: dict[int, str] = {}
    for lineno, line in numbered_lines(path):
        name, sep, index = line.rpartition(",")  # rpartition: names may contain commas, indices do not
        if not sep or not index.strip().isdigit():
            raise OfficialAnnotationError(f"{path}:{lineno}: expected '<name>,<index>', got {line!r}")
        by_index[int(index)] = name.strip()
    if sorted(by_index) != list(range(len(by_index))):
        raise OfficialAnnotationError(f"{path}: category indices are not 0..{len(by_index) - 1}")
    return tuple(by_index[i] for i in range(len(by_index)))


def _rows(path: Path):
    with open(path, newline="", encoding="utf-8-sig") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if row and row[0].strip():
                yield lineno, [cell.strip() for cell in row]


def _candidates(video: str) -> tuple[str, ...]:
    stem = posixpath.splitext(video.replace("\\", "/"))[0]
    return tuple(dict.fromkeys((stem, posixpath.basename(stem))))


def _label(token: str, label_of: dict[str, int], num_classes: int) -> int | None:
    if token.isdigit():
        return int(token) if int(token) < num_classes else None
    return label_of.get(token)


def read_mit_split(path: Path, label_of: dict[str, int], name: str, role: str) -> Split:
    samples = []
    for lineno, row in _rows(path):
        folder = posixpath.dirname(row[0].replace("\\", "/"))
        cls = row[1] if len(row) > 1 and row[1] in label_of else folder
        if cls not in label_of:
            raise OfficialAnnotationError(f"{path}:{lineno}: no known category in {row[:2]}")
        samples.append(Sample(_candidates(row[0]), (label_of[cls],)))
    return Split(name, role, tuple(samples))


def read_mmit_split(path: Path, label_of: dict[str, int], name: str, role: str) -> Split:
    samples = []
    for lineno, row in _rows(path):
        labels = [_label(token, label_of, len(label_of)) for token in row[1:] if token]
        if not labels or None in labels:
            raise OfficialAnnotationError(f"{path}:{lineno}: expected '<path>,<label>[,<label>...]' with known labels")
        samples.append(Sample(_candidates(row[0]), tuple(dict.fromkeys(labels))))
    return Split(name, role, tuple(samples))


def _parse(ann_dir: Path, dataset: str, read_split) -> Annotations:
    classes = read_categories(annotation_file(ann_dir, ("moments_categories.txt", "multi_moments_categories.txt",
                                                        "categories.txt")))
    label_of = {name: i for i, name in enumerate(classes)}
    splits = (
        read_split(annotation_file(ann_dir, ("trainingSet.csv", "trainingSet.txt")),
                   label_of, f"{dataset}_train_list", "train"),
        read_split(annotation_file(ann_dir, ("validationSet.csv", "validationSet.txt")),
                   label_of, f"{dataset}_val_list", "val"),
    )
    return Annotations(classes, splits)


def parse_mit(ann_dir: Path) -> Annotations:
    return _parse(ann_dir, "mit", read_mit_split)


def parse_mmit(ann_dir: Path) -> Annotations:
    return _parse(ann_dir, "mmit", read_mmit_split)
