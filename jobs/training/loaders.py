"""Config -> loader: the one place that turns a recipe's data sections into a DALI pipeline and a ClipLoader."""
from __future__ import annotations

import dataclasses
import functools
import os

from jobs.training.config import Config
from pipelines.annotations import (
    FrameLayout,
    VideoRecord,
    load_rawframe_list,
    load_video_list,
)
from pipelines.defaults import LoaderSettings, loader_settings
from pipelines.graph import Decoding, build_pipeline
from pipelines.loader import ClipLoader
from pipelines.plan import plan_graph
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
    list_file, prefix = list_file or default_list, default_prefix if prefix is None else prefix
    num_classes = cfg.model.num_classes
    if d.source == "frames":
        return load_rawframe_list(list_file, data_prefix=prefix, with_offset=d.with_offset,
                                  multi_class=d.multi_class, num_classes=num_classes)
    return load_video_list(list_file, data_prefix=prefix, multi_class=d.multi_class, num_classes=num_classes)


def index_videos(records: list[VideoRecord], list_file: str, *, strict: bool, workers: int = 2):
    """Fill total_frames from the cached video index; returns (records, {path: (w, h)} of readable videos)."""
    from pipelines.video_index import build_index, index_path_for
    infos = build_index([r.path for r in records], index_path_for(list_file), workers=workers,
                        progress=False)
    bad = [(r, infos[r.path]) for r in records if infos[r.path].status != "ok"]
    if strict and bad:
        lines = "\n".join(f"  {r.source}: {r.path}: {i.status} ({i.reason})" for r, i in bad[:20])
        raise DataError(f"{len(bad)} unusable videos in {list_file}:\n{lines}")
    out = [dataclasses.replace(r, total_frames=infos[r.path].num_frames) if infos[r.path].status == "ok" else
           dataclasses.replace(r, total_frames=None, problem=f"{infos[r.path].status}: {infos[r.path].reason}")
           for r in records]
    sizes = {p: (i.width, i.height) for p, i in infos.items() if i.status == "ok"}
    return out, sizes


def settings(cfg: Config, device: str) -> LoaderSettings:
    """The recipe's loader knobs with the device's defaults filled in (pipelines/defaults.py)."""
    d = cfg.data
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))      # torchrun: ranks sharing this host's cores
    return loader_settings(device, workers=d.workers, threads=d.threads, prefetch=d.prefetch,
                           test_batch=d.test_videos_per_gpu, hw_decoder_load=d.hw_decoder_load,
                           local_ranks=local_ranks)


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
                 gpu_graph: bool = False) -> ClipLoader:
    """A loader for `split` ("train" | "val" | "test") of `cfg`, sharded for this rank.

    device: where the DALI graph runs ("cpu" | "gpu"; device_id = the CUDA device index). gpu_graph: on the CPU, run
    the graph a GPU would run (full-frame decode, every resample in DALI) instead of the CPU's fast path.
    """
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
    knobs = settings(cfg, device)
    epochs = Epochs(batch_size=batch or batch_size(cfg, split, device), shuffle=split == "train",
                    pad_mark=split != "train", seed=cfg.runtime.seed, start_epoch=start_epoch, shard=shard)
    bad_log = None
    if work_dir:
        os.makedirs(work_dir, exist_ok=True)
        bad_log = os.path.join(work_dir, "bad_samples.jsonl")
    plan = plan_graph(device, jpeg=d.source == "frames", per_video=reader.per_video, flow=flow,
                      crops=part.augment.num_crops, gpu_graph=gpu_graph, steps=bool(part.steps))
    source = ClipSource(records, reader, part.sampler, part.augment, epochs, plan, start_index=d.first_index,
                        flow=flow, on_error=policy, bad_log=bad_log, steps=part.steps)
    build = functools.partial(build_pipeline, device=device, num_threads=knobs.threads, py_workers=knobs.workers,
                              prefetch=knobs.prefetch, device_id=device_id, seed=cfg.runtime.seed + shard.rank,
                              decoding=Decoding(hw_decoder_load=knobs.hw_decoder_load))
    pipeline = build(source)
    loader = ClipLoader(source, pipeline, num_classes=cfg.model.num_classes, multi_label=d.multi_class,
                        max_bad_fraction=d.max_bad_fraction if policy == "skip" else 1.0,
                        batch_timeout=d.batch_timeout, build=build)
    # Videos with fewer frames than a sample needs (one clip, or one frame per segment) are padded as MMAction2
    # does (repeated frames, out_of_bound_opt), never dropped: count them so it is not silent.
    need = part.sampler.min_frames
    loader.short_videos = [r.source for r in records if r.total_frames is not None and 0 < r.total_frames < need]
    return loader
