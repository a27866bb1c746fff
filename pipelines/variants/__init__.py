"""The graph variants: each one a way of turning a batch's sampled frames and crop boxes into (B, V, C, H, W) uint8
clips, owning its column names, what the source emits per sample, its part of the DALI graph and how the loader
assembles its outputs (the interface is `Variant`, pipelines/variants/base.py).

  device.py        DeviceResample   every crop resampled inside DALI (the GPU's graph; on the CPU for flow, DALI's
                                    video decoder and splits with augmentation steps); optionally ROI-decoded JPEGs
  host.py          HostResample     CPU, RGB frames: integer boxes leave the graph as decoded pixels and the loader
                                    cuts and resamples them (OpenCV); optionally ROI-decoded JPEGs
  worker_views.py  WorkerViews      CPU, PyAV frames: the Python workers that decoded the frames cut the views

Shared parts, one module: parts.py (the decoder stage per reader kind, crop boxes as columns and the one ROI
resample, one output per crop and the loader's transpose into the batch, the augmentation steps' columns).
pipelines/plan.py `plan_graph` chooses the variant; adding one is a module here plus a branch there.
"""
