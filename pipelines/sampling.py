"""Temporal sampling: which frame indices of a video feed the network.

Reproduces MMAction2's ``SampleFrames`` and ``DenseSampleFrames`` (v0.24.1 mmaction/datasets/pipelines/loading.py)
as one frozen value object, :class:`Sampler`. The arithmetic (floor vs. float division, truncation vs. banker's
rounding, exclusive vs. inclusive random bounds) follows MMAction2 exactly; only the random *generator* is ours:
every draw comes from one ``numpy.random.Generator`` handed in by the caller, normally from
:func:`video_rng`, so data-loader workers need no shared random state and a run is reproducible.

Pure numpy; no torch, no DALI.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OUT_OF_BOUND_OPTS = ("loop", "repeat_last")


def video_rng(seed: int, epoch: int, video_index: int) -> np.random.Generator:
    """An independent random stream for one video in one epoch of one run.

    Seeding from the triple (rather than drawing from one global generator) makes the draws for a video
    independent of which worker handles it and in which order, and different across epochs.
    """
    for name, value in (("seed", seed), ("epoch", epoch), ("video_index", video_index)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"video_rng: {name} must be a non-negative int, got {value!r}")
    return np.random.default_rng([int(seed), int(epoch), int(video_index)])


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Sampler.{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class Sampler:
    """MMAction2 SampleFrames / DenseSampleFrames as one value object.

    ``dense=False`` is SampleFrames (TSN's segment sampling); ``dense=True`` is DenseSampleFrames, the only
    mode that reads ``sample_range`` / ``num_sample_positions``. Calling the sampler returns the
    flattened, clip-major frame indices (shape ``(num_offsets * clip_len,)``), ``start_index`` already added.
    """

    clip_len: int = 1
    frame_interval: int = 1
    num_clips: int = 1
    test_mode: bool = False
    twice_sample: bool = False
    out_of_bound_opt: str = "loop"  # "loop" | "repeat_last"
    temporal_jitter: bool = False
    dense: bool = False  # DenseSampleFrames
    sample_range: int = 64
    num_sample_positions: int = 10

    def __post_init__(self) -> None:
        for name in ("clip_len", "frame_interval", "num_clips", "sample_range", "num_sample_positions"):
            _check_positive_int(name, getattr(self, name))
        if self.out_of_bound_opt not in OUT_OF_BOUND_OPTS:
            raise ValueError(
                f"Sampler.out_of_bound_opt must be one of {OUT_OF_BOUND_OPTS}, got {self.out_of_bound_opt!r}"
            )
        if self.twice_sample and not self.test_mode:
            raise ValueError("Sampler.twice_sample is a test-time option: it needs test_mode=True")
        if self.twice_sample and self.dense:
            raise ValueError("Sampler.twice_sample is not supported with dense=True (DenseSampleFrames)")

    @property
    def min_frames(self) -> int:
        """Frames a video needs to fill one sample without padding: one clip span (clip_len * frame_interval), and
        one frame per segment. A shorter video is padded as MMAction2 does (indices past its end follow
        `out_of_bound_opt`, segments beyond its frames repeat them), never dropped. The clips of a longer video may
        still overlap and share frames."""
        return max(self.clip_len * self.frame_interval, self.num_clips)

    @property
    def num_offsets(self) -> int:
        """Number of clips actually produced per call (each clip has ``clip_len`` indices)."""
        if self.dense and self.test_mode:
            return self.num_sample_positions * self.num_clips
        if self.twice_sample:
            return 2 * self.num_clips
        return self.num_clips

    def __call__(self, total_frames: int, start_index: int, rng: np.random.Generator) -> np.ndarray:
        """Frame indices for a video of ``total_frames`` frames whose first frame is numbered ``start_index``.

        Returns int64 of shape ``(num_offsets * clip_len,)``, clip-major, each in
        ``[start_index, start_index + total_frames)``.
        """
        if isinstance(total_frames, bool) or not isinstance(total_frames, (int, np.integer)) or total_frames < 1:
            raise ValueError(f"total_frames must be an int >= 1, got {total_frames!r}")
        if isinstance(start_index, bool) or not isinstance(start_index, (int, np.integer)) or start_index < 0:
            raise ValueError(f"start_index must be a non-negative int, got {start_index!r}")
        n = int(total_frames)
        if self.dense:
            offsets = self._dense_offsets(n, rng)
        elif self.test_mode:
            offsets = self._test_offsets(n)
        else:
            offsets = self._train_offsets(n, rng)
        inds = self._expand(offsets, n, rng)  # (num_offsets, clip_len), each in [0, n)
        return (inds.reshape(-1) + int(start_index)).astype(np.int64)

    # -- clip start offsets, each (num_offsets,) int64, 0-based, possibly >= n before expansion -------------

    def _train_offsets(self, n: int, rng: np.random.Generator) -> np.ndarray:
        N = self.num_clips
        span = self.clip_len * self.frame_interval  # L*I, not (L-1)*I+1: matches MMAction2
        a = (n - span + 1) // N  # floor division; negative when the video is shorter than one clip
        if a > 0:
            # Segment i is [i*a, (i+1)*a); one uniform draw in {0..a-1} per segment. The tail
            # n - span + 1 - N*a positions are never chosen (as in MMAction2).
            return np.arange(N, dtype=np.int64) * a + rng.integers(0, a, size=N)
        if n > max(N, span):
            # More valid starts than clips but fewer than one per segment: N sorted draws with replacement.
            return np.sort(rng.integers(0, n - span + 1, size=N)).astype(np.int64)
        if a == 0:
            # Deterministic spread; np.around rounds half to even, which the conformance vectors rely on.
            ratio = (n - span + 1.0) / N
            return np.around(np.arange(N) * ratio).astype(np.int64)
        return np.zeros(N, dtype=np.int64)

    def _test_offsets(self, n: int) -> np.ndarray:
        N = self.num_clips
        span = self.clip_len * self.frame_interval
        copies = 2 if self.twice_sample else 1
        if n <= span - 1:
            # Too short for one clip: every clip starts at 0 (the loop / repeat_last rule fills the rest).
            return np.zeros(copies * N, dtype=np.int64)
        a = (n - span + 1) / N  # float segment length
        base = np.arange(N) * a
        centred = base + a / 2.0  # centre of each segment
        # twice_sample: the N centred offsets, then the N segment starts; truncated to int at the end.
        parts = [centred, base] if self.twice_sample else [centred]
        return np.concatenate(parts).astype(np.int64)

    def _dense_offsets(self, n: int, rng: np.random.Generator) -> np.ndarray:
        N = self.num_clips
        sample_position = max(1, 1 + n - self.sample_range)
        interval = self.sample_range // N  # may be 0 when sample_range < num_clips; MMAction2 allows it
        steps = np.arange(N, dtype=np.int64) * interval
        if self.test_mode:
            # num_sample_positions evenly spaced window starts (linspace then truncation), N offsets each.
            starts = np.linspace(0, sample_position - 1, num=self.num_sample_positions).astype(np.int64)
            return ((starts[:, None] + steps[None, :]) % n).reshape(-1)
        # Exclusive upper bound sample_position - 1: the last start position is never drawn (MMAction2
        # v0.24.1 loading.py DenseSampleFrames: numpy randint's upper bound is exclusive).
        start = 0 if sample_position == 1 else int(rng.integers(0, sample_position - 1))
        return (start + steps) % n

    # -- offsets -> per-clip frame indices --------------------------------------------------------------------

    def _expand(self, offsets: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """(num_offsets,) offsets -> (num_offsets, clip_len) indices in [0, n)."""
        inds = offsets[:, None] + np.arange(self.clip_len, dtype=np.int64)[None, :] * self.frame_interval
        if self.temporal_jitter and self.frame_interval > 1:
            # Independent shift in {0..I-1} per index (a no-op for I == 1, so no draw is spent on it).
            inds = inds + rng.integers(0, self.frame_interval, size=inds.shape)
        if self.out_of_bound_opt == "loop":
            return inds % n
        # repeat_last: out-of-range indices take the largest in-range index of the same clip (0 if none).
        in_range = inds < n
        last = np.where(in_range, inds, 0).max(axis=1, keepdims=True)  # (num_offsets, 1)
        return np.where(in_range, inds, last)
