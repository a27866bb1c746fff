"""The preemption contract seen from outside a run: which signal stops training, how it is spelled on the command
line, and the exit code that says "stopped with a checkpoint, resume me" (jobs/training/preemption.py acts on them).
Imports nothing heavy, so `tsn train --help` shows them without loading torch.
"""
from __future__ import annotations

import signal

PREEMPTED_EXIT = 75            # sysexits.h EX_TEMPFAIL: "temporary failure, try again" (resume with --resume auto)
DEFAULT_SIGNAL = "USR1"        # SLURM: #SBATCH --signal=USR1@90


def parse_signal(name: str) -> signal.Signals:
    """"USR1", "SIGUSR1" or "10" -> signal.SIGUSR1; ValueError for anything else."""
    text = name.strip().upper()
    try:
        sig = signal.Signals(int(text)) if text.isdigit() else signal.Signals[text if text.startswith("SIG")
                                                                               else f"SIG{text}"]
    except (KeyError, ValueError):
        raise ValueError(f"unknown signal {name!r} (e.g. USR1, USR2, TERM)") from None
    if sig in (signal.SIGKILL, signal.SIGSTOP):
        raise ValueError(f"{sig.name} cannot be caught; use e.g. USR1, USR2 or TERM")
    return sig
