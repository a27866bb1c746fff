"""ActivityNet v1.3: untrimmed video lists and trimmed clip lists from `activity_net.v1-3.min.json`.

Assumed layout (official): `{"database": {<youtube id>: {"subset": "training"|"validation"|"testing",
"duration": seconds, "annotations": [{"segment": [t0, t1], "label": name}, ...]}, ...}, ...}`.
Class order comes from MMAction2's `action_name.csv` (header line `action`, then one name per line),
so label ids match MMAction2 checkpoints; without that file the sorted annotation labels are used.
Frame folders are looked up as `v_<id>` (MMAction2's name) and then `<id>`.

Lists (rawframes): `anet_{train,val}_video` lines `<dir> <num_frames> <label of the first annotation>`,
`anet_{train,val}_clip` lines `<dir> <start> <num_frames> <label>`, one per annotated segment, with
fps = num_frames / duration, start = int(t0 * fps), end = min(int(t1 * fps), num_frames - 1),
num_frames = end - start + 1 (tools/data/activitynet/generate_rawframes_filelist.py).
The testing subset has no annotations and is skipped.
"""
from __future__ import annotations

import json
from pathlib import Path

from jobs.dataprep.listio import (
    Annotations,
    OfficialAnnotationError,
    Sample,
    Split,
    annotation_file,
    numbered_lines,
)

SUBSETS = (("training", "train"), ("validation", "val"))


def clip_bounds(t_start: float, t_end: float, duration: float, num_frames: int) -> tuple[int, int]:
    """(start frame, number of frames) of segment [t_start, t_end] s; the count is <= 0 for an
    empty clip (a segment that lies past the frames the video actually has)."""
    fps = num_frames / duration
    start = int(t_start * fps)
    end = min(int(t_end * fps), num_frames - 1)
    return start, end - start + 1


def read_action_names(path: Path) -> tuple[str, ...]:
    lines = [line for _, line in numbered_lines(path)]
    return tuple(lines[1:] if lines and lines[0].lower() == "action" else lines)


def _video_samples(vid: str, info: dict, label_of: dict[str, int], where: str) -> tuple[Sample, list[Sample]]:
    """(untrimmed sample, one sample per annotated segment) for one database entry."""
    candidates = (f"v_{vid}", vid)
    duration = float(info.get("duration") or 0)
    annotations = info.get("annotations") or []
    if duration <= 0:
        raise OfficialAnnotationError(f"{where}: duration must be > 0, got {info.get('duration')!r}")
    clips = []
    for anno in annotations:
        label = label_of.get(anno.get("label"))
        segment = anno.get("segment") or []
        if label is None or len(segment) != 2:
            raise OfficialAnnotationError(f"{where}: bad annotation {anno} (label not in the class list?)")
        clips.append(Sample(candidates, (label,), (float(segment[0]), float(segment[1])), duration))
    video = Sample(candidates, clips[0].labels, None, duration)
    return video, clips


def parse(ann_dir: Path) -> Annotations:
    json_path = annotation_file(ann_dir, ("activity_net.v1-3.min.json", "activity_net.v1-3.json"))
    try:
        database = json.loads(json_path.read_text(encoding="utf-8"))["database"]
    except (json.JSONDecodeError, KeyError) as err:
        raise OfficialAnnotationError(f"{json_path}: not an ActivityNet JSON with a 'database' ({err})") from None
    names_path = annotation_file(ann_dir, ("action_name.csv",), required=False)
    notes: tuple[str, ...] = ()
    if names_path is not None:
        classes = read_action_names(names_path)
    else:  # deterministic, but not MMAction2's ids, so say so
        classes = tuple(sorted({a["label"] for v in database.values() for a in v.get("annotations") or []}))
        notes = ("no action_name.csv: labels are the sorted class names, not MMAction2's ids",)
    label_of = {name: i for i, name in enumerate(classes)}
    splits = []
    for subset, role in SUBSETS:
        videos, clips = [], []
        for vid, info in database.items():
            if info.get("subset") != subset or not info.get("annotations"):
                continue
            video, segs = _video_samples(vid, info, label_of, f"{json_path}: {vid}")
            videos.append(video)
            clips.extend(segs)
        splits.append(Split(f"anet_{role}_video", role, tuple(videos)))
        splits.append(Split(f"anet_{role}_clip", role, tuple(clips)))
    return Annotations(classes, tuple(splits), notes=notes)
