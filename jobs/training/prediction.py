"""Prediction on one video file or frame folder: the recipe's test protocol through the same loader as `tsn test`."""
from __future__ import annotations

import dataclasses
import os
import tempfile

import click
import numpy as np

from jobs.training.checkpoint import Checkpoint, as_checkpoint
from jobs.training.config import Config
from jobs.training.metrics import softmax
from jobs.training.tester import test_checkpoint
from pipelines.annotations import FrameLayout, VideoRecord, format_rawframe_line, format_video_line, load_class_names
from pipelines.video_index import index_path_for


def count_frames(folder: str, layout: FrameLayout) -> int:
    """Consecutive frames present from start_index on (flow: x and y both present)."""
    n = 0
    record = VideoRecord(folder, (0,), None)
    while all(os.path.isfile(p) for p in layout.frame_paths(record, [layout.start_index + n])):
        n += 1
    if n == 0:
        first = layout.frame_paths(record, [layout.start_index])[0]
        raise click.ClickException(f"{folder}: no frames (expected e.g. {first})")
    return n


def single_input_config(cfg: Config, path: str) -> tuple[Config, str]:
    """The recipe adapted to one input, plus a one-line annotation list for it (label 0 is a placeholder)."""
    if any(ch.isspace() for ch in os.path.abspath(path)):
        raise click.ClickException(f"{path}: a path with whitespace cannot go into an annotation list; rename it")
    if os.path.isdir(path):
        d = dataclasses.replace(cfg.data, source="frames")
        frames = count_frames(path, FrameLayout(d.filename_tmpl, d.first_index, d.modality))
        line = format_rawframe_line(os.path.abspath(path), frames, (0,))
    elif os.path.isfile(path):
        if cfg.data.modality == "Flow":
            raise click.ClickException("a flow recipe needs a folder of flow frames, not a video file")
        d = dataclasses.replace(cfg.data, source="video", start_index=None)
        line = format_video_line(os.path.abspath(path), (0,))
    else:
        raise click.ClickException(f"{path}: no such file or folder")
    fd, list_file = tempfile.mkstemp(suffix=".txt", prefix="tsn_predict_")
    with os.fdopen(fd, "w") as f:
        f.write(line + "\n")
    d = dataclasses.replace(d, multi_class=False, on_error="raise", test_videos_per_gpu=1)
    runtime = dataclasses.replace(cfg.runtime, metrics=("top_k_accuracy",))
    return dataclasses.replace(cfg, data=d, runtime=runtime), list_file


def predict(cfg: Config, checkpoint: str | Checkpoint, path: str, *, topk: int = 5, label_map: str | None = None,
            device: str | None = None) -> list[dict]:
    """Top-k {label, name, score}; names from `label_map` (classes.txt), else the checkpoint's, else the label."""
    checkpoint = as_checkpoint(checkpoint)
    names = load_class_names(label_map, cfg.model.num_classes) if label_map else checkpoint.classes or ()
    cfg, list_file = single_input_config(cfg, path)
    dump = list_file + ".npy"
    try:
        test_checkpoint(cfg, checkpoint, device=device, dump=dump, list_file=list_file, prefix="", say=lambda _: None)
        logits = np.load(dump)[0]
    finally:
        for f in (list_file, dump, index_path_for(list_file)):
            if os.path.exists(f):
                os.unlink(f)
    probs = softmax(logits)
    order = np.argsort(-probs)[:topk]
    return [{"label": int(k), "name": names[k] if k < len(names) else str(k), "score": float(probs[k])}
            for k in order]


