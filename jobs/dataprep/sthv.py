"""Something-Something V1 and V2 from the official (20BN / Qualcomm) annotation files.

Assumed layouts (official):
- V1: `something-something-v1-labels.csv`, one class name per line, label = line index;
  `something-something-v1-{train,validation}.csv`, lines `<id>;<class name>`. Frames ship as
  `<id>/00001.jpg`, hence the default template `{:05}.jpg`.
- V2: `something-something-v2-labels.json` (or `labels.json`), an object `{class name: "id"}`;
  `something-something-v2-{train,validation}.json` (or `train.json`, `validation.json`), a list of
  `{"id", "label", "template", "placeholders"}`; the class is `template` without the brackets.
  Videos are `<id>.webm`.
Test files carry no labels and are skipped. Both versions also get the horizontal-flip label pairs:
"... from left to right" becomes "... from right to left" in a mirrored video, so a flip augmentation
must swap those labels (`flip_label_map.txt`).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from jobs.dataprep.listio import (
    Annotations,
    OfficialAnnotationError,
    Sample,
    Split,
    annotation_file,
    numbered_lines,
)

# Words whose meaning a horizontal mirror reverses; "left to right" -> "right to left" follows from left<->right.
_MIRROR_WORDS = {"left": "right", "right": "left", "clockwise": "counterclockwise",
                 "counterclockwise": "clockwise", "anticlockwise": "clockwise"}
_MIRROR_RE = re.compile(r"\b(" + "|".join(_MIRROR_WORDS) + r")\b", re.IGNORECASE)


def mirrored_name(name: str) -> str:
    def swap(m: re.Match[str]) -> str:
        word = _MIRROR_WORDS[m.group(0).lower()]
        return word.capitalize() if m.group(0)[0].isupper() else word
    return _MIRROR_RE.sub(swap, name)


def flip_pairs(classes: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """(label, mirrored label) for every class whose mirrored name is another class (both directions)."""
    label_of = {name.lower(): i for i, name in enumerate(classes)}
    pairs = []
    for i, name in enumerate(classes):
        j = label_of.get(mirrored_name(name).lower())
        if j is not None and j != i:
            pairs.append((i, j))
    return tuple(pairs)


def _read_v1_split(path: Path, label_of: dict[str, int], name: str, role: str) -> Split:
    samples = []
    for lineno, line in numbered_lines(path):
        vid, sep, cls = line.partition(";")
        if not sep or cls not in label_of:
            raise OfficialAnnotationError(f"{path}:{lineno}: expected '<id>;<class from labels csv>', got {line!r}")
        samples.append(Sample((vid,), (label_of[cls],)))
    return Split(name, role, tuple(samples))


def parse_v1(ann_dir: Path) -> Annotations:
    classes = tuple(line for _, line in numbered_lines(
        annotation_file(ann_dir, ("something-something-v1-labels.csv",))))
    label_of = {name: i for i, name in enumerate(classes)}
    splits = (
        _read_v1_split(annotation_file(ann_dir, ("something-something-v1-train.csv",)),
                       label_of, "sthv1_train_list", "train"),
        _read_v1_split(annotation_file(ann_dir, ("something-something-v1-validation.csv",)),
                       label_of, "sthv1_val_list", "val"),
    )
    return Annotations(classes, splits, flip_pairs(classes))


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise OfficialAnnotationError(f"{path}:{err.lineno}: {err.msg}") from None


def _read_v2_split(path: Path, label_of: dict[str, int], name: str, role: str) -> Split:
    samples = []
    for k, item in enumerate(_read_json(path)):
        template = item.get("template", "") if isinstance(item, dict) else ""
        cls = template.replace("[", "").replace("]", "")
        if "id" not in item or cls not in label_of:
            raise OfficialAnnotationError(
                f"{path}: item {k}: needs 'id' and a 'template' from the labels file, got {item}")
        samples.append(Sample((str(item["id"]),), (label_of[cls],)))
    return Split(name, role, tuple(samples))


def parse_v2(ann_dir: Path) -> Annotations:
    labels_path = annotation_file(ann_dir, ("something-something-v2-labels.json", "labels.json"))
    label_of = {name: int(i) for name, i in _read_json(labels_path).items()}
    if sorted(label_of.values()) != list(range(len(label_of))):
        raise OfficialAnnotationError(f"{labels_path}: class ids are not 0..{len(label_of) - 1}")
    classes = tuple(sorted(label_of, key=label_of.__getitem__))
    splits = (
        _read_v2_split(annotation_file(ann_dir, ("something-something-v2-train.json", "train.json")),
                       label_of, "sthv2_train_list", "train"),
        _read_v2_split(annotation_file(ann_dir, ("something-something-v2-validation.json", "validation.json")),
                       label_of, "sthv2_val_list", "val"),
    )
    return Annotations(classes, splits, flip_pairs(classes))
