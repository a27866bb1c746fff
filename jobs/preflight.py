"""`tsn prepare index | check | synthetic`: know the data is usable before a long run starts.

check finds missing, unreadable, truncated, zero-frame, too-short, VFR and NVDEC-unsupported videos, and for
frame folders missing or (with --full) corrupt frames; it prints a summary, writes a JSON-lines report, can
write a cleaned list (the usable lines, verbatim), and exits 1 when anything is unusable.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not jobs/, goes first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import json
import os
from collections import Counter

import click
import numpy as np
from tqdm import tqdm

from jobs.config import Config, load_config
from jobs.data import load_records, split_files
from jobs.options import cfg_options
from pipelines.annotations import FrameLayout, VideoRecord, load_video_list
from pipelines.jpeg import BadJpeg, jpeg_size
from pipelines.synthetic import SyntheticSpec, make_synthetic_dataset
from pipelines.video_index import build_index

ERRORS = {"missing", "unreadable", "zero_frames", "unsupported", "missing_frames", "corrupt_frame", "truncated"}


def min_frames(cfg: Config, split: str) -> int:
    s = getattr(cfg, split).sampler
    return s.clip_len * s.frame_interval


def check_folder(record: VideoRecord, layout: FrameLayout, full: bool) -> list[tuple[str, str]]:
    if not os.path.isdir(record.path):
        return [("missing", f"no folder {record.path}")]
    problems = []
    paths = layout.frame_paths(record, range(layout.start_index, layout.start_index + (record.total_frames or 0)))
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        problems.append(("missing_frames", f"{len(missing)} of {len(paths)} frames missing, first {missing[0]}"))
    if full:
        for p in (p for p in paths if os.path.isfile(p)):
            try:
                jpeg_size(np.fromfile(p, np.uint8))
            except BadJpeg as err:
                problems.append(("corrupt_frame", f"{p}: {err}"))
                break
    return problems


def check_video(record: VideoRecord, info) -> list[tuple[str, str]]:
    if info.status != "ok":
        return [(info.status, info.reason)]
    problems = [("truncated", info.reason)] if info.reason else []
    if info.vfr:
        problems.append(("vfr", f"variable frame rate (mean {info.fps:.2f} fps): re-encode with `tsn prepare resize`"))
    if not info.nvdec_ok:
        problems.append(("nvdec_unsupported", f"{info.codec} {info.pix_fmt} {info.width}x{info.height}: "
                                              "decoded by PyAV on the CPU"))
    return problems


def run_check(cfg: Config, split: str, full: bool, report: str, clean_list: str | None) -> Counter:
    list_file = split_files(cfg, split)[0]
    records = load_records(cfg, split)
    d = cfg.data
    if d.source == "video":
        infos = build_index([r.path for r in records], list_file + ".index.jsonl", workers=d.workers,
                            progress=sys.stderr.isatty())
    layout = FrameLayout(d.filename_tmpl, d.first_index, d.modality)
    counts, usable = Counter(), []
    with open(report, "w", encoding="utf-8") as out:
        for r in tqdm(records, desc="check", disable=not sys.stderr.isatty()):
            problems = check_video(r, infos[r.path]) if d.source == "video" else check_folder(r, layout, full)
            frames = infos[r.path].num_frames if d.source == "video" else r.total_frames
            if frames is not None and 0 < frames < min_frames(cfg, split):
                problems.append(("too_short", f"{frames} frames < one clip ({min_frames(cfg, split)}): padded"))
            for kind, reason in problems:
                counts[kind] += 1
                out.write(json.dumps({"line": r.source, "path": r.path, "problem": kind, "reason": reason}) + "\n")
            if not any(kind in ERRORS for kind, _ in problems):
                usable.append(int(r.source.rsplit(":", 1)[1]))
    counts["ok"] = len(usable)
    if clean_list:
        lines = Path(list_file).read_text(encoding="utf-8").splitlines()
        Path(clean_list).write_text("".join(lines[n - 1] + "\n" for n in usable), encoding="utf-8")
    return counts


@click.command("check")
@click.argument("config")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="train", show_default=True)
@click.option("--full", is_flag=True, help="Also read every frame header (frame folders) / decode every frame.")
@click.option("--report", help="JSON-lines report (default: <list>.check.jsonl).")
@click.option("--clean-list", help="Write the usable lines of the list here.")
@cfg_options
def check_command(config, split, full, report, clean_list, cfg_options):
    """Pre-flight check of CONFIG's data for one split."""
    cfg = load_config(config, cfg_options)
    report = report or split_files(cfg, split)[0] + ".check.jsonl"
    counts = run_check(cfg, split, full, report, clean_list)
    for kind, n in sorted(counts.items(), key=lambda kv: (kv[0] != "ok", kv[0])):
        click.echo(f"{kind:>18}: {n}")
    click.echo(f"report: {report}" + (f"; usable lines: {clean_list}" if clean_list else ""))
    if any(counts[k] for k in ERRORS):
        sys.exit(1)


@click.command("index")
@click.argument("list_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--data-prefix", default="", help="Folder the list's video paths are relative to.")
@click.option("--workers", default=2, show_default=True)
def index_command(list_file, data_prefix, workers):
    """Probe every video of a list once (frames, fps, VFR, codec, GOP, status); cached as <list>.index.jsonl."""
    paths = [r.path for r in load_video_list(list_file, data_prefix=data_prefix, multi_class=True)]
    infos = build_index(paths, list_file + ".index.jsonl", workers=workers, progress=sys.stderr.isatty())
    for status, n in sorted(Counter(i.status for i in infos.values()).items()):
        click.echo(f"{status:>12}: {n}")
    click.echo(f"index: {list_file}.index.jsonl")


@click.command("synthetic")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--seed", default=0, show_default=True)
@click.option("--videos-per-class", default=16, show_default=True, help="Training videos per class.")
@click.option("--size", default="80x64", show_default=True, help="Frame size WxH.")
def synthetic_command(out, seed, videos_per_class, size):
    """Write the synthetic action dataset (frames, flow, H.264, VP9, lists) used by the demo and tests."""
    w, h = (int(v) for v in size.lower().split("x"))
    summary = make_synthetic_dataset(out, SyntheticSpec(seed=seed, train_per_class=videos_per_class,
                                                        width=w, height=h))
    click.echo(f"{summary['num_classes']} classes, {summary['counts']} videos written to {out}")


if __name__ == "__main__":
    check_command()
