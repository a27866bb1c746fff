"""Which variant of the DALI graph a loader runs, chosen in one place (`plan_graph`); see pipelines/graph.py."""
from __future__ import annotations

from dataclasses import dataclass

DEVICES = ("cpu", "gpu")     # where the DALI graph runs; the one spelling used across the project


@dataclass(frozen=True)
class GraphPlan:
    """Which of the graph's variants a loader runs (chosen once, in `plan_graph`)."""

    decode_slice: bool = False     # decode only the crop window (ROI JPEG decode)
    host_resample: bool = False    # integer crop boxes are resampled by the loader on the host
    views_in_workers: bool = False  # frames decoded in Python (PyAV): the workers cut and resample the views


def plan_graph(device: str, *, jpeg: bool, per_video: bool, flow: bool, crops: int,
               gpu_graph: bool = False, steps: bool = False) -> GraphPlan:
    """The variant for a loader on `device`: `jpeg` frame folders, `per_video` samples (DALI's video decoder) or
    frames decoded in Python (PyAV, neither).

    GPU: the full frame is decoded by nvJPEG (ROI decoding bypasses the hardware JPEG engines, and nvImageCodec 0.9's
    ROI path has crash reports on H100 and A100) and every crop is resampled on the device.
    CPU: single-view JPEG pipelines decode only the crop window (less entropy decoding), and RGB frame samples have
    their integer boxes resampled on the host, where it measured cheaper than DALI's CPU resize (docs/PERFORMANCE.md).
    `gpu_graph=True` gives the GPU's variant on the CPU backend (how CI runs the GPU's graph).
    CPU, PyAV frames: the views are cut and resampled in the Python workers that decoded them (host_resample.cut_views).
    `steps=True` (the split has augmentation steps, pipelines/augment.py) also gives the GPU's variant: the steps
    run on the views inside the graph, which the host-resample path only assembles outside it.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "gpu" or gpu_graph or steps:
        return GraphPlan()
    if not jpeg and not per_video:
        # PyAV frames are decoded in the Python workers anyway: cutting the views there, in parallel, ships
        # out_w x out_h views instead of whole frames (2.8 MB per 8-frame 456x256 clip) and leaves the main process
        # only the copy into the batch.
        return GraphPlan(views_in_workers=True)
    return GraphPlan(decode_slice=jpeg and crops == 1, host_resample=not per_video and not flow)
