"""`tsn test [CONFIG] CKPT`: the recipe's (or a named) test protocol, the model zoo's metrics, score dumps.

Without CONFIG the config stored in the checkpoint is used (`tsn train` stores the resolved one).
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not jobs/, goes first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import dataclasses

import click

from jobs.console.errors import run
from jobs.console.options import cfg_options, config_and_checkpoint, device_option
from jobs.evaluation.protocols import PROTOCOLS, with_protocol
from jobs.recipes.config import METRICS
from model.config import AVERAGE_CLIPS


@click.command("test", context_settings={"ignore_unknown_options": False})
@click.argument("words", nargs=-1, metavar="[CONFIG] CHECKPOINT")
@click.option("--protocol", type=click.Choice(PROTOCOLS), default="recipe", show_default=True,
              help="Test views: the recipe's, or a model-zoo protocol.")
@click.option("--average-clips", type=click.Choice(AVERAGE_CLIPS), help="Override runtime.average_clips.")
@click.option("--eval", "eval_metrics", multiple=True, type=click.Choice(METRICS),
              help="Metrics (MMAction2 shape `--eval top_k_accuracy mean_class_accuracy` also accepted).")
@click.option("--out", help="Write metrics as JSON here.")
@click.option("--dump", help="Write per-video scores in list order (.npy, or .pkl like MMAction2) for `tsn fuse`.")
@click.option("--list", "list_file", help="Evaluate another annotation list than the recipe's test list.")
@click.option("--prefix", help="Data prefix for --list.")
@click.option("--allow-partial", is_flag=True, help="Report metrics even if some videos could not be evaluated.")
@cfg_options
@device_option()
def test_command(words, protocol, average_clips, eval_metrics, out, dump, list_file, prefix, allow_partial,
                 cfg_options, device):
    """Test CHECKPOINT with CONFIG's test protocol (without CONFIG: the config stored in the checkpoint)."""
    from jobs.evaluation.tester import test_checkpoint
    from jobs.recipes.loaders import DataError
    cfg, checkpoint, extra_metrics = config_and_checkpoint(words, cfg_options)
    bad = [m for m in extra_metrics if m not in METRICS or not eval_metrics]
    if bad:
        raise click.UsageError(f"unexpected argument(s) {' '.join(bad)}")
    cfg = with_protocol(cfg, protocol)
    metrics = tuple(eval_metrics) + tuple(extra_metrics)
    runtime = dataclasses.replace(cfg.runtime, metrics=metrics or cfg.runtime.metrics,
                                  average_clips=average_clips or cfg.runtime.average_clips)
    try:
        test_checkpoint(dataclasses.replace(cfg, runtime=runtime), checkpoint, device=device, out=out, dump=dump,
                        list_file=list_file, prefix=prefix, allow_partial=allow_partial)
    except DataError as err:
        raise DataError(f"{err}\n(--allow-partial evaluates the readable videos and lists the others)") from None


if __name__ == "__main__":
    run(test_command)
