"""torchrun environment -> one `Dist` value object; the single DDP wrapper; the few collectives the jobs need;
how a failing rank leaves (`exit_on_error`)."""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as torch_dist

from jobs.runtime.devices import dali_device, pick_device
from pipelines.workers import die_with_parent


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def data_device(self) -> str:
        """Where the DALI graph runs: "gpu" (nvJPEG/NVDEC) when training on CUDA, else "cpu"."""
        return dali_device(self.device)[0]

    @property
    def data_device_id(self) -> int | None:
        """The CUDA device DALI runs on: the one torch trains on (`--device cuda:1` -> 1), None on the CPU."""
        return dali_device(self.device)[1]


def init_distributed(requested_device: str | None = None, timeout_min: int = 30) -> Dist:
    """Read RANK / LOCAL_RANK / WORLD_SIZE (set by torchrun); join the process group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device, local)
    if os.environ.get("TORCHELASTIC_RUN_ID"):
        # Started by torchrun: this rank gets SIGTERM (a preemption stop, jobs/training/preemption.py) when the
        # launcher dies, even by SIGKILL, instead of training on as an orphan.
        die_with_parent(signal.SIGTERM, os.getppid())
    if world > 1 and not torch_dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        # A finite timeout turns a stuck rank into an error message instead of an endless hang.
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch_dist.init_process_group(backend, timeout=timedelta(minutes=timeout_min))
    return Dist(rank, local, world, device)


def wrap_ddp(model: torch.nn.Module, dist: Dist) -> torch.nn.Module:
    """The one DDP wrapper (identity for a single process)."""
    if not dist.distributed:
        return model
    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def gather_objects(obj, dist: Dist) -> list:
    """Every rank's `obj`, in rank order (a one-element list without DDP)."""
    if not dist.distributed:
        return [obj]
    out = [None] * dist.world_size
    torch_dist.all_gather_object(out, obj)
    return out


def all_reduce_max_(tensor: torch.Tensor, dist: Dist) -> torch.Tensor:
    """`tensor`, in place, as its elementwise maximum over the ranks; untouched (no collective) on one process."""
    if dist.distributed:
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MAX)
    return tensor


def barrier(dist: Dist):
    if dist.distributed:
        torch_dist.barrier()


def shutdown(dist: Dist):
    if dist.distributed and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


@contextmanager
def exit_on_error(dist: Dist, cleanup=None):
    """Under DDP, an exception on this rank ends this process at once: message with the rank, traceback, exit 1.

    The other ranks are then stuck in a collective that cannot complete. torchrun stops every worker as soon as one
    exits non-zero (the normal path), and a gloo peer also sees this rank's sockets close and fails its collective.
    What must not happen is this rank hanging on its way out: unwinding normally runs the destructors of DALI
    pipelines (whose Python workers are other processes), of the process group and of CUDA state, and some of those
    wait for peers or workers that will never answer. So, after `cleanup()` (e.g. closing log files), this
    process's own child processes (DALI's workers) are stopped (`stop_workers`) and it leaves with os._exit, skipping
    them.
    A single process just raises.
    """
    try:
        yield
    except BaseException as err:
        if not dist.distributed or (isinstance(err, SystemExit) and err.code in (0, None)):
            raise
        try:
            sys.stdout.flush()
            traceback.print_exc()
            print(f"[rank {dist.rank}/{dist.world_size}] {type(err).__name__}: {err}\n"
                  f"[rank {dist.rank}/{dist.world_size}] exiting; torchrun stops the other ranks", file=sys.stderr)
            sys.stderr.flush()
            if cleanup is not None:
                cleanup()
            stop_workers()
        finally:
            os._exit(1)


def stop_workers(grace_s: float = 2.0):
    """Terminate this process's multiprocessing children (DALI's Python workers), SIGKILL any still alive after
    `grace_s`."""
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(grace_s)
        if child.exitcode is None:
            child.kill()
            child.join(1.0)
