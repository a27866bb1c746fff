"""`tsn predict`: one video file or frame folder, the windows of a long video, every video or frame folder under a
folder, or an annotation list. All of them are scored by the one scoring path of `tsn test`
(jobs/evaluation/scoring.py `score_inputs`): the recipe's test sampler, crops and clip averaging per input, in
batches through the test loader, memory bounded by the batch.

Rows are plain dicts (one per window or input) written as JSON lines or CSV. Scores in rows are probabilities
(softmax of the averaged logits; `average_clips = "prob"` scores already are); metrics, for a list with labels, are
computed on the averaged scores like `tsn test` does (jobs/evaluation/tester.py).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from jobs.evaluation.metrics import compute_metrics
from jobs.evaluation.scoring import Inputs, Scored, score_inputs
from jobs.evaluation.timeline import (
    TimelineError,
    Window,
    duration,
    frame_times,
    make_windows,
    timeline_rows,
    top_k,
    window_records,
)
from jobs.media.discovery import VIDEO_EXTENSIONS, find_media, is_frame_folder
from jobs.media.naming import count_frames
from jobs.recipes.config import Config
from jobs.recipes.loaders import DataError
from jobs.runtime.checkpoint import Checkpoint, as_checkpoint
from jobs.runtime.devices import pick_device
from jobs.runtime.distributed import Dist, init_distributed, shutdown
from jobs.runtime.weights import load_for_eval
from pipelines.annotations import AnnotationError, FrameLayout, VideoRecord
from pipelines.errors import UserError

LIST_SUFFIXES = (".txt",)        # an input file with this suffix is an annotation list; any other file is a video
OUT_FORMATS = (".jsonl", ".csv")


class PredictError(UserError, RuntimeError):
    """An input `tsn predict` cannot use; the message names the file (and line)."""


# What the command turns into a one-line error: each message names the file (and list line).
USER_ERRORS = (PredictError, AnnotationError, DataError)


def score_groups(groups: list[Inputs], checkpoint: str | Checkpoint, device: str | None = None) -> list[Scored] | None:
    """Each group through its own test loader and one model, under torchrun too; None on ranks other than the main
    one. Every input must be scored (the raise policy): a missing row is an error."""
    model = load_for_eval(groups[0].cfg.model, checkpoint)
    dist = init_distributed(device)
    out = score_inputs(model, groups, dist)
    shutdown(dist)
    for g, s in zip(groups, out):
        if not s.complete:
            raise PredictError(f"{g.list_file}: only {len(s.index)} of {len(s.records)} inputs were predicted")
    return out if dist.is_main else None


# ---------------------------------------------------------------------------------------------- configs per input kind

def video_config(cfg: Config, *, decoder: str | None = None) -> Config:
    """The recipe reading video files (a frame-folder recipe's frames count from 0 in a video, MMAction2's default)."""
    d = cfg.data
    if d.is_flow:
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
    """How the recipe names the files of a frame folder given to `tsn predict`."""
    return frames_config(cfg).data.frame_layout


def is_many(path: str, cfg: Config) -> bool:
    """Folder/list mode: an annotation list (.txt), or a folder that is not itself a frame folder."""
    if os.path.isfile(path):
        return path.lower().endswith(LIST_SUFFIXES)
    return os.path.isdir(path) and not is_frame_folder(path, frame_layout(cfg))


def frame_count(folder: str, layout: FrameLayout) -> int:
    """The frames of one folder by the one counting rule (jobs/media/naming.py count_frames), for both a folder
    given alone and the folders found under a parent."""
    try:
        n = count_frames(folder, layout.filename_tmpl)
    except ValueError as err:
        raise PredictError(str(err)) from None
    if n == 0:
        first = layout.frame_paths(VideoRecord(folder, (0,), None), [layout.start_index])[0]
        raise PredictError(f"{folder}: no frames (expected e.g. {first})")
    return n


def folder_record(folder: str, layout: FrameLayout) -> VideoRecord:
    """A frame folder as a record of the whole folder (label 0 is a placeholder: the loader needs one)."""
    return VideoRecord(folder, (0,), frame_count(folder, layout), 0, folder)


# ------------------------------------------------------------------------------------------------------ the three modes

def predict_one(cfg: Config, checkpoint: str | Checkpoint, path: str, *, topk: int = 5, names: list[str] | None = None,
                device: str | None = None) -> list[dict]:
    """Top-k {label, name, score} of one video file or frame folder, in this process (no process group); names
    from `names` (line index = label), else the label's number."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        layout = frame_layout(cfg)
        cfg, record = frames_config(cfg), folder_record(path, layout)
    elif os.path.isfile(path):
        cfg, record = video_config(cfg), VideoRecord(path, (0,), None, 0, path)
    else:
        raise PredictError(f"{path}: no such file or folder")
    # One video: a batch of one, single-label top-k (whatever the recipe's multi-label setting).
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, multi_class=False, test_videos_per_gpu=1))
    checkpoint = as_checkpoint(checkpoint)
    model = load_for_eval(cfg.model, checkpoint)
    [scored] = score_inputs(model, [Inputs(cfg, records=[record])], Dist(device=pick_device(device)))
    return top_k(scored.probs[0], topk, names or [])


def predict_many(cfg: Config, checkpoint: str, path: str, *, prefix: str | None = None, topk: int = 5,
                 names: list[str] | None = None, device: str | None = None) -> tuple[list[dict], dict | None] | None:
    """Rows (one per input, in order) and, for an annotation list, the recipe's metrics; None off the main rank.

    A list is read in the recipe's format (rawframes or videos, `prefix` or the recipe's test prefix), as `tsn test
    --list` reads it. A folder: every video file (recipe switched to videos) and frame folder (switched to frames).
    """
    names = names or []
    if os.path.isfile(path):
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, on_error="raise"))
        scored = score_groups([Inputs(cfg, path, prefix=prefix)], checkpoint, device)
        if scored is None:
            return None
        s = scored[0]
        rows = [{"path": r.path, "labels": list(r.labels), "topk": top_k(p, topk, names)}
                for r, p in zip(s.records, s.probs)]
        labels = [r.labels for r in s.records]
        return rows, compute_metrics(s.scores, labels, cfg.runtime.metrics, cfg.model.num_classes)
    layout = frame_layout(cfg)
    videos, folders = find_media(path, lambda folder: is_frame_folder(folder, layout))
    if videos and cfg.data.is_flow:
        raise PredictError(f"{path}: {len(videos)} video files (e.g. {videos[0]}), but a flow recipe reads folders "
                           "of flow frames")
    if not videos and not folders:
        raise PredictError(f"{path}: no video files ({' '.join(sorted(VIDEO_EXTENSIONS))}) and no frame folders "
                           f"(e.g. {os.path.basename(layout.frame_paths(VideoRecord('', (0,), None), [1])[0])})")
    groups = []
    if folders:
        groups.append(Inputs(frames_config(cfg), records=[folder_record(f, layout) for f in folders]))
    if videos:
        groups.append(Inputs(video_config(cfg), records=[VideoRecord(v, (0,), None, 0, v) for v in videos]))
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
        scored = score_groups([Inputs(cfg, index_file, window_records(path, windows))], checkpoint, device)
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
