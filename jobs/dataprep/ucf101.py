"""UCF-101 from the official `UCF101TrainTestSplits-RecognitionTask.zip` (folder `ucfTrainTestlist/`).

Assumed layout (official): `classInd.txt` lines `<1-based index> <ClassName>`; `trainlist0{1,2,3}.txt`
lines `<ClassName>/v_<ClassName>_gXX_cYY.avi <1-based index>`; `testlist0{1,2,3}.txt` the same without
the index. Label = classInd index - 1; the class is read from the path's folder, as MMAction2 does,
because the test lists carry no label. Lists: `ucf101_{train,val}_split_{1,2,3}` (val = the official test list).
"""
from __future__ import annotations

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


def read_class_index(path: Path) -> tuple[str, ...]:
    """Class names ordered by label (classInd index - 1); the indices must be 1..K without gaps."""
    by_index: dict[int, str] = {}
    for lineno, line in numbered_lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise OfficialAnnotationError(f"{path}:{lineno}: expected '<index> <ClassName>', got {line!r}")
        by_index[int(parts[0])] = parts[1]
    if sorted(by_index) != list(range(1, len(by_index) + 1)):
        raise OfficialAnnotationError(f"{path}: class indices are not 1..{len(by_index)}")
    return tuple(by_index[i] for i in range(1, len(by_index) + 1))


def read_split_list(path: Path, label_of: dict[str, int]) -> tuple[Sample, ...]:
    samples = []
    for lineno, line in numbered_lines(path):
        parts = line.split()
        video = parts[0].replace("\\", "/")
        folder = posixpath.dirname(video)
        # The official lists and classInd disagree in case for one class in some copies
        # (HandStandPushups vs HandstandPushups), so fall back to a case-insensitive match.
        label = label_of.get(folder, label_of.get(folder.lower()))
        if label is None or len(parts) > 2:
            raise OfficialAnnotationError(f"{path}:{lineno}: cannot read {line!r} (class folder {folder!r})")
        if len(parts) == 2 and parts[1] != str(label + 1):
            raise OfficialAnnotationError(f"{path}:{lineno}: label {parts[1]} disagrees with classInd for {folder}")
        stem = posixpath.splitext(video)[0]
        samples.append(Sample((stem, posixpath.basename(stem)), (label,)))
    return tuple(samples)


def parse(ann_dir: Path) -> Annotations:
    """All three official splits (6 lists)."""
    classes = read_class_index(annotation_file(ann_dir, ("classInd.txt",)))
    label_of = {name: i for i, name in enumerate(classes)}
    label_of.update({name.lower(): i for i, name in enumerate(classes)})
    splits = []
    for k in (1, 2, 3):
        train = annotation_file(ann_dir, (f"trainlist{k:02d}.txt",))
        test = annotation_file(ann_dir, (f"testlist{k:02d}.txt",))
        splits.append(Split(f"ucf101_train_split_{k}", "train", read_split_list(train, label_of)))
        splits.append(Split(f"ucf101_val_split_{k}", "val", read_split_list(test, label_of)))
    return Annotations(classes, tuple(splits))
