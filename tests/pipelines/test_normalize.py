"""pipelines.normalize.Normalize on tiny tensors whose results are written out by hand (MMAction2 v0.24.1
mmaction/datasets/pipelines/augmentations.py Normalize: RGB per channel; flow x images with mean[0]/std[0] and
y images with mean[1]/std[1], which FormatShape('NCHW_Flow') interleaves as channels x_t, y_t, x_t+1, y_t+1, ...)."""
from __future__ import annotations

import pytest
import torch

from pipelines.normalize import Normalize


def u8(values, shape) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.uint8).reshape(shape)


def test_flow_even_channels_are_x_odd_channels_are_y():
    norm = Normalize(mean=(128.0, 64.0), std=(2.0, 4.0))       # x: (v - 128) / 2, y: (v - 64) / 4
    # (B=1, V=2, C=2 x clip_len 2 = 4, H=1, W=2)
    clips = u8([
        [130, 0], [64, 72], [128, 255], [0, 68],             # view 0: x_t, y_t, x_t+1, y_t+1
        [132, 126], [60, 255], [100, 140], [64, 80],         # view 1
    ], (1, 2, 4, 1, 2))
    expected = torch.tensor([
        [1.0, -64.0], [0.0, 2.0], [0.0, 63.5], [-16.0, 1.0],
        [2.0, -1.0], [-1.0, 47.75], [-14.0, 6.0], [0.0, 4.0],
    ]).reshape(1, 2, 4, 1, 2)
    got = norm(clips)
    assert got.dtype == torch.float32 and got.shape == (1, 2, 4, 1, 2)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_flow_ten_channel_stack_of_the_recipes():
    # clip_len 5 -> 10 channels; a recipe's (128, 128) / (128, 128) maps 0 -> -1, 128 -> 0, 255 -> 127/128
    norm = Normalize(mean=(128.0, 128.0), std=(128.0, 128.0))
    clips = u8([0, 128, 255, 64, 192, 0, 128, 255, 64, 192], (1, 1, 10, 1, 1))
    expected = torch.tensor([-1.0, 0.0, 127 / 128, -0.5, 0.5, -1.0, 0.0, 127 / 128, -0.5, 0.5]).reshape(1, 1, 10, 1, 1)
    torch.testing.assert_close(norm(clips), expected, rtol=0, atol=1e-6)


def test_rgb_per_channel():
    norm = Normalize(mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0))
    clips = u8([12, 0, 255, 10, 24, 30], (1, 2, 3, 1, 1))      # two views, one pixel each
    expected = torch.tensor([1.0, -5.0, 45.0, 0.0, 1.0, 0.0]).reshape(1, 2, 3, 1, 1)
    torch.testing.assert_close(norm(clips), expected, rtol=0, atol=1e-6)


def test_default_is_imagenet_rgb():
    # (255 - 123.675) / 58.395 = 2.24890, (0 - 116.28) / 57.12 = -2.03571, (104 - 103.53) / 57.375 = 0.00819
    got = Normalize()(u8([255, 0, 104], (1, 1, 3, 1, 1))).flatten()
    torch.testing.assert_close(got, torch.tensor([2.24890, -2.03571, 0.00819]), rtol=0, atol=1e-5)


def test_device_argument_and_a_second_call_with_other_values():
    # the cached (1, 1, C, 1, 1) constants must follow the channel count, not the first call's shape
    norm = Normalize(mean=(128.0, 64.0), std=(2.0, 4.0))
    assert norm(u8([130, 68], (1, 1, 2, 1, 1)), "cpu").flatten().tolist() == [1.0, 1.0]
    assert norm(u8([130, 68, 126, 60, 128, 64], (1, 1, 6, 1, 1)), "cpu").flatten().tolist() == \
        [1.0, 1.0, -1.0, -1.0, 0.0, 0.0]


@pytest.mark.parametrize("mean, std, channels", [
    ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375), 4),     # RGB values, 4 channels
    ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375), 2),
    ((128.0, 128.0), (128.0, 128.0), 5),                         # flow values, an odd channel count
    ((128.0, 128.0), (128.0, 128.0), 1),
])
def test_channel_count_that_does_not_fit_raises(mean, std, channels):
    with pytest.raises(ValueError, match=rf"{channels} channels do not fit a normalisation with {len(mean)} values"):
        Normalize(mean, std)(torch.zeros(1, 1, channels, 2, 2, dtype=torch.uint8))


@pytest.mark.parametrize("mean, std, message", [
    ((1.0, 2.0, 3.0), (1.0, 1.0), "the same number each"),
    ((1.0,), (1.0,), "3 values .RGB. or 2 values"),
    ((1.0, 2.0, 3.0, 4.0), (1.0, 1.0, 1.0, 1.0), "3 values .RGB. or 2 values"),
    ((128.0, 128.0), (128.0, 0.0), "std values must be positive"),
])
def test_bad_constants_raise(mean, std, message):
    with pytest.raises(ValueError, match=message):
        Normalize(mean, std)
