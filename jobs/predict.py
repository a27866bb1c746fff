"""`tsn predict CONFIG CKPT INPUT`: the recipe's test protocol on one video file or frame folder; top-k labels."""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not jobs/, goes first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import json

import click

from jobs.console.options import cfg_options, device_option
from jobs.training.config import load_config
from jobs.training.prediction import predict


@click.command("predict")
@click.argument("config")
@click.argument("checkpoint")
@click.argument("input_path", metavar="VIDEO_OR_FRAME_DIR")
@click.option("--label-map", help="Class names, one per line (line index = label), e.g. classes.txt.")
@click.option("--topk", default=5, show_default=True, help="How many labels to print.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@cfg_options
@device_option()
def predict_command(config, checkpoint, input_path, label_map, topk, as_json, cfg_options, device):
    """Top-k labels for one video or frame folder, with the recipe's test protocol (scores are softmax)."""
    rows = predict(load_config(config, cfg_options), checkpoint, input_path, topk=topk, label_map=label_map,
                   device=device)
    if as_json:
        click.echo(json.dumps({"input": input_path, "topk": rows}, indent=2))
    else:
        for r in rows:
            click.echo(f"{r['score']:.4f}  {r['name']}")


if __name__ == "__main__":
    predict_command()
