"""Metric vectors from MMAction2's unit tests (v0.24.1 tests/test_metrics/test_accuracy.py) and two-stream fusion
semantics (v0.24.1 tools/analysis/report_accuracy.py)."""
from __future__ import annotations

import numpy as np
import pytest

from jobs.evaluation.metrics import (
    average_precision,
    binary_precision_recall_curve,
    fuse_scores,
    mean_average_precision,
    mean_class_accuracy,
    mmit_mean_average_precision,
    softmax,
    top_k_accuracy,
    weighted_scores,
)

SCORES = np.array([
    [-0.2203, -0.7538, 1.8789, 0.4451, -0.2526],
    [-0.0413, 0.6366, 1.1155, 0.3484, 0.0395],
    [0.0365, 0.5158, 1.1067, -0.9276, -0.2124],
    [0.6232, 0.9912, -0.8562, 0.0148, 1.6413],
])
AP_SCORES = np.array([[0.1, 0.2, 0.3, 0.4], [0.2, 0.3, 0.4, 0.1], [0.3, 0.4, 0.1, 0.2], [0.4, 0.1, 0.2, 0.3]])
AP_LABELS_A = np.array([[1, 1, 0, 0], [1, 0, 1, 1], [1, 0, 1, 0], [1, 1, 0, 1]])
AP_LABELS_B = np.array([[0, 1, 0, 1], [0, 1, 1, 0], [1, 0, 1, 0], [0, 0, 1, 1]])


@pytest.mark.parametrize("labels, topk, expected", [
    ([3, 1, 1, 1], (1,), [0.0]), ([2, 0, 4, 3], (1,), [0.25]), ([2, 2, 3, 1], (1,), [0.5]),
    ([2, 2, 2, 3], (1,), [0.75]), ([2, 2, 2, 4], (1,), [1.0]), ([3, 1, 1, 1], (1, 2), [0.0, 1.0]),
    ([3, 1, 2, 3], (1, 2), [0.25, 0.75]), ([1, 0, 3, 2], (1, 3, 5), [0.0, 0.0, 1.0]),
    ([1, 3, 4, 0], (1, 3, 5), [0.0, 0.5, 1.0]), ([2, 3, 0, 2], (1, 3, 5), [0.25, 0.75, 1.0]),
])
def test_top_k_accuracy(labels, topk, expected):
    assert top_k_accuracy(SCORES, np.array(labels), topk) == pytest.approx(expected)


def test_top_k_accepts_list_of_rows_and_default_topk():
    assert top_k_accuracy(list(SCORES), [2, 2, 2, 4]) == [1.0, 1.0]


@pytest.mark.parametrize("labels, expected", [
    ([1, 4, 0, 2], 0.0), ([2, 0, 4, 3], 0.25), ([2, 2, 2, 3], 1 / 3), ([4, 2, 2, 4], 0.75), ([2, 2, 2, 4], 1.0),
])
def test_mean_class_accuracy(labels, expected):
    assert mean_class_accuracy(SCORES, np.array(labels)) == pytest.approx(expected)


def test_precision_recall_curve_and_per_sample_ap():
    precision, recall, thresholds = binary_precision_recall_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    np.testing.assert_allclose(precision, [2 / 3, 0.5, 1, 1])
    np.testing.assert_allclose(recall, [1, 0.5, 0.5, 0])
    np.testing.assert_allclose(thresholds, [0.35, 0.4, 0.8])
    assert average_precision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(1 / 3 + 1 / 2)


def test_ties_share_one_threshold():
    precision, recall, _ = binary_precision_recall_curve([0.5, 0.5, 0.5, 0.1], [1, 0, 1, 0])
    np.testing.assert_allclose(precision, [2 / 3, 1])
    np.testing.assert_allclose(recall, [1, 0])


def test_ap_without_positive_is_nan():
    assert np.isnan(average_precision([0.1, 0.2], [0, 0]))


@pytest.mark.parametrize("labels, per_class, per_sample", [
    (AP_LABELS_A, 2 / 3, np.mean([5 / 12, 29 / 36, 0.5, 11 / 12])),
    (AP_LABELS_B, np.mean([0.5, 7 / 12, 29 / 36, 1.0]), np.mean([5 / 6, 1.0, 0.5, 7 / 12])),
])
def test_mean_average_precision_both_meanings(labels, per_class, per_sample):
    assert mean_average_precision(AP_SCORES, labels) == pytest.approx(per_class)
    assert mmit_mean_average_precision(AP_SCORES, labels) == pytest.approx(per_sample)


def test_spec_rounded_values():
    assert mean_average_precision(AP_SCORES, AP_LABELS_B) == pytest.approx(0.722222, abs=1e-6)
    assert mmit_mean_average_precision(AP_SCORES, AP_LABELS_A) == pytest.approx(0.659722, abs=1e-6)
    assert mmit_mean_average_precision(AP_SCORES, AP_LABELS_B) == pytest.approx(0.729167, abs=1e-6)


def test_per_class_map_drops_classes_without_positive():
    labels = AP_LABELS_A.copy()
    labels[:, 0] = 0  # class 0 has no positive -> NaN AP, dropped
    # by hand, videos ranked by each column's score: class 1 positives v0, v3 at ranks 3, 4 -> (1/3 + 2/4) / 2 = 5/12;
    # class 2 positives v1, v2 at ranks 1, 4 -> (1 + 2/4) / 2 = 3/4; class 3 positives v1, v3 at ranks 4, 2 ->
    # (1/2 + 2/4) / 2 = 1/2. Mean over the 3 classes with a positive: (5/12 + 3/4 + 1/2) / 3 = 5/9.
    assert mean_average_precision(AP_SCORES, labels) == pytest.approx(5 / 9)
    assert np.isnan(mean_average_precision(AP_SCORES, np.zeros((4, 4), int)))


def test_weighted_scores():
    a, b = [[1.0, -2.0], [0.5, 0.0]], [[3.0, 5.0], [-1.0, 4.0]]
    np.testing.assert_allclose(weighted_scores([a, b], [2, 1]), [[5.0, 1.0], [0.0, 4.0]])   # 2a + b by hand
    np.testing.assert_allclose(weighted_scores([a], [1]), a)
    with pytest.raises(ValueError):
        weighted_scores([a, b], [1])


def test_softmax_rows_sum_to_one_and_handle_large_logits():
    p = softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    np.testing.assert_allclose(p, [[0.5, 0.5], [0.25, 0.75]])


def test_fusion_defaults_to_sum_of_logits():
    rgb, flow = [[2.0, 1.0, 0.0]], [[-1.0, 3.0, 0.5]]
    np.testing.assert_allclose(fuse_scores([rgb, flow]), [[1.0, 4.0, 0.5]])
    np.testing.assert_allclose(fuse_scores([rgb, flow], [1.0, 1.5]), [[0.5, 5.5, 0.75]])


def test_fusion_softmax_option_is_per_video_before_weighting():
    rgb, flow = SCORES, np.roll(SCORES, 1, axis=1)
    fused = fuse_scores([rgb, flow], [1.0, 2.0], apply_softmax=True)
    row = np.exp(rgb[0]) / np.exp(rgb[0]).sum() + 2 * np.exp(flow[0]) / np.exp(flow[0]).sum()
    np.testing.assert_allclose(fused[0], row)
