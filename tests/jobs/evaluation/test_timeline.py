"""Seconds -> frame ranges of sliding windows, per-window rows, top-k: hand-computed cases."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

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


def test_frame_times_from_fps_and_from_timestamps():
    assert frame_times(4, 25.0).tolist() == [0.0, 0.04, 0.08, 0.12]
    # pts in ticks of 1/16000 s (an MP4 time base), first frame not at 0: times count from the first frame.
    pts = np.array([3200, 4800, 6400, 16000, 16400])
    assert frame_times(4, 10.0, pts=pts, time_base=Fraction(1, 16000)).tolist() == [0.0, 0.1, 0.2, 0.8]
    with pytest.raises(TimelineError):
        frame_times(6, 10.0, pts=pts, time_base=Fraction(1, 16000))     # fewer timestamps than frames
    with pytest.raises(TimelineError):
        frame_times(3, 0.0)


def test_duration_adds_the_last_frame():
    assert duration(frame_times(200, 25.0), 25.0) == pytest.approx(8.0)
    assert duration(np.array([0.0, 0.1, 0.5]), 5.0) == pytest.approx(0.9)    # last step 0.4 s
    assert duration(np.array([0.0]), 4.0) == pytest.approx(0.25)


def test_windows_cover_the_video_and_cut_the_last():
    times = frame_times(200, 25.0)                                             # 8 s
    got = make_windows(times, 8.0, window=3.0, stride=3.0)
    assert got == [Window(0.0, 3.0, 0, 75), Window(3.0, 6.0, 75, 150), Window(6.0, 8.0, 150, 200)]
    got = make_windows(times, 8.0, window=4.0, stride=2.0)                    # starts 0, 2, 4: the third ends at 8
    assert [(w.start, w.end, w.first, w.stop) for w in got] == [(0, 4, 0, 100), (2, 6, 50, 150), (4, 8, 100, 200)]
    assert make_windows(times, 8.0, window=10.0, stride=1.0) == [Window(0.0, 8.0, 0, 200)]


def test_windows_on_frame_edges_are_robust_to_float_steps():
    # 10 fps, 0.1 s windows: one frame each although 3 * 0.1 = 0.30000000000000004 and 0.7 / 0.1 = 6.999...
    times = frame_times(10, 10.0)
    got = make_windows(times, 1.0, window=0.1, stride=0.1)
    assert [(w.first, w.stop) for w in got] == [(k, k + 1) for k in range(10)]


def test_window_in_a_timestamp_gap_holds_the_frame_on_screen():
    times = np.array([0.0, 0.5, 3.0, 3.5])                                     # nothing starts in [1, 3)
    got = make_windows(times, duration(times, 2.0), window=1.0, stride=1.0)  # duration 4.0
    assert [(w.first, w.stop) for w in got] == [(0, 2), (1, 2), (1, 2), (2, 4)]


def test_bad_window_settings():
    times = frame_times(10, 10.0)
    for window, stride in ((0.0, 1.0), (1.0, 0.0), (-1.0, 1.0)):
        with pytest.raises(TimelineError, match="--window"):
            make_windows(times, 1.0, window, stride)


def test_window_records_carry_offset_and_length():
    records = window_records("/v.mp4", [Window(0.0, 2.0, 0, 50), Window(1.0, 3.0, 25, 75)])
    assert [(r.path, r.offset, r.total_frames, r.labels) for r in records] == [("/v.mp4", 0, 50, (0,)),
                                                                              ("/v.mp4", 25, 50, (0,))]
    assert records[1].source == "/v.mp4@1.000-3.000s"


def test_top_k_and_rows():
    probs = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    assert top_k(probs[0], 2, ["a", "b", "c"]) == [{"label": 1, "name": "b", "score": 0.6},
                                                   {"label": 2, "name": "c", "score": 0.3}]
    assert [t["name"] for t in top_k(probs[1], 3, [])] == ["0", "2", "1"]        # no names: the label number
    rows = timeline_rows([Window(0.0, 1.0, 0, 25), Window(1.0, 2.0, 25, 50)], probs, 1, ["a", "b", "c"])
    assert rows == [{"start": 0.0, "end": 1.0, "start_frame": 0, "end_frame": 25,
                     "topk": [{"label": 1, "name": "b", "score": 0.6}]},
                    {"start": 1.0, "end": 2.0, "start_frame": 25, "end_frame": 50,
                     "topk": [{"label": 0, "name": "a", "score": 0.5}]}]
    with pytest.raises(TimelineError):
        timeline_rows([Window(0.0, 1.0, 0, 25)], probs, 1, [])
