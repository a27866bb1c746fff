"""jobs.training.loop.predict_views: a test video's views in chunks of at most max_views give the logits of one
forward over all of them, because TSN averages the pooled features of every view before its affine classifier
(MMAction2 v0.24.1 mmaction/models/heads/tsn_head.py, consensus before fc_cls) and dropout is off in eval."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from jobs.evaluation.scoring import predict_views
from jobs.runtime.amp import make_amp
from model.tsn import TSNConfig, build_tsn

FP32 = make_amp(False, torch.device("cpu"))[0]


@pytest.fixture(scope="module")
def tsn():
    torch.manual_seed(0)
    model = build_tsn(TSNConfig(arch="resnet18", num_classes=5, pretrained=None, dropout=0.5))
    with torch.no_grad():
        nn.init.normal_(model.head.fc.weight, std=1.0)    # logits of order 1, not 0.01: a real comparison
        for m in model.modules():                         # non-trivial eval BN statistics
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("max_views", [1, 3, 4, 10, 250])
def test_chunked_views_equal_one_forward(tsn, max_views):
    torch.manual_seed(1)
    x = torch.randn(2, 10, 3, 32, 32)                     # (B, V, C, H, W): V = 10 -> e.g. chunks 3 + 3 + 3 + 1
    with torch.no_grad():
        full = tsn(x)
    got = predict_views(tsn, x, FP32, max_views)
    assert got.shape == (2, 5) and got.dtype == torch.float32
    torch.testing.assert_close(got, full, rtol=1e-5, atol=1e-5)
    assert (full[0] - full[1]).abs().max() > 1e-2         # the two videos differ: not a comparison of constants


class ViewMeanAffine(nn.Module):
    """A hand-checkable TSN: logit = 2 x (mean of every value of every view) + 1, one logit per video."""

    def forward(self, x):                                  # (B, V, C, H, W) -> (B, 1)
        return 2 * x.mean(dim=(1, 2, 3, 4)).unsqueeze(1) + 1


class SquaredViewMean(nn.Module):
    """Not linear in the view mean (squares it after the consensus): chunking changes its output."""

    def forward(self, x):
        return x.mean(dim=(1, 2, 3, 4)).unsqueeze(1) ** 2


def views_numbered(v: int) -> torch.Tensor:
    """(1, v, 1, 1, 1): view i holds the value i."""
    return torch.arange(v, dtype=torch.float32).view(1, v, 1, 1, 1)


def test_weights_are_view_counts_not_chunk_counts():
    # views 0..9 in chunks [0,1,2] [3,4,5] [6,7,8] [9]: chunk means 1, 4, 7, 9, full mean 4.5.
    # Affine model: chunk logits 3, 9, 15, 19. Weighted by views (3, 3, 3, 1) / 10:
    # 0.9 + 2.7 + 4.5 + 1.9 = 10 = 2 x 4.5 + 1; a plain mean of the 4 chunks would give 11.5.
    x = views_numbered(10)
    assert predict_views(ViewMeanAffine(), x, FP32, 3).item() == pytest.approx(10.0, abs=1e-6)
    assert predict_views(ViewMeanAffine(), x, FP32, 10).item() == pytest.approx(10.0, abs=1e-6)


def test_chunking_is_exact_only_for_models_linear_in_the_view_mean():
    # Squared mean: one forward gives 4.5^2 = 20.25; chunks give 0.3 x (1 + 16 + 49) + 0.1 x 81 = 27.9.
    # This is why predict_views relies on TSN's consensus-before-FC head and must not be used for other models.
    x = views_numbered(10)
    assert predict_views(SquaredViewMean(), x, FP32, 10).item() == pytest.approx(20.25, abs=1e-5)
    assert predict_views(SquaredViewMean(), x, FP32, 3).item() == pytest.approx(27.9, abs=1e-5)


class ViewsSeen(nn.Module):
    """Records the (B, V) of every forward; its logit is the affine view mean of ViewMeanAffine."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape[:2]))
        return 2 * x.mean(dim=(1, 2, 3, 4)).unsqueeze(1) + 1


def test_the_views_bound_counts_every_video_of_the_batch():
    # 4 videos of 10 views, at most 8 views per forward: 2 views of each video at a time (4 x 2 = 8), 5 forwards.
    x = torch.cat([views_numbered(10) + k for k in range(4)])
    model = ViewsSeen()
    got = predict_views(model, x, FP32, 8)
    assert model.shapes == [(4, 2)] * 5
    assert got.flatten().tolist() == pytest.approx([2 * (4.5 + k) + 1 for k in range(4)], abs=1e-5)
    model.shapes.clear()
    predict_views(model, x, FP32, 3)                       # fewer than one view per video: still one each
    assert model.shapes == [(4, 1)] * 10


def test_no_gradient_is_recorded(tsn):
    x = torch.randn(1, 4, 3, 32, 32, requires_grad=True)
    assert not predict_views(tsn, x, FP32, 2).requires_grad
