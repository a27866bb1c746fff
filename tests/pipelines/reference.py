"""Independent pixels for pipeline tests, in the style of MMAction2 (v0.24.1 mmaction/datasets/pipelines): decode
(PIL for JPEG files, plain sequential PyAV decoding for videos) -> cv2 INTER_LINEAR resize to the short side -> crop
-> cv2 resize to the output size -> flip -> flow x inversion. Only the per-video geometry draws are shared with the
code under test (pipelines.geometry.plan_views with the same per-video random stream), so the resampling, cropping,
flipping and channel layout are checked independently.
"""
from __future__ import annotations

import av
import cv2
import numpy as np
from PIL import Image

from pipelines.geometry import plan_views, rescale_size
from pipelines.sampling import video_rng


def decode_video_frames(path, indices) -> list[np.ndarray]:
    """Frames `indices` (presentation order) by decoding the whole file front to back: no seeking, no packet table."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return [frames[int(i)] for i in indices]


def reference_views(cfg, split, record, video, epoch=0):
    """Independent pixels for one video: list over views of (frames, H, W, C) uint8."""
    d, part = cfg.data, getattr(cfg, split)
    flow = d.is_flow
    rng = video_rng(cfg.runtime.seed, epoch, video)
    indices = part.sampler(record.total_frames, d.first_index, rng)
    if d.source == "video":
        images = decode_video_frames(record.path, indices)
    else:
        files = d.frame_layout.frame_paths(record, indices)
        images = [np.asarray(Image.open(f).convert("L" if flow else "RGB")) for f in files]
    h, w = images[0].shape[:2]
    views = plan_views(w, h, part.augment, flow=flow, rng=rng)
    aug = part.augment
    rw, rh = rescale_size(w, h, aug.short_side) if aug.resize == "short_side" else (w, h)
    out = []
    for view in views:
        # Undo the source mapping to get the integer box MMAction2 crops from the resized frame.
        x1, y1, x2, y2 = (round(v) for v in (view.box[0] * rw / w, view.box[1] * rh / h,
                                              view.box[2] * rw / w, view.box[3] * rh / h))
        frames = []
        for i, img in enumerate(images):
            resized = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_LINEAR)
            crop = cv2.resize(resized[y1:y2, x1:x2], (view.out_w, view.out_h), interpolation=cv2.INTER_LINEAR)
            if view.mirror:
                crop = crop[:, ::-1]
            if view.invert_flow_x and i % 2 == 0:
                crop = 255 - crop
            frames.append(crop.reshape(view.out_h, view.out_w, -1))
        out.append(np.stack(frames))
    return out


def as_frames(clip, flow):
    """(V, C, H, W) of one video -> (V * k, H, W, c) in sample order (flow: x, y, x, y, ...)."""
    v, c, h, w = clip.shape
    if flow:
        return clip.reshape(v * c, 1, h, w).permute(0, 2, 3, 1).numpy()
    return clip.permute(0, 2, 3, 1).numpy()




def compare_with_reference(cfg, split, loader, batch):
    """(view_got, view_ref, mean abs diff) for every view of every video of a loader batch: the loader's pixels
    against `reference_views` of the same video."""
    flow = cfg.data.is_flow
    for clip, video in zip(batch.clips, batch.index.tolist()):
        ref = reference_views(cfg, split, loader.source.records[video], video)
        got = as_frames(clip, flow).reshape(len(ref), -1, *ref[0].shape[1:])
        for view_got, view_ref in zip(got, ref):
            yield view_got, view_ref, np.abs(view_got.astype(float) - view_ref.astype(float)).mean()
