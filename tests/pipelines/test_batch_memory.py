"""The loader's batch memory: de-interleaving into the batch equals numpy's transpose, and a reused buffer never
overwrites a batch that someone still holds (pipelines/loader.py BatchBuffers, pipelines/variants/parts.py deinterleave)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.loader import BatchBuffers
from pipelines.variants.parts import deinterleave


@pytest.mark.parametrize("channels", [1, 2, 3])
@pytest.mark.parametrize("strided", [False, True])
def test_deinterleave_is_a_transpose(channels, strided):
    rng = np.random.default_rng(channels)
    frame = rng.integers(0, 256, (40, 50, channels), dtype=np.uint8)
    hwc = frame[3:33, 7:31] if strided else np.ascontiguousarray(frame[3:33, 7:31])
    assert hwc.flags.c_contiguous is not strided
    out = np.full((2, channels, 30, 24), 7, np.uint8)
    deinterleave(hwc, out[1])
    assert np.array_equal(out[1], hwc.transpose(2, 0, 1))
    assert np.all(out[0] == 7)                                   # nothing written outside the slot


def test_a_buffer_is_reused_only_once_nothing_holds_it():
    pool = BatchBuffers(keep=3)
    first = pool.empty((4, 5))
    address = first.data_ptr()
    held = pool.empty((4, 5))
    assert held.data_ptr() != address                            # the first is still held
    view = first[1:]                                             # a view keeps the storage alive
    as_numpy = held.numpy()
    del first, held
    assert pool.empty((4, 5)).data_ptr() not in (address, as_numpy.ctypes.data)
    del view
    assert pool.empty((4, 5)).data_ptr() == address              # now free: reused
    assert pool.empty((2, 10)).data_ptr() == address             # any shape of the same size


def test_keep_bounds_the_buffers_kept():
    pool = BatchBuffers(keep=2)
    held = [pool.empty((3,)) for _ in range(5)]                  # all held: each is new memory
    assert len({t.data_ptr() for t in held}) == 5 and len(pool._arrays) == 2
    assert BatchBuffers(keep=0).empty((3,)).shape == (3,)


def test_loader_batches_held_by_the_consumer_stay_intact(synthetic_root):
    """Holding every batch of an epoch: no batch changes while later ones are written into reused buffers."""
    from jobs.recipes.config import load_config
    from jobs.recipes.loaders import build_loader
    from tests.helpers import synthetic_overrides
    cfg = load_config("tsn_r18_synthetic_rgb", synthetic_overrides(synthetic_root) + ["data.videos_per_gpu=4",
                                                                                      "data.workers=1"])
    loader = build_loader(cfg, "train")
    for _ in loader:              # a first epoch dropped batch by batch: the loader now holds reusable buffers
        pass
    assert loader.buffers._arrays
    held = []
    for batch in loader:
        held.append((batch.clips, batch.clips.clone()))
    assert len(held) >= 3
    for clips, copy in held:
        assert torch.equal(clips, copy)
    assert len({clips.data_ptr() for clips, _ in held}) == len(held)
