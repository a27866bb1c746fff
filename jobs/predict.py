"""`tsn predict [CONFIG] CKPT INPUT`: the recipe's test protocol on one video file or frame folder; top-k labels.

Without CONFIG the config stored in the checkpoint is used, and class names come from the checkpoint too. Also on
the windows of a long video (`--window/--stride`: a timeline as JSON lines, `--plot` PNG), and on every video or
frame folder under a folder or in an annotation list (rows as JSON lines or CSV, metrics with labels):
docs/PREDICT.md.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not jobs/, goes first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import json

import click

from jobs.console.errors import run
from jobs.console.options import cfg_options, config_and_checkpoint, device_option


@click.command("predict")
@click.argument("words", nargs=-1, metavar="[CONFIG] CHECKPOINT INPUT")
@click.option("--label-map", help="Class names, one per line (line index = label), e.g. classes.txt "
              "(default: the names stored in the checkpoint).")
@click.option("--topk", default=5, show_default=True, help="How many labels to print.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--window", type=float, help="Seconds: slide the test protocol over the video in windows this long.")
@click.option("--stride", type=float, help="Seconds between window starts (default: --window).")
@click.option("--out", help="Windows, folder or list: write rows here (.jsonl or .csv; default JSON lines on stdout).")
@click.option("--plot", help="--window: also draw the top classes over time (PNG).")
@click.option("--prefix", help="Annotation list: the folder its paths are relative to (default: the test prefix).")
@cfg_options
@device_option()
def predict_command(words, label_map, topk, as_json, window, stride, out, plot, prefix, cfg_options, device):
    """Top-k labels for INPUT with the recipe's test protocol (scores are softmax).

    INPUT is a video file or frame folder; with --window a video file, predicted window by window; or a folder of
    videos / frame folders, or an annotation list (.txt, labels give metrics), predicted in batches. Without CONFIG
    the config stored in the checkpoint is used.
    """
    from jobs.evaluation import inference
    from pipelines.annotations import load_class_names
    cfg, checkpoint, rest = config_and_checkpoint(words, cfg_options)
    if len(rest) != 1:
        raise click.UsageError("expected [CONFIG] CHECKPOINT INPUT")
    input_path = rest[0]
    names = list(load_class_names(label_map, cfg.model.num_classes) if label_map else checkpoint.classes or ())
    if window is not None or stride is not None or plot:
        return _timeline(cfg, checkpoint, input_path, window, stride, out, plot, topk, names, device)
    if inference.is_many(input_path, cfg):
        return _many(cfg, checkpoint, input_path, prefix, out, topk, names, device)
    if out or prefix:
        raise click.UsageError("--out and --prefix are for --window, a folder or an annotation list")
    try:
        rows = inference.predict_one(cfg, checkpoint, input_path, topk=topk, names=names, device=device)
    except inference.PredictError as err:
        raise click.ClickException(str(err)) from None
    if as_json:
        click.echo(json.dumps({"input": input_path, "topk": rows}, indent=2))
    else:
        for r in rows:
            click.echo(f"{r['score']:.4f}  {r['name']}")


def _emit(rows: list[dict], out: str | None) -> None:
    from jobs.evaluation import inference
    text = inference.format_rows(rows, inference.out_format(out))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    else:
        click.echo(text, nl=False)


def _say(out: str | None):
    """Where the summary lines go: stdout when the rows went to a file, else stderr (stdout stays JSON lines)."""
    return click.echo if out else (lambda message: click.echo(message, err=True))


def _timeline(cfg, checkpoint, path, window, stride, out, plot, topk, names, device):
    """--window/--stride: one row per window (start, end, frames, top-k), and the plot."""
    from jobs.evaluation import inference
    if window is None:
        raise click.UsageError("--stride and --plot need --window SECONDS")
    stride = stride or window
    try:
        inference.out_format(out)
        result = inference.predict_timeline(cfg, checkpoint, path, window=window, stride=stride, topk=topk,
                                            names=names, device=device)
        if result is None:      # not the main rank
            return
        rows, windows, probs = result
        _emit(rows, out)
    except inference.USER_ERRORS as err:
        raise click.ClickException(str(err)) from None
    if plot:
        from jobs.reporting.runs import ReportError
        from jobs.reporting.timeline_plot import plot_timeline
        try:
            plot_timeline([w.start for w in windows], [w.end for w in windows], probs, names, plot,
                          title=Path(path).name)
        except ReportError as err:
            raise click.ClickException(str(err)) from None
    _say(out)(f"{len(rows)} windows of {window:g} s, stride {stride:g} s" + (f", written to {out}" if out else "")
              + (f", plot in {plot}" if plot else ""))


def _many(cfg, checkpoint, path, prefix, out, topk, names, device):
    """A folder or an annotation list: one row per input; with labels (a list) the recipe's metrics."""
    from jobs.evaluation import inference
    try:
        inference.out_format(out)
        result = inference.predict_many(cfg, checkpoint, path, prefix=prefix, topk=topk,
                                        names=names, device=device)
        if result is None:      # not the main rank
            return
        rows, metrics = result
        _emit(rows, out)
    except inference.USER_ERRORS as err:
        raise click.ClickException(str(err)) from None
    say = _say(out)
    say(f"{len(rows)} inputs predicted" + (f", written to {out}" if out else ""))
    for k, v in (metrics or {}).items():
        say(f"{k}: {v:.4f}")


if __name__ == "__main__":
    run(predict_command)
