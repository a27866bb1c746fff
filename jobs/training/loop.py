"""The training loop: one optimisation step and one epoch, the only training code that touches autocast, GradScaler
and DDP sync (evaluation's forward pass is jobs/evaluation/scoring.py)."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from jobs.runtime.amp import Amp
from jobs.runtime.distributed import Dist, all_reduce_max_
from jobs.training.logs import Logger, format_eta
from pipelines.normalize import Normalize


@dataclass(kw_only=True)
class Trainer:
    """What one training step needs, named (built with keywords only)."""

    model: torch.nn.Module            # maybe DDP-wrapped
    optimizer: torch.optim.Optimizer  # build_sgd's, so a skipped step costs no host sync (see train_step)
    scheduler: torch.optim.lr_scheduler.LRScheduler   # stepped every iteration
    scaler: torch.amp.GradScaler
    amp: Amp
    normalize: Normalize
    loss: str = "cross_entropy"       # "cross_entropy" | "bce"
    loss_weight: float = 1.0
    grad_clip: float | None = 40.0
    dist: Dist                        # the skip decision is all-reduced over these ranks; trains on dist.device

    @property
    def device(self) -> torch.device:
        return self.dist.device


def build_sgd(params, *, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    """SGD whose step can be cancelled on the device: the fused implementation reads a 0-d float32 tensor
    `optimizer.found_inf` and leaves parameters and momentum untouched when it is 1.0 (the hook GradScaler itself
    uses for fused optimisers), so skipping a bad batch needs no host sync.

    Momentum buffers start at zero instead of being created by the first step: the fused kernel fills a new buffer
    with the first gradient only when it runs, so a cancelled first step would leave uninitialised memory behind.
    With dampening 0, momentum * 0 + g is exactly that first-step copy.
    """
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=True)
    if momentum:
        for group in opt.param_groups:
            for p in group["params"]:
                opt.state[p]["momentum_buffer"] = torch.zeros_like(p)
    return opt


def skips_on_device(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `optimizer.step()` honours `optimizer.found_inf` (fused SGD/Adam/AdamW, every group fused)."""
    return getattr(optimizer, "_step_supports_amp_scaling", False) and all(g.get("fused")
                                                                           for g in optimizer.param_groups)


def compute_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str, weight: float) -> torch.Tensor:
    logits = logits.float()           # the loss in fp32 whatever autocast produced
    if kind == "bce":
        return weight * F.binary_cross_entropy_with_logits(logits, labels)
    return weight * F.cross_entropy(logits, labels)


def train_step(t: Trainer, clips: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One optimisation step on a (B, V, C, H, W) uint8 batch.

    Returns the loss as a 0-d float32 tensor on the training device, NaN when the step was skipped; reading it
    (`.item()`) is the caller's host sync, so a GPU pipeline keeps queueing work between log lines.

    A batch whose loss is not finite on ANY rank, or whose clipped gradient norm is not finite, is skipped on every
    rank alike, decided on the device:
      * every rank runs backward, so DDP's gradient all-reduce always has all participants (a rank that skipped
        backward alone would leave the others waiting in it until the collective timeout);
      * under DDP the 0/1 loss flag is all-reduced with MAX (one 4-byte collective per step; on NCCL it is queued
        on the stream like the gradient buckets, no host wait); a single process does no collective at all;
      * the gradient norm that clipping computes anyway is not finite exactly when some gradient is, and the
        gradients are already all-reduced, so that half of the flag is identical on every rank without a collective;
      * the fused optimiser then drops the update on the device (build_sgd). Other optimisers, and fp16 with a
        GradScaler (only on GPUs without bf16), decide on the host: one `.item()` per step, as GradScaler's own
        non-fused path already does. The scaler still records its own inf check (unscale_), so update() adjusts
        the scale from it as usual, skipped step or not.
    The scheduler steps either way: iterations, not successful steps, drive the lr schedule.
    """
    x = t.normalize(clips, t.device)
    labels = labels.to(t.device, non_blocking=True)
    with t.amp.autocast():
        logits = t.model(x)
    loss = compute_loss(logits, labels, t.loss, t.loss_weight)
    bad = (~torch.isfinite(loss.detach())).float()          # () float32: 1.0 = this rank's loss is not finite
    all_reduce_max_(bad, t.dist)                            # ... on some rank
    t.optimizer.zero_grad(set_to_none=True)
    t.scaler.scale(loss).backward()
    t.scaler.unscale_(t.optimizer)                          # no-op without loss scaling
    if t.grad_clip:
        norm = torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.grad_clip)
        bad = torch.maximum(bad, (~torch.isfinite(norm)).float())
    if skips_on_device(t.optimizer) and not t.scaler.is_enabled():
        t.optimizer.found_inf = bad
        try:
            t.optimizer.step()
        finally:
            del t.optimizer.found_inf
    elif not bad.item():
        t.scaler.step(t.optimizer)
    t.scaler.update()
    t.scheduler.step()
    return torch.where(bad > 0, torch.nan, loss.detach())


def train_one_epoch(t: Trainer, loader, epoch: int, first_iter: int, log: Logger, log_interval: int,
                    stop=None) -> int:
    """Train over `loader` once (from its data position: a resumed epoch starts mid-way); returns the global
    iteration count after the epoch. `stop` (jobs/training/preemption.py) may end the epoch before any batch.

    Losses stay on the device until a log line (one host sync per `log_interval` steps), which reports their mean
    over the interval, as MMAction2's text logger does (mmcv `LoggerHook`, log_buffer.average(interval)), and how
    many steps of the interval were skipped. The times are host times: with CUDA they include waiting only at the
    points where the host really waits (the log line's sync, a full allocator or DALI queue).
    """
    t.model.train()
    n, it, first = len(loader), first_iter, getattr(loader, "position", 0)
    start = last = time.perf_counter()
    data_time = step_time = 0.0
    losses: list[torch.Tensor] = []   # () float32 device tensors of this log interval, NaN = skipped step
    bar = tqdm(total=n, initial=first, desc=f"epoch {epoch + 1}", disable=not (log.enabled and sys.stderr.isatty()),
               leave=False)
    batches = loader if stop is None else stop.batches(loader, epoch)    # ends early once the ranks agree to stop
    for i, batch in enumerate(batches, start=first):
        got = time.perf_counter()
        data_time += got - last
        lr = t.optimizer.param_groups[0]["lr"]       # the lr this step trains with (train_step advances the schedule)
        losses.append(train_step(t, batch.clips, batch.labels))
        last = time.perf_counter()
        step_time += last - got
        it += 1
        bar.update()
        if (i + 1) % log_interval == 0 or i + 1 == n:
            k = len(losses)
            values = torch.stack(losses).cpu()                # the one host sync of the interval
            ok = torch.isfinite(values)
            skipped = int(k - ok.sum())
            loss = float(values[ok].mean()) if skipped < k else math.nan
            losses.clear()
            if skipped:
                log.warning(f"epoch {epoch + 1} iters {i + 2 - k}-{i + 1}: {skipped} of {k} steps skipped "
                            "(non-finite loss on some rank, or non-finite gradients)")
            mem = torch.cuda.max_memory_allocated(t.device) // 2**20 if t.device.type == "cuda" else 0
            eta = (last - start) / (i + 1 - first) * (n - i - 1)
            log.info(f"Epoch [{epoch + 1}][{i + 1}/{n}] lr: {lr:.3e} loss: {loss:.4f} time: {step_time / k:.3f} "
                     f"data_time: {data_time / k:.3f} memory: {mem} eta: {format_eta(eta)}")
            log.record({"mode": "train", "epoch": epoch + 1, "iter": i + 1, "lr": lr, "loss": loss,
                        "skipped": skipped, "time": step_time / k, "data_time": data_time / k, "memory": mem},
                       step=it)
            data_time = step_time = 0.0
    bar.close()
    return it
