"""Training curves of one or more runs: loss and lr against (fractional) epoch, validation metrics against epoch.

MMAction2's `plot_curve` (`tools/analysis/analyze_logs.py`, v0.24.1) draws one key per call against iterations;
here the four panels a TSN run is judged by come in one figure, every run overlaid and labelled by its work dir.
The figure is drawn with matplotlib's Agg canvas (no display, no pyplot state).
"""
from __future__ import annotations

from pathlib import Path

from jobs.reporting.figure import finish, new_figure
from jobs.reporting.runs import ReportError, Run

TRAIN_PANELS = (("loss", "loss"), ("lr", "learning rate"))
VAL_PANELS = (("top1_acc", "val top-1 accuracy"), ("mean_class_accuracy", "val mean class accuracy"))


def unique_names(runs: list[Run]) -> list[str]:
    """Work dir names; where two runs share one, the parent dir is prefixed (rgb vs flow of two demos)."""
    names = [r.name for r in runs]
    return [f"{r.path.resolve().parent.parent.name}/{r.name}" if names.count(r.name) > 1 else r.name
            for r in runs]


def plot_curves(runs: list[Run], out: str | Path | None = None, title: str | None = None):
    """A 2 x 2 figure (loss, lr, val top-1, val mean class accuracy); saved to `out` if given; returns it.

    Runs without validation records leave the val panels to the others (a panel nobody fills says so)."""
    if not runs:
        raise ReportError("no runs to plot")
    fig = new_figure((11, 7.5))
    axes = fig.subplots(2, 2).reshape(-1)
    for ax, (key, label) in zip(axes, TRAIN_PANELS + VAL_PANELS):
        ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        drawn = False
        for run, name in zip(runs, unique_names(runs)):
            if key in ("loss", "lr"):
                xs, ys = run.train_epochs(), [getattr(r, key) for r in run.train]
            else:
                points = [(r.epoch, r.metrics[key]) for r in run.val if key in r.metrics]
                xs, ys = [p[0] for p in points], [p[1] for p in points]
            if xs:
                ax.plot(xs, ys, marker="o" if key not in ("loss", "lr") else None, label=name)
                drawn = True
        if drawn:
            ax.legend(fontsize=8)
            if key == "lr" and all(r.lr > 0 for run in runs for r in run.train):
                ax.set_yscale("log")      # step schedules divide lr by 10: equal steps on a log axis
        else:
            ax.text(0.5, 0.5, f"no {key} in these logs", ha="center", va="center", transform=ax.transAxes)
    return finish(fig, out, title)
