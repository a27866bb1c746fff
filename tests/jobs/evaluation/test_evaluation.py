"""jobs.evaluation.metrics: named metrics from a score matrix and per-video label tuples, on matrices small enough
to evaluate by hand (MMAction2 v0.24.1 mmaction/core/evaluation/accuracy.py and BaseDataset.evaluate)."""
from __future__ import annotations

import numpy as np
import pytest

from jobs.evaluation.metrics import compute_metrics, headline, multi_hot
from jobs.recipes.config import METRICS

# 4 videos x 6 classes. Ties are placed where numpy's argsort order (not stable in numpy 2) cannot change
# a top-k hit: between classes that are both wrong, or in a row whose label is the single lowest score.
TOPK_SCORES = np.array([
    [0.1, 0.9, 0.3, 0.2, 0.5, 0.0],    # label 1: the highest           -> top1 hit, top5 hit
    [0.4, 0.1, 0.6, 0.8, 0.1, 0.3],    # label 2: second highest        -> top1 miss, top5 hit
    [0.2, 0.2, 0.2, 0.2, 0.2, 0.1],    # label 5: the single lowest     -> top1 miss, top5 miss
    [0.0, 0.3, 0.2, 0.1, 0.7, 0.7],    # label 2: fourth (4 and 5 tied first) -> top1 miss, top5 hit
])
TOPK_LABELS = [(1,), (2,), (5,), (2,)]


def test_top_k_and_mean_class_accuracy_by_hand():
    out = compute_metrics(TOPK_SCORES, TOPK_LABELS, ("top_k_accuracy", "mean_class_accuracy"), 6)
    assert set(out) == {"top1_acc", "top5_acc", "mean_class_accuracy"}
    assert out["top1_acc"] == pytest.approx(1 / 4)
    assert out["top5_acc"] == pytest.approx(3 / 4)
    # argmax takes the first of tied maxima: predictions 1, 3, 0 (row 2, all tied), 4 (row 3, 4 and 5 tied).
    # Classes in preds or labels: {0, 1, 2, 3, 4, 5}. Recall: class 1 = 1/1; class 2 = 0/2; class 5 = 0/1
    # (never predicted); classes 0, 3, 4 are predicted but never a label: 0 each and still counted
    # (the MMAction2 quirk) -> (1 + 0 + 0 + 0 + 0 + 0) / 6.
    assert out["mean_class_accuracy"] == pytest.approx(1 / 6)


def test_mean_class_accuracy_without_predicted_only_classes():
    # predictions 0, 0, 1, 1 (argmax), labels 0, 1, 1, 1: class 0 recall 1/1, class 1 recall 2/3 -> 5/6;
    # plain accuracy would be 3/4, so the per-class mean is really taken.
    scores = np.array([[2.0, 1.0], [3.0, 0.0], [0.0, 1.0], [0.5, 0.6]])
    out = compute_metrics(scores, [(0,), (1,), (1,), (1,)], ("mean_class_accuracy",), 2)
    assert out == {"mean_class_accuracy": pytest.approx(5 / 6)}


# 3 videos x 4 classes, multi-label; class 3 has no positive video. Ties: column 2 (0.8, 0.8) and row 1 (0.4, 0.4)
# both straddle a positive and a negative; the top score of every row is unique, so top-1 does not depend on them.
MAP_SCORES = np.array([
    [0.9, 0.2, 0.7, 0.0],
    [0.4, 0.4, 0.8, 0.1],
    [0.1, 0.7, 0.8, 0.7],
])
MAP_LABELS = [(0, 2), (1,), (2,)]


def test_multi_hot_from_label_tuples():
    expected = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 1, 0]], np.float32)
    got = multi_hot(MAP_LABELS, 4)
    assert got.dtype == np.float32 and np.array_equal(got, expected)
    assert np.array_equal(multi_hot([(), (3, 3)], 4), [[0, 0, 0, 0], [0, 0, 0, 1]])


def test_mean_average_precision_per_class_by_hand():
    # class 0: scores (0.9, 0.4, 0.1), positive v0 first -> AP 1.
    # class 1: scores (0.2, 0.4, 0.7), positive v1 second -> precision 1/2 at recall 1 -> AP 1/2.
    # class 2: scores (0.7, 0.8, 0.8), positives v0, v2. The tie at 0.8 (v1 negative, v2 positive) is one
    #          threshold: precision 1/2, recall 1/2; then 0.7: precision 2/3, recall 1 -> AP 1/2 x 1/2 + 1/2 x 2/3.
    # class 3: no positive -> NaN, dropped. Mean (1 + 1/2 + 7/12) / 3 = 25/36.
    out = compute_metrics(MAP_SCORES, MAP_LABELS, ("mean_average_precision",), 4)
    assert out["mean_average_precision"] == pytest.approx(25 / 36)


def test_mmit_mean_average_precision_per_video_by_hand():
    # v0: positives 0 and 2 score highest (0.9, 0.7) -> AP 1.
    # v1: positive 1 tied at 0.4 with the negative class 0, behind class 2 (0.8): the first threshold admits
    #     no positive, the second admits 1 positive of 3 -> precision 1/3 at recall 1 -> AP 1/3.
    # v2: positive 2 scores highest -> AP 1. Mean over videos, no NaN filtering: (1 + 1/3 + 1) / 3 = 7/9.
    out = compute_metrics(MAP_SCORES, MAP_LABELS, ("mmit_mean_average_precision",), 4)
    assert out["mmit_mean_average_precision"] == pytest.approx(7 / 9)


def test_every_named_metric_at_once_and_unknown_names():
    out = compute_metrics(MAP_SCORES, MAP_LABELS, METRICS, 4)
    assert set(out) == {"top1_acc", "top5_acc", "mean_class_accuracy", "mean_average_precision",
                        "mmit_mean_average_precision"}
    # the single-label metrics read each tuple's first label: 0, 1, 2; predictions (argmax) 0, 2, 2
    assert out["top1_acc"] == pytest.approx(2 / 3)
    assert out["top5_acc"] == pytest.approx(1.0)        # 4 classes: every label is in the top 5
    assert out["mean_class_accuracy"] == pytest.approx((1 + 0 + 1) / 3)
    assert out["mean_average_precision"] == pytest.approx(25 / 36)
    assert out["mmit_mean_average_precision"] == pytest.approx(7 / 9)
    with pytest.raises(ValueError, match="unknown metric 'top3_acc'"):
        compute_metrics(MAP_SCORES, MAP_LABELS, ("top3_acc",), 4)


def test_headline_prefers_top1():
    assert headline({"top5_acc": 0.9, "top1_acc": 0.4}) == 0.4
    assert headline({"mmit_mean_average_precision": 0.61, "mean_average_precision": 0.5}) == 0.61
    assert headline({}) == 0.0
