"""`tsn profile --mode model` and `--mode step`: the network alone, then the real training loop on real data.

model: MMAction2's tools/analysis/benchmark.py procedure (v0.24.1) — random weights, batch 1 video with the recipe's
test views (e.g. 25 clips x 10 crops = 250), warm-up excluded, timed region = host->device copy + normalisation +
forward + scores back on the host; no data I/O. Plus the training step alone on a random uint8 batch.
step: train_step over the real loader; data_time = waiting for the next batch, step_time = the step itself, so
data_time / (data_time + step_time) answers "is the loader the bottleneck?".
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import torch

from jobs.evaluation.scoring import predict_views
from jobs.profiling.timing import forever, latency_summary, time_calls
from jobs.recipes.config import Config
from jobs.runtime.amp import make_amp
from jobs.runtime.distributed import Dist
from jobs.training.loop import Trainer, build_sgd, train_step
from model.tsn import build_tsn, param_groups

LOADER_BOUND = 0.10      # a data_time share above this means the model waits on the loader


def torch_device(device: str) -> torch.device:
    return torch.device("cuda" if device == "gpu" else "cpu")


def _sync(dev: torch.device):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def views_and_shape(cfg: Config, split: str) -> tuple[int, tuple[int, int, int]]:
    """Views per video and (C, H, W) of each, as the recipe's `split` pipeline produces them."""
    layout = cfg.clip_layout(split)
    return layout.views, (layout.channels, layout.out_h, layout.out_w)


def make_trainer(cfg: Config, dev: torch.device) -> Trainer:
    """A Trainer as `tsn train` builds it (random weights, constant lr: timing only)."""
    model = build_tsn(dataclasses.replace(cfg.model, pretrained=None)).to(dev)    # channels_last kept (model/tsn.py)
    o = cfg.optim
    optimizer = build_sgd(param_groups(model, o.lr, o.weight_decay, o.fc_lr5), lr=o.lr, momentum=o.momentum,
                          weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
    amp, scaler = make_amp(cfg.runtime.amp, dev)
    return Trainer(model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, amp=amp,
                   normalize=cfg.normalize, loss=o.loss, loss_weight=o.loss_weight, grad_clip=o.grad_clip,
                   dist=Dist(device=dev))


def profile_model(cfg: Config, *, device: str, warmup: int, iters: int, train_batch: int | None = None,
                  say: Callable[[str], None] = print) -> dict:
    dev = torch_device(device)
    trainer = make_trainer(cfg, dev)
    views, chw = views_and_shape(cfg, "test")
    clips = torch.randint(0, 256, (1, views, *chw), dtype=torch.uint8)
    say(f"[model] inference: 1 video x {views} views {chw}, {warmup} warm-up + {iters} timed, amp={cfg.runtime.amp}")
    trainer.model.eval()

    def infer():
        logits = predict_views(trainer.model, cfg.normalize(clips, dev), trainer.amp, cfg.runtime.max_views_per_forward)
        logits.cpu()

    t = time_calls(infer, warmup=warmup, count=iters)
    inference = {"views": views, "input": list(chw), "iters": iters, "videos_per_s": t.per_second,
                 "views_per_s": t.per_second * views, "latency_ms": t.latency_ms()}
    batch = train_batch or cfg.data.videos_per_gpu
    tviews, tchw = views_and_shape(cfg, "train")
    x = torch.randint(0, 256, (batch, tviews, *tchw), dtype=torch.uint8)
    labels = torch.randint(0, cfg.model.num_classes, (batch,))
    if cfg.optim.loss == "bce":
        labels = torch.nn.functional.one_hot(labels, cfg.model.num_classes).float()
    say(f"[model] training step: {batch} videos x {tviews} views {tchw}")
    trainer.model.train()

    def step():
        train_step(trainer, x, labels)
        _sync(dev)

    ts = time_calls(step, warmup=max(1, min(warmup, 2)), count=max(1, min(iters, 5)))
    train = {"batch": batch, "views": tviews, "iters": ts.batches, "step_ms": ts.latency_ms()["mean"],
             "clips_per_s": batch * ts.batches / ts.seconds, "latency_ms": ts.latency_ms()}
    return {"device": str(dev), "inference": inference, "train_step": train}


def run_steps(trainer: Trainer, batches, *, warmup: int, count: int) -> dict:
    """The training loop's own bookkeeping (engine.train_one_epoch): data_time vs step_time per iteration."""
    for _ in range(warmup):
        b = next(batches)
        train_step(trainer, b.clips, b.labels)
    data, step, clips = [], [], 0
    _sync(trainer.device)
    last = time.perf_counter()
    for _ in range(count):
        b = next(batches)
        got = time.perf_counter()
        train_step(trainer, b.clips, b.labels)
        _sync(trainer.device)
        done = time.perf_counter()
        data.append(got - last)
        step.append(done - got)
        clips += len(b.index)
        last = done
    total = sum(data) + sum(step)
    share = sum(data) / total
    return {"iters": count, "clips": clips, "seconds": total, "clips_per_s": clips / total,
            "data_time_share": share, "data_ms": latency_summary(data), "step_ms": latency_summary(step),
            "verdict": "loader-bound" if share > LOADER_BOUND else "model-bound"}


def prepare_step(cfg: Config, device: str):
    """The training loader, built before any CUDA work (see profile_data.Prepared)."""
    from jobs.recipes.loaders import build_loader
    return build_loader(cfg, "train", device=device, device_id=0 if device == "gpu" else None)


def profile_step(cfg: Config, loader, *, device: str, warmup: int, iters: int, compare: bool = False,
                 ref_workers: int | None = None, say: Callable[[str], None] = print) -> dict:
    dev = torch_device(device)
    trainer = make_trainer(cfg, dev)
    trainer.model.train()
    say(f"[step] training loop on the DALI loader: {warmup} warm-up + {iters} timed iterations")
    out = {"device": str(dev), "batch": cfg.data.videos_per_gpu,
           "dali": run_steps(trainer, forever(lambda: loader), warmup=warmup, count=iters)}
    if compare:
        from jobs.profiling.reference_loader import build_reference_loader, decoders_for, missing
        from jobs.recipes.loaders import settings
        workers = ref_workers or settings(cfg, device).threads
        decoder = next(d for d in decoders_for(cfg.data.source) if not missing(d))   # MMAction2's if installed
        say(f"[step] training loop on the reference DataLoader ({decoder}, {workers} workers)")
        ref = build_reference_loader(cfg, "train", workers=workers, decoder=decoder)
        out["reference"] = run_steps(trainer, forever(lambda: ref), warmup=warmup, count=iters)
        out["reference"].update(workers=workers, decoder=decoder)
        out["ratio"] = out["dali"]["clips_per_s"] / out["reference"]["clips_per_s"]
    return out
