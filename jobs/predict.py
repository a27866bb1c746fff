"""`tsn predict [CONFIG] CKPT INPUT`: the recipe's test protocol on one video file or frame folder; top-k labels.

Without CONFIG the config stored in the checkpoint is used, and class names come from the checkpoint too.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not jobs/, goes first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import json

import click

from jobs.console.errors import run
from jobs.console.options import cfg_options, config_and_checkpoint
from jobs.training.prediction import predict


@click.command("predict")
@click.argument("words", nargs=-1, metavar="[CONFIG] CHECKPOINT VIDEO_OR_FRAME_DIR")
@click.option("--label-map", help="Class names, one per line (line index = label), e.g. classes.txt "
              "(default: the names stored in the checkpoint).")
@click.option("--topk", default=5, show_default=True, help="How many labels to print.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@cfg_options
@click.option("--device", help="cpu | cuda | cuda:N (default: CUDA when available).")
def predict_command(words, label_map, topk, as_json, cfg_options, device):
    """Top-k labels for one video or frame folder, with the recipe's test protocol (scores are softmax)."""
    cfg, checkpoint, rest = config_and_checkpoint(words, cfg_options)
    if len(rest) != 1:
        raise click.UsageError("expected [CONFIG] CHECKPOINT VIDEO_OR_FRAME_DIR")
    input_path = rest[0]
    rows = predict(cfg, checkpoint, input_path, topk=topk, label_map=label_map, device=device)
    if as_json:
        click.echo(json.dumps({"input": input_path, "topk": rows}, indent=2))
    else:
        for r in rows:
            click.echo(f"{r['score']:.4f}  {r['name']}")


if __name__ == "__main__":
    run(predict_command)
