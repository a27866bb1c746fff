"""A resumable cache in JSON lines: one object per line, appended as results arrive (an interrupted run keeps what it
finished), read back with later lines winning, and rewritten compacted, atomically, at the end.

Every line carries the cache's format version `v`; lines of another version, torn lines (a kill mid-write) and
lines that do not parse are skipped, so a changed format or a damaged file costs a recomputation, never an error.
Used by the video index (pipelines/video_index.py) and the full decode check (jobs/dataprep/fullcheck.py).
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import Any, TextIO


def encode(version: int, row: dict) -> str:
    """One cache line: `row` plus its format version, keys sorted."""
    return json.dumps({"v": version, **row}, sort_keys=True) + "\n"


def read(path: str, version: int, parse: Callable[[dict], tuple[Any, Any]]) -> dict:
    """key -> value of every line of `version` that `parse` (row without "v" -> (key, value)) accepts; later lines
    win. A missing file is an empty cache. `parse` rejects a row by raising ValueError, KeyError or TypeError."""
    out: dict = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    row = json.loads(line)
                    if row.pop("v", None) == version:
                        key, value = parse(row)
                        out[key] = value
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue
    except FileNotFoundError:
        pass
    return out


@contextmanager
def appending(path: str):
    """The cache file opened for appending (its folder created); `write` each line as its result arrives."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        yield _Lines(fh)


class _Lines:
    def __init__(self, fh: TextIO):
        self._fh = fh

    def write(self, line: str) -> None:
        self._fh.write(line)
        self._fh.flush()            # readable, and kept, while a long run is still going


def rewrite(path: str, lines: Iterable[str]) -> None:
    """Replace the cache with exactly `lines` (one per key), atomically: a kill leaves the old file or the new."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(lines)
    os.replace(tmp, path)
