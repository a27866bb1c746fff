"""The pre-flight check behind `tsn prepare check`: know the data is usable before a long run starts.

check finds missing, unreadable, truncated, zero-frame, too-short, VFR and NVDEC-unsupported videos, and frame
folders that are missing or miss frames; with --full it also decodes every frame of every folder or video as
training does (jobs/dataprep/fullcheck.py: DALI's CPU image decoder, PyAV for videos), which is what finds JPEGs
with intact headers but a corrupt body, and videos cut mid-stream. It prints a summary, writes a JSON-lines report,
can write a cleaned list (the usable lines, verbatim), and exits 1 when anything is unusable.
"""
import json
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from jobs.dataprep.fullcheck import decode_check, folder_job, video_job
from jobs.dataprep.worksplit import WorkSplit
from jobs.recipes.config import Config
from jobs.recipes.loaders import load_records, split_files
from pipelines import packed
from pipelines.annotations import FrameLayout, VideoRecord
from pipelines.video_index import build_index, index_path_for

ERRORS = {"missing", "unreadable", "zero_frames", "unsupported", "missing_frames", "corrupt_frame", "truncated",
          "decode_error"}


def min_frames(cfg: Config, split: str) -> int:
    return getattr(cfg, split).sampler.min_frames


def frame_files(record: VideoRecord, layout: FrameLayout) -> list[str]:
    """Every frame file the list line names (RGB: one per frame; flow: x and y)."""
    return layout.frame_paths(record, range(layout.start_index, layout.start_index + (record.total_frames or 0)))


def check_folder(record: VideoRecord, layout: FrameLayout) -> list[tuple[str, str]]:
    if not packed.is_folder(record.path):
        return [("missing", f"no folder {record.path}")]
    paths = frame_files(record, layout)
    missing = [p for p in paths if not packed.exists(p)]
    if missing:
        return [("missing_frames", f"{len(missing)} of {len(paths)} frames missing, first {missing[0]}")]
    return []


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


def run_check(cfg: Config, split: str, full: bool, report: str, clean_list: str | None,
              workers: int | None = None, part: WorkSplit = WorkSplit()) -> Counter:
    """Check `split`'s list of `cfg` (`part` of it); `full` also decodes every frame (cached in
    <list>.full_check.jsonl, or a part's own cache file)."""
    list_file = split_files(cfg, split)[0]
    records = part.take(load_records(cfg, split))
    d = cfg.data
    workers = d.workers if workers is None else workers
    progress = sys.stderr.isatty()
    if d.source == "video":
        infos = build_index([r.path for r in records],
                            part.part_name(index_path_for(list_file).removesuffix(".jsonl"), ".jsonl"), workers=workers,
                            progress=progress)
    layout = d.frame_layout
    shards = {where[0] for where in map(packed.split, (r.path for r in records)) if where}
    broken = {s: packed.shard_problem(s) for s in shards}         # packed lists: every shard whole, one stat each
    found: list[list[tuple[str, str]]] = []
    for r in tqdm(records, desc="check", disable=not progress):
        where = packed.split(r.path)
        if where and broken[where[0]]:
            found.append([("truncated", broken[where[0]])])
            continue
        problems = check_video(r, infos[r.path]) if d.source == "video" else check_folder(r, layout)
        frames = infos[r.path].num_frames if d.source == "video" else r.total_frames
        if frames is not None and 0 < frames < min_frames(cfg, split):
            problems.append(("too_short", f"{frames} frames < one clip ({min_frames(cfg, split)}): padded"))
        found.append(problems)
    if full:   # decode what passed the cheap checks (a missing file has nothing to decode)
        what = f"frames:{d.modality}:{d.filename_tmpl}"
        jobs = {i: video_job(r.path, infos[r.path].num_frames) if d.source == "video"
                else folder_job(r.path, frame_files(r, layout), d.is_flow, what)
                for i, r in enumerate(records) if not any(kind in ERRORS for kind, _ in found[i])}
        decoded = decode_check(list({j.path: j for j in jobs.values()}.values()),
                               part.part_name(list_file + ".full_check", ".jsonl"), workers=workers, progress=progress)
        for i, job in jobs.items():
            found[i] += decoded[job.path]
    counts, usable = Counter(), []
    with open(report, "w", encoding="utf-8") as out:
        for r, problems in zip(records, found):
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
