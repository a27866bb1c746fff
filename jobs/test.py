"""`tsn test CONFIG CKPT`: the recipe's (or a named) test protocol, the model zoo's metrics, score dumps."""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not jobs/, goes first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import dataclasses
import json

import click
import torch

from jobs.config import Config, load_config
from jobs.data import build_loader
from jobs.distributed import init_distributed, shutdown
from jobs.engine import evaluate, make_amp
from jobs.evaluation import compute_metrics
from jobs.options import cfg_options
from jobs.protocols import PROTOCOLS, with_protocol
from jobs.scores import save_scores
from jobs.weights import load_for_eval
from model.tsn import average_clips
from pipelines.sharding import Shard

METRICS = ("top_k_accuracy", "mean_class_accuracy", "mean_average_precision", "mmit_mean_average_precision")


class Incomplete(RuntimeError):
    """Fewer videos evaluated than the list holds: no headline number."""


def run(cfg: Config, checkpoint: str, *, device: str | None = None, out: str | None = None,
        dump: str | None = None, list_file: str | None = None, prefix: str | None = None,
        allow_partial: bool = False, say=print) -> dict:
    """Evaluate `checkpoint` with cfg's test split; returns {"metrics": ..., "evaluated": n, "total": m}."""
    dist = init_distributed(device)
    # The loader first: its DALI workers fork before this process creates a CUDA context.
    loader = build_loader(cfg, "test", shard=Shard(dist.rank, dist.world_size), device=dist.data_device,
                          device_id=dist.local_rank, list_file=list_file, prefix=prefix)
    model = load_for_eval(cfg.model, checkpoint).to(dist.device)
    amp, _ = make_amp(cfg.runtime.amp, dist.device)
    s, a = cfg.test.sampler, cfg.test.augment
    views = s.num_offsets * (1 if cfg.data.modality == "Flow" else s.clip_len) * a.num_crops
    say(f"test protocol: {s.num_offsets} clips x {a.num_crops} crop(s) ({a.crop} {a.crop_size}) = {views} views "
        f"per video, average_clips={cfg.runtime.average_clips}")
    scores, index = evaluate(model, loader, cfg.normalize, dist.device, amp, dist,
                             cfg.runtime.max_views_per_forward, progress=dist.is_main)
    shutdown(dist)
    records = loader.source.records
    total = len(records)
    result = {"config": cfg.name, "checkpoint": str(checkpoint), "evaluated": len(index), "total": total}
    if not dist.is_main:
        return result
    say(f"evaluated {len(index)} of {total} videos")
    # TSN averages every view before its classifier: "score" == "none"; "prob" = softmax of that mean (§1.2).
    scores = average_clips(torch.from_numpy(scores), cfg.runtime.average_clips).numpy()
    if dump:
        full = scores if len(index) == total else None
        if full is None:
            raise Incomplete(f"cannot dump scores in list order: {total - len(index)} videos missing")
        save_scores(dump, full)
        say(f"scores ({total} x {scores.shape[1]}, list order) written to {dump}")
    if len(index) < total and not allow_partial:
        raise Incomplete(f"only {len(index)} of {total} videos were evaluated: refusing a headline number")
    labels = [records[i].labels for i in index]
    result["metrics"] = compute_metrics(scores, labels, cfg.runtime.metrics, cfg.model.num_classes)
    for k, v in result["metrics"].items():
        say(f"{k}: {v:.4f}")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
    return result


@click.command("test", context_settings={"ignore_unknown_options": False})
@click.argument("config")
@click.argument("checkpoint")
@click.argument("extra_metrics", nargs=-1)
@click.option("--protocol", type=click.Choice(PROTOCOLS), default="recipe", show_default=True,
              help="Test views: the recipe's, or a model-zoo protocol.")
@click.option("--average-clips", type=click.Choice(["none", "score", "prob"]), help="Override runtime.average_clips.")
@click.option("--eval", "eval_metrics", multiple=True, type=click.Choice(METRICS),
              help="Metrics (MMAction2 shape `--eval top_k_accuracy mean_class_accuracy` also accepted).")
@click.option("--out", help="Write metrics as JSON here.")
@click.option("--dump", help="Write per-video scores in list order (.npy, or .pkl like MMAction2) for `tsn fuse`.")
@click.option("--list", "list_file", help="Evaluate another annotation list than the recipe's test list.")
@click.option("--prefix", help="Data prefix for --list.")
@click.option("--allow-partial", is_flag=True, help="Report metrics even if some videos could not be evaluated.")
@cfg_options
@click.option("--device", help="cpu | cuda | cuda:N (default: CUDA when available).")
def test_command(config, checkpoint, extra_metrics, protocol, average_clips, eval_metrics, out, dump, list_file,
                 prefix, allow_partial, cfg_options, device):
    """Test CHECKPOINT with CONFIG's test protocol."""
    bad = [m for m in extra_metrics if m not in METRICS or not eval_metrics]
    if bad:
        raise click.UsageError(f"unexpected argument(s) {' '.join(bad)}")
    cfg = with_protocol(load_config(config, cfg_options), protocol)
    metrics = tuple(eval_metrics) + tuple(extra_metrics)
    runtime = dataclasses.replace(cfg.runtime, metrics=metrics or cfg.runtime.metrics,
                                  average_clips=average_clips or cfg.runtime.average_clips)
    try:
        run(dataclasses.replace(cfg, runtime=runtime), checkpoint, device=device, out=out, dump=dump,
            list_file=list_file, prefix=prefix, allow_partial=allow_partial)
    except Incomplete as err:
        raise click.ClickException(str(err)) from None


if __name__ == "__main__":
    test_command()
