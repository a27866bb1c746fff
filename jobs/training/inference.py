"""`tsn predict` on many inputs at once: the windows of a long video, every video or frame folder under a folder, or an
annotation list. All of them go through the test loader (jobs/training/loaders.py build_loader) in batches, exactly
like `tsn test`: the recipe's test sampler, crops and clip averaging per input, memory bounded by the batch.

Rows are plain dicts (one per window or input) written as JSON lines or CSV. Scores in rows are probabilities
(softmax of the averaged logits; `average_clips = "prob"` scores already are); metrics, for a list with labels, are
computed on the averaged scores like `tsn test` does (jobs/training/tester.py).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from jobs.dataprep.listio import VIDEO_EXTENSIONS
from jobs.dataprep.naming import count_flow_frames, count_frames
from jobs.training.config import Config
from jobs.training.distributed import init_distributed, shutdown
from jobs.training.engine import evaluate, make_amp
from jobs.training.evaluation import compute_metrics
from jobs.training.loaders import DataError, build_loader
from jobs.training.metrics import softmax
from jobs.training.timeline import (
    TimelineError,
    Window,
    duration,
    frame_times,
    make_windows,
    timeline_rows,
    top_k,
    window_records,
)
from jobs.training.weights import load_for_eval
from model.tsn import average_clips
from pipelines.annotations import AnnotationError, FrameLayout, VideoRecord
from pipelines.sharding import Shard

LIST_SUFFIXES = (".txt",)        # an input file with this suffix is an annotation list; any other file is a video
OUT_FORMATS = (".jsonl", ".csv")


class PredictError(RuntimeError):
    """An input `tsn predict` cannot use; the message names the file (and line)."""


# What the command turns into a one-line error: each message names the file (and list line).
USER_ERRORS = (PredictError, AnnotationError, DataError)


@dataclass(frozen=True)
class Group:
    """Inputs of one kind (one reader): `records`, or the annotation list `list_file` itself when records is None."""

    cfg: Config
    list_file: str                  # the list, or (with records) only where the video index is cached
    records: list[VideoRecord] | None = None
    prefix: str | None = None


@dataclass(frozen=True)
class Scored:
    records: list[VideoRecord]      # in input order, total_frames filled in by the loader's video index
    scores: np.ndarray              # (N, K) averaged scores (runtime.average_clips), float32
    probs: np.ndarray               # (N, K) probabilities


def label_names(label_map: str | None) -> list[str]:
    """Class names, one per line (line index = label); [] without a file (rows then name classes by number)."""
    return [n.strip() for n in Path(label_map).read_text().split("\n")] if label_map else []


def probabilities(scores: np.ndarray, mode: str) -> np.ndarray:
    """Per-row class probabilities of averaged scores: "prob" scores are already softmaxed (model/tsn.py)."""
    return np.asarray(scores, np.float64) if mode == "prob" else softmax(scores)


def score_groups(groups: list[Group], checkpoint: str, device: str | None = None) -> list[Scored] | None:
    """Each group through its own test loader and one model; None on ranks other than the main one."""
    dist = init_distributed(device)
    # The loaders first: their DALI workers fork before this process creates a CUDA context (as `tsn test`).
    loaders = [build_loader(g.cfg, "test", shard=Shard(dist.rank, dist.world_size), device=dist.data_device,
                            device_id=dist.data_device_id, list_file=g.list_file, prefix=g.prefix, records=g.records)
               for g in groups]
    model = load_for_eval(groups[0].cfg.model, checkpoint).to(dist.device)
    amp, _ = make_amp(groups[0].cfg.runtime.amp, dist.device)
    out = []
    for g, loader in zip(groups, loaders):
        scores, index = evaluate(model, loader, g.cfg.normalize, dist.device, amp, dist,
                                 g.cfg.runtime.max_views_per_forward, progress=dist.is_main)
        records = loader.source.records
        if len(index) != len(records):
            raise PredictError(f"{g.list_file}: only {len(index)} of {len(records)} inputs were predicted")
        scores = average_clips(torch.from_numpy(scores), g.cfg.runtime.average_clips).numpy()
        out.append(Scored(records, scores, probabilities(scores, g.cfg.runtime.average_clips)))
    shutdown(dist)
    return out if dist.is_main else None


# ---------------------------------------------------------------------------------------------- configs per input kind

def video_config(cfg: Config, *, decoder: str | None = None) -> Config:
    """The recipe reading video files (a frame-folder recipe's frames count from 0 in a video, MMAction2's default)."""
    d = cfg.data
    if d.modality == "Flow":
        raise PredictError("a flow recipe reads folders of flow frames, not video files")
    start = d.start_index if d.source == "video" else None
    return dataclasses.replace(cfg, data=dataclasses.replace(d, source="video", start_index=start, on_error="raise",
                                                             decoder=decoder or d.decoder))


def frames_config(cfg: Config) -> Config:
    """The recipe reading frame folders (a video recipe's start_index 0 does not apply to img_00001.jpg files)."""
    d = cfg.data
    start = d.start_index if d.source == "frames" else None
    return dataclasses.replace(cfg, data=dataclasses.replace(d, source="frames", start_index=start, on_error="raise"))


def frame_layout(cfg: Config) -> FrameLayout:
    d = frames_config(cfg).data
    return FrameLayout(d.filename_tmpl, d.first_index, d.modality)


def is_frame_folder(path: str, layout: FrameLayout) -> bool:
    """Whether `path` holds the first frame (both flow files) the recipe's template names."""
    firsts = layout.frame_paths(VideoRecord(path, (0,), None), [layout.start_index])
    return os.path.isdir(path) and all(os.path.isfile(p) for p in firsts)


def is_many(path: str, cfg: Config) -> bool:
    """Folder/list mode: an annotation list (.txt), or a folder that is not itself a frame folder."""
    if os.path.isfile(path):
        return path.lower().endswith(LIST_SUFFIXES)
    return os.path.isdir(path) and not is_frame_folder(path, frame_layout(cfg))


def find_inputs(root: str, layout: FrameLayout) -> tuple[list[str], list[str]]:
    """(video files, frame folders) under `root`, recursively, sorted; hidden entries are skipped and a frame
    folder is not searched further. Video extensions are jobs/dataprep/listio.py VIDEO_EXTENSIONS."""
    videos, folders = [], []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        frames = [d for d in dirs if is_frame_folder(os.path.join(folder, d), layout)]
        folders += [os.path.join(folder, d) for d in frames]
        dirs[:] = [d for d in dirs if d not in frames]
        videos += [os.path.join(folder, f) for f in files
                   if not f.startswith(".") and os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS]
    return sorted(videos), sorted(folders)


def frame_count(folder: str, layout: FrameLayout) -> int:
    """Frames named like the template (what `tsn prepare` writes into lists); flow: x and y must agree."""
    try:
        if layout.modality == "Flow":
            return count_flow_frames(folder, layout.filename_tmpl)
        return count_frames(folder, layout.filename_tmpl)
    except ValueError as err:
        raise PredictError(str(err)) from None


# ------------------------------------------------------------------------------------------------------- the two modes

def predict_many(cfg: Config, checkpoint: str, path: str, *, prefix: str | None = None, topk: int = 5,
                 names: list[str] | None = None, device: str | None = None) -> tuple[list[dict], dict | None] | None:
    """Rows (one per input, in order) and, for an annotation list, the recipe's metrics; None off the main rank.

    A list is read in the recipe's format (rawframes or videos, `prefix` or the recipe's test prefix), as `tsn test
    --list` reads it. A folder: every video file (recipe switched to videos) and frame folder (switched to frames).
    """
    names = names or []
    if os.path.isfile(path):
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, on_error="raise"))
        scored = score_groups([Group(cfg, path, prefix=prefix)], checkpoint, device)
        if scored is None:
            return None
        s = scored[0]
        rows = [{"path": r.path, "labels": list(r.labels), "topk": top_k(p, topk, names)}
                for r, p in zip(s.records, s.probs)]
        labels = [r.labels for r in s.records]
        return rows, compute_metrics(s.scores, labels, cfg.runtime.metrics, cfg.model.num_classes)
    layout = frame_layout(cfg)
    videos, folders = find_inputs(path, layout)
    if videos and cfg.data.modality == "Flow":
        raise PredictError(f"{path}: {len(videos)} video files (e.g. {videos[0]}), but a flow recipe reads folders "
                           "of flow frames")
    if not videos and not folders:
        raise PredictError(f"{path}: no video files ({' '.join(sorted(VIDEO_EXTENSIONS))}) and no frame folders "
                           f"(e.g. {layout.filename_tmpl.format(*(['x'] if layout.modality == 'Flow' else []), 1)})")
    with tempfile.TemporaryDirectory(prefix="tsn_predict_") as tmp:
        groups = []
        if folders:
            records = [VideoRecord(f, (0,), frame_count(f, layout), 0, f) for f in folders]
            groups.append(Group(frames_config(cfg), os.path.join(tmp, "folders.txt"), records))
        if videos:
            records = [VideoRecord(v, (0,), None, 0, v) for v in videos]
            groups.append(Group(video_config(cfg), os.path.join(tmp, "videos.txt"), records))
        scored = score_groups(groups, checkpoint, device)
    if scored is None:
        return None
    rows = [{"path": r.path, "topk": top_k(p, topk, names)} for s in scored for r, p in zip(s.records, s.probs)]
    return sorted(rows, key=lambda row: row["path"]), None


def video_windows(path: str, window: float, stride: float, cache: str) -> list[Window]:
    """Windows of one video from its index entry: exact frame count; timestamps for VFR files, fps otherwise."""
    from pipelines.pyav_decode import packet_table
    from pipelines.video_index import build_index
    info = build_index([path], cache, workers=1, progress=False)[path]
    if info.status != "ok":
        raise PredictError(f"{path}: {info.status} ({info.reason})")
    if info.vfr:
        table = packet_table(path)
        times = frame_times(info.num_frames, info.fps, pts=table.pts, time_base=table.time_base)
    else:
        times = frame_times(info.num_frames, info.fps)
    return make_windows(times, duration(times, info.fps), window, stride)


def predict_timeline(cfg: Config, checkpoint: str, path: str, *, window: float, stride: float, topk: int = 5,
                     names: list[str] | None = None, device: str | None = None
                     ) -> tuple[list[dict], list[Window], np.ndarray] | None:
    """(rows, windows, (W, K) probabilities) of the recipe's test protocol slid over one video file.

    Always decoded with PyAV: it seeks to each window's frames, while DALI 2.4's video decoder takes the whole file
    and decodes from its start (docs/ARCHITECTURE.md, Decoders), which a long video cannot afford per window.
    """
    if not os.path.isfile(path):
        raise PredictError(f"{path}: --window needs a video file")
    path = os.path.abspath(path)
    cfg = video_config(cfg, decoder="pyav")
    with tempfile.TemporaryDirectory(prefix="tsn_predict_") as tmp:
        index_file = os.path.join(tmp, "windows.txt")
        try:
            windows = video_windows(path, window, stride, index_file + ".index.jsonl")
        except TimelineError as err:
            raise PredictError(f"{path}: {err}") from None
        scored = score_groups([Group(cfg, index_file, window_records(path, windows))], checkpoint, device)
    if scored is None:
        return None
    probs = scored[0].probs
    return timeline_rows(windows, probs, topk, names or []), windows, probs


# ------------------------------------------------------------------------------------------------------------- output

def flat(row: dict) -> dict:
    """A row as CSV cells: lists joined by spaces, top-k as top1_label, top1_name, top1_score, top2_label, ..."""
    out = {}
    for key, value in row.items():
        if key == "topk":
            for i, entry in enumerate(value, start=1):
                out.update({f"top{i}_{k}": v for k, v in entry.items()})
        elif isinstance(value, list):
            out[key] = " ".join(str(v) for v in value)
        else:
            out[key] = value
    return out


def format_rows(rows: list[dict], fmt: str) -> str:
    """".jsonl": one JSON object per line; ".csv": a header, then one line per row."""
    if fmt == ".jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows)
    if fmt != ".csv":
        raise PredictError(f"output format {fmt!r}: expected one of {', '.join(OUT_FORMATS)}")
    cells = [flat(r) for r in rows]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(cells[0]) if cells else ["path"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(cells)
    return buf.getvalue()


def out_format(out: str | None) -> str:
    """The format an --out path asks for (JSON lines on stdout without one)."""
    fmt = Path(out).suffix.lower() if out else ".jsonl"
    if fmt not in OUT_FORMATS:
        raise PredictError(f"--out {out}: the name must end in {' or '.join(OUT_FORMATS)}")
    return fmt
