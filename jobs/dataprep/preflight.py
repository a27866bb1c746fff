"""The pre-flight check behind `tsn prepare check`: know the data is usable before a long run starts.

check finds missing, unreadable, truncated, zero-frame, too-short, VFR and NVDEC-unsupported videos, and for
frame folders missing or (with --full) corrupt frames; it prints a summary, writes a JSON-lines report, can
write a cleaned list (the usable lines, verbatim), and exits 1 when anything is unusable.
"""
import json
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from jobs.training.config import Config
from jobs.training.loaders import load_records, split_files
from pipelines.annotations import FrameLayout, VideoRecord
from pipelines.jpeg import BadJpeg, jpeg_size
from pipelines.video_index import build_index, index_path_for

ERRORS = {"missing", "unreadable", "zero_frames", "unsupported", "missing_frames", "corrupt_frame", "truncated"}


def min_frames(cfg: Config, split: str) -> int:
    return getattr(cfg, split).sampler.min_frames


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
        infos = build_index([r.path for r in records], index_path_for(list_file), workers=d.workers,
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
