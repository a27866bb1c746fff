"""`tsn plot WORK_DIR_OR_LOG... --out curves.png` and `tsn plot --summary ...`: curves and timing from log.jsonl.

Like MMAction2's `tools/analysis/analyze_logs.py` (v0.24.1): `plot_curve` (here loss, lr, val top-1 and mean class
accuracy in one figure, runs overlaid) and `cal_train_time` (here --summary: time per iteration, data_time share,
best epoch and metric). See jobs/reporting/summary.py for how the numbers are computed.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not jobs/, goes first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import click

from jobs.console.errors import run
from jobs.reporting import ReportError, format_summary, plot_curves, read_run, summarize


@click.command("plot")
@click.argument("logs", nargs=-1, required=True, metavar="WORK_DIR_OR_LOG...")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the curves here (PNG, or any format matplotlib knows by the suffix).")
@click.option("--summary", is_flag=True, help="Print time per iteration, data_time share, best epoch and metric.")
@click.option("--metric", help="The metric `best` is judged by (default top1_acc, as best.pth is chosen).")
@click.option("--include-outliers", is_flag=True,
              help="--summary: keep each epoch's first log line (warm-up) in the timing, as MMAction2's flag.")
@click.option("--title", help="Figure title.")
def plot_command(logs, out, summary, metric, include_outliers, title):
    """Training curves (loss, lr, val accuracy vs epoch) of one or more runs, and/or their time summary."""
    if not out and not summary:
        raise click.UsageError("nothing to do: give --out FILE and/or --summary")
    try:
        runs = [read_run(p) for p in logs]
        if summary:
            click.echo(format_summary([summarize(r, metric, include_outliers) for r in runs]))
        if out:
            plot_curves(runs, out, title)
            click.echo(f"curves of {len(runs)} run(s) written to {out}")
    except ReportError as err:
        raise click.ClickException(str(err)) from None


if __name__ == "__main__":
    run(plot_command)
