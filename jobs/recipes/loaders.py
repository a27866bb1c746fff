"""Config -> loader: the one place that turns a recipe's data sections into a DALI pipeline and a ClipLoader."""
from __future__ import annotations

import dataclasses
import functools
import logging
import os

import numpy as np

from jobs.recipes.config import Config
from pipelines import packed
from pipelines.annotations import (
    FrameLayout,
    VideoRecord,
    load_rawframe_list,
    load_video_list,
)
from pipelines.defaults import LoaderSettings, loader_settings
from pipelines.errors import UserError
from pipelines.graph import build_pipeline
from pipelines.loader import ClipLoader
from pipelines.plan import plan_graph
from pipelines.readers import FrameFolderReader, PyAVReader, VideoFileReader
from pipelines.sampling import Sampler, video_rng
from pipelines.sharding import Shard
from pipelines.source import ClipSource, Epochs

SPLITS = ("train", "val", "test")


class DataError(UserError, RuntimeError):
    """Data that cannot be used under the `raise` policy (evaluation), with every offending file listed."""


def split_files(cfg: Config, split: str) -> tuple[str, str]:
    d = cfg.data
    return getattr(d, f"{split}_list"), getattr(d, f"{split}_prefix")


def load_records(cfg: Config, split: str, list_file: str | None = None, prefix: str | None = None) -> list[VideoRecord]:
    d = cfg.data
    default_list, default_prefix = split_files(cfg, split)
    explicit = prefix is not None
    list_file, prefix = list_file or default_list, default_prefix if prefix is None else prefix
    num_classes = cfg.model.num_classes
    if d.source == "frames":
        records = load_rawframe_list(list_file, data_prefix=prefix, with_offset=d.with_offset,
                                     multi_class=d.multi_class, num_classes=num_classes)
    else:
        records = load_video_list(list_file, data_prefix=prefix, multi_class=d.multi_class, num_classes=num_classes)
    if prefix and not os.path.isdir(prefix):
        # Otherwise every video would be "missing" one by one (and skipped in training): name the one cause.
        what = "--prefix" if explicit else f"data.{split}_prefix"
        raise DataError(f"{prefix}: no such data folder ({what}; the paths in {list_file} are relative to it)")
    return records


def video_infos(records: list[VideoRecord], list_file: str | None, workers: int = 2) -> dict:
    """{path: VideoInfo} of every record's file, from the video index cached beside `list_file` (None: not cached)."""
    from pipelines.video_index import build_index, index_path_for
    cache = index_path_for(list_file) if list_file else None
    return build_index([r.path for r in records], cache, workers=workers, progress=False)


def index_videos(records: list[VideoRecord], list_file: str | None, *, strict: bool, workers: int = 2,
                 infos: dict | None = None):
    """Fill total_frames from the video index, cached beside `list_file` (None: not cached); returns (records,
    {path: (w, h)} of readable videos)."""
    infos = video_infos(records, list_file, workers) if infos is None else infos
    bad = [(r, f"{infos[r.path].status} ({infos[r.path].reason})") for r in records if infos[r.path].status != "ok"]
    if strict and bad:
        raise unusable(bad, list_file)
    # A record that already has total_frames is a window [offset, offset + total_frames) of its video, cut from this
    # same index (jobs/evaluation/timeline.py); a list line (total_frames None) stands for the whole file.
    out = [dataclasses.replace(r, total_frames=infos[r.path].num_frames if r.total_frames is None else r.total_frames)
           if infos[r.path].status == "ok" else
           dataclasses.replace(r, total_frames=None, problem=f"{infos[r.path].status}: {infos[r.path].reason}")
           for r in records]
    sizes = {p: (i.width, i.height) for p, i in infos.items() if i.status == "ok"}
    return out, sizes


def video_decoder(requested: str, device: str, infos: dict) -> tuple[str, list[str]]:
    """The decoder a video loader uses ("dali" | "pyav") and the readable videos NVDEC cannot take.

    `data.decoder = "auto"` is DALI's video decoder (NVDEC) on a GPU and PyAV on a CPU. On a GPU, NVDEC refuses a
    stream outside its per-codec limits (e.g. VP9 below 128 x 128: "Video is too small", pipelines/video_index.py)
    and one pipeline has one decoder: such a video sends the loader to PyAV on the CPU instead of failing there.
    `VideoInfo.nvdec_ok` derives the verdict from the index's codec and size, so an index cached under older limits is
    judged anew.
    """
    decoder = requested if requested != "auto" else ("dali" if device == "gpu" else "pyav")
    if device != "gpu":
        return decoder, []
    misfits = [p for p, i in infos.items()
               if i.status == "ok" and not i.nvdec_ok]
    if decoder == "dali" and misfits:
        i = infos[misfits[0]]
        logging.getLogger(__name__).warning(
            "%d of %d videos are outside NVDEC's limits (first: %s, %s %s %dx%d): this loader decodes with PyAV on "
            "the CPU (re-encode them, e.g. `tsn prepare resize`, to keep NVDEC)", len(misfits), len(infos),
            misfits[0], i.codec, i.pix_fmt, i.width, i.height)
        decoder = "pyav"
    return decoder, misfits


def settings(cfg: Config, device: str) -> LoaderSettings:
    """The recipe's loader knobs with the device's defaults filled in (pipelines/defaults.py)."""
    d = cfg.data
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))      # torchrun: ranks sharing this host's cores
    return loader_settings(device, workers=d.workers, threads=d.threads, prefetch=d.prefetch,
                           test_batch=d.test_videos_per_gpu, hw_decoder_load=d.hw_decoder_load,
                           local_ranks=local_ranks)


def unusable(bad: list[tuple[VideoRecord, str]], list_file: str) -> DataError:
    """One error listing every unusable entry as `list:line: path: reason` (records given without a list: `path:
    reason`)."""
    lines = "\n".join(f"  {r.source}: {r.path}: {reason}" if r.source != r.path else f"  {r.path}: {reason}"
                      for r, reason in bad)
    return DataError(f"{len(bad)} unusable videos" + (f" in {list_file}" if list_file else "") + f":\n{lines}")


def unreadable_folders(records: list[VideoRecord], layout: FrameLayout, sampler: Sampler, start_index: int,
                       seed: int) -> list[tuple[VideoRecord, str]]:
    """Frame folders an evaluation cannot read, found up front: (record, reason) for each.

    Evaluation runs one epoch, and ClipSource reads exactly the frames `sampler` picks for video i with
    video_rng(seed, 0, i) (test-mode samplers pick fixed frames anyway), so those files are what is checked: one
    stat call each, no reading or decoding (a corrupt JPEG is `tsn prepare check --full`'s business).
    """
    bad = []
    for i, r in enumerate(records):
        if not r.total_frames or r.total_frames < 1:
            bad.append((r, f"no frames (total_frames={r.total_frames})"))
        elif not packed.is_folder(r.path):
            bad.append((r, "no such frame folder"))
        else:
            picked = np.unique(sampler(r.total_frames, start_index, video_rng(seed, 0, i)))
            files = layout.frame_paths(r, picked)     # flow: an x and a y file per picked frame
            missing = [f for f in files if not packed.exists(f)]
            if missing:
                bad.append((r, f"{len(missing)} of the {len(files)} sampled frame files missing, first {missing[0]}"))
    return bad


def batch_size(cfg: Config, split: str, device: str = "cpu") -> int:
    d = cfg.data
    if split == "train":
        return d.videos_per_gpu
    if split == "val":
        return d.val_videos_per_gpu or d.videos_per_gpu
    return settings(cfg, device).test_batch


def build_loader(cfg: Config, split: str, *, shard: Shard = Shard(), device: str = "cpu", device_id: int | None = None,
                 start_epoch: int = 0, work_dir: str | None = None, list_file: str | None = None,
                 prefix: str | None = None, batch: int | None = None, on_error: str | None = None,
                 gpu_graph: bool = False, records: list[VideoRecord] | None = None,
                 first_batch: int = 0) -> ClipLoader:
    """A loader for `split` ("train" | "val" | "test") of `cfg`, sharded for this rank.

    device: where the DALI graph runs ("cpu" | "gpu"; device_id = the CUDA device index). gpu_graph: on the CPU, run
    the graph a GPU would run (full-frame decode, every resample in DALI) instead of the CPU's fast path.
    records: load these instead of a list (`tsn predict` on one input, folders and windows); `list_file` then only
    names where the video index is cached (`<list_file>.index.jsonl`; without it the index is not cached).
    first_batch: the first epoch (`start_epoch`) starts at this batch (a mid-epoch resume; the batches before it are
    the ones already trained).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    d, part = cfg.data, getattr(cfg, split)
    policy = on_error or d.on_error or ("skip" if split == "train" else "raise")
    # Where errors point and the video index is cached: the list read, or the one named beside given records.
    where = list_file if records is not None else list_file or split_files(cfg, split)[0]
    records = load_records(cfg, split, list_file, prefix) if records is None else records
    flow = d.is_flow
    if d.source == "frames":
        layout = d.frame_layout
        if policy == "raise" and split != "train":     # refuse before any work, naming every unreadable folder
            bad = unreadable_folders(records, layout, part.sampler, d.first_index, cfg.runtime.seed)
            if bad:
                raise unusable(bad, where)
        reader = FrameFolderReader(layout)
    else:
        infos = video_infos(records, where, d.workers)
        records, sizes = index_videos(records, where, strict=policy == "raise", infos=infos)
        decoder, _ = video_decoder(d.decoder, device, infos)
        from pipelines.video_index import packet_tables
        reader = VideoFileReader(sizes) if decoder == "dali" else PyAVReader(d.decode_timeout, packet_tables(infos))
    knobs = settings(cfg, device)
    epochs = Epochs(batch_size=batch or batch_size(cfg, split, device), shuffle=split == "train",
                    pad_mark=split != "train", seed=cfg.runtime.seed, start_epoch=start_epoch, shard=shard)
    bad_log = None
    if work_dir:
        os.makedirs(work_dir, exist_ok=True)
        bad_log = os.path.join(work_dir, "bad_samples.jsonl")
    variant = plan_graph(device, reader=reader.kind, flow=flow, crops=part.augment.num_crops, gpu_graph=gpu_graph,
                         steps=bool(part.steps))
    source = ClipSource(records, reader, part.sampler, part.augment, epochs, variant, start_index=d.first_index,
                        flow=flow, on_error=policy, bad_log=bad_log, steps=part.steps,
                        first_iteration=first_batch)
    build = functools.partial(build_pipeline, backend=device, num_threads=knobs.threads, py_workers=knobs.workers,
                              prefetch=knobs.prefetch, device_id=device_id, seed=cfg.runtime.seed + shard.rank,
                              decoding=knobs.decoding)
    pipeline = build(source)
    loader = ClipLoader(source, pipeline, num_classes=cfg.model.num_classes, multi_label=d.multi_class,
                        max_bad_fraction=d.max_bad_fraction if policy == "skip" else 1.0,
                        batch_timeout=d.batch_timeout, build=build)
    # Videos with fewer frames than a sample needs (one clip, or one frame per segment) are padded as MMAction2
    # does (repeated frames, out_of_bound_opt), never dropped: count them so it is not silent.
    need = part.sampler.min_frames
    loader.short_videos = [r.source for r in records if r.total_frames is not None and 0 < r.total_frames < need]
    return loader
