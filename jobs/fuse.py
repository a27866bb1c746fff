"""`tsn fuse SCORES... --coefficients 1 1 [--apply-softmax] --labels LIST`: n-stream late fusion (MMAction2
v0.24.1 tools/analysis/report_accuracy.py).

Fused score per video = sum_i c_i * s_i (softmax first with --apply-softmax). The model zoo's two-stream rows are
RGB + flow logits at 1:1 without softmax. Labels: a single-label annotation list (rawframes, rawframes with offset
or videos), read by pipelines/annotations.py.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not jobs/, goes first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json

import click

from jobs.console.errors import run


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tsn fuse", description=__doc__.split("\n\n")[0])
    p.add_argument("scores", nargs="+", help="score files from `tsn test --dump` (.npy or MMAction2 .pkl)")
    p.add_argument("--coefficients", nargs="+", type=float, help="one weight per stream (default all 1)")
    p.add_argument("--apply-softmax", action="store_true", help="softmax each stream's scores before fusing")
    p.add_argument("--labels", "--datalist", dest="labels", required=True, help="single-label annotation list")
    p.add_argument("--out", help="write the table as JSON here")
    return p


@click.command("fuse", context_settings={"ignore_unknown_options": True, "help_option_names": []},
               add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def fuse_command(args):
    """Late fusion of per-video scores from several streams (RGB + flow); see `tsn fuse --help`."""
    from jobs.evaluation.fusion import FusionError, format_table, fuse, read_labels
    ns = _parser().parse_args(list(args))     # argparse: `--coefficients 1 1.5` takes several values
    coefficients = ns.coefficients or [1.0] * len(ns.scores)
    if len(coefficients) != len(ns.scores):
        raise click.ClickException(f"{len(ns.scores)} score files but {len(coefficients)} coefficients")
    try:
        rows = fuse(ns.scores, coefficients, read_labels(ns.labels), ns.apply_softmax)
    except FusionError as err:
        raise click.ClickException(str(err)) from None
    click.echo(format_table(rows))
    if ns.out:
        Path(ns.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    run(fuse_command)
