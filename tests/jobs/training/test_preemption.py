"""Stopping a job: nothing it started outlives it (SIGKILL included), and a preemption signal saves the current step
so that `--resume auto` continues from that exact batch.

The runs are real `tsn train` processes (and a 2-rank gloo torchrun job) on the synthetic set. The three factors of
the acceptance matrix, launcher (one process | torchrun), DALI worker start (fork | spawn) and signal (KILL | TERM),
are covered pairwise by four runs (an orthogonal array: every pair of levels of every two factors occurs once), plus
the signal to one rank of a torchrun job. The process tree is read from /proc before the signal; 10 s after it, every
one of those processes must be gone (or a zombie awaiting its reaper).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from jobs.recipes.config import load_config
from jobs.recipes.loaders import build_loader
from jobs.runtime import checkpoint as ckpt
from jobs.runtime.distributed import Dist
from jobs.runtime.signals import PREEMPTED_EXIT, parse_signal
from jobs.training.preemption import Preemption
from pipelines.loader import WorkerDied
from tests.helpers import ROOT, synthetic_overrides
from tests.processes import assert_nothing_left, process_tree, reaped, shared_memory, stat

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG")

# BN frozen and no dropout keep DDP comparable; 2 videos per batch make 12 (one process) or 6 (per rank) batches per
# epoch, so a signal sent after the first logged step lands mid-epoch.
SMALL = ["model.norm_eval=true", "model.dropout=0.0", "data.workers=2", "runtime.log_interval=1", "optim.epochs=2",
         "data.videos_per_gpu=2", "runtime.checkpoint_interval=1", "optim.lr=0.05"]
ENV = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
TRAIN = {"fork": ["jobs/cli.py", "train"], "spawn": ["tests/jobs/training/spawn_driver.py", "train"]}


def options(items):
    return [x for item in items for x in ("--cfg-options", item)]


def start(args, work: Path, launcher: str) -> subprocess.Popen:
    cmd = [sys.executable, *args] if launcher == "single" else \
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={29600 + os.getpid() % 300}",
         *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=open(work.with_suffix(".err"), "w"),
                            start_new_session=True)


def wait_for_training(proc: subprocess.Popen, work: Path, workers: int):
    """Until the first step is logged and the DALI workers exist (rank processes: `workers` python children each)."""
    deadline = time.monotonic() + 400
    log = work / "train.log"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the job ended before training (rc {proc.returncode}): "
                        f"{work.with_suffix('.err').read_text()[-3000:]}")
        if log.is_file() and "Epoch [1][1/" in log.read_text() and len(process_tree(proc.pid)) > workers:
            return
        time.sleep(0.2)
    pytest.fail("no training step within 400 s")


def rank_pids(torchrun_pid: int) -> dict[int, int]:
    """{rank: pid} of a torchrun job's worker processes (their RANK environment variable)."""
    out = {}
    for pid in process_tree(torchrun_pid):
        try:
            env = dict(x.split("=", 1) for x in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in x)
        except OSError:
            continue
        if "RANK" in env and "TORCHELASTIC_RUN_ID" in env and stat(pid) and stat(pid)[0] == torchrun_pid:
            out[int(env["RANK"])] = pid
    return out


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def stop_position(work: Path) -> tuple[int, int, int]:
    """(epoch, epoch_iteration, iteration) of the interrupted checkpoint."""
    state = ckpt.load_checkpoint(work / ckpt.INTERRUPTED)
    return state["epoch"], state["epoch_iteration"], state["iteration"]


# ------------------------------------------------------------------------------------------------ the tests

def test_parse_signal():
    assert parse_signal("USR1") == parse_signal("SIGUSR1") == parse_signal(str(int(signal.SIGUSR1))) == signal.SIGUSR1
    with pytest.raises(ValueError, match="unknown signal"):
        parse_signal("NOPE")
    with pytest.raises(ValueError, match="cannot be caught"):
        parse_signal("KILL")


def test_an_epoch_can_start_at_any_batch(synthetic_root):
    """The loader's data position: an epoch started at batch k yields exactly batches k.. of the full epoch (the order
    is a pure function of seed, epoch and batch), and the next epoch is whole again."""
    cfg = load_config("tsn_r18_synthetic_rgb", synthetic_overrides(synthetic_root) + ["data.videos_per_gpu=6",
                                                                                     "data.workers=1"])
    loader = build_loader(cfg, "train", start_epoch=1)
    full = [b.index for b in loader]
    resumed = build_loader(cfg, "train", start_epoch=1, first_batch=2)
    assert len(resumed) == len(full) == 4 and resumed.position == 2
    assert [b.index.tolist() for b in resumed] == [x.tolist() for x in full[2:]]
    assert resumed.position == 0
    assert len(list(resumed)) == 4                  # epoch 2: from its first batch


def test_signals_only_set_a_flag_and_a_second_one_during_the_save_changes_nothing(tmp_path, monkeypatch):
    """The handlers record the first signal and nothing else, so a signal arriving while the checkpoint is written
    (SLURM sends SIGTERM after USR1) neither interrupts nor corrupts the write; uninstall restores the handlers."""
    before = signal.getsignal(signal.SIGTERM)
    stop = Preemption.install(Dist(), "USR2")
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        assert stop.received == signal.SIGUSR2 and stop.check(0, 3) and stop.stop.batch == 3
        real_save = torch.save

        def save_with_a_signal(obj, f):
            f.write(b"")
            os.kill(os.getpid(), signal.SIGTERM)        # the handler runs here, mid-write
            real_save(obj, f)
        monkeypatch.setattr(torch, "save", save_with_a_signal)
        ckpt.save_checkpoint({"model": {"w": torch.arange(4.0)}, "epoch": 0, "epoch_iteration": 3}, tmp_path,
                             ckpt.INTERRUPTED)
    finally:
        stop.uninstall()
    assert stop.received == signal.SIGUSR2
    assert signal.getsignal(signal.SIGTERM) is before
    assert torch.equal(ckpt.load_checkpoint(ckpt.find_latest(tmp_path))["model"]["w"], torch.arange(4.0))


class FakeLoader:
    """Batches 0..n-1 from data position `position`; `fail_at`: the wait for that batch ends in WorkerDied."""

    def __init__(self, n, position=0, fail_at=None):
        self.n, self.position, self.fail_at = n, position, fail_at

    def __iter__(self):
        for i in range(self.position, self.n):
            if i == self.fail_at:
                raise WorkerDied("DALI data worker pid 1 (killed by SIGTERM) died while loading batch")
            yield i


@pytest.mark.parametrize(("signal_before", "position", "fail_at", "trained", "stopped_at"), [
    (2, 0, None, [0, 1], 2),            # a signal during step 1: step 1 finishes, batch 2 is not started
    (5, 0, None, [0, 1, 2, 3, 4], 5),   # during the last step: stop before validation, at the epoch's end
    (None, 0, None, [0, 1, 2, 3, 4], None),
    (3, 1, None, [1, 2], 3),            # a resumed epoch counts from its data position
    (3, 0, 3, [0, 1, 2], 3),            # the job-wide SIGTERM also ended the workers: the stop asked for
])
def test_batches_stop_where_the_signal_came(signal_before, position, fail_at, trained, stopped_at):
    stop = Preemption(Dist(), (signal.SIGUSR1,))
    got = []
    for batch in stop.batches(FakeLoader(5, position, fail_at), epoch=7):
        got.append(batch)
        if batch + 1 == signal_before:
            stop._handle(signal.SIGUSR1, None)          # the handler, as if the signal arrived during this step
    assert got == trained
    assert (stop.stop is None) if stopped_at is None else (stop.stop.epoch, stop.stop.batch) == (7, stopped_at)


def test_a_lost_worker_without_a_signal_is_still_an_error():
    with pytest.raises(WorkerDied):
        list(Preemption(Dist(), (signal.SIGUSR1,)).batches(FakeLoader(5, fail_at=2), epoch=0))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigterm_saves_the_step_and_the_resumed_run_equals_an_uninterrupted_one(synthetic_root, tmp_path):
    """One process, spawned workers, SIGTERM mid-epoch to the whole process group (as SLURM signals every process of
    a job: the workers die of it while the trainer finishes its step): exit PREEMPTED_EXIT, nothing left running, a
    checkpoint of the step reached; `--resume auto` from it ends with weights bit-identical to a run never
    interrupted."""
    cfg = ["tsn_r18_synthetic_rgb", "--device", "cpu", "--deterministic", "--no-validate"] + \
        options(synthetic_overrides(synthetic_root) + SMALL)
    work = tmp_path / "stopped"
    proc = start(TRAIN["spawn"] + cfg + ["--work-dir", str(work)], work, "single")
    with reaped(proc):
        wait_for_training(proc, work, workers=2)
        tree = process_tree(proc.pid)
        shm = shared_memory(tree)
        os.killpg(proc.pid, signal.SIGTERM)     # job-wide, as SLURM signals: the DALI workers get it too
        assert proc.wait(timeout=120) == PREEMPTED_EXIT, work.with_suffix(".err").read_text()[-3000:]
        assert_nothing_left(tree, shm)
    epoch, batch, iteration = stop_position(work)
    assert 0 <= batch <= 12 and iteration == 12 * epoch + batch
    assert ckpt.find_latest(work).name == ckpt.INTERRUPTED
    assert "stopped by SIGTERM" in (work / "train.log").read_text()

    env = dict(ENV)
    resumed = subprocess.run([sys.executable, *TRAIN["fork"], *cfg, "--work-dir", str(work), "--resume", "auto"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    full = subprocess.run([sys.executable, *TRAIN["fork"], *cfg, "--work-dir", str(tmp_path / "full")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stderr[-3000:]
    a, b = weights(tmp_path / "full" / "epoch_2.pth"), weights(work / "epoch_2.pth")
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    assert not (work / ckpt.INTERRUPTED).exists()        # superseded by the epoch checkpoints, pruned
    # the resumed run logged exactly the steps the interrupted one had not done
    steps = [line for line in (work / "train.log").read_text().splitlines() if "] lr:" in line]
    assert len(steps) == 24


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(("launcher", "start_method", "sig"), [
    ("single", "fork", signal.SIGKILL),
    ("torchrun", "spawn", signal.SIGKILL),
    ("torchrun", "fork", signal.SIGTERM),
])
def test_a_stopped_job_leaves_no_process_behind(synthetic_root, tmp_path, launcher, start_method, sig):
    """With the SIGTERM case of the test above this covers every pair of (launcher, worker start, signal) levels.
    The signal goes to the launched process (the trainer, or torchrun): a SIGKILLed torchrun's ranks get SIGTERM
    from the kernel (their parent-death signal) and stop like preempted ranks."""
    work = tmp_path / "work"
    args = TRAIN[start_method] + ["tsn_r18_synthetic_rgb", "--device", "cpu", "--no-validate", "--work-dir",
                                  str(work)] + options(synthetic_overrides(synthetic_root) + SMALL)
    proc = start(args, work, launcher)
    with reaped(proc):
        wait_for_training(proc, work, workers=2 if launcher == "single" else 6)
        tree = process_tree(proc.pid)
        shm = shared_memory(tree)
        assert len(tree) >= (3 if launcher == "single" else 7)      # trainer(s) + 2 DALI workers each
        os.kill(proc.pid, sig)
        proc.wait(timeout=120)
        assert_nothing_left(tree, shm)
    if launcher == "torchrun" and sig == signal.SIGTERM:    # torchrun passes SIGTERM on: a preemption stop
        epoch, batch, iteration = stop_position(work)
        assert 0 <= batch <= 6 and iteration == 6 * epoch + batch


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_signal_to_one_rank_stops_both_at_the_same_step(synthetic_root, tmp_path):
    """SIGUSR1 to rank 1 only: both ranks agree (a collective after every step), stop after the same step, rank 0
    writes the one checkpoint, both exit PREEMPTED_EXIT; nothing of the job is left running."""
    work = tmp_path / "work"
    args = TRAIN["fork"] + ["tsn_r18_synthetic_rgb", "--device", "cpu", "--no-validate", "--work-dir", str(work)] + \
        options(synthetic_overrides(synthetic_root) + SMALL)
    proc = start(args, work, "torchrun")
    with reaped(proc):
        wait_for_training(proc, work, workers=6)
        tree = process_tree(proc.pid)
        shm = shared_memory(tree)
        ranks = rank_pids(proc.pid)
        assert sorted(ranks) == [0, 1]
        os.kill(ranks[1], signal.SIGUSR1)
        proc.wait(timeout=120)
        assert_nothing_left(tree, shm)
    err = work.with_suffix(".err").read_text()
    assert any("exitcode" in line and f": {PREEMPTED_EXIT} " in line for line in err.splitlines()), err[-3000:]
    epoch, batch, iteration = stop_position(work)
    assert 0 <= batch <= 6 and iteration == 6 * epoch + batch
    assert sorted(p.name for p in work.glob("*.pth")) == [ckpt.INTERRUPTED]
    log = (work / "train.log").read_text()
    assert f"stopped by a signal on another rank after {batch} batches of epoch {epoch + 1}" in log
    steps = [line for line in log.splitlines() if "] lr:" in line]
    assert len(steps) == 6 * epoch + batch           # every step trained was logged (log_interval 1), none after
