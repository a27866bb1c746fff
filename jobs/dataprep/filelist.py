"""`tsn prepare filelist`: official annotations + what is on disk -> MMAction2 file lists.

For every split the dataset defines, each annotated video is looked up under the split's root;
present ones become list lines, absent or empty ones are written to `<list>_missing.txt` and to
`<dataset>_<format>_report.jsonl` (path, reason, list) instead of stopping the run — most Kinetics copies
lack a few percent of the YouTube videos. `classes.txt` (and `flip_label_map.txt` where the
dataset has direction classes) is written beside the lists.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from jobs.dataprep import activitynet, kinetics, mit, sthv, ucf101
from jobs.dataprep.listio import (
    Annotations,
    Disk,
    Found,
    Split,
    list_line,
    write_classes,
    write_flip_map,
    write_lines,
    write_report,
)
from jobs.media.naming import is_flow_template


@dataclass(frozen=True)
class DatasetSpec:
    parse: Callable[[Path], Annotations]
    rgb_template: str  # what the dataset's configs expect (MMAction2 v0.7.0 `filename_tmpl`)
    flow_template: str


@dataclass(frozen=True)
class ListResult:
    path: Path
    written: int
    missing: int


@dataclass(frozen=True)
class FilelistSummary:
    lists: tuple[ListResult, ...]
    problems: tuple[dict, ...]
    classes_path: Path
    report_path: Path
    notes: tuple[str, ...]


def dataset_specs() -> dict[str, DatasetSpec]:
    """Dataset name -> how to read it; the only place datasets are named."""
    return {
        "ucf101": DatasetSpec(ucf101.parse, "img_{:05}.jpg", "{}_{:05d}.jpg"),
        "kinetics400": DatasetSpec(kinetics.parse, "img_{:05}.jpg", "{}_{:05d}.jpg"),
        "sthv1": DatasetSpec(sthv.parse_v1, "{:05}.jpg", "{}_{:05d}.jpg"),
        "sthv2": DatasetSpec(sthv.parse_v2, "img_{:05}.jpg", "{}_{:05d}.jpg"),
        "mit": DatasetSpec(mit.parse_mit, "img_{:05}.jpg", "{}_{:05d}.jpg"),
        "mmit": DatasetSpec(mit.parse_mmit, "img_{:05}.jpg", "{}_{:05d}.jpg"),
        "activitynet": DatasetSpec(activitynet.parse, "image_{:05d}.jpg", "flow_{}_{:05d}.jpg"),
    }


def _split_lines(split: Split, disk: Disk) -> tuple[list[str], list[tuple[str, str]]]:
    """(list lines, [(path, reason)] for samples that could not be listed)."""
    lines, problems = [], []
    # Counting frames means listing every folder: minutes for Kinetics on a network disk.
    for sample in tqdm(split.samples, desc=split.name, unit="video", dynamic_ncols=True):
        found = disk.find(sample)
        if not isinstance(found, Found):
            problems.append((sample.candidates[0], found))
            continue
        clip = None
        if sample.segment is not None:
            t0, t1 = sample.segment
            clip = activitynet.clip_bounds(t0, t1, sample.duration, found.num_frames)
            if clip[1] < 1:
                reason = (f"empty clip: segment [{t0}, {t1}] s is past the {found.num_frames} frames "
                          f"of a {sample.duration} s video")
                problems.append((found.relpath, reason))
                continue
        lines.append(list_line(found, sample.labels, clip))
    return lines, problems


def build_filelists(dataset: str, ann_dir: Path, out_dir: Path, *, roots: dict[str, Path],
                    fmt: str = "rawframes", modality: str = "rgb", template: str | None = None) -> FilelistSummary:
    """Write every list of `dataset` into `out_dir`; `roots` maps split role (train/val/test) to its root."""
    specs = dataset_specs()
    if dataset not in specs:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(specs)}")
    spec = specs[dataset]
    if modality not in ("rgb", "flow"):
        raise ValueError(f"modality must be 'rgb' or 'flow', got {modality!r}")
    if modality == "flow" and fmt != "rawframes":
        raise ValueError("flow lists count extracted flow frames: use --format rawframes")
    template = template or (spec.flow_template if modality == "flow" else spec.rgb_template)
    if is_flow_template(template) != (modality == "flow"):
        raise ValueError(f"template {template!r} does not fit modality {modality!r}")
    annotations = spec.parse(Path(ann_dir))
    out_dir = Path(out_dir)
    suffix = "flow" if modality == "flow" else fmt
    disks: dict[str, Disk] = {}
    results, records, notes = [], [], list(annotations.notes)
    for split in annotations.splits:
        if split.role not in roots:
            notes.append(f"skipped {split.name}: no root given for the {split.role} split")
            continue
        if fmt == "videos" and any(s.segment is not None for s in split.samples):
            notes.append(f"skipped {split.name}: clip lists need frame counts (use --format rawframes)")
            continue
        disk = disks.setdefault(split.role, Disk(roots[split.role], fmt, template))
        lines, problems = _split_lines(split, disk)
        path = out_dir / f"{split.name}_{suffix}.txt"
        write_lines(path, lines)
        missing_path = path.with_name(f"{path.stem}_missing.txt")
        if problems:
            write_lines(missing_path, list(dict.fromkeys(p for p, _ in problems)))
        else:
            missing_path.unlink(missing_ok=True)
        records += [{"path": p, "reason": r, "list": path.name} for p, r in problems]
        results.append(ListResult(path, len(lines), len(problems)))
    classes_path = out_dir / "classes.txt"
    write_classes(classes_path, annotations.classes)
    if annotations.flip_pairs:
        write_flip_map(out_dir / "flip_label_map.txt", annotations.flip_pairs)
    report_path = out_dir / f"{dataset}_{suffix}_report.jsonl"  # per format, so an RGB and a flow run keep theirs
    write_report(report_path, records)
    return FilelistSummary(tuple(results), tuple(records), classes_path, report_path, tuple(notes))
