"""The GPU's graph (full-frame decode, every crop resampled inside DALI) run on the CPU backend, against the CPU's
fast path (ROI decode, integer boxes resampled on the host) and against the independent reference.

CI has no GPU, so this is where the operators, branches and output layout a GPU runs are exercised; only the decoder
backend ("mixed" instead of "cpu") differs on a real GPU (tests/gpu checks that part).
"""
from __future__ import annotations

import pytest
import torch

from jobs.recipes.config import load_config
from jobs.recipes.loaders import build_loader
from pipelines.variants.device import DeviceResample
from pipelines.variants.host import HostResample
from tests.helpers import synthetic_overrides
from tests.pipelines.reference import compare_with_reference

SMALL = ["data.videos_per_gpu=2", "data.val_videos_per_gpu=2", "data.test_videos_per_gpu=1", "data.workers=1"]

# One case per protocol: (recipe, split, list kind, overrides).
PROTOCOLS = {
    "multiscale": ("tsn_r50_1x1x3_100e_kinetics400_rgb", "train", "rawframes", []),
    "random_resized": ("tsn_r50_320p_1x1x3_100e_kinetics400_rgb", "train", "rawframes", []),
    "center": ("tsn_r50_1x1x3_100e_kinetics400_rgb", "val", "rawframes", []),
    "three_crop": ("tsn_r50_320p_1x1x3_100e_kinetics400_rgb", "test", "rawframes", ["test.sampler.num_clips=2"]),
    "ten_crop": ("tsn_r50_1x1x3_100e_kinetics400_rgb", "test", "rawframes", ["test.sampler.num_clips=2"]),
    "dense": ("tsn_r50_dense_1x1x8_100e_kinetics400_rgb", "test", "rawframes",
              ["test.sampler.num_sample_positions=2"]),
    "flow_flip": ("tsn_r50_320p_1x1x3_110e_kinetics400_flow", "train", "flow", ["train.augment.flip_ratio=1.0"]),
    "video_pyav": ("tsn_r50_video_1x1x8_100e_kinetics400_rgb", "val", "videos", ["data.decoder=pyav"]),
    # MultiScaleCrop and every view mirrored, cut in the PyAV workers (pipelines/variants/worker_views.py)
    "video_pyav_flip": ("tsn_r50_video_1x1x8_100e_kinetics400_rgb", "train", "videos",
                        ["data.decoder=pyav", "train.augment.flip_ratio=1.0"]),
}
# Not here: DALI's video decoder (data.decoder=dali). Its loaders run the device variant whether or not gpu_graph is
# set (test_per_video_sources_have_one_variant), so a case would compare a graph with itself; the DALI video graph
# is compared against the PyAV path instead, in tests/pipelines/test_video_pipeline.py.

# Both variants do one bilinear resample with half-pixel centres and no antialias, in different kernels (DALI's float
# resampler vs torch's fixed-point uint8 one): inside a view pixels differ by rounding only (measured max 2). On the
# 2-pixel border of a view whose box is resampled, the host path interpolates within the cut box (edge clamping)
# while DALI reads the neighbouring source pixels, as MMAction2's resize-then-crop does; measured up to 35 levels
# there, mean over the whole view <= 0.3. A one-pixel shift of a view moves the mean by several levels on these frames.
INNER_MAX, MEAN_TOL = 2, 0.5


def batches(cfg, split):
    cpu, gpu = build_loader(cfg, split), build_loader(cfg, split, gpu_graph=True)
    # Two different graphs, or the comparison below would be the same code twice.
    assert cpu.source.variant != gpu.source.variant and gpu.source.variant == DeviceResample()
    return next(iter(cpu)), next(iter(gpu))


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_gpu_graph_on_cpu_matches_cpu_path_and_reference(synthetic_root, protocol):
    recipe, split, kind, extra = PROTOCOLS[protocol]
    cfg = load_config(recipe, synthetic_overrides(synthetic_root, kind) + SMALL + extra)
    cpu_batch, gpu_batch = batches(cfg, split)
    assert torch.equal(cpu_batch.index, gpu_batch.index) and torch.equal(cpu_batch.labels, gpu_batch.labels)
    assert cpu_batch.clips.shape == gpu_batch.clips.shape and gpu_batch.clips.dtype == torch.uint8
    diff = (cpu_batch.clips.float() - gpu_batch.clips.float()).abs()
    inner = diff[..., 2:-2, 2:-2]
    assert inner.max().item() <= INNER_MAX and diff.mean().item() < MEAN_TOL, \
        f"{protocol}: GPU graph vs CPU path inner max {inner.max().item():.0f}, mean {diff.mean().item():.3f}"
    for _got, _ref, err in compare_with_reference(cfg, split, build_loader(cfg, split), gpu_batch):
        # One fused resample vs MMAction2's two (resize then crop-resize): interpolation differences only.
        assert err < 6.0, f"{protocol}: GPU graph vs reference mean abs diff {err:.2f}"


def test_graph_variants_differ_in_plan_only(synthetic_root):
    """The two variants really are different graphs (so the comparison above is not the same code twice)."""
    cfg = load_config("tsn_r50_1x1x3_100e_kinetics400_rgb", synthetic_overrides(synthetic_root) + SMALL)
    cpu, gpu = build_loader(cfg, "val"), build_loader(cfg, "val", gpu_graph=True)
    assert cpu.source.variant == HostResample(roi_decode=True) and gpu.source.variant == DeviceResample()
    assert "frames" in cpu.names and "view0" in gpu.names and "frames" not in gpu.names
    cols = {c.name for c in cpu.source.columns}
    assert {"anchor", "shape"} <= cols and not {"anchor", "shape"} & {c.name for c in gpu.source.columns}


def test_per_video_sources_have_one_variant(synthetic_root):
    """DALI's video decoder: the CPU backend already runs the GPU's graph, so gpu_graph changes nothing."""
    cfg = load_config("tsn_r18_synthetic_video_rgb",
                      synthetic_overrides(synthetic_root, "videos_vp9") + SMALL + ["data.decoder=dali"])
    assert build_loader(cfg, "val").source.variant == build_loader(cfg, "val", gpu_graph=True).source.variant \
        == DeviceResample()
