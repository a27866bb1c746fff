"""Splitting one preparation job across N machines with no coordination: `--shard I/N`, or a SLURM job array.

Every machine plans the same sorted list of inputs and keeps those at positions p with p % N == I: the N parts are
disjoint, their union is the whole job, and each part is resumable on its own (its outputs appear only when
complete). Each part writes its reports under a name carrying "part-I-of-N"; `tsn prepare merge` joins them.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class WorkSplit:
    index: int = 0      # I, 0-based
    count: int = 1      # N

    def __post_init__(self):
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"--shard I/N needs 0 <= I < N, got {self.index}/{self.count}")

    @property
    def whole(self) -> bool:
        return self.count == 1

    def take(self, items: Sequence[T]) -> list[T]:
        """This part's items: every N-th, starting at I, of a list every part orders the same way."""
        return list(items[self.index::self.count])

    def part_name(self, stem: str, suffix: str) -> str:
        """`stem + suffix` for the whole job, `stem.part-I-of-N + suffix` for a part."""
        return stem + suffix if self.whole else f"{stem}.part-{self.index}-of-{self.count}{suffix}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


_PART = re.compile(r"\.part-(\d+)-of-(\d+)")


def parse_part(name: str) -> WorkSplit | None:
    """The WorkSplit a part file's name carries, or None."""
    m = _PART.search(name)
    return WorkSplit(int(m.group(1)), int(m.group(2))) if m else None


def parse(text: str | None, environ=os.environ) -> WorkSplit:
    """`I/N` from the option; else a SLURM job array (task ids MIN..MAX, any step) when one is running; else whole."""
    if text:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not m:
            raise ValueError(f"--shard must look like I/N (e.g. 0/8), got {text!r}")
        return WorkSplit(int(m.group(1)), int(m.group(2)))
    if "SLURM_ARRAY_TASK_ID" in environ and "SLURM_ARRAY_TASK_COUNT" in environ:
        task, count = int(environ["SLURM_ARRAY_TASK_ID"]), int(environ["SLURM_ARRAY_TASK_COUNT"])
        first = int(environ.get("SLURM_ARRAY_TASK_MIN", 0))
        step = int(environ.get("SLURM_ARRAY_TASK_STEP", 1))
        return WorkSplit((task - first) // step, count)
    return WorkSplit()
