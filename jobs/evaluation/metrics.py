"""Evaluation metrics and two-stream fusion on per-video score matrices (numpy only; MMAction2
v0.24.1 mmaction/core/evaluation/accuracy.py, tools/analysis/report_accuracy.py).

Scores are (V, K): one row per video (averaged logits or probabilities), K classes. Single-label targets are
(V,) ints; multi-label targets are (V, K) many-hot arrays.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _scores(scores) -> np.ndarray:
    """Accepts a (V, K) array or MMAction2's list of V 1-D arrays."""
    out = np.asarray(scores if isinstance(scores, np.ndarray) else np.stack(scores), dtype=np.float64)
    if out.ndim != 2:
        raise ValueError(f"scores must be (videos, classes), got shape {out.shape}")
    return out


def _labels(labels, num: int) -> np.ndarray:
    out = np.asarray(labels).reshape(-1).astype(np.int64)
    if out.shape[0] != num:
        raise ValueError(f"{out.shape[0]} labels for {num} score rows")
    return out


def top_k_accuracy(scores, labels, topk: Sequence[int] = (1, 5)) -> list[float]:
    """Fraction of videos whose label is among the k highest scores, for each k (in the order of topk).

    Ties follow numpy's default argsort, as MMAction2 does.
    """
    s = _scores(scores)
    y = _labels(labels, s.shape[0])
    order = np.argsort(s, axis=1)  # ascending; the top k are the last k columns
    out = []
    for k in topk:
        hit = (order[:, -k:] == y[:, None]).any(axis=1)
        out.append(float(hit.mean()))
    return out


def mean_class_accuracy(scores, labels) -> float:
    """Mean per-class recall of the argmax prediction over every class that is predicted or present.

    A class that is only ever predicted (no ground-truth video) counts as accuracy 0 and still enters the mean
    (MMAction2 quirk, v0.24.1 accuracy.py `mean_class_accuracy`): preds [2,2,2,4], labels [2,2,2,3] -> (1 + 0 + 0) / 3.
    """
    s = _scores(scores)
    y = _labels(labels, s.shape[0])
    pred = s.argmax(axis=1)
    accs = []
    for c in np.unique(np.concatenate([pred, y])):
        truth = y == c
        accs.append(float((pred[truth] == c).sum() / truth.sum()) if truth.any() else 0.0)
    return float(np.mean(accs))


def binary_precision_recall_curve(y_score, y_true) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) for a binary problem, recall decreasing, ending at (precision 1, recall 0).

    One point per distinct score, walking from the highest score down; points after recall first reaches 1 are
    dropped. With no positive at all, recall is NaN.
    """
    score = np.asarray(y_score, dtype=np.float64).reshape(-1)
    truth = (np.asarray(y_true).reshape(-1) == 1).astype(np.float64)
    desc = np.argsort(score, kind="mergesort")[::-1]
    score, truth = score[desc], truth[desc]
    # last index of every run of equal scores: a threshold admits a whole run at once
    ends = np.r_[np.flatnonzero(np.diff(score)), score.size - 1]
    tps = np.cumsum(truth)[ends]
    fps = 1 + ends - tps
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(tps / (tps + fps), nan=0.0)
        recall = tps / tps[-1]
    full = int(np.searchsorted(tps, tps[-1]))  # first point where every positive is retrieved
    keep = slice(full, None, -1)
    return np.r_[precision[keep], 1.0], np.r_[recall[keep], 0.0], score[ends][keep]


def average_precision(scores_1d, truth_1d) -> float:
    """Step-wise area under the PR curve: -sum_i (r[i+1] - r[i]) * p[i]; NaN when there is no positive."""
    precision, recall, _ = binary_precision_recall_curve(scores_1d, truth_1d)
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def mean_average_precision(scores, labels_multi_hot) -> float:
    """Per-class AP over the videos, NaN (class without positives) dropped, then the mean (v0.24.1 meaning)."""
    s = _scores(scores)
    y = np.asarray(labels_multi_hot)
    aps = np.array([average_precision(s[:, c], y[:, c]) for c in range(s.shape[1])])
    aps = aps[~np.isnan(aps)]
    return float(aps.mean()) if aps.size else float("nan")


def mmit_mean_average_precision(scores, labels_multi_hot) -> float:
    """Per-video AP over its K class scores, mean over videos without NaN filtering (v0.7.0's mAP)."""
    s = _scores(scores)
    y = np.asarray(labels_multi_hot)
    return float(np.mean([average_precision(s[v], y[v]) for v in range(s.shape[0])]))


def softmax(scores) -> np.ndarray:
    """Softmax over the last axis (classes); max-subtracted so large logits do not overflow."""
    x = np.asarray(scores, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def weighted_scores(score_list: Sequence, coefficients: Sequence[float]) -> np.ndarray:
    """sum_i coefficients[i] * score_list[i], element-wise (per video, per class)."""
    if len(score_list) != len(coefficients) or not score_list:
        raise ValueError(f"{len(score_list)} score sets but {len(coefficients)} coefficients")
    mats = [_scores(s) for s in score_list]
    if any(m.shape != mats[0].shape for m in mats):
        raise ValueError(f"score sets differ in shape: {[m.shape for m in mats]}")
    return sum(c * m for c, m in zip(coefficients, mats))


def fuse_scores(score_list: Sequence, coefficients: Sequence[float] | None = None, *,
                apply_softmax: bool = False) -> np.ndarray:
    """Two-stream fusion (report_accuracy.py): optional per-video softmax, then weights (default all 1.0).

    With TSN's raw averaged logits and the defaults this is logit_rgb + logit_flow, the published 1:1 fusion.
    """
    mats = [_scores(s) for s in score_list]
    if apply_softmax:
        mats = [softmax(m) for m in mats]
    return weighted_scores(mats, [1.0] * len(mats) if coefficients is None else coefficients)



# ------------------------------------------------ named metrics (a recipe's runtime.metrics, `tsn test --eval`)

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
            top1, top5 = top_k_accuracy(scores, single, (1, 5))
            out.update(top1_acc=float(top1), top5_acc=float(top5))
        elif name == "mean_class_accuracy":
            out[name] = float(mean_class_accuracy(scores, single))
        elif name == "mean_average_precision":
            out[name] = float(mean_average_precision(scores, multi_hot(labels, num_classes)))
        elif name == "mmit_mean_average_precision":
            out[name] = float(mmit_mean_average_precision(scores, multi_hot(labels, num_classes)))
        else:
            raise ValueError(f"unknown metric {name!r}")
    return out


def headline(metrics: dict[str, float]) -> float:
    """The number `best.pth` is chosen by: top-1 when there is one, else the first metric."""
    return metrics.get("top1_acc", next(iter(metrics.values()), 0.0))
