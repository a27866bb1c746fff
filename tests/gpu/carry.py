"""Carry the wheels the GPU machine lacks (DALI for CUDA 13, PyAV, ...) in calls of at most ~60 MiB each.

The device tool sends the repository plus at most 64 MiB of ignored paths per call, and keeps ignored files on the
machine between calls while it stays warm. So the wheel set is cut into equal parts, one per call, each part a
folder `.whl/parts/pK/` holding one chunk of the concatenated wheels and the manifest (sizes and sha256 of every
part and every wheel). On the machine, `install` checks every part, rebuilds the wheels in `.whl/joined/`, checks
each wheel's sha256 and pip-installs them with --no-index --no-deps into a target folder (docs/GPU_CHECK.md).

    python -m tests.gpu.carry download            # here: pip download the pinned set into .whl/
    python -m tests.gpu.carry split               # here: .whl/*.whl -> .whl/parts/p1 .. pN (prints the calls)
    python3 -m tests.gpu.carry status             # there: which parts have arrived, intact
    python3 -m tests.gpu.carry install --partial  # there, calls 1-4: install the wheels whose parts all arrived
    python3 -m tests.gpu.carry install            # there: join, verify, pip install --target /tmp/site
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WHEELS_DIR, PARTS_DIR, JOINED_DIR = ROOT / ".whl", ROOT / ".whl" / "parts", ROOT / ".whl" / "joined"
MANIFEST, CHUNK = "manifest.json", "chunk.bin"
MiB = 2**20
DEFAULT_MAX_MIB = 60.0        # per call: the tool's 64 MiB minus the repository (~1 MiB) and some margin
BLOCK = 8 * MiB

# What the GPU machine (Python 3.12, torch 2.11+cu130, numpy, pillow, click, tqdm, six, packaging, pyyaml,
# typing-extensions, wheel, pytest, pytest-timeout already there) needs on top, each pinned. Requires-Dist of
# nvidia-dali-cuda130 2.4.0: astunparse, gast, six, optree, packaging, numpy, nvtx, makefun, libcst,
# nvidia-nvimgcodec-cu13[all], nvidia-libnvcomp-cu13.
# The order is the order in the parts: PyAV and the small wheels first, so that part 1 alone already holds them
# (`install --partial`: the parts-only calls can make the synthetic data while DALI is still on its way).
WHEELS = (
    ("av==18.1.0", "PyAV with its own FFmpeg: synthetic data, the PyAV decoder, the video index"),
    ("astunparse==1.6.3", "DALI (conditionals)"),
    ("gast==0.7.0", "DALI (conditionals)"),
    ("libcst==1.9.0", "DALI"),
    ("makefun==1.16.0", "DALI"),
    ("nvtx==0.2.17", "DALI"),
    ("optree==0.20.0", "DALI"),
    ("nvidia-nvjpeg==13.0.2.28", "libnvjpeg.so.13, dlopened by nvImageCodec's nvJPEG extension (the `all` extra)"),
    ("nvidia-nvimgcodec-cu13==0.9.0.20", "DALI's image decoding backend: fn.decoders.image goes through it"),
    ("nvidia-dali-cuda130==2.4.0", "DALI built for CUDA 13 (the machine's driver 580 and torch are CUDA 13)"),
)
# Left out on purpose: nvidia-libnvcomp-cu13 (27 MiB; DALI dlopens libnvcomp only in its decompression operators,
# nvImageCodec only for nvTIFF), nvidia-nvjpeg2k-cu13 and nvidia-nvtiff-cu13 (JPEG 2000 / TIFF: not our data).
PIP_PLATFORM = ("--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                "--platform", "manylinux_2_27_x86_64", "--platform", "manylinux_2_17_x86_64",
                "--platform", "manylinux2014_x86_64", "--platform", "manylinux1_x86_64")


class CarryError(RuntimeError):
    """A part or wheel is missing or does not match the manifest; the message names the file."""


@dataclass(frozen=True)
class Layout:
    parts: int
    part_bytes: int           # every part but the last holds exactly this many bytes



def _copy(files, src, out, count: int, h) -> object:
    """Copy exactly `count` bytes to `out` (and into hash `h`) from the open file `src`, continuing with the next of
    `files` whenever one ends; returns the file to go on reading from (None once one ran out exactly)."""
    while count:
        if src is None:
            src = open(next(files), "rb")
        block = src.read(min(BLOCK, count))
        if not block:
            src.close()
            src = None
            continue
        out.write(block)
        h.update(block)
        count -= len(block)
    return src

def plan_parts(total_bytes: int, max_bytes: int) -> Layout:
    """As few parts as fit `max_bytes` each, of equal size (the last takes the remainder)."""
    if total_bytes <= 0:
        raise CarryError("nothing to carry: no wheels")
    n = math.ceil(total_bytes / max_bytes)
    return Layout(n, math.ceil(total_bytes / n))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
    return h.hexdigest()


def split(files: list[Path], parts_dir: Path, max_bytes: int) -> dict:
    """Concatenates `files` (in the given order) and cuts the stream into parts_dir/p1..pN/chunk.bin, each with a
    copy of the manifest. Returns the manifest."""
    sizes = [f.stat().st_size for f in files]
    layout = plan_parts(sum(sizes), max_bytes)
    if parts_dir.exists():
        shutil.rmtree(parts_dir)                 # a stale p6 from an older split must not travel
    wheels, offset = [], 0
    for f, size in zip(files, sizes):
        wheels.append({"file": f.name, "bytes": size, "offset": offset, "sha256": sha256_file(f)})
        offset += size
    parts, hashes, written = [], [], 0
    sources = iter(files)
    src = None
    for k in range(layout.parts):
        folder = parts_dir / f"p{k + 1}"
        folder.mkdir(parents=True)
        want = min(layout.part_bytes, offset - written)
        h = hashlib.sha256()
        with open(folder / CHUNK, "wb") as out:
            src = _copy(sources, src, out, want, h)
        written += want
        hashes.append(h.hexdigest())
        parts.append({"name": folder.name, "file": CHUNK, "bytes": want, "sha256": hashes[-1]})
    if src is not None:
        src.close()
    manifest = {"version": 1, "total_bytes": offset, "part_bytes": layout.part_bytes, "parts": parts,
                "wheels": wheels}
    for p in parts:
        (parts_dir / p["name"] / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def read_manifest(parts_dir: Path) -> dict:
    """The manifest from any part that has arrived (they are identical)."""
    copies = sorted(parts_dir.glob(f"p*/{MANIFEST}"))
    if not copies:
        raise CarryError(f"no part has arrived: no {parts_dir}/p*/{MANIFEST}")
    texts = {c.read_text() for c in copies}
    if len(texts) > 1:
        raise CarryError(f"parts from different splits in {parts_dir}: {[str(c) for c in copies]}")
    return json.loads(texts.pop())


def check_parts(parts_dir: Path) -> tuple[dict, list[str], list[str], list[str]]:
    """(manifest, intact, missing, damaged) part names."""
    manifest = read_manifest(parts_dir)
    intact, missing, damaged = [], [], []
    for p in manifest["parts"]:
        path = parts_dir / p["name"] / p["file"]
        if not path.is_file():
            missing.append(p["name"])
        elif path.stat().st_size != p["bytes"] or sha256_file(path) != p["sha256"]:
            damaged.append(p["name"])
        else:
            intact.append(p["name"])
    return manifest, intact, missing, damaged


def join(parts_dir: Path, out_dir: Path) -> list[Path]:
    """Rebuilds every wheel of the manifest in out_dir from the parts, each checked against its sha256."""
    manifest, _, missing, damaged = check_parts(parts_dir)
    if not sum(p["bytes"] for p in manifest["parts"]) == manifest["total_bytes"] == sum(
            w["bytes"] for w in manifest["wheels"]):
        raise CarryError(f"{parts_dir}: the manifest's part and wheel sizes do not add up")
    if missing or damaged:
        raise CarryError(f"{parts_dir}: missing parts {missing}, damaged parts {damaged} (send them again)")
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.whl"):
        old.unlink()
    chunks = iter([parts_dir / p["name"] / p["file"] for p in manifest["parts"]])
    src, paths = None, []
    for w in manifest["wheels"]:
        path, h = out_dir / w["file"], hashlib.sha256()
        with open(path, "wb") as out:
            src = _copy(chunks, src, out, w["bytes"], h)
        if h.hexdigest() != w["sha256"]:
            raise CarryError(f"{path}: sha256 {h.hexdigest()} differs from the manifest's {w['sha256']}")
        paths.append(path)
    if src is not None:
        src.close()
    return paths


def join_available(parts_dir: Path, out_dir: Path) -> tuple[list[Path], list[str]]:
    """The wheels whose bytes lie wholly in intact parts that have arrived, rebuilt in out_dir (each checked against
    its sha256); returns (rebuilt, the names of the wheels still waiting for parts)."""
    manifest, intact, _, _ = check_parts(parts_dir)
    spans, start = [], 0                       # (first byte, end, name) of every part in the stream
    for p in manifest["parts"]:
        spans.append((start, start + p["bytes"], p["name"]))
        start += p["bytes"]
    out_dir.mkdir(parents=True, exist_ok=True)
    rebuilt, waiting = [], []
    for w in manifest["wheels"]:
        lo, hi = w["offset"], w["offset"] + w["bytes"]
        needed = [(s, e, name) for s, e, name in spans if s < hi and e > lo]
        if any(name not in intact for _, _, name in needed):
            waiting.append(w["file"])
            continue
        path, h = out_dir / w["file"], hashlib.sha256()
        with open(path, "wb") as out:
            for s, e, name in needed:
                with open(parts_dir / name / CHUNK, "rb") as src:
                    src.seek(max(lo, s) - s)
                    left = min(hi, e) - max(lo, s)
                    while left:
                        block = src.read(min(BLOCK, left))
                        out.write(block)
                        h.update(block)
                        left -= len(block)
        if h.hexdigest() != w["sha256"]:
            raise CarryError(f"{path}: sha256 {h.hexdigest()} differs from the manifest's {w['sha256']}")
        rebuilt.append(path)
    return rebuilt, waiting


def pip_install(wheels: list[Path], target: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
           "--disable-pip-version-check", "--upgrade", "--target", str(target), *map(str, wheels)]
    subprocess.run(cmd, check=True)


def select_wheels(folder: Path) -> list[Path]:
    """The wheel files of WHEELS in `folder` (other wheels there are left alone); CarryError names missing ones."""
    found, missing = [], []
    for req, _ in WHEELS:
        name, version = req.split("==")
        stem = f"{name.replace('-', '_').lower()}-{version}-"
        hits = [f for f in sorted(folder.glob("*.whl")) if f.name.lower().startswith(stem)]
        if len(hits) != 1:
            missing.append(f"{req} ({len(hits)} files)")
        else:
            found += hits
    if missing:
        raise CarryError(f"{folder}: need exactly one wheel each of {missing}; run `python -m tests.gpu.carry "
                         f"download` first")
    return found


def download(dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    for req, _ in WHEELS:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        *PIP_PLATFORM, "-d", str(dest), req], check=True)
    return select_wheels(dest)


def _rel(path: Path) -> Path:
    try:
        return path.resolve().relative_to(ROOT)
    except ValueError:
        return path


def _mib(n: int) -> str:
    return f"{n / MiB:.1f} MiB"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Carry wheels to the GPU machine in parts (docs/GPU_CHECK.md).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download", help="pip download the pinned wheel set (cp312, manylinux x86-64)")
    d.add_argument("--dest", type=Path, default=WHEELS_DIR)
    s = sub.add_parser("split", help="cut the wheels into parts of at most --max-mib")
    s.add_argument("--wheels", type=Path, default=WHEELS_DIR)
    s.add_argument("--parts", type=Path, default=PARTS_DIR)
    s.add_argument("--max-mib", type=float, default=DEFAULT_MAX_MIB)
    st = sub.add_parser("status", help="which parts have arrived intact")
    st.add_argument("--parts", type=Path, default=PARTS_DIR)
    i = sub.add_parser("install", help="join the parts, check sha256, pip install --target")
    i.add_argument("--parts", type=Path, default=PARTS_DIR)
    i.add_argument("--joined", type=Path, default=JOINED_DIR)
    i.add_argument("--target", type=Path, default=Path("/tmp/site"))
    i.add_argument("--partial", action="store_true",
                   help="install only the wheels whose parts have all arrived (calls 1-4); never fails for the rest")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "download":
            for w in download(args.dest):
                print(f"{_mib(w.stat().st_size):>10}  {w.name}")
        elif args.cmd == "split":
            m = split(select_wheels(args.wheels), args.parts, int(args.max_mib * MiB))
            for w in m["wheels"]:
                print(f"{_mib(w['bytes']):>10}  {w['file']}")
            print(f"{_mib(m['total_bytes']):>10}  in {len(m['parts'])} parts:")
            for p in m["parts"]:
                print(f"  {p['name']}: {_mib(p['bytes'])}, carry [\"{_rel(args.parts / p['name'])}\"]")
        elif args.cmd == "status":
            m, intact, missing, damaged = check_parts(args.parts)
            print(f"parts intact {intact}, missing {missing}, damaged {damaged} (of {len(m['parts'])})")
            return 1 if damaged else 0
        elif args.cmd == "install" and args.partial:
            wheels, waiting = join_available(args.parts, args.joined)
            if wheels:
                pip_install(wheels, args.target)
            print(f"installed {[w.name for w in wheels]} into {args.target}; waiting for parts: {waiting}")
        elif args.cmd == "install":
            wheels = join(args.parts, args.joined)
            print(f"{len(wheels)} wheels rebuilt and verified in {args.joined}; installing into {args.target}")
            pip_install(wheels, args.target)
            print(f"installed: export PYTHONPATH={args.target}")
    except CarryError as err:
        print(f"carry: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
