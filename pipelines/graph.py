"""The DALI graph: decode -> one fused crop+resize(+flip) per crop box -> (flow) x inversion, all uint8.

The same function builds the CPU and the GPU graph; `device` only picks the decoder backend ("cpu" or "mixed" =
nvJPEG / NVDEC) and therefore where every later operator runs. Pixels stay uint8 (normalising on the training
device is nearly free there and moves 4x fewer bytes). Outputs: one node per view, each (N, H, W, C) with
N = frames (frame-level readers) or (N, F, H, W, C) sequences (video decoder), plus the video index per sample.

Per crop box, one of two branches per sample (DALI conditionals): a box with integer corners and exactly the output
size is sliced out (a linear resample at scale 1 gives the same pixels at ~5x the CPU cost), any other box is
resampled once from source coordinates. A flip is folded into the resample's ROI (an end-first x range); views that
share a box (TenCrop's mirrored copies) flip the shared result instead of resampling again.

On the CPU, RGB frame pipelines take the host-resample path: integer boxes leave the graph as decoded pixels and the
loader resamples them in torch (DALI's CPU resize cost more than decoding; jobs/PERF_SECTION.md has the numbers).
"""
from __future__ import annotations

import gc

from nvidia.dali import fn, pipeline_def, types

from .geometry import Augment
from .source import ClipSource, box_groups


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


def _crop_group(images, nodes: dict, u: int, members: list[int], out_w: int, out_h: int, xy_axes: list[int]):
    """The views of crop box `u`, per sample either sliced (plain crop) or resampled; a tuple in `members` order.

    Each branch binds one name (`out`): DALI's conditionals merge names, not list items assigned in a branch.
    """
    if nodes[f"sliced{u}"]:
        base = fn.slice(images, nodes[f"corner{u}"], nodes[f"extent{u}"], axes=xy_axes)
        out = tuple(fn.flip(base, horizontal=nodes[f"mirror{c}"]) for c in members)
    else:
        # One linear resample from the source ROI (no antialias, like cv2 INTER_LINEAR). The ROI carries the first
        # member's flip; the others are its mirrored copies (TenCrop: mirror XOR).
        base = fn.resize(images, roi_start=nodes[f"roi_start{u}"], roi_end=nodes[f"roi_end{u}"], resize_x=out_w,
                         resize_y=out_h, interp_type=types.INTERP_LINEAR, antialias=False)
        out = (base,) + tuple(fn.flip(base, horizontal=1) for _ in members[1:])
    return out


def _host_group(images, nodes: dict, u: int, out_w: int, out_h: int):
    """Host-resample path, crop box `u`: a fractional box is resampled here (unflipped); an integer box is left to
    the loader, which cuts it from `images` and resamples it on the CPU (~4x cheaper than DALI's CPU resize). Its
    branch still has to yield a node: a 1 x 1 placeholder the loader ignores."""
    if nodes[f"sliced{u}"]:
        out = fn.slice(images, nodes[f"corner{u}"], [1, 1], axes=[1, 0])
    else:
        out = fn.resize(images, roi_start=nodes[f"roi_start{u}"], roi_end=nodes[f"roi_end{u}"], resize_x=out_w,
                        resize_y=out_h, interp_type=types.INTERP_LINEAR, antialias=False)
    return out


def build_pipeline(source: ClipSource, *, device: str = "cpu", num_threads: int = 2, py_workers: int = 1,
                   prefetch: int = 2, device_id: int | None = None, seed: int = 0, decode_only: bool = False):
    """A DALI pipeline over `source`; run() returns (*views, index) for one batch of videos, or with
    source.host_resample (CPU, RGB frames) (frames, *resampled boxes, *sliced, *corner, *extent, *mirror, index), which
    ClipLoader._assemble_host turns into the same views.

    decode_only: stop after the decoder, run() returns (decoded frames, index): the profiler's reference point for
    how much of the graph's time is decoding (DALI 2.4 reports no per-operator times on CPU).
    """
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    frames_per_video = source.sampler.num_offsets * source.sampler.clip_len * (2 if source.flow else 1)
    max_batch = source.epochs.batch_size * (1 if source.reader.per_video else frames_per_video)
    out_w, out_h = output_size(source.augment)

    groups = box_groups(source.augment)
    xy_axes = [2, 1] if source.reader.per_video else [1, 0]     # fn.slice axes of (x, y): FHWC or HWC samples

    @pipeline_def(batch_size=max_batch, num_threads=num_threads, device_id=device_id if device == "gpu" else None,
                  py_num_workers=py_workers, py_start_method="fork", prefetch_queue_depth=prefetch, seed=seed,
                  enable_conditionals=True)
    def graph():
        outs = fn.external_source(source=source, num_outputs=len(source.names), batch=True, batch_info=True,
                                  parallel=True, prefetch_queue_depth=prefetch)
        nodes = dict(zip(source.names, outs))
        images = _decode(nodes, source, device)
        if decode_only:
            return images, nodes["index"]
        if source.host_resample:     # see pipelines/loader.py (ClipLoader._assemble_host) for the consumer
            resized = [_host_group(images, nodes, u, out_w, out_h) for u in range(len(groups))]
            per_box = [nodes[f"{name}{u}"] for name in ("sliced", "corner", "extent") for u in range(len(groups))]
            mirrors = [nodes[f"mirror{c}"] for c in range(source.augment.num_crops)]
            return (images, *resized, *per_box, *mirrors, nodes["index"])
        views = []
        for u, members in enumerate(groups):
            views += _crop_group(images, nodes, u, members, out_w, out_h, xy_axes)
        if source.flow:
            views = [_invert_x(v, nodes[f"invert{c}"], device) for c, v in enumerate(views)]
        return (*views, nodes["index"])

    pipe = graph()
    start_workers(pipe)
    return pipe


def start_workers(pipe):
    """Fork the Python workers now: before any CUDA context exists in this process, and with no garbage around.

    A forked worker inherits every object of the parent. If one of them is an unreachable DALI Pipeline (from an
    earlier loader) the worker's garbage collector destroys it, DALI segfaults in that shutdown, and the parent
    then waits for the dead worker forever. So: collect first, and freeze what survives out of the workers' GC.
    """
    gc.collect()
    gc.freeze()
    try:
        pipe.start_py_workers()
    finally:
        gc.unfreeze()
