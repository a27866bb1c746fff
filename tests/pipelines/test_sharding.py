"""DDP sharding: every rank the same number of batches; evaluation covers each video exactly once."""
from __future__ import annotations

import numpy as np
import pytest

from jobs.recipes.config import load_config
from jobs.recipes.loaders import build_loader
from pipelines.sharding import Shard, batches, epoch_order, loadable, shard_videos
from tests.helpers import synthetic_overrides


@pytest.mark.parametrize("n", [1, 2, 5, 7, 12, 100, 101])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_eval_shards_cover_each_video_once(n, world):
    order = epoch_order(n, epoch=0, seed=0, shuffle=False)
    shards = [shard_videos(order, Shard(r, world), pad_mark=True) for r in range(world)]
    assert len({len(s) for s in shards}) == 1                      # equal length: no rank waits forever
    real = np.concatenate([s[s >= 0] for s in shards])
    assert sorted(real.tolist()) == list(range(n))                  # each exactly once
    pads = np.concatenate([s[s < 0] for s in shards])
    assert all(0 <= loadable(int(p)) < n for p in pads)             # padding is still a loadable video


@pytest.mark.parametrize("world", [1, 2, 3])
def test_train_shards_equal_and_reshuffled(world):
    n, per_rank = 23, -(-23 // world)
    seen = []
    for epoch in range(2):
        order = epoch_order(n, epoch=epoch, seed=7, shuffle=True)
        shards = [shard_videos(order, Shard(r, world), pad_mark=False) for r in range(world)]
        assert all(len(s) == per_rank for s in shards)
        assert set(np.concatenate(shards).tolist()) == set(range(n))  # nobody's video is dropped
        assert len({len(batches(s, 4)) for s in shards}) == 1
        seen.append(order)
    assert not np.array_equal(seen[0], seen[1])
    assert np.array_equal(epoch_order(n, epoch=1, seed=7, shuffle=True), seen[1])  # stateless: reproducible


def test_shard_rejects_bad_rank():
    with pytest.raises(ValueError, match="rank 3"):
        Shard(3, 3)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_val_loaders_cover_list_once(synthetic_root, world):
    """Real DALI loaders, one per simulated rank: together they yield every val video exactly once."""
    cfg = load_config("tsn_r18_synthetic_rgb", synthetic_overrides(synthetic_root) +
                      ["data.val_videos_per_gpu=5", "data.workers=1"])
    seen, lengths = [], []
    for rank in range(world):
        loader = build_loader(cfg, "val", shard=Shard(rank, world))
        lengths.append(len(loader))
        got = [i for batch in loader for i in batch.index.tolist()]
        assert len(got) == len(loader.source.records) // world + (len(loader.source.records) % world > 0)
        seen += [i for i in got if i >= 0]
    n = len(loader.source.records)
    assert sorted(seen) == list(range(n))
    assert len(set(lengths)) == 1


def test_train_loaders_equal_batches(synthetic_root):
    cfg = load_config("tsn_r18_synthetic_rgb", synthetic_overrides(synthetic_root) +
                      ["data.videos_per_gpu=5", "data.workers=1"])
    counts = []
    for rank in range(3):
        loader = build_loader(cfg, "train", shard=Shard(rank, 3))
        counts.append(sum(1 for _ in loader))
        assert counts[-1] == len(loader)
    assert len(set(counts)) == 1
