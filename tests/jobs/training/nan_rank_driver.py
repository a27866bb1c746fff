"""Test-only driver, run under torchrun: `tsn train` with a NaN loss on one rank at one step.

    python -m torch.distributed.run --nproc_per_node 2 tests/jobs/training/nan_rank_driver.py OUT RANK STEP -- ARGS

ARGS are `tsn train` arguments. On rank RANK the STEP-th training loss (1-based) has a NaN value but its normal
gradient (loss + NaN * loss.detach()), so only the skip decision itself, not a NaN in the all-reduced gradients,
can keep the ranks in step. Every rank writes OUT/rank<r>.json (the per-step losses train_step returned, and whether
parameters and momentum were bit-identical across step STEP) and OUT/rank<r>.pt (its final parameters).
"""
import json
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))    # the repository root

import torch

from jobs.cli import cli
from jobs.runtime.distributed import unwrap
from jobs.training import loop as engine


def snapshot(t) -> list[torch.Tensor]:
    model = unwrap(t.model)
    params = [p.detach().clone() for p in model.parameters()]
    return params + [t.optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters()]


def main():
    out, poison_rank, poison_step = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    args = sys.argv[sys.argv.index("--") + 1:]
    rank = int(os.environ["RANK"])
    calls = {"loss": 0}
    losses, seen = [], {}
    real_loss, real_step = engine.compute_loss, engine.train_step

    def compute_loss(*a, **k):
        loss = real_loss(*a, **k)
        calls["loss"] += 1
        if rank == poison_rank and calls["loss"] == poison_step:
            return loss + math.nan * loss.detach()
        return loss

    def train_step(t, clips, labels):
        step = len(losses) + 1
        before = snapshot(t) if step == poison_step else None
        value = real_step(t, clips, labels)
        losses.append(float(value))
        if before is not None:
            seen["unchanged"] = all(torch.equal(a, b) for a, b in zip(before, snapshot(t)))
        seen["trainer"] = t
        return value

    engine.compute_loss, engine.train_step = compute_loss, train_step
    cli.main(args=["train", *args], standalone_mode=False)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{rank}.json").write_text(json.dumps({"losses": losses, "unchanged": seen.get("unchanged")}))
    torch.save(unwrap(seen["trainer"].model).state_dict(), out / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
