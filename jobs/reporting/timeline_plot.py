"""A long video's predicted timeline as a figure: the probability of its top classes against time.

MMAction2's `demo/long_video_demo.py` (v0.24.1) writes the top label onto the frames; here `tsn predict --window
--plot` draws each window's score at the window's centre, one line per class, for the classes that are top-1 in the
most windows, with a strip of the top-1 class per window underneath. Drawn on matplotlib's Agg canvas.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from jobs.reporting.figure import finish, new_figure
from jobs.reporting.runs import ReportError


def top_classes(probs: np.ndarray, limit: int) -> list[int]:
    """Classes ordered by how many windows they win (top-1), then by their best score; at most `limit`."""
    probs = np.asarray(probs)
    wins = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
    best = probs.max(axis=0)
    order = sorted((c for c in range(probs.shape[1]) if wins[c] > 0), key=lambda c: (-wins[c], -best[c], c))
    return order[:limit]


def plot_timeline(starts, ends, probs: np.ndarray, names: list[str], out: str | Path | None = None, *,
                  limit: int = 5, title: str | None = None):
    """starts, ends: (W,) seconds per window; probs: (W, K). Saved to `out` (PNG by suffix) if given; returns it."""
    starts, ends, probs = np.asarray(starts, float), np.asarray(ends, float), np.asarray(probs)
    if probs.ndim != 2 or len(probs) != len(starts) or len(starts) != len(ends) or not len(starts):
        raise ReportError(f"a timeline needs one score row per window: {len(starts)} windows, shape {probs.shape}")
    centres = (starts + ends) / 2
    classes = top_classes(probs, limit)
    label = [names[c] if c < len(names) else str(c) for c in range(probs.shape[1])]
    fig = new_figure((11, 4.5))
    ax, strip = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [5, 1]})
    colours = {}
    for c in classes:
        (line,) = ax.plot(centres, probs[:, c], marker="o", markersize=3, label=label[c])
        colours[c] = line.get_color()
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    # Top-1 per window as coloured spans; overlapping windows are drawn one after the other, the later on top.
    top1 = probs.argmax(axis=1)
    for a, b, c in zip(starts, ends, top1):
        strip.axvspan(a, b, color=colours.get(int(c), "lightgrey"))
    strip.set_yticks([])
    strip.set_ylabel("top-1", rotation=0, ha="right", va="center")
    strip.set_xlabel("time (s)")
    strip.set_xlim(float(starts.min()), float(ends.max()))
    return finish(fig, out, title)
