"""Packed shards: many videos' frame files (or video files) in one POSIX tar, each file one `pread` away.

A dataset at Kinetics scale is ~72 million frame files, more than cluster file quotas allow and slow to read from a
network filesystem one small file at a time. `tsn prepare pack` (jobs/dataprep/pack.py) writes instead:

  NAME.tar            a plain POSIX tar (`tar tf` lists it). Members follow the webdataset convention
                      `<key>.<file>`: all files of one video share a key (webdataset and wids read them as one
                      sample), `<file>` being the frame file name (`img_00001.jpg`, `x_00001.jpg`) or the video's
                      extension (`mp4`).
  NAME.tar.idx.json   the shard's index: for every packed file its *logical* path (the path it had under the
                      dataset root: `<frame_dir>/<frame file>` or `<video path>`) -> [data offset, size] in the tar.

A list line points at a packed video with the field `NAME.tar#<logical path of the folder or video>`, the rest of
the line unchanged; with the data prefix joined, a frame's path is `<prefix>/NAME.tar#<frame_dir>/<frame file>`, so
the frame layout, samplers and readers work unchanged and only `read_bytes` looks inside the shard. A list may mix
packed and unpacked lines.

Reading keeps one open file per shard per process (a DALI worker opens each shard it reads once; `os.pread` needs no
seek, so forked workers may share a descriptor) and one parsed index per shard.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from .errors import UserError

MARK = ".tar#"                  # separates the shard file from the logical path inside it
INDEX_SUFFIX = ".idx.json"
INDEX_VERSION = 1


class PackedError(UserError, OSError):
    """A packed file that cannot be read: the message names the shard and the member."""


def split(path: str) -> tuple[str, str] | None:
    """`<dir>/NAME.tar#<logical>` -> (`<dir>/NAME.tar`, `<logical>`); None for a path outside any shard."""
    at = path.find(MARK)
    if at < 0:
        return None
    return path[:at + len(".tar")], path[at + len(MARK):]


def join(shard_name: str, logical: str) -> str:
    """The list field of a packed entry (the inverse of `split` for a shard name relative to the list's prefix)."""
    return f"{shard_name}#{logical}"


def index_path(shard: str) -> str:
    return shard + INDEX_SUFFIX


@dataclass(frozen=True)
class ShardIndex:
    shard: str                              # the tar's path
    size: int                               # its size in bytes when it was written (a shorter file is truncated)
    members: dict[str, tuple[int, int]]     # logical path -> (offset of the data, size)

    @classmethod
    def load(cls, shard: str) -> ShardIndex:
        path = index_path(shard)
        try:
            with open(path) as f:
                raw = json.load(f)
        except FileNotFoundError:
            raise PackedError(f"{shard}: index {os.path.basename(path)} not found") from None
        except (OSError, ValueError) as err:
            raise PackedError(f"{path}: unreadable index ({err})") from None
        if raw.get("version") != INDEX_VERSION:
            raise PackedError(f"{path}: index version {raw.get('version')!r}, expected {INDEX_VERSION}")
        return cls(shard, int(raw["bytes"]), {k: (int(o), int(n)) for k, (o, n) in raw["members"].items()})

    def folder(self, logical_dir: str) -> list[str]:
        """Names of the files packed under one logical folder (a frame folder), sorted."""
        prefix = logical_dir.rstrip("/") + "/"
        return sorted(k[len(prefix):] for k in self.members if k.startswith(prefix) and "/" not in k[len(prefix):])


class _Open:
    """This process's open shards: path -> (file descriptor, index). Reset in a child process, so each worker
    counts its own opens (a descriptor inherited through fork would work with pread too)."""

    def __init__(self):
        self.pid = os.getpid()
        self.shards: dict[str, tuple[int, ShardIndex]] = {}
        self.opens = 0                      # open() calls on shard files: one per shard per process

    def get(self, shard: str) -> tuple[int, ShardIndex]:
        if self.pid != os.getpid():
            self.__init__()
        if shard not in self.shards:
            index = ShardIndex.load(shard)
            try:
                fd = os.open(shard, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError as err:
                raise PackedError(f"{shard}: cannot open ({err.strerror})") from None
            self.shards[shard] = (fd, index)
            self.opens += 1
        return self.shards[shard]

    def close(self) -> None:
        for fd, _ in self.shards.values():
            os.close(fd)
        self.shards.clear()


_OPEN = _Open()


def shard_opens() -> int:
    """How many shard files this process has opened (for tests and `tsn profile`)."""
    return _OPEN.opens if _OPEN.pid == os.getpid() else 0


def close_all() -> None:
    _OPEN.close()


def shard_problem(shard: str) -> str | None:
    """Why a shard cannot be trusted as a whole, naming it (its index missing or unreadable, or its size not the
    indexed one: truncated, or written to after packing); None when it is whole. One stat, no data read."""
    try:
        index = index_of(shard)
        size = os.stat(shard).st_size
    except (PackedError, OSError) as err:
        return str(err)
    if size != index.size:
        what = "truncated" if size < index.size else "longer than indexed"
        return f"{shard}: {what} ({size} bytes, the index says {index.size})"
    return None


def index_of(shard: str) -> ShardIndex:
    return _OPEN.get(shard)[1]


def read_packed(shard: str, logical: str) -> np.ndarray:
    """One packed file's bytes, 1-D uint8, with a single pread."""
    fd, index = _OPEN.get(shard)
    try:
        offset, size = index.members[logical]
    except KeyError:
        raise PackedError(f"{shard}: no member {logical!r} in its index") from None
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise PackedError(f"{shard}: member {logical!r} is cut short ({len(data)} of {size} bytes: "
                          f"a truncated shard)")
    return np.frombuffer(data, dtype=np.uint8)


def read_bytes(path: str) -> np.ndarray:
    """A file's bytes, 1-D uint8 and read-only, from a shard (`...tar#logical`) or from the filesystem."""
    where = split(path)
    if where is not None:
        return read_packed(*where)
    # One unbuffered read into a bytes object, viewed without a copy: 14 us per cached 32 KB frame against
    # np.fromfile's 23 (docs/PERFORMANCE.md, levers).
    with open(path, "rb", buffering=0) as f:
        return np.frombuffer(f.readall(), dtype=np.uint8)


def exists(path: str) -> bool:
    """Whether a (packed or plain) file exists; a missing shard or index counts as missing."""
    where = split(path)
    if where is None:
        return os.path.isfile(path)
    try:
        return where[1] in index_of(where[0]).members
    except PackedError:
        return False


def is_folder(path: str) -> bool:
    """Whether a (packed or plain) frame folder exists."""
    where = split(path)
    if where is None:
        return os.path.isdir(path)
    try:
        return bool(index_of(where[0]).folder(where[1]))
    except PackedError:
        return False


def stat(path: str) -> tuple[int, int]:
    """(size, mtime_ns) of a plain file, or of a packed file (its indexed size, its shard's mtime): what the video
    index compares to decide whether a cached probe is still valid. Raises OSError when missing."""
    where = split(path)
    if where is None:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    shard, logical = where
    try:
        index = index_of(shard)
    except PackedError as err:
        raise FileNotFoundError(str(err)) from None
    if logical not in index.members:
        raise FileNotFoundError(f"{shard}: no member {logical!r} in its index")
    return index.members[logical][1], os.stat(shard).st_mtime_ns


def media(path: str):
    """What PyAV's `av.open` takes for a (packed or plain) video: the path, or the packed bytes in memory (one
    pread; a training video is a few MB)."""
    import io
    return path if split(path) is None else io.BytesIO(read_bytes(path).tobytes())
