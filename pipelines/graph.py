"""The DALI graph: decode -> one fused crop+resize per view -> flip -> (flow) x inversion, all uint8.

The same function builds the CPU and the GPU graph; `device` only picks the decoder backend ("cpu" or "mixed" =
nvJPEG / NVDEC) and therefore where every later operator runs. Pixels stay uint8 (normalising on the training
device is nearly free there and moves 4x fewer bytes). Outputs: one node per view, each (N, H, W, C) with
N = frames (frame-level readers) or (N, F, H, W, C) sequences (video decoder), plus the video index per sample.
"""
from __future__ import annotations

import nvidia.dali.fn as fn
import nvidia.dali.types as types
from nvidia.dali import pipeline_def

from .geometry import Augment
from .source import ClipSource


def output_size(aug: Augment) -> tuple[int, int]:
    """(w, h) of every view: the final stretch for random crops, else the crop size (spec §2.1 pipelines)."""
    if aug.crop in ("multiscale", "random_resized"):
        side = aug.out_size if aug.out_size is not None else None
        if side is None:
            raise ValueError("multiscale / random_resized crops need out_size so a batch has one shape")
        return side, side
    if aug.crop == "none":
        if aug.resize != "fixed":
            raise ValueError("crop 'none' gives one shape per batch only with resize 'fixed'")
        return aug.size
    return aug.crop_size, aug.crop_size


def _decode(nodes: dict, source: ClipSource, device: str):
    backend = "mixed" if device == "gpu" else "cpu"
    if source.reader.per_video:
        # Sorted internally by DALI and scattered back to request order; 'edge' guards a frame count off by one.
        return fn.decoders.video(nodes["data"], device=backend, frames=nodes["frames"], pad_mode="edge")
    if not hasattr(source.reader, "layout"):          # PyAV: frames arrive decoded
        return nodes["data"].gpu() if device == "gpu" else nodes["data"]
    out_type = types.GRAY if source.reader.gray else types.RGB
    if source.decode_slice:
        return fn.decoders.image_slice(nodes["data"], nodes["anchor"], nodes["shape"], device=backend,
                                       output_type=out_type, normalized_anchor=False, normalized_shape=False)
    return fn.decoders.image(nodes["data"], device=backend, output_type=out_type)


def _invert_x(images, invert, device: str):
    """255 - v where `invert` (per sample, 0/1) is set: Flip on flow negates the x displacement (spec §3.9)."""
    if device == "gpu":
        invert = invert.gpu()
    return fn.cast(invert * (255 - images) + (1 - invert) * images, dtype=types.UINT8)


def build_pipeline(source: ClipSource, *, device: str = "cpu", num_threads: int = 2, py_workers: int = 1,
                   prefetch: int = 2, device_id: int | None = None, seed: int = 0):
    """A DALI pipeline over `source`; run() returns (*views, index) for one batch of videos."""
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    frames_per_video = source.sampler.num_offsets * source.sampler.clip_len * (2 if source.flow else 1)
    max_batch = source.epochs.batch_size * (1 if source.reader.per_video else frames_per_video)
    out_w, out_h = output_size(source.augment)

    @pipeline_def(batch_size=max_batch, num_threads=num_threads, device_id=device_id if device == "gpu" else None,
                  py_num_workers=py_workers, py_start_method="fork", prefetch_queue_depth=prefetch, seed=seed)
    def graph():
        outs = fn.external_source(source=source, num_outputs=len(source.names), batch=True, batch_info=True,
                                  parallel=True, prefetch_queue_depth=prefetch)
        nodes = dict(zip(source.names, outs))
        images = _decode(nodes, source, device)
        views = []
        for c in range(source.augment.num_crops):
            # Crop and resize fused: one linear resample from the source ROI (no antialias, like cv2 INTER_LINEAR).
            view = fn.resize(images, roi_start=nodes[f"roi_start{c}"], roi_end=nodes[f"roi_end{c}"],
                             resize_x=out_w, resize_y=out_h, interp_type=types.INTERP_LINEAR, antialias=False)
            view = fn.flip(view, horizontal=nodes[f"mirror{c}"])
            if source.flow:
                view = _invert_x(view, nodes[f"invert{c}"], device)
            views.append(view)
        return (*views, nodes["index"])

    return graph()
