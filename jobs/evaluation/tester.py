"""Testing a checkpoint: the recipe's (or a named) test protocol, the model zoo's metrics, score dumps in list order."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from jobs.evaluation.metrics import compute_metrics
from jobs.evaluation.scores import save_scores
from jobs.evaluation.scoring import Inputs, score_inputs
from jobs.recipes.config import Config
from jobs.runtime.checkpoint import Checkpoint, as_checkpoint
from jobs.runtime.distributed import exit_on_error, init_distributed, shutdown
from jobs.runtime.weights import load_for_eval
from pipelines.errors import UserError


class Incomplete(UserError, RuntimeError):
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
    with exit_on_error(dist):     # everything that talks to the other ranks
        [scored] = score_inputs(model, [Inputs(cfg, list_file, prefix=prefix)], dist, say=say)
    shutdown(dist)
    records, scores, index, reasons = scored.records, scored.scores, scored.index, scored.skipped
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
    if dump:
        if len(index) < total:
            raise Incomplete(f"cannot dump scores in list order: {total - len(index)} videos missing")
        save_scores(dump, scores)
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
