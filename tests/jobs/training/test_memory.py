"""Memory stays flat across epochs: a 5-epoch synthetic training run, RSS of the process and its DALI workers sampled
after every epoch. A leak per batch or per epoch (buffers kept alive, per-epoch plans accumulating, worker caches
growing) would show as growth after the first epoch, which allocates the steady-state buffers."""
from __future__ import annotations

import os

import torch

from jobs.recipes.config import load_config
from jobs.recipes.loaders import build_loader
from jobs.runtime.amp import make_amp
from jobs.runtime.distributed import Dist
from jobs.runtime.weights import build_model
from jobs.training.logs import Logger
from jobs.training.loop import Trainer, build_sgd, train_one_epoch
from pipelines.loader import worker_processes
from tests.helpers import synthetic_overrides

GROWTH_LIMIT_MB = 48      # allocator noise is a few MB; one leaked batch of the loader alone is ~7 MB here


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def test_rss_is_flat_over_five_epochs(synthetic_root):
    cfg = load_config("tsn_r18_synthetic_rgb", synthetic_overrides(synthetic_root) + [
        "data.workers=1", "data.videos_per_gpu=6", "runtime.amp=false"])
    loader = build_loader(cfg, "train")
    model = build_model(cfg.model)
    o = cfg.optim
    optimizer = build_sgd(model.parameters(), lr=0.001, momentum=o.momentum, weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
    amp, scaler = make_amp(False, torch.device("cpu"))
    trainer = Trainer(model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, amp=amp,
                      normalize=cfg.normalize, dist=Dist())
    log = Logger(None, enabled=False)
    samples, it = [], 0
    for epoch in range(5):
        it = train_one_epoch(trainer, loader, epoch, it, log, log_interval=100)
        pids = [os.getpid()] + [p.pid for p in worker_processes(loader.pipeline)]
        samples.append(sum(rss_mb(p) for p in pids))
    assert it == 5 * len(loader)
    growth = max(samples[1:]) - samples[1]
    assert growth < GROWTH_LIMIT_MB, f"RSS per epoch (MB): {[round(s) for s in samples]}"
