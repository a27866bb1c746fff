"""Sliding windows over a long video: seconds -> frame ranges, per-window scores -> timeline rows (pure functions).

A window is the frame range [first, stop) of one video; `tsn predict --window` runs the recipe's test protocol on
each window as if it were a video of its own (a record with `offset = first`, `total_frames = stop - first`), so
the sampler's segments, clips and crops are exactly those `tsn test` would use on a clip of that length.

Time is presentation time in seconds from the first frame. Frame i is on screen during [t_i, t_{i+1}): for a
constant-rate video t_i = i / fps; for a variable-rate one (the video index's `vfr` flag) t_i comes from the packet
timestamps (pipelines/pyav_decode.py `packet_table`), since fps arithmetic would put every frame after the first
rate change at the wrong time. A window [a, b) holds every frame on screen during it: from the frame shown at a to
the last frame that starts before b, so it is never empty.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from pipelines.annotations import VideoRecord

EPS_S = 1e-6   # seconds: a frame time this close to a window edge counts as on it (k * stride is inexact in floats)


class TimelineError(ValueError):
    """Window settings or a video that cannot give a timeline; the message names the file or the option."""


@dataclass(frozen=True)
class Window:
    start: float    # seconds, presentation time from the first frame
    end: float      # seconds (exclusive); the last window ends at the video's end
    first: int      # frame range [first, stop), presentation order, 0-based
    stop: int


def frame_times(num_frames: int, fps: float, *, pts: np.ndarray | None = None,
                time_base: Fraction | float | None = None) -> np.ndarray:
    """(num_frames,) float64 presentation times in seconds: from `pts` (ticks of `time_base`, sorted, e.g. a
    PacketTable's) when given, else i / fps."""
    if num_frames < 1:
        raise TimelineError(f"a timeline needs at least one frame, got {num_frames}")
    if pts is not None:
        if time_base is None or len(pts) < num_frames:
            raise TimelineError(f"{len(pts)} timestamps for {num_frames} frames (or no time base)")
        ticks = np.asarray(pts[:num_frames], dtype=np.int64)
        return (ticks - ticks[0]).astype(np.float64) * float(time_base)
    if not fps > 0:
        raise TimelineError(f"no frame rate (fps={fps}) and no timestamps")
    return np.arange(num_frames, dtype=np.float64) / fps


def duration(times: np.ndarray, fps: float) -> float:
    """End of the last frame's display: t_last plus its duration (the step before it, or 1 / fps for one frame)."""
    last = float(times[-1] - times[-2]) if len(times) > 1 else 1.0 / fps
    return float(times[-1]) + last


def make_windows(times: np.ndarray, length: float, window: float, stride: float) -> list[Window]:
    """Windows [k * stride, k * stride + window) for k = 0, 1, ... until one reaches `length` (seconds); the last
    is cut at `length`. A video shorter than one window gives one window over all of it."""
    if not window > 0 or not stride > 0:
        raise TimelineError(f"--window and --stride must be > 0 seconds, got window={window} stride={stride}")
    count = 1 if length <= window else math.ceil((length - window) / stride - EPS_S) + 1
    out = []
    for k in range(count):
        a = k * stride
        b = min(a + window, length)
        first = max(0, int(np.searchsorted(times, a + EPS_S, side="right")) - 1)    # the frame on screen at a
        stop = max(first + 1, int(np.searchsorted(times, b - EPS_S, side="left")))   # frames starting before b
        out.append(Window(a, b, first, stop))
    return out


def window_records(path: str, windows: list[Window]) -> list[VideoRecord]:
    """One record per window: the sampler sees a video of `stop - first` frames, the reader adds `first`
    (pipelines/readers.py video_indices). Label 0 is a placeholder (the loader needs one)."""
    return [VideoRecord(path, (0,), w.stop - w.first, w.first, f"{path}@{w.start:.3f}-{w.end:.3f}s")
            for w in windows]


def top_k(probs: np.ndarray, k: int, names: list[str]) -> list[dict]:
    """[{label, name, score}] for the k highest of one (K,) score row, highest first (ties: lower label first)."""
    order = np.argsort(-np.asarray(probs), kind="stable")[:k]
    return [{"label": int(c), "name": names[c] if c < len(names) else str(c), "score": float(probs[c])}
            for c in order]


def timeline_rows(windows: list[Window], probs: np.ndarray, k: int, names: list[str]) -> list[dict]:
    """One JSON-ready row per window: start/end (s), start_frame/end_frame ([first, stop)), top-k."""
    if len(windows) != len(probs):
        raise TimelineError(f"{len(probs)} score rows for {len(windows)} windows")
    return [{"start": round(w.start, 6), "end": round(w.end, 6), "start_frame": w.first, "end_frame": w.stop,
             "topk": top_k(p, k, names)} for w, p in zip(windows, probs)]
