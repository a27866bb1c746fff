"""The baselines `tsn profile --compare` measures against: PyTorch DataLoaders the way users build them.

Every baseline yields the same `Batch` of (B, V, C, H, W) uint8 clips (crop-major views) as pipelines/loader.py, for
the same videos, frame indices and boxes: the sampled indices and the views come from pipelines/sampling.py and
geometry.py with the same per-video random streams. What differs is how pixels are made (`ReferenceSpec.decoder`):

  opencv  frames: MMAction2's RawFrameDecode (mmcv `imfrombytes`, cv2 backend): the file's bytes, `cv2.imdecode`
          (IMREAD_COLOR, BGR), then `cv2.cvtColor(BGR2RGB)`; a frame index met twice is decoded once and copied
  decord  videos: MMAction2's DecordInit + DecordDecode: `decord.VideoReader(BytesIO(file bytes), num_threads=1)`,
          `get_batch(indices)` (mode 'accurate'), mmaction/datasets/transforms/loading.py (MMAction2 1.2.0)
  torchcodec, torchcodec-approx
          videos, what a user writes today with PyTorch's own decoder: `VideoDecoder(path, seek_mode="exact" |
          "approximate", num_ffmpeg_threads=1)`, `get_frames_at(indices)` (jobs/profiling/torchcodec_peer.py; the
          DataLoader runs in a spawned process that can load FFmpeg)
          All four then cut views the way MMAction2's transforms do (mmaction/datasets/transforms/processing.py):
          Resize(-1, S) of the whole frame with `cv2.resize` INTER_LINEAR (mmcv `imresize`; a same-size resize is a
          copy in OpenCV), the crop as an array slice, the config's Resize((s, s), keep_ratio=False) of the crop with
          `cv2.resize` INTER_LINEAR, Flip with `cv2.flip` (mmcv `imflip_`).
  pil     frames with PIL (libjpeg-turbo, full decode; no `draft`, which would change the pixels)
  pyav    videos with our own pipelines/pyav_decode.py
          Both then take an integer box of the output size as a plain crop and resample any other box once from
          source coordinates with PIL bilinear (`resize(box=...)`): fewer passes than MMAction2, an extra row.
Views that share a box (TenCrop's mirrored copies) are cut once and mirrored. Nothing handicaps the baselines:
persistent workers, prefetching, collation straight into shared memory, OpenCV at one thread per worker (what
mmengine's `set_multi_processing` sets, opencv_num_threads=0).
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from jobs.recipes.config import Config
from jobs.recipes.loaders import batch_size, load_records
from pipelines.annotations import FrameLayout, VideoRecord
from pipelines.geometry import Augment, View, plan_views, rescale_size
from pipelines.loader import Batch
from pipelines.sampling import video_rng
from pipelines.sharding import epoch_order

FRAME_DECODERS = ("opencv", "pil")
VIDEO_DECODERS = ("decord", "torchcodec", "torchcodec-approx", "pyav")
# What users run or would write today, at their best: the headline ratio is against the fastest of these in the same
# run. The other (our own PyAV decoder in a DataLoader) shows what the DALI loader adds around the same decoder.
PEERS = frozenset({"opencv", "pil", "decord", "torchcodec", "torchcodec-approx"})
TORCHCODEC_SEEK = {"torchcodec": "exact", "torchcodec-approx": "approximate"}
TITLES = {"opencv": "OpenCV cv2.imdecode + mmcv-style cv2 resizes", "pil": "PIL decode + one PIL resample",
          "decord": "decord get_batch + mmcv-style cv2 resizes",
          "torchcodec": "torchcodec get_frames_at (seek_mode exact, 1 FFmpeg thread) + mmcv-style cv2 resizes",
          "torchcodec-approx": "torchcodec get_frames_at (seek_mode approximate, 1 FFmpeg thread) + mmcv-style cv2 "
                               "resizes",
          "pyav": "PyAV decode_sampled_frames + one PIL resample"}


def decoders_for(source: str) -> tuple[str, ...]:
    return VIDEO_DECODERS if source == "video" else FRAME_DECODERS


def missing(decoder: str) -> str | None:
    """Why a baseline cannot run here (its optional package is not installed), or None."""
    import importlib.util
    if decoder in TORCHCODEC_SEEK:
        from jobs.profiling.torchcodec_peer import missing as torchcodec_missing
        return torchcodec_missing()
    package, extra = {"opencv": ("cv2", "test"), "decord": ("decord", "decord")}.get(decoder, (None, None))
    if package is None or importlib.util.find_spec(package) is not None:
        return None
    return f"{decoder} baseline skipped: the {package} package is not installed (pip install 'tsn-dali[{extra}]')"


@dataclass(frozen=True)
class ReferenceSpec:
    """What the baseline reproduces of one split (RGB only: flow stacks are not what users compare)."""

    source: str                 # "frames" | "video"
    decoder: str                # one of FRAME_DECODERS (frames) or VIDEO_DECODERS (video)
    layout: FrameLayout
    sampler: object             # pipelines.sampling.Sampler
    augment: Augment
    start_index: int
    seed: int


# -- decoding ---------------------------------------------------------------------------------------------------

def opencv_frames(paths: list[str]) -> list[np.ndarray]:
    """(H, W, 3) uint8 RGB per path, mmcv `imfrombytes(content, channel_order='rgb')` with the cv2 backend."""
    import cv2
    frames, seen = [], {}
    for path in paths:
        if path in seen:                         # RawFrameDecode's cache: a repeated index is a copy
            frames.append(frames[seen[path]].copy())
            continue
        with open(path, "rb") as f:
            buf = np.frombuffer(f.read(), np.uint8)
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{path}: OpenCV cannot decode this image")
        cv2.cvtColor(img, cv2.COLOR_BGR2RGB, img)
        seen[path] = len(frames)
        frames.append(img)
    return frames


def decord_frames(path: str, indices, num_threads: int = 1) -> np.ndarray:
    """(F, H, W, 3) uint8 RGB: DecordInit (the file's bytes through BytesIO, num_threads 1) + DecordDecode."""
    import decord
    with open(path, "rb") as f:
        reader = decord.VideoReader(io.BytesIO(f.read()), num_threads=num_threads)
    return reader.get_batch(np.asarray(indices)).asnumpy()


def pil_frames(paths: list[str]) -> list[Image.Image]:
    frames = []
    for path in paths:
        img = Image.open(path)
        img.load()                               # full decode (PIL closes the file after it)
        frames.append(img if img.mode == "RGB" else img.convert("RGB"))
    return frames


# -- views ------------------------------------------------------------------------------------------------------

def resized_size(w: int, h: int, aug: Augment) -> tuple[int, int]:
    """The frame size after the pipeline's first Resize (MMAction2 Resize: (-1, S) keeps the ratio, or a fixed
    (w, h)), which is where geometry.plan_views draws its boxes."""
    if aug.resize == "short_side":
        return rescale_size(w, h, aug.short_side)
    return aug.size if aug.resize == "fixed" else (w, h)


def _stretches(aug: Augment) -> bool:
    """MultiScaleCrop and RandomResizedCrop are followed by the config's Resize((s, s), keep_ratio=False)."""
    return aug.crop in ("multiscale", "random_resized") and aug.out_size is not None


def mmcv_views(frame: np.ndarray, views: list[View], aug: Augment) -> list[np.ndarray]:
    """Each view of one (H, W, 3) frame, (out_h, out_w, 3), the way MMAction2's transforms make it: resize the
    whole frame, slice the box (the views' source boxes mapped back to the resized frame, where they are integers),
    resize the crop; mirror last."""
    import cv2
    h, w = frame.shape[:2]
    rw, rh = resized_size(w, h, aug)
    image = cv2.resize(frame, (rw, rh), interpolation=cv2.INTER_LINEAR) if aug.resize != "none" else frame
    out, cut = [], {}
    for view in views:
        if view.box not in cut:
            x1, y1, x2, y2 = view.box
            x1, x2 = round(x1 * rw / w), round(x2 * rw / w)
            y1, y2 = round(y1 * rh / h), round(y2 * rh / h)
            crop = image[y1:y2, x1:x2]
            # A crop clipped at the border (a crop larger than the frame) is stretched back to the output size to
            # keep the batch rectangular, as the DALI loader does; MMAction2 would hand on the smaller crop.
            if _stretches(aug) or crop.shape[:2] != (view.out_h, view.out_w):
                crop = cv2.resize(crop, (view.out_w, view.out_h), interpolation=cv2.INTER_LINEAR)
            cut[view.box] = crop
        pixels = cut[view.box]
        out.append(cv2.flip(pixels, 1) if view.mirror else pixels)
    return out


def _is_plain_crop(view: View) -> bool:
    x1, y1, x2, y2 = view.box
    return all(float(v).is_integer() for v in view.box) and (x2 - x1, y2 - y1) == (view.out_w, view.out_h)


def cut_view(img: Image.Image, view: View) -> np.ndarray:
    """One view of one decoded frame with PIL, (H, W, 3) uint8, not yet mirrored."""
    if _is_plain_crop(view):
        return np.asarray(img.crop(tuple(int(v) for v in view.box)))
    return np.asarray(img.resize((view.out_w, view.out_h), Image.BILINEAR, box=view.box))


def pil_views(frame: np.ndarray | Image.Image, views: list[View]) -> list[np.ndarray]:
    img = frame if isinstance(frame, Image.Image) else Image.fromarray(frame)
    out, cut = [], {}
    for view in views:
        if view.box not in cut:
            cut[view.box] = cut_view(img, view)
        pixels = cut[view.box]
        out.append(pixels[:, ::-1] if view.mirror else pixels)
    return out


# -- the DataLoader ---------------------------------------------------------------------------------------------

class ReferenceDataset(Dataset):
    """Items are (epoch, video) pairs so every epoch gets its own draws, as in the DALI source."""

    def __init__(self, records: list[VideoRecord], spec: ReferenceSpec):
        self.records, self.spec = records, spec

    def __len__(self) -> int:
        return len(self.records)

    def _frames(self, record: VideoRecord, indices: np.ndarray) -> list:
        """Decoded frames: (H, W, 3) uint8 arrays, or PIL images for the PIL decoder (its resampler's input)."""
        decoder = self.spec.decoder
        if decoder == "decord":
            return list(decord_frames(record.path, indices))
        if decoder == "pyav":
            from pipelines.pyav_decode import decode_sampled_frames
            return list(decode_sampled_frames(record.path, indices))
        if decoder in TORCHCODEC_SEEK:
            from jobs.profiling.torchcodec_peer import frames
            return list(frames(record.path, indices, TORCHCODEC_SEEK[decoder]))
        paths = self.spec.layout.frame_paths(record, indices)
        return opencv_frames(paths) if decoder == "opencv" else pil_frames(paths)

    def __getitem__(self, key: tuple[int, int]):
        epoch, video = key
        s, record = self.spec, self.records[video]
        rng = video_rng(s.seed, epoch, video)
        indices = s.sampler(record.total_frames, s.start_index, rng)
        frames = self._frames(record, indices)
        w, h = frames[0].size if isinstance(frames[0], Image.Image) else frames[0].shape[1::-1]
        views = plan_views(w, h, s.augment, flow=False, rng=rng)
        out = np.empty((len(views) * len(frames), views[0].out_h, views[0].out_w, 3), np.uint8)
        mmcv = s.decoder not in ("pil", "pyav")
        for f, frame in enumerate(frames):
            cut = mmcv_views(frame, views, s.augment) if mmcv else pil_views(frame, views)
            for c, pixels in enumerate(cut):
                out[c * len(frames) + f] = pixels
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


def _one_opencv_thread(_worker_id: int):
    """mmengine's set_multi_processing(opencv_num_threads=0): OpenCV's own thread pool off in loader workers."""
    try:
        import cv2
    except ImportError:
        return
    cv2.setNumThreads(0)


def build_reference_loader(cfg: Config, split: str, *, workers: int, prefetch_factor: int = 4,
                           batch: int | None = None, decoder: str | None = None) -> DataLoader:
    """A DataLoader yielding the same batches (same videos, frames and boxes) as build_loader(cfg, split).
    `decoder`: one of decoders_for(cfg.data.source); default the first (OpenCV for frames, decord for videos)."""
    if cfg.data.is_flow:
        raise ValueError("the reference loader covers RGB recipes only")
    choices = decoders_for(cfg.data.source)
    decoder = decoder or choices[0]
    if decoder not in choices:
        raise ValueError(f"reference decoder {decoder!r} does not read {cfg.data.source}; choose from {choices}")
    part = getattr(cfg, split)
    spec = ReferenceSpec(cfg.data.source, decoder, cfg.data.frame_layout,
                         part.sampler, part.augment, cfg.data.first_index, cfg.runtime.seed)
    records = load_records(cfg, split)
    if cfg.data.source == "video":
        from jobs.recipes.loaders import index_videos, split_files
        records, _ = index_videos(records, split_files(cfg, split)[0], strict=True, workers=workers)
    sampler = EpochBatches(len(records), batch or batch_size(cfg, split), shuffle=split == "train",
                           seed=cfg.runtime.seed)
    return DataLoader(ReferenceDataset(records, spec), batch_sampler=sampler, num_workers=workers,
                      collate_fn=_collate, persistent_workers=workers > 0, worker_init_fn=_one_opencv_thread,
                      prefetch_factor=prefetch_factor if workers > 0 else None)
