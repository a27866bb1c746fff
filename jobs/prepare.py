"""`tsn prepare`: file lists from official annotations, resized videos, RGB frames, optical flow.

Every media step skips outputs that are already complete, runs in a process pool with a progress bar,
writes one JSON line (path, reason) per failed input to a report, and exits 1 if anything failed.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: put the repo root (not jobs/) first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import functools
import json
import re
from collections import Counter

import click

from jobs.console.errors import run
from jobs.console.options import cfg_options
from jobs.dataprep import filelist as filelist_mod
from jobs.dataprep import flow as flow_mod
from jobs.dataprep import pack as pack_mod
from jobs.dataprep import worksplit
from jobs.dataprep.frames import FrameOptions, extract_frames
from jobs.dataprep.listio import OfficialAnnotationError
from jobs.dataprep.resize import EncodeOptions, resize_video
from jobs.dataprep.runner import default_workers, run_tasks
from jobs.dataprep.videoio import Resize, plan_tasks
from jobs.dataprep.worksplit import WorkSplit
from pipelines import packed
from pipelines.annotations import load_video_list
from pipelines.geometry import parse_wxh

_DIR = click.Path(exists=True, file_okay=False, path_type=Path)
_OUT = click.Path(file_okay=False, path_type=Path)


@click.group()
def prepare():
    """Prepare datasets: file lists, resized videos, RGB frames, optical flow."""


def _shard_option(fn):
    return click.option("--shard", "part", default=None, metavar="I/N",
                        help="do part I (0-based) of N of this job, e.g. one task of a SLURM array; "
                             "default: SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT when set, else everything")(fn)


def _part(text: str | None) -> WorkSplit:
    try:
        return worksplit.parse(text)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--shard") from None


def _media_options(fn):
    """Options every media step shares."""
    fn = _shard_option(fn)
    fn = click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
                      help="failure report (JSON lines: path, reason) [default: DST_DIR/<step>_failures.jsonl]")(fn)
    fn = click.option("--workers", type=click.IntRange(min=0), default=default_workers(), show_default=True,
                      help="worker processes (0 = run in this process)")(fn)
    fn = click.option("--size", default=None, help="exact output size WxH, e.g. 340x256")(fn)
    fn = click.option("--short-side", type=click.IntRange(min=2), default=None,
                      help="resize keeping the aspect ratio so the short side is this many px")(fn)
    return fn


def _resize(short_side: int | None, size: str | None) -> Resize:
    try:
        return Resize(short_side, parse_wxh(size) if size else None)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


def _run(step: str, planned, work, dst: Path, workers: int, report: Path | None, part: str | None = None) -> None:
    """Run a planned step (this machine's part of it), print its summary, exit 1 if any input failed."""
    tasks, known = planned
    split = _part(part)
    tasks, known = split.take(tasks), split.take(known)
    report = report or dst / split.part_name(f"{step}_failures", ".jsonl")
    if not split.whole:
        click.echo(f"{step}: part {split} ({len(tasks)} inputs)")
    summary = run_tasks(tasks, work, workers=workers, report_path=report, desc=step, known_failures=known)
    click.echo(f"{step}: {summary.done} done, {summary.skipped} already complete, "
               f"{len(summary.failures)} failed (of {summary.total + len(known)} inputs)")
    if summary.failures:
        for failure in summary.failures[:10]:
            click.echo(f"  FAILED {failure.path}: {failure.reason}", err=True)
        click.echo(f"report: {summary.report_path}", err=True)
        raise click.exceptions.Exit(1)


@prepare.command()
@click.argument("dataset", type=click.Choice(sorted(filelist_mod.dataset_specs())))
@click.option("--ann-dir", required=True, type=_DIR, help="folder with the official annotation files")
@click.option("--root", type=_DIR, default=None, help="folder of frames/videos the list paths are relative to")
@click.option("--train-root", type=_DIR, default=None, help="root for the train split [default: --root]")
@click.option("--val-root", type=_DIR, default=None, help="root for the val split [default: --root]")
@click.option("--test-root", type=_DIR, default=None, help="root for a labelled test split [default: --root]")
@click.option("--out", "out_dir", required=True, type=_OUT, help="where lists and classes.txt are written")
@click.option("--format", "fmt", type=click.Choice(["rawframes", "videos"]), default="rawframes", show_default=True)
@click.option("--modality", type=click.Choice(["rgb", "flow"]), default="rgb", show_default=True,
              help="flow: count flow-x files (lists named *_flow.txt)")
@click.option("--template", default=None, help="frame file template to count [default: the dataset's]")
@click.option("--strict", is_flag=True, help="exit 1 if any annotated video is missing on disk")
def filelist(dataset, ann_dir, root, train_root, val_root, test_root, out_dir, fmt, modality, template, strict):
    """Build DATASET's lists (MMAction2 formats) from its official annotation files."""
    given = {"train": train_root or root, "val": val_root or root, "test": test_root or root}
    roots = {role: path for role, path in given.items() if path is not None}
    if not roots:
        raise click.UsageError("give --root (or --train-root / --val-root)")
    try:
        summary = filelist_mod.build_filelists(dataset, ann_dir, out_dir, roots=roots, fmt=fmt,
                                               modality=modality, template=template)
    except (OfficialAnnotationError, FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    for result in summary.lists:
        missing = f", {result.missing} missing -> {result.path.stem}_missing.txt" if result.missing else ""
        click.echo(f"{result.path}: {result.written} entries{missing}")
    click.echo(f"classes: {summary.classes_path}")
    for note in summary.notes:
        click.echo(f"note: {note}", err=True)
    if summary.problems:
        click.echo(f"{len(summary.problems)} annotated videos not listed; reasons in {summary.report_path}", err=True)
        if strict:
            raise click.exceptions.Exit(1)


@prepare.command()
@click.argument("src_dir", type=_DIR)
@click.argument("dst_dir", type=_OUT)
@_media_options
@click.option("--fps", type=float, default=None, help="output frame rate [default: the source's]")
@click.option("--gop", type=click.IntRange(min=1), default=16, show_default=True, help="frames between keyframes")
@click.option("--crf", type=click.IntRange(0, 51), default=23, show_default=True, help="x264 quality")
@click.option("--preset", default="veryfast", show_default=True, help="x264 preset")
@click.option("--tune", type=click.Choice(("fastdecode", "none")), default="fastdecode", show_default=True,
              help="x264 tune (fastdecode: faster CPU decoding at the same quality, slightly larger files)")
def resize(src_dir, dst_dir, short_side, size, workers, report, part, fps, gop, crf, preset, tune):
    """Re-encode videos to H.264 yuv420p, constant frame rate, short closed GOP, no audio."""
    from fractions import Fraction

    opts = EncodeOptions(_resize(short_side, size), Fraction(fps).limit_denominator(1001) if fps else None,
                         gop, crf, preset, None if tune == "none" else tune)
    _run("resize", plan_tasks(src_dir, dst_dir, ".mp4"), functools.partial(resize_video, opts=opts),
         dst_dir, workers, report, part)


@prepare.command()
@click.argument("src_dir", type=_DIR)
@click.argument("dst_dir", type=_OUT)
@_media_options
@click.option("--template", default="img_{:05}.jpg", show_default=True, help="frame file name template")
@click.option("--start-index", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG quality")
def frames(src_dir, dst_dir, short_side, size, workers, report, part, template, start_index, quality):
    """Extract every frame of every video under SRC_DIR into DST_DIR/<video>/ as RGB JPEGs."""
    try:
        opts = FrameOptions(_resize(short_side, size), template, start_index, quality)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    _run("frames", plan_tasks(src_dir, dst_dir, ""), functools.partial(extract_frames, opts=opts),
         dst_dir, workers, report, part)


@prepare.command()
@click.argument("src_dir", type=_DIR)
@click.argument("dst_dir", type=_OUT)
@_media_options
@click.option("--algo", type=click.Choice(flow_mod.ALGORITHMS), default="tvl1", show_default=True,
              help="tvl1 = the published TSN flow; farneback = fast preview, NOT the published algorithm")
@click.option("--bound", type=float, default=20.0, show_default=True, help="clip flow to +-bound px before quantising")
@click.option("--template", default="{}_{:05d}.jpg", show_default=True, help="flow file template (direction, index)")
@click.option("--rgb-template", default="img_{:05}.jpg", show_default=True,
              help="RGB frames to read (frame folders) or to write (--with-rgb)")
@click.option("--start-index", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--source", type=click.Choice(["auto", "videos", "frames"]), default="auto", show_default=True,
              help="SRC_DIR holds videos or frame folders (auto: videos if any)")
@click.option("--with-rgb", is_flag=True, help="videos: also write the RGB frames next to the flow")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG quality")
@click.option("--backend", type=click.Choice(flow_mod.BACKENDS), default="auto", show_default=True,
              help="TV-L1 by OpenCV (CPU) or by PyTorch (CPU or CUDA, equal within docs/DATASETS.md's tolerance); "
                   "auto: opencv on cpu, torch on cuda")
@click.option("--device", default="cpu", show_default=True, help="torch backend: cpu, cuda or cuda:N")
@click.option("--batch-size", type=click.IntRange(min=0), default=0, show_default=True,
              help="torch backend: frame pairs per device call (0 = from the free device memory)")
def flow(src_dir, dst_dir, short_side, size, workers, report, part, algo, bound, template, rgb_template, start_index,
         source, with_rgb, quality, backend, device, batch_size):
    """Optical flow of every video or frame folder under SRC_DIR into DST_DIR/<video>/."""
    try:
        opts = flow_mod.FlowOptions(algo, bound, template, rgb_template, start_index, _resize(short_side, size),
                                    with_rgb, quality, backend=backend, device=device, batch_size=batch_size)
        kind, tasks, known = flow_mod.plan(src_dir, dst_dir, source, rgb_template)
        meta = flow_mod.write_meta(dst_dir, opts, kind)
    except (ValueError, RuntimeError) as err:
        raise click.ClickException(str(err)) from None
    if not meta["published_algorithm"]:
        click.echo(f"WARNING: {meta['note']}", err=True)
    click.echo(f"flow: {algo} ({opts.backend}, {device}), bound {bound}, from {kind} -> {dst_dir} "
               "(settings in flow_meta.json)")
    _run("flow", (tasks, known), functools.partial(flow_mod.extract_flow, opts=opts, source=kind),
         dst_dir, workers, report, part)


@prepare.command("check")
@click.argument("config")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="train", show_default=True)
@click.option("--full", is_flag=True,
              help="Also decode every frame as training does (DALI's CPU JPEG decoder, PyAV for videos); "
                   "resumable: results are cached in <list>.full_check.jsonl.")
@click.option("--report", help="JSON-lines report (default: <list>.check.jsonl).")
@click.option("--clean-list", help="Write the usable lines of the list here.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Processes for probing and --full decoding [default: the recipe's data.workers].")
@_shard_option
@cfg_options
def check_command(config, split, full, report, clean_list, workers, part, cfg_options):
    """Pre-flight check of CONFIG's data for one split (packed lists: every member read through its shard's index).

    With --shard I/N a part checks every N-th video and writes <list>.check.part-I-of-N.jsonl; `tsn prepare merge`
    of the list's folder joins the reports."""
    from jobs.dataprep.preflight import ERRORS, run_check
    from jobs.recipes.config import load_config
    from jobs.recipes.loaders import split_files
    cfg = load_config(config, cfg_options)
    split_part = _part(part)
    if clean_list and not split_part.whole:
        raise click.UsageError("--clean-list needs the whole list: run it without --shard")
    report = report or split_part.part_name(split_files(cfg, split)[0] + ".check", ".jsonl")
    counts = run_check(cfg, split, full, report, clean_list, workers, split_part)
    for kind, n in sorted(counts.items(), key=lambda kv: (kv[0] != "ok", kv[0])):
        click.echo(f"{kind:>18}: {n}")
    click.echo(f"report: {report}" + (f"; usable lines: {clean_list}" if clean_list else ""))
    if any(counts[k] for k in ERRORS):
        sys.exit(1)


@prepare.command("index")
@click.argument("list_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--data-prefix", default="", help="Folder the list's video paths are relative to.")
@click.option("--workers", default=2, show_default=True)
@_shard_option
def index_command(list_file, data_prefix, workers, part):
    """Probe every video of a list once (frames, fps, VFR, codec, GOP, status); cached as <list>.index.jsonl.

    With --shard I/N each part writes <list>.index.part-I-of-N.jsonl; `tsn prepare merge` of the list's folder
    joins them."""
    from pipelines.video_index import build_index, index_path_for
    split = _part(part)
    paths = split.take([r.path for r in load_video_list(list_file, data_prefix=data_prefix, multi_class=True)])
    cache = split.part_name(index_path_for(list_file).removesuffix(".jsonl"), ".jsonl")
    infos = build_index(paths, cache, workers=workers, progress=sys.stderr.isatty())
    for status, n in sorted(Counter(i.status for i in infos.values()).items()):
        click.echo(f"{status:>12}: {n}")
    click.echo(f"index: {cache}")


@prepare.command("synthetic")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--seed", default=0, show_default=True)
@click.option("--videos-per-class", default=16, show_default=True, help="Training videos per class.")
@click.option("--size", default="80x64", show_default=True, help="Frame size WxH.")
def synthetic_command(out, seed, videos_per_class, size):
    """Write the synthetic action dataset (frames, flow, H.264, VP9, lists) used by the demo and tests."""
    from pipelines.synthetic_data import SyntheticSpec, make_synthetic_dataset
    try:
        w, h = parse_wxh(size)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--size") from None
    summary = make_synthetic_dataset(out, SyntheticSpec(seed=seed, train_per_class=videos_per_class,
                                                        width=w, height=h))
    click.echo(f"{summary['num_classes']} classes, {summary['counts']} videos written to {out}")


def _size_bytes(text: str) -> int:
    """`1GiB`, `500MiB`, `2G`, `123456` -> bytes."""
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    num, unit = (t[:-1], t[-1]) if t and t[-1] in units else (t, "")
    try:
        value = int(float(num) * units[unit])
    except ValueError:
        raise click.BadParameter(f"not a size: {text!r} (e.g. 1GiB, 512MiB)", param_hint="--shard-size") from None
    if value <= 0:
        raise click.BadParameter("must be > 0", param_hint="--shard-size")
    return value


@prepare.command("pack")
@click.argument("lists", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--root", required=True, type=_DIR, help="folder the lists' paths are relative to (the data prefix)")
@click.option("--out", "out_dir", required=True, type=_OUT, help="where shards, indexes and packed lists go")
@click.option("--shard-size", default="1GiB", show_default=True, help="close a shard at this size")
@click.option("--prefix", default="shard", show_default=True, help="shard file name prefix")
@click.option("--seed", default=0, show_default=True, help="seed of the write-time shuffle")
@click.option("--tag", default="", help="pack all of LISTS as one node's batch (e.g. its node-local frames): shards "
                                        "<prefix>-<tag>-<n>.tar and lists <name>.<tag>.txt; ignores SLURM variables")
@_shard_option
def pack_command(lists, root, out_dir, shard_size, prefix, seed, tag, part):
    """Pack the frame folders or videos of LISTS into tar shards with an index each, and write the packed lists.

    Every list whose entries live under --root (RGB and flow lists of one dataset, train and val) can go in one
    call: a folder is packed once, every list points to it. Resumable; with --shard I/N, run `tsn prepare merge`
    after the last part."""
    if tag and part:
        raise click.UsageError("--tag packs all of LISTS: do not combine it with --shard")
    if tag and not re.fullmatch(r"[A-Za-z0-9_]+", tag):
        raise click.BadParameter("letters, digits and '_' only", param_hint="--tag")
    split = WorkSplit() if tag else _part(part)
    opts = pack_mod.PackOptions(root, out_dir, prefix, _size_bytes(shard_size), seed, tag)
    try:
        done = []
        failures = pack_mod.pack(lists, opts, split, progress=done.append)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    report = out_dir / split.part_name("pack_failures", ".jsonl")
    if failures or not split.whole:     # a part always leaves its report, so `merge` sees every part's
        pack_mod.write_lines(report, [json.dumps({"path": f.path, "reason": f.reason}) for f in failures])
    click.echo(f"pack{'' if split.whole else f' part {split}'}: {len(done)} shards in {out_dir}, "
               f"{len(failures)} entries not packed")
    for failure in failures[:10]:
        click.echo(f"  FAILED {failure.path}: {failure.reason}", err=True)
    if split.whole:
        click.echo("lists written to " + str(out_dir))
    if failures:
        click.echo(f"report: {report}", err=True)
        raise click.exceptions.Exit(1)


@prepare.command("merge")
@click.argument("out_dir", type=_DIR)
def merge_command(out_dir):
    """Join the parts of split jobs in OUT_DIR: packed lists (pack), failure reports (frames, flow, resize, pack),
    video index parts (index)."""
    written = []
    if (out_dir / pack_mod.MANIFEST).exists():
        try:
            written += pack_mod.merge(out_dir)
        except ValueError as err:
            raise click.ClickException(str(err)) from None
    stems = {p.name[:p.name.index(".part-")] for p in out_dir.glob("*.part-*-of-*.jsonl")} - {".pack-map"}
    for stem in sorted(stems):      # failure reports of frames/flow/resize/pack, video index parts
        merged = pack_mod.merge_reports(out_dir, stem)
        if merged and merged not in written:
            written.append(merged)
    if not written:
        raise click.ClickException(f"{out_dir}: nothing to merge (no pack.json, no *.part-I-of-N.jsonl)")
    for path in written:
        click.echo(f"wrote {path}")


@prepare.command("unpack")
@click.argument("shard_dir", type=_DIR)
@click.argument("dst_dir", type=_OUT)
@click.option("--list", "lists", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="packed list to turn back into a folder list (written into DST_DIR); repeatable")
@_shard_option
def unpack_command(shard_dir, dst_dir, lists, part):
    """Write the files of every shard in SHARD_DIR back as folders/videos under DST_DIR (resumable)."""
    split = _part(part)
    shards = split.take(pack_mod.shards_in(shard_dir))
    files = 0
    try:
        for shard in shards:
            files += pack_mod.unpack_shard(shard, dst_dir)
    except packed.PackedError as err:
        raise click.ClickException(str(err)) from None
    for list_file in lists:
        pack_mod.unpack_list(list_file, dst_dir / list_file.name)
    click.echo(f"unpack: {len(shards)} shards, {files} files written to {dst_dir}")


@prepare.command("check-shards")
@click.argument("shard_dir", type=_DIR)
@click.option("--full", is_flag=True, help="also read every member through the index and decode it")
@_shard_option
def check_shards_command(shard_dir, full, part):
    """Check the shards in SHARD_DIR: index present, size as indexed (a truncated shard is named); --full decodes
    every member."""
    shards = _part(part).take(pack_mod.shards_in(shard_dir))
    problems = [p for shard in shards for p in pack_mod.check_shard(shard, full)]
    for problem in problems:
        click.echo(f"BAD {problem}", err=True)
    click.echo(f"check-shards: {len(shards)} shards, {len(problems)} problems")
    if problems:
        raise click.exceptions.Exit(1)


if __name__ == "__main__":
    run(prepare)
