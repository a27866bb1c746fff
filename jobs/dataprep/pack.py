"""`tsn prepare pack / unpack / merge / check-shards`: frame folders and video files <-> packed tar shards.

The format is pipelines/packed.py's. Packing is deterministic: the same lists, root, seed, shard size and
`--shard I/N` give the same shard bytes (members carry no time stamps or owners), so a killed pack that is run
again rewrites only the shards that were not finished and ends with the same bytes. A shard and its index appear
under their final names only when complete (written to hidden temporary names, then renamed: index first, tar last,
so "the tar exists" means "the shard is complete").

Pack order is shuffled at write time (seeded), so a reader that streams a shard front to back still mixes classes.
With `--shard I/N` part I packs every N-th video of that shuffled order into shards named `<prefix>-I-<j>.tar` and
records which list entries it packed; `tsn prepare merge` then writes the lists (as the whole job does by itself).
"""
from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobs.dataprep.listio import write_lines
from jobs.dataprep.runner import Failure
from jobs.dataprep.worksplit import WorkSplit, parse_part
from pipelines import packed

_BLOCK = 512
MANIFEST = "pack.json"


@dataclass(frozen=True)
class PackOptions:
    root: Path                      # the folder the lists' paths are relative to
    out: Path                       # where shards, indexes and the packed lists go
    prefix: str = "shard"
    shard_bytes: int = 1 << 30      # a shard is closed once adding the next video would pass this size
    seed: int = 0
    tag: str = ""                   # a node's own batch of a split preparation: in shard and list names


@dataclass(frozen=True)
class Entry:
    path: str                               # the list's path field: a frame folder or a video file
    files: tuple[tuple[str, int], ...]      # (logical path of each file, size); a video is one file

    @property
    def tar_bytes(self) -> int:
        return sum(_BLOCK + _padded(size) for _, size in self.files)


@dataclass(frozen=True)
class ShardPlan:
    name: str
    entries: tuple[Entry, ...]


def _padded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def list_paths(list_files: Sequence[Path]) -> list[str]:
    """The path field (first token) of every entry of the lists, each once, in first-seen order."""
    seen: dict[str, None] = {}
    for list_file in list_files:
        for line in Path(list_file).read_text(encoding="utf-8").splitlines():
            tokens = line.split()
            if tokens and not tokens[0].startswith("#"):
                seen.setdefault(tokens[0], None)
    return list(seen)


def shuffled(paths: Iterable[str], seed: int) -> list[str]:
    """Sorted, then permuted by `seed`: the same order on every machine, whatever order the lists had."""
    ordered = sorted(paths)
    return [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]


def scan(root: Path, path: str) -> Entry:
    """One list entry's files under `root` (a frame folder: its visible regular files, sorted)."""
    full = root / path
    if full.is_dir():
        files = sorted((e.name, e.stat().st_size) for e in os.scandir(full)
                       if e.is_file() and not e.name.startswith("."))
        if not files:
            raise FileNotFoundError(f"{full}: empty folder")
        return Entry(path, tuple((f"{path}/{name}", size) for name, size in files))
    if full.is_file():
        return Entry(path, ((path, full.stat().st_size),))
    raise FileNotFoundError(f"{full}: not found")


def member_name(entry: Entry, logical: str) -> str:
    """The tar member of one file, in the webdataset convention `<key>.<rest>` (all files of an entry share the
    key). Dots in the key would end it early, so they become '_'; the index keeps the exact logical path."""
    if len(entry.files) == 1 and logical == entry.path:                 # a video file: <key>.<extension>
        stem, ext = os.path.splitext(logical)
        return f"{stem.replace('.', '_')}{ext}"
    return f"{entry.path.replace('.', '_')}.{logical[len(entry.path) + 1:]}"


def plan(list_files: Sequence[Path], opts: PackOptions, part: WorkSplit) -> tuple[list[ShardPlan], list[Failure]]:
    """This part's shards (videos in the shuffled order, cut at `shard_bytes`) and the entries it cannot pack."""
    mine = part.take(shuffled(list_paths(list_files), opts.seed))
    shards: list[ShardPlan] = []
    current: list[Entry] = []
    size = 0
    failures = []

    def close() -> None:
        head = opts.prefix + (f"-{opts.tag}" if opts.tag else "") + ("" if part.whole else f"-{part.index:04d}")
        shards.append(ShardPlan(f"{head}-{len(shards):06d}.tar", tuple(current)))

    for path in mine:
        try:
            entry = scan(opts.root, path)
        except OSError as err:
            failures.append(Failure(path, str(err)))
            continue
        if current and size + entry.tar_bytes > opts.shard_bytes:
            close()
            current, size = [], 0
        current.append(entry)
        size += entry.tar_bytes
    if current:
        close()
    return shards, failures


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644      # no time stamps or owners: same input, same bytes
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_shard(shard: ShardPlan, opts: PackOptions) -> list[Failure]:
    """Write one shard and its index unless both are already complete; returns the entries that could not be read
    (left out of the shard and of the lists)."""
    final = opts.out / shard.name
    index = Path(packed.index_path(str(final)))
    if final.exists() and index.exists():
        return []
    tmp, tmp_index = final.with_name(f".{final.name}.part"), index.with_name(f".{index.name}.part")
    members: dict[str, list[int]] = {}
    failures = []
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in shard.entries:
            try:    # read the whole entry first, so an unreadable file never leaves half a video in the shard
                blobs = [(logical, (opts.root / logical).read_bytes()) for logical, _ in entry.files]
            except OSError as err:
                failures.append(Failure(entry.path, f"cannot read: {err}"))
                continue
            for logical, blob in blobs:
                tar.addfile(_tar_info(member_name(entry, logical), len(blob)), io.BytesIO(blob))
                members[logical] = [tar.offset - _padded(len(blob)), len(blob)]   # data ends at tar.offset
    with open(tmp_index, "w") as f:
        json.dump({"version": packed.INDEX_VERSION, "shard": final.name, "bytes": tmp.stat().st_size,
                   "members": members}, f, separators=(",", ":"))
    os.replace(tmp_index, index)
    os.replace(tmp, final)
    return failures


def part_map_path(out: Path, part: WorkSplit) -> Path:
    return out / part.part_name(".pack-map", ".jsonl")


def pack(list_files: Sequence[Path], opts: PackOptions, part: WorkSplit, progress=None) -> list[Failure]:
    """Pack this part's videos (resumably). The whole job then writes the packed lists; a part records which list
    entries went to which shard (a hidden map beside the shards) and leaves the lists to `merge`."""
    opts.out.mkdir(parents=True, exist_ok=True)
    if not part.whole:
        _write_manifest(list_files, opts)
    shards, failures = plan(list_files, opts, part)
    for shard in shards:
        failures += write_shard(shard, opts)
        if progress:
            progress(shard)
    bad = {f.path for f in failures}
    fields = {e.path: packed.join(s.name, e.path) for s in shards for e in s.entries if e.path not in bad}
    if part.whole:
        write_lists(list_files, fields, opts.out, opts.tag)
    else:
        write_lines(part_map_path(opts.out, part),
                    [json.dumps({"path": k, "field": v}) for k, v in fields.items()])
    return failures


def write_lists(list_files: Sequence[Path], fields: dict[str, str], out: Path, tag: str = "") -> list[Path]:
    """Each list again, in its order, with the path field pointing into a shard (`NAME.TAG.txt` with a tag); entries
    that were not packed are left out (they are in the failure report)."""
    written = []
    for list_file in map(Path, list_files):
        lines = []
        for line in list_file.read_text(encoding="utf-8").splitlines():
            tokens = line.split()
            if not tokens or tokens[0].startswith("#"):
                lines.append(line)
            elif tokens[0] in fields:
                lines.append(" ".join([fields[tokens[0]], *tokens[1:]]))
        name = f"{list_file.stem}.{tag}{list_file.suffix}" if tag else list_file.name
        write_lines(out / name, lines)
        written.append(out / name)
    return written


def _write_manifest(list_files: Sequence[Path], opts: PackOptions) -> None:
    """What the parts of a split pack agree on; `merge` reads the lists from it."""
    manifest = {"lists": [str(Path(p).resolve()) for p in list_files], "prefix": opts.prefix,
                "shard_bytes": opts.shard_bytes, "seed": opts.seed}
    path = opts.out / MANIFEST
    if path.exists():
        old = json.loads(path.read_text())
        if old != manifest:
            raise ValueError(f"{path}: {opts.out} was packed with other settings ({old}); use a new --out")
        return
    write_lines(path, [json.dumps(manifest, indent=1)])


def merge(out: Path) -> list[Path]:
    """Join the parts' maps into the packed lists and the parts' failure reports into one. Refuses to run while a
    part is missing."""
    manifest = json.loads((out / MANIFEST).read_text())
    maps = sorted(out.glob(".pack-map*.jsonl"))
    parts = [parse_part(p.name) for p in maps]
    counts = {p.count for p in parts if p}
    if len(counts) != 1 or None in parts:
        raise ValueError(f"{out}: pack maps of different splits ({[m.name for m in maps]}); remove the stale ones")
    (count,) = counts
    missing = sorted(set(range(count)) - {p.index for p in parts})
    if missing:
        raise ValueError(f"{out}: parts {missing} of {count} have not finished packing")
    fields = {}
    for path in maps:
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            fields[row["path"]] = row["field"]
    written = write_lists(manifest["lists"], fields, out)
    merge_reports(out, "pack_failures")
    return written


def merge_reports(folder: Path, stem: str) -> Path | None:
    """`stem.part-*.jsonl` -> `stem.jsonl` (lines of every part, parts in order)."""
    parts = sorted(folder.glob(f"{stem}.part-*.jsonl"), key=lambda p: parse_part(p.name).index)
    if not parts:
        return None
    target = folder / f"{stem}.jsonl"
    write_lines(target, [line for p in parts for line in p.read_text(encoding="utf-8").splitlines()])
    return target


# ------------------------------------------------------------------------------------------------ unpack

def shards_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.tar") if not p.name.startswith("."))


def unpack_shard(shard: Path, dst: Path) -> int:
    """Write every file of a shard back under `dst` at its logical path; files already there are kept.
    Returns how many files were written."""
    index = packed.ShardIndex.load(str(shard))
    written = 0
    for logical in index.members:
        target = dst / logical
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        tmp.write_bytes(packed.read_packed(str(shard), logical).tobytes())
        os.replace(tmp, target)
        written += 1
    return written


def unpack_list(list_file: Path, target: Path) -> None:
    """A packed list with its path fields turned back into the logical paths (relative to the unpacked root)."""
    lines = []
    for line in list_file.read_text(encoding="utf-8").splitlines():
        tokens = line.split()
        where = packed.split(tokens[0]) if tokens else None
        lines.append(" ".join([where[1], *tokens[1:]]) if where else line)
    write_lines(target, lines)


# ------------------------------------------------------------------------------------------------ check

def check_shard(shard: Path, full: bool) -> list[str]:
    """Problems of one shard, each naming the shard (and member): a missing or unreadable index, a size that is not
    the indexed one (truncated or appended to), and with `full` every member read through the index and decoded
    (frames with OpenCV, by content as MMAction2 does; videos with PyAV), and the tar's own headers matching the
    index."""
    whole = packed.shard_problem(str(shard))
    if whole or not full:
        return [whole] if whole else []
    index = packed.index_of(str(shard))
    problems = []
    with tarfile.open(shard, "r:") as tar:
        headers = {m.offset_data: m.size for m in tar.getmembers() if m.isfile()}
    for logical, (offset, length) in index.members.items():
        if headers.get(offset) != length:
            problems.append(f"{shard}: member {logical!r}: no tar member of {length} bytes at offset {offset}")
            continue
        problem = _decode_problem(packed.read_packed(str(shard), logical), logical)
        if problem:
            problems.append(f"{shard}: member {logical!r}: {problem}")
    return problems


def _decode_problem(data: np.ndarray, logical: str) -> str | None:
    ext = os.path.splitext(logical)[1].lower()
    if ext in (".jpg", ".jpeg", ".png", ".bmp", ".webp"):
        import cv2
        return None if cv2.imdecode(data, cv2.IMREAD_UNCHANGED) is not None else "cannot be decoded as an image"
    import av
    try:
        with av.open(io.BytesIO(data.tobytes())) as container:
            frames = sum(1 for _ in container.decode(video=0))
    except Exception as err:        # PyAV raises many types (InvalidDataError, EOFError, ValueError...)
        return f"video does not decode ({type(err).__name__}: {err})"
    return None if frames else "video has no frames"
