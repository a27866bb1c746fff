"""Scores + labels -> the recipe's named metrics (MMAction2 v0.24.1 mmaction/core/evaluation/accuracy.py)."""
from __future__ import annotations

import numpy as np

from jobs.training import metrics as M

# The metric names a recipe or `tsn test --eval` may ask for (MMAction2's `evaluate(metrics=...)` names).
METRICS = ("top_k_accuracy", "mean_class_accuracy", "mean_average_precision", "mmit_mean_average_precision")


def multi_hot(labels: list[tuple[int, ...]], num_classes: int) -> np.ndarray:
    out = np.zeros((len(labels), num_classes), np.float32)
    for row, labs in enumerate(labels):
        out[row, list(labs)] = 1.0
    return out


def compute_metrics(scores: np.ndarray, labels: list[tuple[int, ...]], names: tuple[str, ...],
                    num_classes: int) -> dict[str, float]:
    """Named metrics: top1_acc/top5_acc (top_k_accuracy), mean_class_accuracy, the two mAP variants."""
    out = {}
    single = np.array([labs[0] for labs in labels])
    for name in names:
        if name == "top_k_accuracy":
            top1, top5 = M.top_k_accuracy(scores, single, (1, 5))
            out.update(top1_acc=float(top1), top5_acc=float(top5))
        elif name == "mean_class_accuracy":
            out[name] = float(M.mean_class_accuracy(scores, single))
        elif name == "mean_average_precision":
            out[name] = float(M.mean_average_precision(scores, multi_hot(labels, num_classes)))
        elif name == "mmit_mean_average_precision":
            out[name] = float(M.mmit_mean_average_precision(scores, multi_hot(labels, num_classes)))
        else:
            raise ValueError(f"unknown metric {name!r}")
    return out


def headline(metrics: dict[str, float]) -> float:
    """The number `best.pth` is chosen by: top-1 when there is one, else the first metric."""
    return metrics.get("top1_acc", next(iter(metrics.values()), 0.0))
