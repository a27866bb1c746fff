"""Which variant of the DALI graph a loader runs, chosen in one place (`plan_graph`); the variants are in
pipelines/variants/."""
from __future__ import annotations

from .readers import ReaderKind
from .variants.base import Variant
from .variants.device import DeviceResample
from .variants.host import HostResample
from .variants.worker_views import WorkerViews

BACKENDS = ("cpu", "gpu")     # where the DALI graph runs ("gpu": the "mixed" decoders, then the GPU)


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def plan_graph(backend: str, *, reader: ReaderKind, flow: bool, crops: int, gpu_graph: bool = False,
               steps: bool = False) -> Variant:
    """The variant for a loader on `backend` whose reader is of kind `reader`, with `crops` views per frame.

    GPU: the full frame is decoded by nvJPEG (ROI decoding bypasses the hardware JPEG engines, and nvImageCodec 0.9's
    ROI path has crash reports on H100 and A100) and every crop is resampled on the device.
    CPU: single-view JPEG pipelines decode only the crop window (less entropy decoding), and RGB frame samples have
    their integer boxes resampled on the host, where it measured cheaper than DALI's CPU resize (docs/PERFORMANCE.md).
    `gpu_graph=True` gives the GPU's variant on the CPU backend (how CI runs the GPU's graph).
    CPU, PyAV frames: the views are cut and resampled in the Python workers that decoded them.
    `steps=True` (the split has augmentation steps, pipelines/augment.py) also gives the GPU's variant: the steps
    run on the views inside the graph, which the host-resample path only assembles outside it.
    """
    check_backend(backend)
    if backend == "gpu" or gpu_graph or steps:
        return DeviceResample()
    if reader is ReaderKind.DECODED:
        # PyAV frames are decoded in the Python workers anyway: cutting the views there, in parallel, ships
        # out_w x out_h views instead of whole frames and leaves the main process only the copy into the batch.
        return WorkerViews()
    roi = reader is ReaderKind.JPEG and crops == 1
    if reader is ReaderKind.VIDEO or flow:
        return DeviceResample(roi_decode=roi)
    return HostResample(roi_decode=roi)
