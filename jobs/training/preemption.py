"""Preemption: on SIGTERM or the preempt signal (SIGUSR1 by default) training stops after the current step, every
rank at the same step, rank 0 saves a mid-epoch checkpoint, and the process exits with PREEMPTED_EXIT (requeueing the
SLURM job first when asked to). docs/RUNNING_ON_CLUSTERS.md shows the SLURM side.

How the pieces fit:
  * the signal handler only records the signal (a flag); everything else happens in the training loop, between
    steps, where the model, optimiser and loader are in a consistent state. A second signal while the checkpoint is
    written is recorded too and changes nothing: the write is atomic (checkpoint.py: temp file, fsync, rename).
  * before every step (once its batch is there) the ranks agree whether to stop: the flag is all-reduced with MAX
    (`Preemption.agreed`), so a signal that reached one rank stops all of them at the same batch and none waits in
    a collective for a peer that left. On NCCL the flag goes through a gloo group on the host (no device sync per
    step). The step running when the signal came is finished; a signal during a wait for data stops before the
    batch. SLURM signals every process of the job, DALI's workers too: a worker ended by that SIGTERM while this
    rank waited for its batch is the stop this rank was asked for, not a data error (`Preemption.batches`).
  * rank 0 writes `interrupted.pth` (the one checkpoint format, plus `epoch_iteration`: batches of the current epoch
    already trained) and points `latest` at it; `--resume auto` then starts that epoch at that batch (the data order
    is a pure function of seed, epoch and batch, pipelines/sharding.py), so an interrupted and resumed run trains on
    exactly the batches, RNG states and optimiser states of an uninterrupted one.
  * then the data workers are stopped and the process leaves with os._exit (no destructor of a DALI pipeline or of
    the process group may wait for a peer or worker that is gone; see distributed.exit_on_error).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from jobs.runtime.distributed import Dist, barrier, stop_workers
from jobs.runtime.signals import DEFAULT_SIGNAL, PREEMPTED_EXIT, parse_signal
from pipelines.loader import LoaderStalled, WorkerDied


@dataclass(frozen=True)
class Stop:
    """Where training stopped: the epoch in progress (0-based) and how many of its batches were trained."""

    epoch: int
    batch: int
    signal: str


class Preemption:
    """The installed handlers and the flag they set. `install` after the data loaders exist (forked workers keep
    their default dispositions), on every rank, in the same order (the gloo group is a collective call)."""

    def __init__(self, dist: Dist, signals: tuple[signal.Signals, ...]):
        self.dist, self.signals = dist, signals
        self.received: signal.Signals | None = None
        self.stop: Stop | None = None
        self._pid = os.getpid()
        self._previous: dict = {}
        self._group = None
        if dist.distributed and torch_dist.get_backend() != "gloo":
            self._group = torch_dist.new_group(backend="gloo")

    @classmethod
    def install(cls, dist: Dist, preempt_signal: str | None = DEFAULT_SIGNAL) -> Preemption:
        extra = (parse_signal(preempt_signal),) if preempt_signal else ()
        self = cls(dist, tuple(dict.fromkeys((signal.SIGTERM, *extra))))
        if threading.current_thread() is threading.main_thread():   # Python sets handlers only from there
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self):
        """Restore the handlers that were there before (training ended normally; the process may go on)."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum, frame):
        if os.getpid() != self._pid:
            # A process forked after install (a DALI worker of a rebuilt pipeline) inherited this handler: it is
            # not the trainer, so the signal keeps its default meaning there.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if self.received is None:
            self.received = signal.Signals(signum)

    def agreed(self) -> bool:
        """Whether any rank received a stop signal; a collective on every rank (call once per step, on all)."""
        flag = torch.tensor([0.0 if self.received is None else 1.0])
        if self.dist.distributed:
            torch_dist.all_reduce(flag, op=torch_dist.ReduceOp.MAX, group=self._group)
        return bool(flag.item())

    def check(self, epoch: int, batch: int) -> bool:
        """With `batch` batches of `epoch` trained: True (and `self.stop` set) when training must stop here."""
        if self.agreed():
            self.stop = Stop(epoch, batch, self.received.name if self.received else "a signal on another rank")
            return True
        return False

    def batches(self, loader, epoch: int):
        """The batches of `loader` (from its data position), each once every rank agreed to go on; ends early, with
        `self.stop` set, when they agree to stop. They agree once more after the last batch, so that a signal during
        the epoch's last step stops before validation (the resumed run validates and saves that epoch)."""
        position = getattr(loader, "position", 0)
        batches = iter(loader)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                self.check(epoch, position)
                return
            except (WorkerDied, LoaderStalled):
                if self.received is None:
                    raise
                batch = None            # the job-wide signal ended this rank's workers too: stop here, agreed below
            if self.check(epoch, position):
                return
            yield batch
            position += 1

    def leave(self, save: Callable[[], str | None], log, *, requeue: bool = False):
        """Rank 0 saves (`save()` returns the file), every rank waits for it, the workers are stopped, the SLURM job
        is requeued where asked, and the process exits with PREEMPTED_EXIT. Does not return."""
        stop = self.stop
        saved = save() if self.dist.is_main else None
        barrier(self.dist)                  # no rank leaves (and makes torchrun stop the others) before the save
        if saved:
            log.info(f"stopped by {stop.signal} after {stop.batch} batches of epoch {stop.epoch + 1}: saved {saved}; "
                     f"continue with --resume auto (exit code {PREEMPTED_EXIT})")
        job = os.environ.get("SLURM_JOB_ID")
        if requeue and self.dist.is_main and job:
            done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            log.info(f"scontrol requeue {job}: " + ("done" if done.returncode == 0 else
                                                    f"failed ({(done.stderr or done.stdout).strip()})"))
        log.close()
        stop_workers()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(PREEMPTED_EXIT)
