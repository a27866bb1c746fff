"""The baseline `tsn profile --compare` measures against: a PyTorch DataLoader the way most users build one.

Worker processes decode every sampled JPEG fully with PIL (libjpeg-turbo; no `draft`, which would change the
pixels) or a video with PyAV, then cut each view with the same geometry as the DALI graph (pipelines/sampling.py
and geometry.py, the same per-video random streams): an integer box whose size is the output size is a plain crop
(what a scale-1 linear resample gives anyway), any other box is one PIL bilinear resample from source coordinates
(`resize(box=...)`, never crop-then-resize). Views that share a box (TenCrop's mirrored copies) are resampled once
and mirrored. Output: the same `Batch` of (B, V, C, H, W) uint8 clips, crop-major views, as pipelines/loader.py.
Nothing here handicaps the baseline: persistent workers, prefetching, collation straight into shared memory.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from jobs.training.config import Config
from jobs.training.loaders import batch_size, load_records
from pipelines.annotations import FrameLayout, VideoRecord
from pipelines.geometry import View, plan_views
from pipelines.loader import Batch
from pipelines.sampling import video_rng
from pipelines.sharding import epoch_order


@dataclass(frozen=True)
class ReferenceSpec:
    """What the baseline reproduces of one split (RGB only: flow stacks are not what users compare)."""

    source: str                 # "frames" | "video"
    layout: FrameLayout
    sampler: object             # pipelines.sampling.Sampler
    augment: object             # pipelines.geometry.Augment
    start_index: int
    seed: int


def _is_plain_crop(view: View) -> bool:
    x1, y1, x2, y2 = view.box
    return all(float(v).is_integer() for v in view.box) and (x2 - x1, y2 - y1) == (view.out_w, view.out_h)


def cut_view(img: Image.Image, view: View) -> np.ndarray:
    """One view of one decoded frame, (H, W, 3) uint8, not yet mirrored."""
    if _is_plain_crop(view):
        return np.asarray(img.crop(tuple(int(v) for v in view.box)))
    return np.asarray(img.resize((view.out_w, view.out_h), Image.BILINEAR, box=view.box))


class ReferenceDataset(Dataset):
    """Items are (epoch, video) pairs so every epoch gets its own draws, as in the DALI source."""

    def __init__(self, records: list[VideoRecord], spec: ReferenceSpec):
        self.records, self.spec = records, spec

    def __len__(self) -> int:
        return len(self.records)

    def _frames(self, record: VideoRecord, indices: np.ndarray) -> list[Image.Image]:
        if self.spec.source == "video":
            from pipelines.pyav_decode import decode_frames
            return [Image.fromarray(f) for f in decode_frames(record.path, indices)]
        frames = []
        for path in self.spec.layout.frame_paths(record, indices):
            img = Image.open(path)
            img.load()                                   # full decode (PIL closes the file after it)
            frames.append(img if img.mode == "RGB" else img.convert("RGB"))
        return frames

    def __getitem__(self, key: tuple[int, int]):
        epoch, video = key
        s, record = self.spec, self.records[video]
        rng = video_rng(s.seed, epoch, video)
        indices = s.sampler(record.total_frames, s.start_index, rng)
        frames = self._frames(record, indices)
        views = plan_views(frames[0].width, frames[0].height, s.augment, flow=False, rng=rng)
        out = np.empty((len(views) * len(frames), views[0].out_h, views[0].out_w, 3), np.uint8)
        for f, img in enumerate(frames):
            cut = {}
            for c, view in enumerate(views):
                if view.box not in cut:
                    cut[view.box] = cut_view(img, view)
                pixels = cut[view.box]
                out[c * len(frames) + f] = pixels[:, ::-1] if view.mirror else pixels
        # (V, H, W, C) -> (V, C, H, W): the collate's stack writes it contiguous, like the DALI loader's output.
        return torch.from_numpy(out).permute(0, 3, 1, 2), record.label, video


class EpochBatches(Sampler):
    """Batches of (epoch, video) in the same per-epoch order as the DALI loader; one epoch per `iter()`."""

    def __init__(self, num_videos: int, batch: int, *, shuffle: bool, seed: int):
        self.num_videos, self.batch, self.shuffle, self.seed = num_videos, batch, shuffle, seed
        self.epoch = 0

    def __len__(self) -> int:
        return -(-self.num_videos // self.batch)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = epoch_order(self.num_videos, epoch=epoch, seed=self.seed, shuffle=self.shuffle).tolist()
        for i in range(0, len(order), self.batch):
            yield [(epoch, v) for v in order[i:i + self.batch]]


def _collate(items) -> Batch:
    # default_collate stacks straight into shared memory inside a worker: no extra copy on the way to the consumer.
    clips, labels, index = default_collate(items)
    return Batch(clips, labels, index)


def build_reference_loader(cfg: Config, split: str, *, workers: int, prefetch_factor: int = 4,
                           batch: int | None = None) -> DataLoader:
    """A DataLoader yielding the same batches (same videos, frames and boxes) as build_loader(cfg, split)."""
    if cfg.data.modality != "RGB":
        raise ValueError("the reference loader covers RGB recipes only")
    part = getattr(cfg, split)
    spec = ReferenceSpec(cfg.data.source, FrameLayout(cfg.data.filename_tmpl, cfg.data.first_index, "RGB"),
                         part.sampler, part.augment, cfg.data.first_index, cfg.runtime.seed)
    records = load_records(cfg, split)
    if cfg.data.source == "video":
        from jobs.training.loaders import index_videos, split_files
        records, _ = index_videos(records, split_files(cfg, split)[0], strict=True, workers=workers)
    sampler = EpochBatches(len(records), batch or batch_size(cfg, split), shuffle=split == "train",
                           seed=cfg.runtime.seed)
    return DataLoader(ReferenceDataset(records, spec), batch_sampler=sampler, num_workers=workers,
                      collate_fn=_collate, persistent_workers=workers > 0,
                      prefetch_factor=prefetch_factor if workers > 0 else None)
