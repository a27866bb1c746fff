"""The DALI graph: decode -> one fused crop+resize(+flip) per crop box -> (flow) x inversion -> the split's
augmentation steps (pipelines/augment.py), all uint8.

One function builds every graph; two values choose its shape:
  * `device` ("cpu" | "gpu") picks the decoder backend ("cpu", or "mixed" = nvJPEG / NVDEC) and so where every later
    operator runs;
  * `GraphPlan` (chosen once, by `plan_graph`) says whether JPEGs are ROI-decoded (`decode_slice`) and whether
    integer crop boxes leave the graph to be resampled on the host (`host_resample`, see pipelines/host_resample.py).
The graph a GPU runs (full-frame decode, every resample inside the graph) is `plan_graph(..., gpu_graph=True)` and
builds on the CPU backend too, which is how CI exercises it.

Pixels stay uint8 (normalising on the training device is nearly free there and moves 4x fewer bytes). Outputs are
exchanged by name: `output_names` is the one description both this module and the loader build from.

Per crop box, one of two branches per sample (DALI conditionals): a box with integer corners and exactly the output
size is sliced out (a linear resample at scale 1 gives the same pixels at ~5x the CPU cost), any other box is
resampled once from source coordinates. A flip is folded into the resample's ROI (an end-first x range); views that
share a box (TenCrop's mirrored copies) flip the shared result instead of resampling again.
"""
from __future__ import annotations

import gc
from dataclasses import dataclass

from nvidia.dali import fn, pipeline_def, types

from . import host_resample
from .augment import apply_steps
from .layout import ClipLayout
from .plan import DEVICES, GraphPlan
from .source import ClipSource
from .workers import dali_workers_die_with_parent, start_method


def output_names(layout: ClipLayout, plan: GraphPlan, *, decode_only: bool = False) -> tuple[str, ...]:
    """The pipeline's outputs, in order. Device path: one (N, H, W, C) view per crop (or (B, F, H, W, C) sequences
    from the video decoder) and the per-sample list index."""
    if decode_only:
        return ("frames", "index")
    if plan.host_resample:
        return host_resample.output_names(layout)
    return tuple(f"view{c}" for c in range(layout.crops)) + ("index",)


@dataclass(frozen=True)
class Decoding:
    """Decoder settings of the mixed (GPU) backend; the CPU backend ignores them (pipelines/defaults.py sets them)."""

    hw_decoder_load: float = 0.65
    # libjpeg-turbo (DALI's CPU decoder, OpenCV, PIL) upsamples chroma with the "fancy" triangle filter; nvJPEG's
    # default is plain replication. True makes GPU and CPU decode the same pixels for model-zoo evaluation.
    jpeg_fancy_upsampling: bool = True


def _decode(nodes: dict, source: ClipSource, plan: GraphPlan, device: str, decoding: Decoding):
    backend = "mixed" if device == "gpu" else "cpu"
    gpu = {"hw_decoder_load": decoding.hw_decoder_load,
           "jpeg_fancy_upsampling": decoding.jpeg_fancy_upsampling} if device == "gpu" else {}
    if source.reader.per_video:
        # Sorted internally by DALI and scattered back to request order; 'edge' guards a frame count off by one.
        return fn.decoders.video(nodes["data"], device=backend, frames=nodes["frames"], pad_mode="edge")
    if not hasattr(source.reader, "layout"):          # PyAV: frames arrive decoded
        return nodes["data"].gpu() if device == "gpu" else nodes["data"]
    out_type = types.GRAY if source.reader.gray else types.RGB
    if plan.decode_slice:
        return fn.decoders.image_slice(nodes["data"], nodes["anchor"], nodes["shape"], device=backend,
                                       output_type=out_type, normalized_anchor=False, normalized_shape=False, **gpu)
    return fn.decoders.image(nodes["data"], device=backend, output_type=out_type, **gpu)


def _invert_x(images, invert, device: str):
    """255 - v where `invert` (per sample, 0/1) is set: Flip on flow negates the x displacement (MMAction2 v0.24.1
    mmaction/datasets/pipelines/augmentations.py Flip: `mmcv.iminvert` on x-flow images)."""
    if device == "gpu":
        invert = invert.gpu()
    return fn.cast(invert * (255 - images) + (1 - invert) * images, dtype=types.UINT8)


def _crop_group(images, nodes: dict, u: int, members: tuple[int, ...], layout: ClipLayout, xy_axes: list[int]):
    """The views of crop box `u`, per sample either sliced (plain crop) or resampled; a tuple in `members` order.

    Each branch binds one name (`out`): DALI's conditionals merge names, not list items assigned in a branch.
    """
    if nodes[f"sliced{u}"]:
        base = fn.slice(images, nodes[f"corner{u}"], nodes[f"extent{u}"], axes=xy_axes)
        out = tuple(fn.flip(base, horizontal=nodes[f"mirror{c}"]) for c in members)
    else:
        # One linear resample from the source ROI (no antialias, like cv2 INTER_LINEAR). The ROI carries the first
        # member's flip; the others are its mirrored copies (TenCrop: mirror XOR).
        base = fn.resize(images, roi_start=nodes[f"roi_start{u}"], roi_end=nodes[f"roi_end{u}"],
                         resize_x=layout.out_w, resize_y=layout.out_h, interp_type=types.INTERP_LINEAR,
                         antialias=False)
        out = (base,) + tuple(fn.flip(base, horizontal=1) for _ in members[1:])
    return out


def build_pipeline(source: ClipSource, *, device: str = "cpu", num_threads: int = 2, py_workers: int = 1,
                   prefetch: int = 2, device_id: int | None = None, seed: int = 0, decode_only: bool = False,
                   decoding: Decoding = Decoding()):
    """A DALI pipeline over `source` whose run() returns the outputs `output_names(source.layout, source.plan)`.

    decode_only: stop after the decoder, run() returns (decoded frames, index): the profiler's reference point for
    how much of the graph's time is decoding (DALI 2.4 reports no per-operator times on CPU).
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    layout, plan = source.layout, source.plan
    max_batch = source.epochs.batch_size * (1 if source.reader.per_video else layout.frames_per_video)
    xy_axes = [2, 1] if source.reader.per_video else [1, 0]     # fn.slice axes of (x, y): FHWC or HWC samples
    names = output_names(layout, plan, decode_only=decode_only)

    @pipeline_def(batch_size=max_batch, num_threads=num_threads, device_id=device_id if device == "gpu" else None,
                  py_num_workers=py_workers, py_start_method=start_method(device), prefetch_queue_depth=prefetch,
                  seed=seed, enable_conditionals=True)
    def graph():
        # py_workers=0: the source runs in this process (the recovery probes, pipelines/recovery.py).
        parallel = {"parallel": True, "prefetch_queue_depth": prefetch} if py_workers > 0 else {}
        columns = fn.external_source(source=source, num_outputs=len(source.columns), batch=True, batch_info=True,
                                     **parallel)
        nodes = {column.name: node for column, node in zip(source.columns, columns)}
        out = {"index": nodes["index"]}
        if plan.views_in_workers:           # the workers decoded and cut the views (host_resample.cut_views)
            out.update({f"view{c}": nodes[f"view{c}"] for c in range(layout.crops)})
            out["frames"] = nodes["view0"]
            return tuple(out[name] for name in names)
        images = _decode(nodes, source, plan, device, decoding)
        if decode_only:
            out["frames"] = images
        elif plan.host_resample:
            out.update(host_resample.graph_outputs(images, nodes, layout))
        else:
            views = []
            for u, members in enumerate(layout.groups):
                views += _crop_group(images, nodes, u, members, layout, xy_axes)
            if source.flow:
                views = [_invert_x(v, nodes[f"invert{c}"], device) for c, v in enumerate(views)]
            views = apply_steps(views, nodes, source.steps, layout, device)    # the recipe's steps, in order
            out.update({f"view{c}": v for c, v in enumerate(views)})
        return tuple(out[name] for name in names)

    pipe = graph()
    if py_workers > 0:
        start_workers(pipe)
    return pipe


def start_workers(pipe):
    """Start the Python workers now: before any CUDA context exists in this process, and with no garbage around.

    A forked worker inherits every object of the parent. If one of them is an unreachable DALI Pipeline (from an
    earlier loader) the worker's garbage collector destroys it, DALI segfaults in that shutdown, and the parent
    then waits for the dead worker forever. So: collect first, and freeze what survives out of the workers' GC.
    (Spawned workers inherit nothing; the freeze is harmless there.) Every worker dies with this process
    (pipelines/workers.py).
    """
    gc.collect()
    gc.freeze()
    try:
        with dali_workers_die_with_parent():
            pipe.start_py_workers()
    finally:
        gc.unfreeze()
