"""The training step and the evaluation loop: the only code that touches autocast, GradScaler and DDP sync."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from jobs.training.distributed import Dist, gather_objects
from jobs.training.logs import Logger, format_eta
from pipelines.normalize import Normalize


@dataclass(frozen=True)
class Amp:
    """One AMP code path: bf16 autocast where supported (CPU, Ampere+), else fp16 with a GradScaler."""

    enabled: bool
    device_type: str
    dtype: torch.dtype

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)


def make_amp(enabled: bool, device: torch.device) -> tuple[Amp, torch.amp.GradScaler]:
    bf16 = device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported())
    amp = Amp(enabled, device.type, torch.bfloat16 if bf16 else torch.float16)
    # bf16 has fp32's exponent range: loss scaling is only needed (and only enabled) for fp16.
    return amp, torch.amp.GradScaler(device.type, enabled=enabled and not bf16)


@dataclass
class Trainer:
    model: torch.nn.Module            # maybe DDP-wrapped
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler   # stepped every iteration
    scaler: torch.amp.GradScaler
    amp: Amp
    normalize: Normalize
    device: torch.device
    loss: str = "cross_entropy"       # "cross_entropy" | "bce"
    loss_weight: float = 1.0
    grad_clip: float | None = 40.0


def compute_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str, weight: float) -> torch.Tensor:
    logits = logits.float()           # the loss in fp32 whatever autocast produced
    if kind == "bce":
        return weight * F.binary_cross_entropy_with_logits(logits, labels)
    return weight * F.cross_entropy(logits, labels)


def train_step(t: Trainer, clips: torch.Tensor, labels: torch.Tensor) -> float:
    """One optimisation step on a (B, V, C, H, W) uint8 batch; returns the loss (nan if the step was skipped)."""
    x = t.normalize(clips, t.device)
    labels = labels.to(t.device, non_blocking=True)
    with t.amp.autocast():
        logits = t.model(x)
    loss = compute_loss(logits, labels, t.loss, t.loss_weight)
    t.optimizer.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):      # a NaN/Inf batch must not poison the weights: skip it, say so
        t.scheduler.step()
        return float("nan")
    t.scaler.scale(loss).backward()
    if t.grad_clip:
        t.scaler.unscale_(t.optimizer)
        torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.grad_clip)
    t.scaler.step(t.optimizer)
    t.scaler.update()
    t.scheduler.step()
    return loss.item()


def train_one_epoch(t: Trainer, loader, epoch: int, first_iter: int, log: Logger, log_interval: int) -> int:
    """Train over `loader` once; returns the global iteration count after the epoch."""
    t.model.train()
    n, it = len(loader), first_iter
    start = last = time.perf_counter()
    data_time = step_time = 0.0
    bar = tqdm(total=n, desc=f"epoch {epoch + 1}", disable=not (log.enabled and sys.stderr.isatty()), leave=False)
    for i, batch in enumerate(loader):
        got = time.perf_counter()
        data_time += got - last
        loss = train_step(t, batch.clips, batch.labels)
        last = time.perf_counter()
        step_time += last - got
        it += 1
        bar.update()
        if not math.isfinite(loss):
            log.warning(f"epoch {epoch + 1} iter {i + 1}: non-finite loss, step skipped")
        if (i + 1) % log_interval == 0 or i + 1 == n:
            k = (i + 1) % log_interval or log_interval
            lr = t.optimizer.param_groups[0]["lr"]
            mem = torch.cuda.max_memory_allocated(t.device) // 2**20 if t.device.type == "cuda" else 0
            eta = (last - start) / (i + 1) * (n - i - 1)
            log.info(f"Epoch [{epoch + 1}][{i + 1}/{n}] lr: {lr:.3e} loss: {loss:.4f} time: {step_time / k:.3f} "
                     f"data_time: {data_time / k:.3f} memory: {mem} eta: {format_eta(eta)}")
            log.record({"mode": "train", "epoch": epoch + 1, "iter": i + 1, "lr": lr, "loss": loss,
                        "time": step_time / k, "data_time": data_time / k, "memory": mem}, step=it)
            data_time = step_time = 0.0
    bar.close()
    return it


@torch.no_grad()
def predict_views(model: torch.nn.Module, x: torch.Tensor, amp: Amp, max_views: int) -> torch.Tensor:
    """Logits of (B, V, C, H, W) float clips with at most `max_views` views per forward.

    TSN averages pooled features over all views before one affine layer (dropout is off in eval), so the
    view-count-weighted mean of per-chunk logits equals the logits of one big forward: memory stays bounded.
    """
    v = x.shape[1]
    total = 0.0
    for s in range(0, v, max_views):
        chunk = x[:, s:s + max_views]
        with amp.autocast():
            total = total + model(chunk).float() * (chunk.shape[1] / v)
    return total


@torch.no_grad()
def evaluate(model, loader, normalize: Normalize, device: torch.device, amp: Amp, dist: Dist,
             max_views: int = 250, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-video logits in list order, gathered from every rank: (scores (N, K) float32, list indices (N,))."""
    model.eval()
    scores, indices = [], []
    for batch in tqdm(loader, desc="test", disable=not (progress and sys.stderr.isatty()), leave=False):
        logits = predict_views(model, normalize(batch.clips, device), amp, max_views).cpu()
        keep = batch.index >= 0       # evaluation padding (marked -1) is dropped here
        scores.append(logits[keep].numpy())
        indices.append(batch.index[keep].numpy())
    local = (np.concatenate(scores) if scores else np.zeros((0, 0), np.float32),
             np.concatenate(indices) if indices else np.zeros(0, np.int64))
    parts = gather_objects(local, dist)
    all_idx = np.concatenate([p[1] for p in parts])
    all_scores = np.concatenate([p[0] for p in parts if len(p[1])])
    order = np.argsort(all_idx, kind="stable")
    all_idx, all_scores = all_idx[order], all_scores[order]
    if len(np.unique(all_idx)) != len(all_idx):
        raise RuntimeError("evaluation counted a video twice across ranks (sharding bug)")
    return all_scores.astype(np.float32), all_idx
