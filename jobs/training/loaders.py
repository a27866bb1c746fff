"""Config -> loader: the one place that turns a recipe's data sections into a DALI pipeline and a ClipLoader."""
from __future__ import annotations

import dataclasses
import os

from jobs.training.config import Config
from pipelines.annotations import (
    FrameLayout,
    VideoRecord,
    load_rawframe_list,
    load_video_list,
)
from pipelines.graph import build_pipeline
from pipelines.loader import ClipLoader
from pipelines.readers import FrameFolderReader, PyAVReader, VideoFileReader
from pipelines.sharding import Shard
from pipelines.source import ClipSource, Epochs

SPLITS = ("train", "val", "test")


class DataError(RuntimeError):
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


def index_videos(records: list[VideoRecord], list_file: str, *, strict: bool, workers: int = 2):
    """Fill total_frames from the cached video index; returns (records, {path: (w, h)} of readable videos)."""
    from pipelines.video_index import build_index
    infos = build_index([r.path for r in records], list_file + ".index.jsonl", workers=workers, progress=False)
    bad = [(r, infos[r.path]) for r in records if infos[r.path].status != "ok"]
    if strict and bad:
        lines = "\n".join(f"  {r.source}: {r.path}: {i.status} ({i.reason})" for r, i in bad[:20])
        raise DataError(f"{len(bad)} unusable videos in {list_file}:\n{lines}")
    out = [dataclasses.replace(r, total_frames=infos[r.path].num_frames) if infos[r.path].status == "ok" else
           dataclasses.replace(r, total_frames=None, problem=f"{infos[r.path].status}: {infos[r.path].reason}")
           for r in records]
    sizes = {p: (i.width, i.height) for p, i in infos.items() if i.status == "ok"}
    return out, sizes


def batch_size(cfg: Config, split: str) -> int:
    d = cfg.data
    if split == "train":
        return d.videos_per_gpu
    if split == "val":
        return d.val_videos_per_gpu or d.videos_per_gpu
    return d.test_videos_per_gpu


def build_loader(cfg: Config, split: str, *, shard: Shard = Shard(), device: str = "cpu", device_id: int | None = None,
                 start_epoch: int = 0, work_dir: str | None = None, list_file: str | None = None,
                 prefix: str | None = None, batch: int | None = None, on_error: str | None = None) -> ClipLoader:
    """A loader for `split` ("train" | "val" | "test") of `cfg`, sharded for this rank."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    d, part = cfg.data, getattr(cfg, split)
    policy = on_error or d.on_error or ("skip" if split == "train" else "raise")
    records = load_records(cfg, split, list_file, prefix)
    flow = d.modality == "Flow"
    if d.source == "frames":
        reader = FrameFolderReader(FrameLayout(d.filename_tmpl, d.first_index, d.modality))
    else:
        records, sizes = index_videos(records, list_file or split_files(cfg, split)[0],
                                      strict=policy == "raise", workers=d.workers)
        decoder = d.decoder if d.decoder != "auto" else ("dali" if device == "gpu" else "pyav")
        reader = VideoFileReader(sizes) if decoder == "dali" else PyAVReader(d.decode_timeout)
    epochs = Epochs(batch_size=batch or batch_size(cfg, split), shuffle=split == "train",
                    pad_mark=split != "train", seed=cfg.runtime.seed, start_epoch=start_epoch, shard=shard)
    bad_log = None
    if work_dir:
        os.makedirs(work_dir, exist_ok=True)
        bad_log = os.path.join(work_dir, "bad_samples.jsonl")
    # CPU, RGB frames: integer crop boxes are resampled by the loader in torch (DALI's CPU resize was half the time).
    host_resample = device == "cpu" and not flow and not reader.per_video
    source = ClipSource(records, reader, part.sampler, part.augment, epochs, start_index=d.first_index, flow=flow,
                        decode_slice=d.source == "frames" and part.augment.num_crops == 1,
                        host_resample=host_resample, on_error=policy, bad_log=bad_log)
    pipeline = build_pipeline(source, device=device, num_threads=d.threads, py_workers=d.workers,
                              prefetch=d.prefetch, device_id=device_id, seed=cfg.runtime.seed + shard.rank)
    loader = ClipLoader(source, pipeline, num_classes=cfg.model.num_classes, multi_label=d.multi_class,
                        max_bad_fraction=d.max_bad_fraction if policy == "skip" else 1.0)
    # Videos with fewer frames than a sample needs (one clip, or one frame per segment) are padded as MMAction2
    # does (repeated frames, out_of_bound_opt), never dropped: count them so it is not silent.
    need = max(part.sampler.clip_len * part.sampler.frame_interval, part.sampler.num_clips)
    loader.short_videos = [r.source for r in records if r.total_frames is not None and 0 < r.total_frames < need]
    return loader
