"""Testing a checkpoint: the recipe's (or a named) test protocol, the model zoo's metrics, score dumps in list order."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from jobs.training.checkpoint import Checkpoint, as_checkpoint
from jobs.training.config import Config
from jobs.training.distributed import init_distributed, shutdown
from jobs.training.engine import evaluate, make_amp
from jobs.training.evaluation import compute_metrics
from jobs.training.loaders import build_loader
from jobs.training.scores import save_scores
from jobs.training.weights import load_for_eval
from model.tsn import average_clips
from pipelines.sharding import Shard


class Incomplete(RuntimeError):
    """Fewer videos evaluated than the list holds: no headline number."""


def test_checkpoint(cfg: Config, checkpoint: str | Checkpoint, *, device: str | None = None, out: str | None = None,
        dump: str | None = None, list_file: str | None = None, prefix: str | None = None,
        allow_partial: bool = False, say=print) -> dict:
    """Evaluate `checkpoint` with cfg's test split; returns {"metrics": ..., "evaluated": n, "total": m}."""
    # A bad or unfitting checkpoint fails here, on the CPU, before any DALI worker starts.
    checkpoint = as_checkpoint(checkpoint)
    model = load_for_eval(cfg.model, checkpoint)
    dist = init_distributed(device)
    # The loader before the model moves: its DALI workers fork before this process creates a CUDA context.
    loader = build_loader(cfg, "test", shard=Shard(dist.rank, dist.world_size), device=dist.data_device,
                          device_id=dist.local_rank, list_file=list_file, prefix=prefix)
    model = model.to(dist.device)
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
    result = {"config": cfg.name, "checkpoint": checkpoint.path, "evaluated": len(index), "total": total}
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


