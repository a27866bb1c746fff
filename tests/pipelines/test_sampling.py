"""pipelines.sampling against MMAction2 v0.24.1 mmaction/datasets/pipelines/loading.py SampleFrames and
DenseSampleFrames: the rows of its unit tests (v0.24.1 tests/test_data/test_pipelines/test_loadings/test_sampling.py)
and the derived vectors V1–V6, computed with an independent re-implementation and checked for equality against that
v0.24.1 code.

The expected numbers are written out below; they are the independent expectation.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipelines.sampling import Sampler, video_rng


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- V1: test_mode, clip_len=1, interval=1 ---------------------------------------------------------------------
V1 = [
    (1, 3, 1, [1, 1, 1]),
    (2, 3, 1, [1, 2, 2]),
    (3, 3, 1, [1, 2, 3]),
    (5, 3, 1, [1, 3, 5]),
    (10, 3, 1, [2, 6, 9]),
    (100, 3, 1, [17, 51, 84]),
    (300, 3, 1, [51, 151, 251]),
    (300, 3, 0, [50, 150, 250]),
    (6, 8, 1, [1, 2, 2, 3, 4, 5, 5, 6]),
    (6, 8, 0, [0, 1, 1, 2, 3, 4, 4, 5]),
    (10, 8, 1, [1, 2, 4, 5, 6, 7, 9, 10]),
    (64, 8, 1, [5, 13, 21, 29, 37, 45, 53, 61]),
    (100, 8, 1, [7, 19, 32, 44, 57, 69, 82, 94]),
    (300, 8, 1, [19, 57, 94, 132, 169, 207, 244, 282]),
    (3, 25, 1, [1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3]),
    (30, 25, 1, [1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 17, 18, 19, 20, 22, 23, 24, 25, 26, 28, 29, 30]),
    (100, 25, 1, list(range(3, 100, 4))),  # [3, 7, 11, ..., 99]
    (250, 25, 1, list(range(6, 247, 10))),  # [6, 16, ..., 246]
    (300, 25, 1, [7, 19, 31, 43, 55, 67, 79, 91, 103, 115, 127, 139, 151, 163, 175, 187, 199, 211, 223, 235,
                  247, 259, 271, 283, 295]),
    (300, 25, 0, [6, 18, 30, 42, 54, 66, 78, 90, 102, 114, 126, 138, 150, 162, 174, 186, 198, 210, 222, 234,
                  246, 258, 270, 282, 294]),
    (60, 16, 1, [2, 6, 10, 14, 17, 21, 25, 29, 32, 36, 40, 44, 47, 51, 55, 59]),
    (37, 6, 1, [4, 10, 16, 22, 28, 34]),
    (75, 5, 1, [8, 23, 38, 53, 68]),
]


@pytest.mark.parametrize("n, num_clips, start, expected", V1)
def test_v1_test_mode_rgb(n, num_clips, start, expected):
    out = Sampler(num_clips=num_clips, test_mode=True)(n, start, rng())
    assert out.dtype == np.int64
    assert out.tolist() == expected


# --- V2: test_mode, flow clip_len=5 (rows = clips), start_index=1 ----------------------------------------------
V2 = [
    (3, 3, [[1, 2, 3, 1, 2]] * 3),
    (4, 3, [[1, 2, 3, 4, 1]] * 3),
    (5, 3, [[1, 2, 3, 4, 5]] * 3),
    (6, 3, [[1, 2, 3, 4, 5], [2, 3, 4, 5, 6], [2, 3, 4, 5, 6]]),
    (10, 3, [[2, 3, 4, 5, 6], [4, 5, 6, 7, 8], [6, 7, 8, 9, 10]]),
    (100, 3, [[17, 18, 19, 20, 21], [49, 50, 51, 52, 53], [81, 82, 83, 84, 85]]),
    (299, 3, [[50, 51, 52, 53, 54], [148, 149, 150, 151, 152], [246, 247, 248, 249, 250]]),
    # 30 frames, 25 clips: clip starts 1..12 then 14..26 (the 13th segment start is skipped)
    (30, 25, [list(range(s, s + 5)) for s in [*range(1, 13), *range(14, 27)]]),
    (299, 25, [list(range(s, s + 5)) for s in [6, 18, 30, 42, 54, 65, 77, 89, 101, 113, 124, 136, 148, 160,
                                               172, 183, 195, 207, 219, 231, 242, 254, 266, 278, 290]]),
    (100, 8, [list(range(s, s + 5)) for s in [7, 19, 31, 43, 55, 67, 79, 91]]),
]


@pytest.mark.parametrize("n, num_clips, rows", V2)
def test_v2_test_mode_flow(n, num_clips, rows):
    out = Sampler(clip_len=5, num_clips=num_clips, test_mode=True)(n, 1, rng())
    assert out.reshape(num_clips, 5).tolist() == rows


# --- V3: train mode, deterministic branches ---------------------------------------------------------------------
V3 = [  # n, clip_len, interval, num_clips, start_index, expected
    (6, 1, 1, 8, 1, [1, 2, 3, 3, 4, 5, 5, 6]),
    (2, 1, 1, 3, 1, [1, 2, 2]),
    (1, 1, 1, 3, 1, [1, 1, 1]),
    (5, 1, 1, 8, 0, [0, 1, 1, 2, 2, 3, 4, 4]),
    (3, 1, 1, 8, 1, [1, 1, 2, 2, 3, 3, 3, 1]),
    (5, 5, 1, 3, 1, [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 2, 3, 4, 5, 1]),
    (4, 5, 1, 3, 1, [1, 2, 3, 4, 1, 1, 2, 3, 4, 1, 1, 2, 3, 4, 1]),
    (3, 5, 1, 3, 1, [1, 2, 3, 1, 2, 1, 2, 3, 1, 2, 1, 2, 3, 1, 2]),
    (7, 1, 1, 8, 1, [1, 2, 3, 4, 5, 5, 6, 7]),
    (10, 12, 1, 2, 1, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2]),
]


@pytest.mark.parametrize("n, clip_len, interval, num_clips, start, expected", V3)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_v3_train_deterministic(n, clip_len, interval, num_clips, start, expected, seed):
    s = Sampler(clip_len=clip_len, frame_interval=interval, num_clips=num_clips)
    assert s(n, start, rng(seed)).tolist() == expected


# --- V4: twice_sample ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, num_clips, expected", [
    (10, 3, [2, 6, 9, 1, 4, 7]),
    (100, 8, [7, 19, 32, 44, 57, 69, 82, 94, 1, 13, 26, 38, 51, 63, 76, 88]),
    (7, 4, [1, 3, 5, 7, 1, 2, 4, 6]),
])
def test_v4_twice_sample(n, num_clips, expected):
    s = Sampler(num_clips=num_clips, test_mode=True, twice_sample=True)
    assert s.num_offsets == 2 * num_clips
    assert s(n, 1, rng()).tolist() == expected


# --- V5: loop vs repeat_last -------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, loop, repeat_last", [
    (5, [0, 2, 4, 1, 0, 2, 4, 1], [0, 2, 4, 4, 0, 2, 4, 4]),
    (7, [0, 2, 4, 6, 0, 2, 4, 6], [0, 2, 4, 6, 0, 2, 4, 6]),
    (9, [0, 2, 4, 6, 1, 3, 5, 7], [0, 2, 4, 6, 1, 3, 5, 7]),
    (20, [3, 5, 7, 9, 9, 11, 13, 15], [3, 5, 7, 9, 9, 11, 13, 15]),
])
def test_v5_out_of_bound(n, loop, repeat_last):
    for opt, expected in (("loop", loop), ("repeat_last", repeat_last)):
        s = Sampler(clip_len=4, frame_interval=2, num_clips=2, test_mode=True, out_of_bound_opt=opt)
        assert s(n, 0, rng()).tolist() == expected


# --- V6: DenseSampleFrames test mode, start_index=1 --------------------------------------------------------------
_ROW_A = [1, 9, 17, 25, 3, 11, 19, 27]
_ROW_B = [1, 9, 17, 25, 33, 41, 49, 57]
V6 = [
    (30, 8, [_ROW_A] * 10),
    (64, 8, [_ROW_B] * 10),
    (65, 8, [_ROW_B] * 9 + [[2, 10, 18, 26, 34, 42, 50, 58]]),
    (100, 8, [[s + 8 * i for i in range(8)] for s in [1, 5, 9, 13, 17, 21, 25, 29, 33, 37]]),
    (300, 8, [[s + 8 * i for i in range(8)] for s in [1, 27, 53, 79, 105, 132, 158, 184, 210, 237]]),
    (300, 5, [[s + 12 * i for i in range(5)] for s in [1, 27, 53, 79, 105, 132, 158, 184, 210, 237]]),
]


def test_v6_rows_spelled_out_match_spec():
    # Rows of the V6 table written out verbatim (the comprehensions above are shorthand for them), against the code.
    def row(n, num_clips, k):
        return Sampler(num_clips=num_clips, test_mode=True, dense=True)(n, 1, rng()).reshape(10, num_clips)[k].tolist()
    assert row(100, 8, 9) == [37, 45, 53, 61, 69, 77, 85, 93]
    assert row(300, 8, 5) == [132, 140, 148, 156, 164, 172, 180, 188]
    assert row(300, 5, 9) == [237, 249, 261, 273, 285]


@pytest.mark.parametrize("n, num_clips, rows", V6)
def test_v6_dense_test_mode(n, num_clips, rows):
    s = Sampler(num_clips=num_clips, test_mode=True, dense=True)
    assert s.num_offsets == 10 * num_clips
    assert s(n, 1, rng()).reshape(10, num_clips).tolist() == rows


# --- MMAction2 v0.24.1 unit-test rows (test_loadings/test_sampling.py, fixture start_index=1) --------------------
def test_81_exact_rows():
    assert Sampler(num_clips=8, test_mode=True)(6, 1, rng()).tolist() == [1, 2, 2, 3, 4, 5, 5, 6]
    assert Sampler(num_clips=8)(6, 1, rng()).tolist() == [1, 2, 3, 3, 4, 5, 5, 6]
    assert Sampler(clip_len=6, test_mode=True)(5, 1, rng()).tolist() == [1, 2, 3, 4, 5, 1]


ROWS_81 = [  # sampler, total_frames, expected length; every index must lie in [1, total_frames]
    (Sampler(3, 1, 5), 5, 15),
    (Sampler(5, 1, 5, out_of_bound_opt="repeat_last"), 5, 25),
    (Sampler(4, 2, 5, temporal_jitter=True), 5, 20),
    (Sampler(4, 1, 6, test_mode=True), 5, 24),
    (Sampler(3, 1, 6, test_mode=True), 5, 18),
    (Sampler(12, 1, 20), 30, 240),
    (Sampler(12, 1, 2), 10, 24),
    (Sampler(12, 1, 2, test_mode=True, twice_sample=True), 40, 48),
    (Sampler(4, 1, 6, test_mode=True, dense=True), 5, 240),
    (Sampler(4, 1, 6, dense=True), 5, 24),
    (Sampler(4, 1, 6, test_mode=True, dense=True, sample_range=32), 5, 240),
    (Sampler(4, 1, 6, dense=True, sample_range=32), 5, 24),
    (Sampler(4, 1, 6, dense=True, sample_range=1000), 5, 24),
    (Sampler(4, 1, 6, test_mode=True, dense=True, sample_range=32, num_sample_positions=5), 5, 120),
]


@pytest.mark.parametrize("sampler, n, length", ROWS_81)
def test_81_shape_and_range(sampler, n, length):
    for seed in range(20):
        out = sampler(n, 1, rng(seed))
        assert out.shape == (length,)
        assert out.min() >= 1 and out.max() <= n
        if sampler.out_of_bound_opt == "repeat_last":
            assert (np.diff(out.reshape(-1, sampler.clip_len), axis=1) >= 0).all()


# --- random branches: supports of the draws ----------------------------------------------------------------------
def test_train_segments_use_exclusive_randint():
    # n=100, N=8: a = 12; offset i in [12i, 12i+11] and both ends are reached (randint(0, a) is exclusive).
    s = Sampler(num_clips=8)
    draws = np.stack([s(100, 0, rng(k)) for k in range(400)])
    rel = draws - 12 * np.arange(8)
    assert rel.min() == 0 and rel.max() == 11


def test_train_sparse_branch_sorted_in_range():
    # flow L=5, N=3, n=6: a = 0 and n > max(N, span) -> sorted draws from {0, 1}.
    s = Sampler(clip_len=5, num_clips=3)
    seen = set()
    for k in range(200):
        starts = s(6, 0, rng(k)).reshape(3, 5)[:, 0]
        assert (np.diff(starts) >= 0).all()
        seen.update(starts.tolist())
    assert seen == {0, 1}


def test_dense_train_start_excludes_last_position():
    # n=70, range 64: sample_position = 7 -> start in {0..5}, never 6.
    s = Sampler(num_clips=8, dense=True)
    starts = {int(s(70, 0, rng(k))[0]) for k in range(400)}
    assert starts == set(range(6))


def test_temporal_jitter_stays_in_its_interval():
    s = Sampler(clip_len=4, frame_interval=3, num_clips=2, test_mode=True, temporal_jitter=True)
    plain = Sampler(clip_len=4, frame_interval=3, num_clips=2, test_mode=True)(60, 0, rng())
    shifts = np.stack([s(60, 0, rng(k)) - plain for k in range(100)])
    assert shifts.min() == 0 and shifts.max() == 2


# --- properties over a grid --------------------------------------------------------------------------------------
CONFIGS = [(1, 1, 3), (1, 1, 8), (1, 1, 25), (5, 1, 3), (5, 1, 25), (4, 2, 5), (3, 1, 6), (12, 1, 2)]


@pytest.mark.parametrize("clip_len, interval, num_clips", CONFIGS)
@pytest.mark.parametrize("test_mode", [False, True])
@pytest.mark.parametrize("opt", ["loop", "repeat_last"])
@pytest.mark.parametrize("dense", [False, True])
def test_grid_properties(clip_len, interval, num_clips, test_mode, opt, dense):
    s = Sampler(clip_len, interval, num_clips, test_mode=test_mode, out_of_bound_opt=opt, dense=dense,
                temporal_jitter=interval > 1)
    span = clip_len * interval
    for n, start in itertools.product(range(1, 131), (0, 1)):
        r = rng(n)
        out = s(n, start, r)
        assert out.dtype == np.int64 and out.shape == (s.num_offsets * clip_len,)
        assert out.min() >= start and out.max() < start + n
        clips = out.reshape(s.num_offsets, clip_len) - start
        if opt == "repeat_last":
            assert (np.diff(clips, axis=1) >= 0).all()
        a = (n - span + 1) // num_clips
        if not dense and not test_mode and a > 0 and interval == 1:
            # each clip starts inside its own segment [i*a, (i+1)*a)
            seg = np.arange(num_clips) * a
            assert ((clips[:, 0] >= seg) & (clips[:, 0] < seg + a)).all()
        assert np.array_equal(out, s(n, start, rng(n)))  # same stream -> same result


def test_video_rng_reproducible_and_epoch_dependent():
    s = Sampler(num_clips=8)
    a = s(300, 0, video_rng(7, 0, 42))
    assert np.array_equal(a, s(300, 0, video_rng(7, 0, 42)))
    assert not np.array_equal(a, s(300, 0, video_rng(7, 1, 42)))
    assert not np.array_equal(a, s(300, 0, video_rng(7, 0, 43)))
    assert not np.array_equal(a, s(300, 0, video_rng(8, 0, 42)))


def test_twice_sample_short_video_keeps_length():
    s = Sampler(clip_len=5, num_clips=3, test_mode=True, twice_sample=True)
    assert s(3, 1, rng()).tolist() == [1, 2, 3, 1, 2] * 6


@pytest.mark.parametrize("kwargs, field", [
    ({"clip_len": 0}, "clip_len"),
    ({"frame_interval": -1}, "frame_interval"),
    ({"num_clips": 1.5}, "num_clips"),
    ({"sample_range": 0}, "sample_range"),
    ({"num_sample_positions": 0}, "num_sample_positions"),
    ({"out_of_bound_opt": "wrap"}, "out_of_bound_opt"),
    ({"twice_sample": True}, "twice_sample"),
    ({"twice_sample": True, "test_mode": True, "dense": True}, "twice_sample"),
])
def test_sampler_validation(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Sampler(**kwargs)


def test_call_and_rng_validation():
    with pytest.raises(ValueError, match="total_frames"):
        Sampler()(0, 0, rng())
    with pytest.raises(ValueError, match="start_index"):
        Sampler()(5, -1, rng())
    with pytest.raises(ValueError, match="epoch"):
        video_rng(0, -1, 0)
