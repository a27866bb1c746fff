"""Late fusion of per-video score files (MMAction2 `tools/analysis/report_accuracy.py`, v0.24.1): per-stream
rows and the weighted sum, as one table."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from jobs.evaluation.metrics import fuse_scores, mean_class_accuracy, top_k_accuracy
from jobs.evaluation.scores import load_scores
from pipelines.annotations import load_labels
from pipelines.errors import UserError


class FusionError(UserError, ValueError):
    """Score files that cannot be fused with the labels given; the message names the file."""


def read_labels(list_file: str) -> np.ndarray:
    """(N,) int64 labels of a single-label annotation list (rawframes, with offset, or videos), in list order."""
    return np.array(load_labels(list_file), dtype=np.int64)


def fuse(score_files: list[str], coefficients: list[float], labels: np.ndarray, apply_softmax: bool) -> list[dict]:
    """Rows of {name, top1_acc, top5_acc, mean_class_accuracy}: each stream, then the fusion."""
    streams = [load_scores(f) for f in score_files]
    for f, s in zip(score_files, streams):
        if len(s) != len(labels):
            raise FusionError(f"{f}: {len(s)} score rows but {len(labels)} labels in the list")
    # Per-stream rows are unaffected by softmax (it keeps each row's ranking); it matters only for the sum.
    rows = [(Path(f).name, s) for f, s in zip(score_files, streams)]
    ratio = ":".join(f"{c:g}" for c in coefficients)
    fused = fuse_scores(streams, coefficients, apply_softmax=apply_softmax)
    rows.append((f"fused [{ratio}]" + (" softmax" if apply_softmax else ""), fused))
    out = []
    for name, s in rows:
        top1, top5 = top_k_accuracy(s, labels, (1, 5))
        out.append({"name": name, "top1_acc": top1, "top5_acc": top5,
                    "mean_class_accuracy": mean_class_accuracy(s, labels)})
    return out


def format_table(rows: list[dict]) -> str:
    width = max(len(r["name"]) for r in rows)
    lines = [f"{'scores':<{width}}  top1 acc  top5 acc  mean class acc"]
    lines += [f"{r['name']:<{width}}  {100 * r['top1_acc']:8.2f}  {100 * r['top5_acc']:8.2f}  "
              f"{100 * r['mean_class_accuracy']:14.2f}" for r in rows]
    return "\n".join(lines)


