"""Testing a checkpoint: the recipe's (or a named) test protocol, the model zoo's metrics, score dumps in list order."""
from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import torch

from jobs.training.checkpoint import Checkpoint, as_checkpoint
from jobs.training.config import Config
from jobs.training.distributed import Dist, exit_on_error, gather_objects, init_distributed, shutdown
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
    """Evaluate `checkpoint` with cfg's test split; returns {"metrics": ..., "evaluated": n, "total": m, "skipped":
    [{"line", "path", "reason"}, ...]}.

    Unusable data: without `allow_partial` the loader refuses before any work and lists every unusable entry
    (DataError; the video index for video lists, a stat of every sampled frame for frame lists). With it, every
    readable video of the list is evaluated and the others are reported, never replaced: under the skip policy the
    source loads a stand-in for an unreadable video but marks it -1 on evaluation splits (pipelines/source.py,
    `pad_mark`), and evaluate() drops those rows. Under DDP an error on one rank ends that process at once.
    """
    if allow_partial:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, on_error="skip", max_bad_fraction=1.0))
    # A bad or unfitting checkpoint fails here, on the CPU, before any DALI worker starts.
    checkpoint = as_checkpoint(checkpoint)
    model = load_for_eval(cfg.model, checkpoint)
    dist = init_distributed(device)
    with exit_on_error(dist):
        records, scores, index, reasons = _evaluate(cfg, model, dist, list_file, prefix, say)
    shutdown(dist)
    total = len(records)
    evaluated = set(index.tolist())
    skipped = [{"line": r.source, "path": r.path, "reason": reasons.get(r.path) or r.problem or "not evaluated"}
               for i, r in enumerate(records) if i not in evaluated]
    result = {"config": cfg.name, "checkpoint": checkpoint.path, "evaluated": len(index), "total": total,
              "skipped": skipped}
    if not dist.is_main:
        return result
    say(f"evaluated {len(index)} of {total} videos")
    if skipped:
        say(f"skipped {len(skipped)} unreadable videos (list line: file: reason):")
        for entry in skipped:
            say(f"  {entry['line']}: {entry['path']}: {entry['reason']}")
    # TSN averages every view before its classifier: "score" == "none"; "prob" = softmax of that mean
    # (MMAction2 v0.24.1 mmaction/models/recognizers/base.py `average_clip`).
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


def _evaluate(cfg: Config, model, dist: Dist, list_file, prefix, say):
    """This rank's part, gathered: (records, (N, K) scores, (N,) list indices evaluated, {path: why skipped}).

    Everything that talks to the other ranks happens here, under exit_on_error."""
    with tempfile.TemporaryDirectory(prefix="tsn_test_") as scratch:     # this rank's bad-sample log
        # The loader first: its DALI workers fork before this process creates a CUDA context.
        loader = build_loader(cfg, "test", shard=Shard(dist.rank, dist.world_size), device=dist.data_device,
                              device_id=dist.data_device_id, list_file=list_file, prefix=prefix, work_dir=scratch)
        model = model.to(dist.device)
        amp, _ = make_amp(cfg.runtime.amp, dist.device)
        layout, a = loader.layout, cfg.test.augment
        say(f"test protocol: {layout.clips} clips x {layout.crops} crop(s) ({a.crop} {a.crop_size}) = "
            f"{layout.views} views per video, average_clips={cfg.runtime.average_clips}")
        scores, index = evaluate(model, loader, cfg.normalize, dist.device, amp, dist,
                                 cfg.runtime.max_views_per_forward, progress=dist.is_main)
        reasons = {b["path"]: b["reason"] for part in gather_objects(loader.bad_samples(), dist) for b in part}
    return loader.source.records, scores, index, reasons
