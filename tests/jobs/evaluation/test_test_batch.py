"""Per-video test results do not depend on how many videos share a test batch (the GPU default tests 4 at once)."""
from __future__ import annotations

import numpy as np
import torch

from jobs.evaluation import tester
from jobs.recipes.config import load_config
from jobs.runtime.weights import build_model
from tests.helpers import synthetic_overrides


def test_scores_equal_for_test_batch_1_and_4(synthetic_root, tmp_path):
    base = synthetic_overrides(synthetic_root) + ["data.workers=1", "test.sampler.num_clips=3",
                                                  "runtime.amp=false"]
    ckpt = tmp_path / "random.pth"
    torch.manual_seed(0)
    torch.save({"model": build_model(load_config("tsn_r18_synthetic_rgb", base).model).state_dict()}, ckpt)
    scores = []
    for batch in (1, 4):
        cfg = load_config("tsn_r18_synthetic_rgb", base + [f"data.test_videos_per_gpu={batch}"])
        dump = tmp_path / f"b{batch}.npy"
        result = tester.test_checkpoint(cfg, str(ckpt), device="cpu", dump=str(dump), say=lambda _: None)
        assert result["evaluated"] == result["total"] == 12         # 12 val videos: 3 batches of 4, no padding
        scores.append(np.load(dump))
    assert scores[0].shape == (12, 12)
    # Batch norm is in eval mode and views are averaged per video: only float summation order can differ.
    np.testing.assert_allclose(scores[0], scores[1], rtol=0, atol=1e-4)
    assert np.abs(scores[0] - scores[0][::-1]).max() > 1e-2        # different videos do differ (the check can fail)
