"""The timeline figure: which classes get a line, the lines' data, the saved PNG."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jobs.reporting.runs import ReportError
from jobs.reporting.timeline_plot import plot_timeline, top_classes


def test_top_classes_by_wins_then_best_score():
    probs = np.array([[0.1, 0.0, 0.9, 0.0],      # top-1 per row: 2, 2, 3, 0, 3 -> wins 2: 2, 3: 2, 0: 1
                      [0.2, 0.1, 0.6, 0.1],
                      [0.1, 0.1, 0.1, 0.7],
                      [0.5, 0.4, 0.0, 0.1],
                      [0.0, 0.3, 0.2, 0.5]])
    assert top_classes(probs, 5) == [2, 3, 0]    # 2 and 3 tie on wins; 2's best (0.9) beats 3's (0.7)
    assert top_classes(probs, 2) == [2, 3]


def test_plot_draws_the_top_classes_over_window_centres(tmp_path):
    starts, ends = np.array([0.0, 1.0, 2.0]), np.array([2.0, 3.0, 4.0])
    probs = np.array([[0.8, 0.1, 0.1], [0.3, 0.1, 0.6], [0.1, 0.2, 0.7]])
    out = tmp_path / "t.png"
    fig = plot_timeline(starts, ends, probs, ["walk", "run", "jump"], out, title="clip.mp4")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"jump", "walk"}                                    # "run" is never top-1
    assert lines["jump"].get_xdata().tolist() == [1.0, 2.0, 3.0]           # window centres
    assert lines["jump"].get_ydata().tolist() == [0.1, 0.6, 0.7]
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (1100, 450)


def test_plot_rejects_mismatched_rows():
    with pytest.raises(ReportError):
        plot_timeline([0.0], [1.0], np.zeros((2, 3)), [])
