"""Kinetics-400 from the official CSVs (DeepMind `kinetics400.tar.gz`: train.csv, validate.csv, test.csv).

Assumed layout (official): a header row naming the columns `label,youtube_id,time_start,time_end,split`
(extra columns such as `is_cc` are ignored; times may be written as `14` or `14.0`). MMAction2's
renamed copies `kinetics_{train,val,test}.csv` are accepted too.
Labels follow MMAction2: class names from the *train* CSV with quotes removed and spaces -> `_`,
sorted, label = position. Video id `<youtube_id>_<start:06d>_<end:06d>`; it is looked for under
`<class>/` (underscored, then as written) and then flat, as the crawlers store either.
Videos absent on disk (deleted from YouTube) are reported by the list builder, not fatal.
"""
from __future__ import annotations

import csv
from pathlib import Path

from jobs.dataprep.listio import (
    Annotations,
    OfficialAnnotationError,
    Sample,
    Split,
    annotation_file,
)

TRAIN_NAMES = ("train.csv", "kinetics_train.csv", "kinetics_400_train.csv", "kinetics-400_train.csv")
VAL_NAMES = ("validate.csv", "val.csv", "kinetics_val.csv", "kinetics_400_validate.csv", "kinetics-400_val.csv")
TEST_NAMES = ("test.csv", "kinetics_test.csv", "kinetics_400_test.csv", "kinetics-400_test.csv")
REQUIRED = ("youtube_id", "time_start", "time_end")


def clean_label(name: str) -> str:
    return name.replace('"', "").replace(" ", "_")


def video_id(youtube_id: str, start: str, end: str) -> str:
    return f"{youtube_id}_{int(float(start)):06d}_{int(float(end)):06d}"


def read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) pairs; checks the header once so a wrong file fails with a clear message."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise OfficialAnnotationError(f"{path}:1: header lacks {missing} (got {reader.fieldnames})")
        return [(reader.line_num, row) for row in reader]


def read_split(path: Path, label_of: dict[str, int], name: str, role: str) -> Split | None:
    """The split's samples, or None for an unlabelled CSV (the original test set)."""
    rows = read_rows(path)
    if not rows or not all((row.get("label") or "").strip() for _, row in rows):
        return None
    samples = []
    for lineno, row in rows:
        cls = clean_label(row["label"])
        if cls not in label_of:
            raise OfficialAnnotationError(f"{path}:{lineno}: class {row['label']!r} is not in the train CSV")
        try:
            vid = video_id(row["youtube_id"], row["time_start"], row["time_end"])
        except (TypeError, ValueError):
            raise OfficialAnnotationError(f"{path}:{lineno}: bad time_start/time_end in {row}") from None
        spaced = row["label"].replace('"', "")
        candidates = tuple(dict.fromkeys((f"{cls}/{vid}", f"{spaced}/{vid}", vid)))
        samples.append(Sample(candidates, (label_of[cls],)))
    return Split(name, role, tuple(samples))


def parse(ann_dir: Path, dataset: str = "kinetics400") -> Annotations:
    train_csv = annotation_file(ann_dir, TRAIN_NAMES)
    names = set()
    for lineno, row in read_rows(train_csv):
        if not (row.get("label") or "").strip():
            raise OfficialAnnotationError(f"{train_csv}:{lineno}: the train CSV needs a label on every row")
        names.add(clean_label(row["label"]))
    classes = tuple(sorted(names))
    label_of = {name: i for i, name in enumerate(classes)}
    splits = [read_split(train_csv, label_of, f"{dataset}_train_list", "train"),
              read_split(annotation_file(ann_dir, VAL_NAMES), label_of, f"{dataset}_val_list", "val")]
    test_csv = annotation_file(ann_dir, TEST_NAMES, required=False)
    if test_csv is not None:
        splits.append(read_split(test_csv, label_of, f"{dataset}_test_list", "test"))
    return Annotations(classes, tuple(s for s in splits if s is not None))
