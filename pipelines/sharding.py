"""Which videos each rank reads in each epoch, and in which batches.

Pure functions of (num_videos, epoch, seed, rank, world_size): every rank computes the same global order on its
own, so DDP needs no communication to shard, and every rank gets the same number of batches (uneven shards are the
classic DDP hang). Evaluation pads with duplicates marked -1 so each video is counted exactly once across ranks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world_size: int = 1

    def __post_init__(self):
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside world of size {self.world_size}")


def epoch_order(num_videos: int, *, epoch: int, seed: int, shuffle: bool) -> np.ndarray:
    """Global order of video indices for one epoch (int64, length num_videos)."""
    if not shuffle:
        return np.arange(num_videos, dtype=np.int64)
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(num_videos).astype(np.int64)


def per_rank(num_videos: int, shard: Shard) -> int:
    """Entries every rank gets in an epoch: ceil(N / world), the last ones padding (shard_videos)."""
    return math.ceil(num_videos / shard.world_size)


def shard_videos(order: np.ndarray, shard: Shard, *, pad_mark: bool) -> np.ndarray:
    """This rank's slice of `order`, padded so that every rank has ceil(N / world) entries.

    Training (pad_mark=False) pads by wrapping around to the start of the order, like DistributedSampler.
    Evaluation (pad_mark=True) pads with -(index + 1) (always negative) so the padding is still loadable
    (the video -(p + 1)) but marked: downstream keeps only entries >= 0.
    """
    n = len(order)
    total = per_rank(n, shard) * shard.world_size
    padded = np.concatenate([order, np.resize(order, total - n)]) if total > n else order
    mine = padded[shard.rank::shard.world_size].copy()
    if pad_mark:
        positions = np.arange(shard.rank, total, shard.world_size)
        mine[positions >= n] = -mine[positions >= n] - 1
    return mine


def batches(videos: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches; the last one may be short (same length on every rank, since shards are equal)."""
    return [videos[i:i + batch_size] for i in range(0, len(videos), batch_size)]


def loadable(entry: int) -> int:
    """The video index to actually load for a (possibly padding-marked) shard entry."""
    return entry if entry >= 0 else -entry - 1
