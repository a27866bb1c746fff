"""`tsn fuse SCORES... --coefficients 1 1 [--apply-softmax] --labels LIST`: n-stream late fusion (spec §10).

Fused score per video = sum_i c_i * s_i (softmax first with --apply-softmax). The model zoo's two-stream rows are
RGB + flow logits at 1:1 without softmax. Labels: the last whitespace-separated token of each list line.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not jobs/, goes first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json

import click
import numpy as np

from jobs.metrics import fuse_scores, mean_class_accuracy, top_k_accuracy
from jobs.scores import load_scores


def read_labels(list_file: str) -> np.ndarray:
    labels = []
    with open(list_file, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            tokens = line.split()
            if not tokens:
                continue
            try:
                labels.append(int(tokens[-1]))
            except ValueError:
                why = f"last field {tokens[-1]!r} is not an integer label"
                raise click.ClickException(f"{list_file}:{n}: {why}") from None
    return np.array(labels)


def fuse(score_files: list[str], coefficients: list[float], labels: np.ndarray, apply_softmax: bool) -> list[dict]:
    """Rows of {name, top1_acc, top5_acc, mean_class_accuracy}: each stream, then the fusion."""
    streams = [load_scores(f) for f in score_files]
    for f, s in zip(score_files, streams):
        if len(s) != len(labels):
            raise click.ClickException(f"{f}: {len(s)} score rows but {len(labels)} labels in the list")
    # Per-stream rows are unaffected by softmax (it keeps each row's ranking); it matters only for the sum.
    rows = [(Path(f).name, s) for f, s in zip(score_files, streams)]
    ratio = ":".join(f"{c:g}" for c in coefficients)
    fused = fuse_scores(streams, coefficients, apply_softmax=apply_softmax)
    rows.append((f"fused [{ratio}]" + (" softmax" if apply_softmax else ""), fused))
    out = []
    for name, s in rows:
        top1, top5 = top_k_accuracy(s, labels, (1, 5))
        out.append({"name": name, "top1_acc": top1, "top5_acc": top5,
                    "mean_class_accuracy": mean_class_accuracy(s, labels)})
    return out


def format_table(rows: list[dict]) -> str:
    width = max(len(r["name"]) for r in rows)
    lines = [f"{'scores':<{width}}  top1 acc  top5 acc  mean class acc"]
    lines += [f"{r['name']:<{width}}  {100 * r['top1_acc']:8.2f}  {100 * r['top5_acc']:8.2f}  "
              f"{100 * r['mean_class_accuracy']:14.2f}" for r in rows]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tsn fuse", description=__doc__.split("\n\n")[0])
    p.add_argument("scores", nargs="+", help="score files from `tsn test --dump` (.npy or MMAction2 .pkl)")
    p.add_argument("--coefficients", nargs="+", type=float, help="one weight per stream (default all 1)")
    p.add_argument("--apply-softmax", action="store_true", help="softmax each stream's scores before fusing")
    p.add_argument("--labels", "--datalist", dest="labels", required=True, help="annotation list (label last)")
    p.add_argument("--out", help="write the table as JSON here")
    return p


@click.command("fuse", context_settings={"ignore_unknown_options": True, "help_option_names": []},
               add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def fuse_command(args):
    """Late fusion of per-video scores from several streams (RGB + flow); see `tsn fuse --help`."""
    ns = _parser().parse_args(list(args))     # argparse: `--coefficients 1 1.5` takes several values
    coefficients = ns.coefficients or [1.0] * len(ns.scores)
    if len(coefficients) != len(ns.scores):
        raise click.ClickException(f"{len(ns.scores)} score files but {len(coefficients)} coefficients")
    rows = fuse(ns.scores, coefficients, read_labels(ns.labels), ns.apply_softmax)
    click.echo(format_table(rows))
    if ns.out:
        Path(ns.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    fuse_command()
