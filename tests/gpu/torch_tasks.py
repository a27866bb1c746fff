"""Torch-only GPU measurements for the wheel-carrying calls 1-4 of the GPU check (docs/GPU_CHECK.md).

The lent machine has torch but no DALI or PyAV, which arrive in parts over calls 1-5. These tasks need torch alone
(and this repository's model and training step), so each parts-only call also measures something on the GPU:

    python3 -m tests.gpu.torch_tasks --part 1 --out $OUT [--budget 25] [--device cuda] [--tiny]

  part 1  train_step_r50    K400 R50 1x1x3 training step at the recipe's batch (32 videos x 3 views x 224):
                            clips/s and peak memory, bf16 (AMP) and fp32, channels_last on and off
  part 2  train_step_r101   the same for R101 (M-MiT 1x1x5: 16 x 5 x 224, BCE loss)
          cudnn_benchmark   R50 step with torch.backends.cudnn.benchmark off and on
  part 3  inference         25x10 (250 views x 224) and 25x3 (75 x 256) inference videos/s from random tensors (the
                            model-bound ceiling the loader must feed), peak memory, channels_last off and on
  part 4  nccl              a world-size-1 NCCL process group (gloo on a CPU): all_reduce, broadcast, barrier, and
                            one DDP training step through the production train_step
          tvl1              torch TV-L1 optical flow throughput (tests/gpu/tvl1_task.py, when present)

Each task writes `torch_<task>.json` ({"status", "result" | "error" | "reason", "wall_s"}) to --out and to the
persistent folder $GPU_CHECK_TORCH (default work_dirs/gpu_check_torch), where the check of call 5 collects them for
its report. The training step is the production one (jobs/training/loop.py: fused SGD with the device-side
non-finite flag, AMP as `tsn train` sets it up); inputs are random uint8 clips (B, V, C, H, W). --tiny runs the same
code at toy sizes (a ResNet-18, batch 2, 64 x 64 views, 1 timed step): what the dry run does on a CPU.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
ENV_TORCH, DEFAULT_TORCH = "GPU_CHECK_TORCH", "work_dirs/gpu_check_torch"
R50, R101 = "tsn_r50_1x1x3_100e_kinetics400_rgb", "tsn_r101_1x1x5_50e_mmit_rgb"
PARTS = {"1": ("train_step_r50",), "2": ("train_step_r101", "cudnn_benchmark"), "3": ("inference",),
         "4": ("nccl", "tvl1")}


class OutOfTime(Exception):
    """The part's budget ran out before this measurement."""


@dataclasses.dataclass(frozen=True)
class Run:
    device: torch.device
    tiny: bool
    deadline: float            # time.monotonic() after which no new measurement starts
    out: Path

    def check_time(self):
        if time.monotonic() > self.deadline:
            raise OutOfTime("the part's budget is used up")


def _cfg(recipe: str, run: Run):
    """The recipe's config; --tiny swaps in a ResNet-18 (the same code path at a CPU's pace)."""
    from jobs.recipes.config import load_config
    return load_config(recipe, ["model.arch=resnet18"] if run.tiny else [])


def _sync(dev: torch.device):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _reset_peak(dev: torch.device):
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def _peak_gib(dev: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None


def _timed(fn: Callable[[], None], dev: torch.device, warmup: int, count: int) -> list[float]:
    """Milliseconds of each of `count` calls after `warmup` untimed ones, synchronised on the device."""
    for _ in range(warmup):
        fn()
    _sync(dev)
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        out.append(1e3 * (time.perf_counter() - t0))
    return out


def _trainer(cfg, dev: torch.device, amp: bool, channels_last: bool):
    """The Trainer `tsn train` builds (random weights; build_sgd's fused SGD; make_amp's dtype), constant lr."""
    from jobs.runtime.amp import make_amp
    from jobs.runtime.distributed import Dist
    from jobs.training.loop import Trainer, build_sgd
    from model.tsn import build_tsn, param_groups
    model = build_tsn(dataclasses.replace(cfg.model, pretrained=None)).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    o = cfg.optim
    opt = build_sgd(param_groups(model, o.lr, o.weight_decay, o.fc_lr5), lr=o.lr, momentum=o.momentum,
                    weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    amp_, scaler = make_amp(amp, dev)
    return Trainer(model=model, optimizer=opt, scheduler=sched, scaler=scaler, amp=amp_, normalize=cfg.normalize,
                   loss=o.loss, loss_weight=o.loss_weight, grad_clip=o.grad_clip, dist=Dist(device=dev))


def _batch(cfg, split: str, run: Run, batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 clips (B, V, C, H, W) of the recipe's `split` layout and labels (B,) or (B, K) for BCE."""
    from jobs.profiling.model import views_and_shape
    views, (c, h, w) = views_and_shape(cfg, split)
    b = batch or cfg.data.videos_per_gpu
    if run.tiny:
        b, h, w = min(b, 2), 64, 64
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (b, views, c, h, w), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, cfg.model.num_classes, (b,), generator=g)
    if cfg.optim.loss == "bce":
        labels = torch.nn.functional.one_hot(labels, cfg.model.num_classes).float()
    return clips, labels


def step_row(cfg, run: Run, amp: bool, channels_last: bool) -> dict:
    """The production training step on a random batch of `cfg`'s train layout at its batch: time, peak memory."""
    from jobs.training.loop import train_step
    run.check_time()
    dev = run.device
    _reset_peak(dev)
    trainer = _trainer(cfg, dev, amp, channels_last)
    trainer.model.train()
    clips, labels = _batch(cfg, "train", run)
    losses = []

    def step():
        losses.append(train_step(trainer, clips, labels))

    ms = _timed(step, dev, warmup=0 if run.tiny else 2, count=1 if run.tiny else 5)
    values = torch.stack(losses).float().cpu()
    row = {"amp": amp, "amp_dtype": str(trainer.amp.dtype).replace("torch.", "") if amp else "float32",
           "grad_scaler": trainer.scaler.is_enabled(), "channels_last": channels_last,
           "batch": list(clips.shape), "step_ms": ms, "median_step_ms": sorted(ms)[len(ms) // 2],
           "clips_per_s": clips.shape[0] * 1e3 / (sum(ms) / len(ms)), "peak_memory_gib": _peak_gib(dev),
           "losses_finite": bool(torch.isfinite(values).all()), "first_loss": float(values[0])}
    return row


def _train_steps(recipe: str, run: Run) -> dict:
    cfg = _cfg(recipe, run)
    rows, missing = [], []
    # --tiny: two of the four, still each flag both ways (a CPU's minutes go to the dry run's other sections).
    variants = ((True, False), (False, True)) if run.tiny else ((True, False), (True, True), (False, False),
                                                                (False, True))
    for amp, channels_last in variants:
        try:
            rows.append(step_row(cfg, run, amp, channels_last))
        except OutOfTime:
            missing.append({"amp": amp, "channels_last": channels_last})
    return {"recipe": recipe, "arch": cfg.model.arch, "rows": rows, "not_run": missing,
            "pass": bool(rows) and all(r["losses_finite"] for r in rows)}


def train_step_r50(run: Run) -> dict:
    return _train_steps(R50, run)


def train_step_r101(run: Run) -> dict:
    return _train_steps(R101, run)


def cudnn_benchmark(run: Run) -> dict:
    """The R50 step (bf16 AMP as the recipe sets it) with cuDNN's autotuner off, then on (first step = tuning)."""
    cfg = _cfg(R50, run)
    rows = []
    before = torch.backends.cudnn.benchmark
    try:
        for on in (False, True):
            torch.backends.cudnn.benchmark = on
            rows.append({"cudnn_benchmark": on, **step_row(cfg, run, cfg.runtime.amp, cfg.model.channels_last)})
    except OutOfTime:
        pass
    finally:
        torch.backends.cudnn.benchmark = before
    return {"recipe": R50, "rows": rows, "pass": len(rows) == 2 and all(r["losses_finite"] for r in rows)}


def inference_row(cfg, run: Run, channels_last: bool) -> dict:
    """MMAction2 benchmark.py's measure on `cfg`'s test views: one video per forward, scores back on the host."""
    from jobs.evaluation.scoring import predict_views
    run.check_time()
    dev = run.device
    _reset_peak(dev)
    trainer = _trainer(cfg, dev, cfg.runtime.amp, channels_last)
    trainer.model.eval()
    clips, _ = _batch(cfg, "test", run, batch=1)
    if run.tiny:                                   # 25 clips -> 1: 10 or 3 views of 64 x 64
        clips = clips[:, : max(1, clips.shape[1] // 25)]

    @torch.no_grad()
    def infer():
        predict_views(trainer.model, cfg.normalize(clips, dev), trainer.amp, cfg.runtime.max_views_per_forward).cpu()

    ms = _timed(infer, dev, warmup=0 if run.tiny else 3, count=1 if run.tiny else 10)
    return {"recipe": cfg.name, "views": clips.shape[1], "input": list(clips.shape[2:]),
            "channels_last": channels_last,
            "amp_dtype": str(trainer.amp.dtype).replace("torch.", "") if cfg.runtime.amp else "float32",
            "latency_ms": ms, "videos_per_s": 1e3 / (sum(ms) / len(ms)),
            "views_per_s": clips.shape[1] * 1e3 / (sum(ms) / len(ms)), "peak_memory_gib": _peak_gib(dev)}


PROTOCOL_NAMES = (("25x10", "tencrop25"), ("25x3", "threecrop25"))   # jobs/training/protocols.py


def inference_rows(cfg, run: Run, channels_last_both: bool = True) -> tuple[list[dict], list[dict]]:
    """25x10 (TenCrop 224, 250 views) and 25x3 (ThreeCrop 256, 75 views) of `cfg`'s model: (rows, not run)."""
    from jobs.evaluation.protocols import with_protocol
    rows, missing = [], []
    for name, protocol in PROTOCOL_NAMES:
        for channels_last in ((False, True) if channels_last_both and not run.tiny else (cfg.model.channels_last,)):
            try:
                rows.append({"protocol": name, **inference_row(with_protocol(cfg, protocol), run, channels_last)})
            except OutOfTime:
                missing.append({"protocol": name, "channels_last": channels_last})
    return rows, missing


def inference(run: Run) -> dict:
    rows, missing = inference_rows(_cfg(R50, run), run)
    return {"recipe": R50, "rows": rows, "not_run": missing, "pass": None}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nccl(run: Run) -> dict:
    """A world-size-1 process group on the backend `tsn train` uses there (NCCL on CUDA, gloo on a CPU): the
    collectives the jobs call, then one DDP step of a small TSN through the production train_step."""
    import torch.distributed as td

    from jobs.recipes.config import load_config
    from jobs.runtime.distributed import Dist
    from jobs.training.loop import train_step
    dev = run.device
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    t0 = time.perf_counter()
    td.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    out = {"backend": backend, "init_s": time.perf_counter() - t0, "nccl_version": None}
    try:
        if backend == "nccl":
            out["nccl_version"] = ".".join(map(str, torch.cuda.nccl.version()))
        x = torch.tensor([1.0, float("inf"), 3.0], device=dev)
        td.all_reduce(x, op=td.ReduceOp.MAX)                       # all_reduce_max_'s collective
        out["all_reduce_max"] = x.cpu().tolist()
        y = torch.arange(4, device=dev, dtype=torch.float32)
        td.broadcast(y, src=0)
        out["broadcast"] = y.cpu().tolist()
        td.barrier()
        objs = [None]
        td.all_gather_object(objs, {"rank": 0})                    # gather_objects' collective (evaluation)
        out["all_gather_object"] = objs
        cfg = load_config("tsn_r18_synthetic_rgb")
        trainer = _trainer(cfg, dev, amp=dev.type == "cuda", channels_last=False)
        ids = [dev.index or 0] if dev.type == "cuda" else None
        trainer = dataclasses.replace(trainer, model=torch.nn.parallel.DistributedDataParallel(trainer.model,
                                                                                               device_ids=ids),
                                      dist=Dist(0, 0, 1, dev))
        clips, labels = _batch(cfg, "train", dataclasses.replace(run, tiny=True))
        loss = float(train_step(trainer, clips, labels))
        out["ddp_step_loss"] = loss
        out["pass"] = bool(out["all_reduce_max"] == [1.0, float("inf"), 3.0] and out["broadcast"] == [0, 1, 2, 3]
                           and objs == [{"rank": 0}] and loss == loss)
    finally:
        td.destroy_process_group()
    return out


def tvl1(run: Run) -> dict:
    """The torch TV-L1 backend's throughput, from tests/gpu/tvl1_task.py's run(out_dir, device, tiny) -> dict."""
    try:
        task = importlib.import_module("tests.gpu.tvl1_task")
    except ModuleNotFoundError as err:
        if err.name != "tests.gpu.tvl1_task":
            raise
        return {"present": False, "note": "not present: tests/gpu/tvl1_task.py is not in this checkout", "pass": None}
    run.check_time()
    return {"present": True, **task.run(str(run.out), run.device.type, run.tiny)}


TASKS = {"train_step_r50": train_step_r50, "train_step_r101": train_step_r101, "cudnn_benchmark": cudnn_benchmark,
         "inference": inference, "nccl": nccl, "tvl1": tvl1}


def torch_dir() -> Path:
    return Path(os.environ.get(ENV_TORCH) or ROOT / DEFAULT_TORCH)


def run_part(part: str, outs: list[Path], device: torch.device, tiny: bool, budget_s: float, say=print) -> dict:
    """Runs the part's tasks in order, each record written to every folder of `outs` as soon as it exists."""
    deadline = time.monotonic() + budget_s
    records = {}
    for name in PARTS[part]:
        t0 = time.perf_counter()
        run = Run(device, tiny, deadline, outs[0])
        say(f"[torch] part {part}: {name} on {device}{' (tiny)' if tiny else ''}")
        try:
            run.check_time()
            record = {"status": "ok", "result": TASKS[name](run)}
        except OutOfTime as why:
            record = {"status": "not_run", "reason": str(why)}
        except Exception as err:
            traceback.print_exc()
            record = {"status": "error", "error": f"{type(err).__name__}: {err}",
                      "traceback": traceback.format_exc()[-4000:]}
        record.update(part=part, task=name, device=str(device), tiny=tiny, wall_s=time.perf_counter() - t0)
        if device.type == "cuda":
            record["gpu"] = torch.cuda.get_device_name(device)
        for out in outs:
            out.mkdir(parents=True, exist_ok=True)
            (out / f"torch_{name}.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
        say(f"[torch]   {name}: {record['status']} in {record['wall_s']:.1f} s")
        records[name] = record
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", required=True, choices=[*PARTS, "all"])
    ap.add_argument("--out", help="also write the JSONs here (the device call's $OUT)")
    ap.add_argument("--device", help="cuda | cpu (default: cuda when torch sees a GPU)")
    ap.add_argument("--tiny", action="store_true", help="toy sizes (the dry run on a CPU)")
    ap.add_argument("--budget", type=float, default=25.0, help="seconds for the part; later tasks are not started")
    args = ap.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.device_count() else "cpu"))
    outs = [torch_dir()] + ([Path(args.out)] if args.out else [])
    parts = list(PARTS) if args.part == "all" else [args.part]
    records = {}
    for p in parts:
        records.update(run_part(p, outs, device, args.tiny, args.budget))
    print(json.dumps({k: {"status": r["status"], **({"pass": r["result"].get("pass")} if "result" in r else {})}
                      for k, r in records.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
