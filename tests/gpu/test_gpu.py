"""GPU paths (nvJPEG and NVDEC via device="mixed", CUDA AMP): the same code as the CPU path with device="gpu".

Marked `gpu`: they run wherever torch sees CUDA and are skipped elsewhere (see conftest.py).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from jobs.recipes.config import load_config
from jobs.recipes.loaders import build_loader
from jobs.runtime.amp import make_amp
from jobs.runtime.distributed import Dist
from jobs.runtime.weights import build_model
from jobs.training.loop import Trainer, train_step
from pipelines.normalize import Normalize
from tests.helpers import synthetic_overrides

pytestmark = pytest.mark.gpu
SMALL = ["data.workers=1", "data.val_videos_per_gpu=4", "data.test_videos_per_gpu=1"]


def batches(cfg, split, device, n=2):
    return list(itertools.islice(build_loader(cfg, split, device=device, device_id=0), n))


@pytest.mark.parametrize("recipe,kind,split", [
    ("tsn_r50_1x1x3_100e_kinetics400_rgb", "rawframes", "val"),        # nvJPEG ROI decode + center crop
    ("tsn_r50_1x1x3_100e_kinetics400_rgb", "rawframes", "test"),       # full decode + TenCrop
    ("tsn_r50_320p_1x1x3_110e_kinetics400_flow", "flow", "val"),       # grey nvJPEG, flow stacks
])
def test_nvjpeg_pipeline_matches_cpu(synthetic_root, recipe, kind, split):
    cfg = load_config(recipe, synthetic_overrides(synthetic_root, kind) + SMALL + ["test.sampler.num_clips=3"])
    cpu, gpu = batches(cfg, split, "cpu"), batches(cfg, split, "gpu")
    assert len(cpu) == len(gpu) == 2                     # zip() below would pass on nothing
    for a, b in zip(cpu, gpu):
        assert b.clips.is_cuda and b.clips.shape == a.clips.shape and b.clips.dtype == torch.uint8
        assert torch.equal(a.index, b.index.cpu())
        diff = (a.clips.float() - b.clips.cpu().float()).abs().mean().item()
        assert diff < 3.0, f"nvJPEG vs libjpeg-turbo + GPU resize: mean abs diff {diff:.2f}"


def test_nvdec_video_pipeline_matches_pyav(synthetic_root):
    """H.264 through NVDEC (fn.decoders.video, mixed) vs the seeking PyAV CPU path, same indices and crops."""
    cfg = load_config("tsn_r18_synthetic_video_rgb", synthetic_overrides(synthetic_root, "videos") + SMALL)
    dali_cfg = load_config("tsn_r18_synthetic_video_rgb",
                           synthetic_overrides(synthetic_root, "videos") + SMALL + ["data.decoder=dali"])
    pyav = batches(cfg, "val", "cpu")
    nvdec = batches(dali_cfg, "val", "gpu")
    assert len(pyav) == len(nvdec) == 2
    for a, b in zip(pyav, nvdec):
        assert torch.equal(a.index, b.index.cpu())
        diff = (a.clips.float() - b.clips.cpu().float()).abs().mean().item()
        assert diff < 4.0, f"NVDEC vs PyAV frames: mean abs diff {diff:.2f}"


def test_a_video_below_nvdecs_minimum_is_decoded_on_the_cpu(tmp_path):
    """VP9 at 96 x 64 (NVDEC's VP9 minimum is 128 x 128): a GPU loader asked for DALI's decoder reads it with PyAV
    (jobs/training/loaders.py video_decoder) instead of failing in NVDEC; same clips as the CPU loader."""
    from pipelines.synthetic_data import SyntheticSpec, make_synthetic_dataset
    make_synthetic_dataset(tmp_path, SyntheticSpec(num_colours=1, num_directions=2, train_per_class=1,
                                                   val_per_class=1, num_frames=12, width=96, height=64))
    opts = synthetic_overrides(tmp_path, "videos_vp9") + SMALL + ["val.sampler.num_clips=3"]
    cpu = batches(load_config("tsn_r18_synthetic_video_rgb", opts + ["data.decoder=pyav"]), "val", "cpu", n=1)
    gpu = batches(load_config("tsn_r18_synthetic_video_rgb", opts + ["data.decoder=dali"]), "val", "gpu", n=1)
    assert len(cpu) == len(gpu) == 1 and gpu[0].clips.is_cuda and gpu[0].clips.shape == cpu[0].clips.shape
    assert torch.equal(cpu[0].index, gpu[0].index.cpu())
    diff = (cpu[0].clips.float() - gpu[0].clips.cpu().float()).abs().mean().item()
    assert diff < 3.0, f"GPU resize vs CPU resample of the same PyAV frames: mean abs diff {diff:.2f}"


def test_cuda_amp_train_step(synthetic_root):
    cfg = load_config("tsn_r18_synthetic_rgb", synthetic_overrides(synthetic_root) + SMALL)
    batch = batches(cfg, "train", "gpu", n=1)[0]
    device = torch.device("cuda", 0)
    model = build_model(cfg.model).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    amp, scaler = make_amp(True, device)
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert amp.dtype == expected and scaler.is_enabled() == (expected == torch.float16)
    t = Trainer(model=model, optimizer=opt, scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0),
                scaler=scaler, amp=amp, normalize=Normalize(), dist=Dist(device=device))
    losses = [train_step(t, batch.clips, batch.labels) for _ in range(6)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
