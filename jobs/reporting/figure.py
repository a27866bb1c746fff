"""The one way the reports make and save a figure: matplotlib's Agg canvas (no display, no pyplot state)."""
from __future__ import annotations

from pathlib import Path

from jobs.reporting.runs import ReportError


def new_figure(size: tuple[float, float]):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ReportError("plotting needs matplotlib: pip install matplotlib") from None
    return Figure(figsize=size)


def finish(fig, out: str | Path | None, title: str | None):
    """Title, tight layout, and a PNG at `out` (parent folders made) when given; returns the figure."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
    return fig
