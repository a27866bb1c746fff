"""Training a recipe: loaders, model, optimiser, schedule, resume, the epoch loop, validation and checkpoints.

One process trains on one CPU or one GPU; under torchrun every rank runs this same function (DDP).
"""
from __future__ import annotations

import functools
import random
from pathlib import Path

import numpy as np
import torch

from jobs.evaluation.metrics import compute_metrics, headline
from jobs.evaluation.scoring import evaluate
from jobs.recipes.config import Config, dump_config
from jobs.recipes.loaders import build_loader
from jobs.runtime import checkpoint as ckpt
from jobs.runtime.amp import make_amp
from jobs.runtime.distributed import Dist, exit_on_error, init_distributed, shutdown, unwrap, wrap_ddp
from jobs.runtime.signals import DEFAULT_SIGNAL
from jobs.runtime.weights import build_model
from jobs.training.logs import Logger
from jobs.training.loop import Trainer, build_sgd, train_one_epoch
from jobs.training.preemption import Preemption
from jobs.training.schedule import StepSchedule
from model.tsn import param_groups
from pipelines.sharding import Shard

BASE_GPUS = 8   # "this lr is used for 8 gpus": recipes' lr is for a global batch of 8 x videos_per_gpu


def seed_everything(seed: int, deterministic: bool):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.device_count() else []}


def set_rng_state(state: dict):
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") and torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def scaled_lr(cfg: Config, dist: Dist, auto_scale: bool, log: Logger, recipe_videos_per_gpu: int | None = None) \
        -> float:
    """The lr to train with: with `auto_scale`, linear in the global batch over the recipe's, 8 GPUs x the recipe's own
    videos_per_gpu (what its lr was tuned for, before any --cfg-options change of the batch; mmengine
    `Runner.scale_lr`: lr x world_size x batch_size / base_batch_size)."""
    effective = dist.world_size * cfg.data.videos_per_gpu
    base = BASE_GPUS * (recipe_videos_per_gpu or cfg.data.videos_per_gpu)
    lr = cfg.optim.lr * effective / base if auto_scale else cfg.optim.lr
    log.info(f"global batch {effective} videos ({dist.world_size} x {cfg.data.videos_per_gpu}); recipe lr "
             f"{cfg.optim.lr:g} is for {base}; using lr {lr:g}" + (" (linear scaling)" if auto_scale else ""))
    return lr


def validate(model, loader, cfg: Config, dist: Dist, amp, log: Logger, epoch: int, step: int) -> dict:
    """Evaluate with the val protocol; the metrics go to the logs (TensorBoard at global iteration `step`)."""
    scores, index = evaluate(model, loader, cfg.normalize, dist.device, amp, dist, cfg.runtime.max_views_per_forward)
    labels = [loader.source.records[i].labels for i in index]
    metrics = compute_metrics(scores, labels, cfg.runtime.metrics, cfg.model.num_classes)
    log.info(f"Epoch(val) [{epoch + 1}] (training-time val protocol, {len(index)} videos) "
             + " ".join(f"{k}: {v:.4f}" for k, v in metrics.items()))
    log.record({"mode": "val", "epoch": epoch + 1, **metrics}, step=step)
    return metrics


def train(cfg: Config, work_dir: str, *, resume: str | None = None, load_from: str | None = None,
        validate_every: bool = True, deterministic: bool = False, device: str | None = None,
        auto_scale_lr: bool = False, tensorboard: bool = False, recipe_videos_per_gpu: int | None = None,
        preempt_signal: str | None = DEFAULT_SIGNAL, requeue: bool = False) -> dict:
    """Train `cfg`; returns the last validation metrics (empty without validation).

    recipe_videos_per_gpu: the recipe's videos_per_gpu as written, before overrides (None: cfg's); --auto-scale-lr
    scales from 8 x that batch.
    On SIGTERM or `preempt_signal` the run stops after the current step, saves a mid-epoch checkpoint and exits with
    preemption.PREEMPTED_EXIT (`requeue`: after `scontrol requeue $SLURM_JOB_ID`).

    Under DDP an error on one rank ends that process promptly (distributed.exit_on_error), naming the rank.
    """
    dist = init_distributed(device)
    log = Logger(work_dir, enabled=dist.is_main, tensorboard=tensorboard)
    with exit_on_error(dist, cleanup=log.close):
        final = _train(cfg, work_dir, dist, log, resume=resume, load_from=load_from, validate_every=validate_every,
                       deterministic=deterministic, auto_scale_lr=auto_scale_lr,
                       recipe_videos_per_gpu=recipe_videos_per_gpu, preempt_signal=preempt_signal, requeue=requeue)
    log.close()
    shutdown(dist)
    return final


def _train(cfg: Config, work_dir: str, dist: Dist, log: Logger, *, resume: str | None, load_from: str | None,
           validate_every: bool, deterministic: bool, auto_scale_lr: bool, recipe_videos_per_gpu: int | None,
           preempt_signal: str | None = None, requeue: bool = False) -> dict:
    seed_everything(cfg.runtime.seed, deterministic)
    if dist.is_main:
        dump_config(cfg, Path(work_dir) / "config.json")
    log.info(f"config {cfg.name} on {dist.device} (world size {dist.world_size}); work dir {work_dir}")
    start_epoch, iteration, best = 0, 0, float("-inf")
    resume_path = ckpt.find_latest(work_dir) if resume == "auto" else (Path(resume) if resume else None)
    # Checkpoints first: a bad file is refused before any data loader starts.
    state = ckpt.load_checkpoint(resume_path) if resume_path else None
    load_from = load_from or cfg.runtime.load_from or None
    initial = ckpt.read_checkpoint(load_from) if load_from else None     # --load-from / runtime.load_from
    classes = ckpt.dataset_classes(cfg, log.warning)
    if resume == "auto" and state is None:
        log.info("--resume auto: no checkpoint in the work dir, starting from scratch")
    # Loaders first: their DALI workers fork before this process creates a CUDA context.
    shard = Shard(dist.rank, dist.world_size)
    train_loader = build_loader(cfg, "train", shard=shard, device=dist.data_device, device_id=dist.data_device_id,
                                start_epoch=state["epoch"] if state else 0, work_dir=work_dir,
                                first_batch=state.get("epoch_iteration", 0) if state else 0)
    val_loader = build_loader(cfg, "val", shard=shard, device=dist.data_device, device_id=dist.data_device_id,
                              work_dir=work_dir) if validate_every else None
    stop = Preemption.install(dist, preempt_signal)      # after the loaders: forked workers keep default handlers
    if train_loader.short_videos:
        log.warning(f"{len(train_loader.short_videos)} training videos have fewer frames than a sample needs and "
                    f"are padded with repeated frames, e.g. {train_loader.short_videos[0]}")
    model = build_model(cfg.model, initial, log.info).to(dist.device)    # channels_last kept (model/tsn.py)
    lr = scaled_lr(cfg, dist, auto_scale_lr, log, recipe_videos_per_gpu)
    o = cfg.optim
    optimizer = build_sgd(param_groups(model, lr, o.weight_decay, o.fc_lr5), lr=lr, momentum=o.momentum,
                          weight_decay=o.weight_decay)
    amp, scaler = make_amp(cfg.runtime.amp, dist.device)
    n = len(train_loader)
    schedule = StepSchedule(n, o.lr_steps, o.gamma, o.warmup_epochs * n, o.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:    # a checkpoint's groups replace ours: keep the fused step
            group.update(fused=True, foreach=None)
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, iteration, best = state["epoch"], state["iteration"], state["best_metric"]
        set_rng_state(state["rng"])
        log.info(f"resumed from {resume_path}: epoch {start_epoch}, iteration {iteration}, "
                 f"batch {state.get('epoch_iteration', 0)} of the epoch, "
                 f"lr {optimizer.param_groups[0]['lr']:g}")
    trainer = Trainer(model=wrap_ddp(model, dist), optimizer=optimizer, scheduler=scheduler, scaler=scaler, amp=amp,
                      normalize=cfg.normalize, loss=o.loss, loss_weight=o.loss_weight, grad_clip=o.grad_clip, dist=dist)
    final = {}
    for epoch in range(start_epoch, o.epochs):
        iteration = train_one_epoch(trainer, train_loader, epoch, iteration, log, cfg.runtime.log_interval, stop)
        if stop.stop:                                       # preempted: save this step's state and leave
            state = ckpt.training_state(cfg, unwrap(trainer.model), optimizer, scheduler, scaler, epoch=epoch,
                                        iteration=iteration, best_metric=best, rng=rng_state(), classes=classes,
                                        epoch_iteration=stop.stop.batch)
            stop.leave(functools.partial(ckpt.save_checkpoint, state, work_dir, ckpt.INTERRUPTED), log, requeue=requeue)
        for bad in train_loader.bad_samples():
            log.warning(f"skipped {bad['line']}: {bad['reason']}")
        last = epoch + 1 == o.epochs
        metrics = {}
        if validate_every and ((epoch + 1) % cfg.runtime.eval_interval == 0 or last):
            metrics = final = validate(trainer.model, val_loader, cfg, dist, amp, log, epoch, iteration)
        improved = bool(metrics) and headline(metrics) > best
        best = headline(metrics) if improved else best
        save_epoch = (epoch + 1) % cfg.runtime.checkpoint_interval == 0 or last
        if dist.is_main and (save_epoch or improved):
            state = ckpt.training_state(cfg, unwrap(trainer.model), optimizer, scheduler, scaler, epoch=epoch + 1,
                                        iteration=iteration, best_metric=best, rng=rng_state(), classes=classes)
            if improved:
                ckpt.save_checkpoint(state, work_dir, "best.pth", latest=False)
                log.info(f"best {best:.4f} at epoch {epoch + 1}: saved best.pth")
            if save_epoch:
                ckpt.save_checkpoint(state, work_dir, f"epoch_{epoch + 1}.pth")
                ckpt.prune(work_dir, cfg.runtime.keep_last)
    stop.uninstall()
    return final


