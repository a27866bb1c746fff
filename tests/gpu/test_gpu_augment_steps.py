"""Augmentation steps on a GPU pipeline (device="gpu": the views and the steps on the GPU) against the same
independent references as the CPU tests (tests/pipelines/test_augment_steps.py), which run the same graph on the
CPU backend. Marked `gpu`: skipped where torch sees no CUDA device (conftest.py)."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from tests.pipelines.test_augment_steps import (
    JITTER,
    ORDER,
    USER_MODULE,
    compare,
    drawn,
    hwc,
    mm_color_jitter,
    pair,
    per_video,
)

pytestmark = pytest.mark.gpu
GPU = {"device": "gpu", "device_id": 0}


def test_builtin_steps_on_the_gpu(synthetic_root):
    fill = [10, 200, 30]
    steps = [{"kind": "color_jitter", **JITTER}, {"kind": "grayscale", "p": 0.5},
             {"kind": "random_erasing", "p": 0.7, "value": fill}]
    _, base, loader, batch = pair(synthetic_root, steps, loader_kw=GPU)
    cols = drawn(loader)
    videos = len(batch.index)
    jitter = [per_video(cols, f"step0_{n}", videos) for n in ("brightness", "contrast", "saturation", "hue_shift")]
    gray = per_video(cols, "step1_apply", videos)
    anchors, shapes = (per_video(cols, f"step2_{n}", videos).astype(int) for n in ("anchor", "shape"))
    expected, got = [], []
    for v in range(videos):
        for k in range(batch.clips.shape[1]):
            x = torch.from_numpy(mm_color_jitter(hwc(base.clips[v, k]), *(p[v] for p in jitter), ORDER))
            x = x.permute(2, 0, 1)
            if gray[v]:
                x = TF.rgb_to_grayscale(x, num_output_channels=3)
            (top, left), (h, w) = anchors[v], shapes[v]
            x = TF.erase(x, top, left, h, w, torch.tensor(fill, dtype=torch.uint8)[:, None, None])
            expected.append(x.numpy())
            got.append(batch.clips[v, k].numpy())
    compare(expected, got, max_diff=2, max_fraction=0.005)


def test_user_step_on_the_gpu(synthetic_root, tmp_path, monkeypatch):
    """The function gets device="gpu" and moves its drawn flag there; the spawned workers import the module."""
    (tmp_path / "my_video_steps.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_video_steps", raising=False)
    _, base, loader, batch = pair(synthetic_root, [{"kind": "my_video_steps:negative", "p": 0.5}], loader_kw=GPU)
    flags = per_video(drawn(loader), "step0_flag", len(batch.index))
    for v, flag in enumerate(flags):
        assert np.array_equal(batch.clips[v].numpy(), (255 - base.clips[v] if flag else base.clips[v]).numpy())
