"""pipelines.geometry against MMAction2 v0.24.1 mmaction/datasets/pipelines/augmentations.py: the rows of its unit
tests (v0.24.1 tests/test_data/test_pipelines/test_augmentations/) and the derived vectors V7–V13, computed with an
independent re-implementation and checked for equality against v0.7.0 MultiScaleCrop / TenCrop / ThreeCrop.

The expected numbers are written out below; they are the independent expectation.
"""
from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from pipelines.geometry import (
    Augment,
    View,
    center_crop_box,
    multiscale_crop_box,
    multiscale_crop_candidates,
    multiscale_fixed_offsets,
    plan_views,
    random_resized_crop_box,
    rescale_size,
    ten_crop_boxes,
    three_crop_boxes,
)

SCALES = (1, 0.875, 0.75, 0.66)
SIZES = [(340, 256), (341, 256), (455, 256), (256, 341), (256, 256), (320, 240), (1280, 720), (97, 61), (30, 500)]


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def inside(box, w, h) -> bool:
    x1, y1, x2, y2 = box
    return 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h


# --- V7 and the unit-test Resize rows ----------------------------------------------------------------------------
@pytest.mark.parametrize("w, h, out, factor", [
    (340, 256, (340, 256), (1.000000, 1.000000)),
    (320, 240, (341, 256), (1.065625, 1.066667)),
    (426, 240, (454, 256), (1.065728, 1.066667)),
    (455, 256, (455, 256), (1.000000, 1.000000)),
    (640, 360, (455, 256), (0.710938, 0.711111)),
    (1280, 720, (455, 256), (0.355469, 0.355556)),
    (568, 320, (454, 256), (0.799296, 0.800000)),
    (427, 320, (342, 256), (0.800937, 0.800000)),
    (426, 320, (341, 256), (0.800469, 0.800000)),
    (320, 426, (256, 341), (0.800000, 0.800469)),
    (240, 320, (256, 341), (1.066667, 1.065625)),
    (176, 100, (451, 256), (2.562500, 2.560000)),
    (256, 256, (256, 256), (1.000000, 1.000000)),
    (341, 256, (341, 256), (1.000000, 1.000000)),
    (427, 240, (455, 256), (1.065574, 1.066667)),
])
def test_v7_rescale_size(w, h, out, factor):
    nw, nh = rescale_size(w, h, 256)
    assert (nw, nh) == out
    assert nw / w == pytest.approx(factor[0], abs=1e-6)
    assert nh / h == pytest.approx(factor[1], abs=1e-6)


@pytest.mark.parametrize("aug, out", [
    (Augment(resize="short_side", short_side=256, crop="none"), (341, 256)),
    (Augment(resize="fixed", size=(320, 320), crop="none"), (320, 320)),
    (Augment(resize="fixed", size=(341, 256), crop="none"), (341, 256)),
    (Augment(resize="fixed", size=(160, 80), crop="none"), (160, 80)),
])
def test_81_resize_rows(aug, out):
    (v,) = plan_views(320, 240, aug, flow=False, rng=rng())
    assert (v.out_w, v.out_h) == out
    assert v.box == (0.0, 0.0, 320.0, 240.0)  # whole source image, whatever the resize


# --- V8 / V9: MultiScaleCrop -------------------------------------------------------------------------------------
TEN = [(256, 256), (224, 256), (256, 224), (224, 224), (192, 224), (224, 192), (192, 192), (168, 192), (192, 168),
       (168, 168)]


@pytest.mark.parametrize("w, h, scales, gap, expected", [
    (340, 256, SCALES, 1, TEN),
    (341, 256, SCALES, 1, TEN),
    (455, 256, SCALES, 1, TEN),
    (256, 341, SCALES, 1, TEN),
    (340, 256, (1, 0.8), 0, [(256, 256), (204, 204)]),
    (454, 256, (1, 0.8), 0, [(256, 256), (204, 204)]),
])
def test_v8_candidates(w, h, scales, gap, expected):
    assert multiscale_crop_candidates(w, h, scales, gap) == expected


V9 = [  # crop (w, h), 5 fixed offsets, extra 8 offsets, on a 340x256 image
    ((256, 256), [(0, 0), (84, 0), (0, 0), (84, 0), (42, 0)],
     [(0, 0), (84, 0), (42, 0), (42, 0), (21, 0), (63, 0), (21, 0), (63, 0)]),
    ((224, 256), [(0, 0), (116, 0), (0, 0), (116, 0), (58, 0)],
     [(0, 0), (116, 0), (58, 0), (58, 0), (29, 0), (87, 0), (29, 0), (87, 0)]),
    ((256, 224), [(0, 0), (84, 0), (0, 32), (84, 32), (42, 16)],
     [(0, 16), (84, 16), (42, 32), (42, 0), (21, 8), (63, 8), (21, 24), (63, 24)]),
    ((224, 224), [(0, 0), (116, 0), (0, 32), (116, 32), (58, 16)],
     [(0, 16), (116, 16), (58, 32), (58, 0), (29, 8), (87, 8), (29, 24), (87, 24)]),
    ((192, 224), [(0, 0), (148, 0), (0, 32), (148, 32), (74, 16)],
     [(0, 16), (148, 16), (74, 32), (74, 0), (37, 8), (111, 8), (37, 24), (111, 24)]),
    ((224, 192), [(0, 0), (116, 0), (0, 64), (116, 64), (58, 32)],
     [(0, 32), (116, 32), (58, 64), (58, 0), (29, 16), (87, 16), (29, 48), (87, 48)]),
    ((192, 192), [(0, 0), (148, 0), (0, 64), (148, 64), (74, 32)],
     [(0, 32), (148, 32), (74, 64), (74, 0), (37, 16), (111, 16), (37, 48), (111, 48)]),
    ((168, 192), [(0, 0), (172, 0), (0, 64), (172, 64), (86, 32)],
     [(0, 32), (172, 32), (86, 64), (86, 0), (43, 16), (129, 16), (43, 48), (129, 48)]),
    ((192, 168), [(0, 0), (148, 0), (0, 88), (148, 88), (74, 44)],
     [(0, 44), (148, 44), (74, 88), (74, 0), (37, 22), (111, 22), (37, 66), (111, 66)]),
    ((168, 168), [(0, 0), (172, 0), (0, 88), (172, 88), (86, 44)],
     [(0, 44), (172, 44), (86, 88), (86, 0), (43, 22), (129, 22), (43, 66), (129, 66)]),
]


@pytest.mark.parametrize("crop, five, extra", V9)
def test_v9_fixed_offsets(crop, five, extra):
    assert multiscale_fixed_offsets(340, 256, *crop, 5) == five
    assert multiscale_fixed_offsets(340, 256, *crop, 13) == five + extra


def test_fixed_offsets_rejects_other_counts():
    with pytest.raises(ValueError, match="num_fixed_crops"):
        multiscale_fixed_offsets(340, 256, 224, 224, 9)


@pytest.mark.parametrize("random_crop, fixed", [(False, 5), (False, 13), (True, 5)])
def test_81_multiscale_two_scales(random_crop, fixed):
    sizes = set()
    for seed in range(200):
        box = multiscale_crop_box(341, 256, input_size=224, scales=(1, 0.8), max_wh_scale_gap=0,
                                  random_crop=random_crop, num_fixed_crops=fixed, rng=rng(seed))
        assert inside(box, 341, 256)
        sizes.add((box[2] - box[0], box[3] - box[1]))
    assert sizes == {(256, 256), (204, 204)}


def test_multiscale_snaps_within_two_pixels():
    kw = {"scales": (0.875,), "max_wh_scale_gap": 0, "random_crop": False, "num_fixed_crops": 5}
    x1, y1, x2, y2 = multiscale_crop_box(400, 258, input_size=224, rng=rng(), **kw)  # int(225.75) = 225 -> 224
    assert (x2 - x1, y2 - y1) == (224, 224)
    x1, y1, x2, y2 = multiscale_crop_box(400, 260, input_size=224, rng=rng(), **kw)  # 227: 3 px away, kept
    assert (x2 - x1, y2 - y1) == (227, 227)
    x1, y1, x2, y2 = multiscale_crop_box(400, 258, input_size=(200, 224), rng=rng(), **kw)  # (w, h) input size
    assert (x2 - x1, y2 - y1) == (225, 224)


def test_multiscale_choice_keeps_duplicate_offsets():
    # 256x256 crop on 340x256: the 5 fixed x positions are [0, 84, 0, 84, 42] -> weights 2:2:1.
    xs = Counter(multiscale_crop_box(340, 256, input_size=224, scales=(1,), max_wh_scale_gap=0, random_crop=False,
                                     num_fixed_crops=5, rng=rng(k))[0] for k in range(2000))
    assert set(xs) == {0, 42, 84}
    assert 0.15 < xs[42] / 2000 < 0.25 and 0.35 < xs[0] / 2000 < 0.45


def test_multiscale_random_crop_is_inclusive():
    xs = {multiscale_crop_box(10, 10, input_size=224, scales=(0.9,), max_wh_scale_gap=0, random_crop=True,
                              num_fixed_crops=5, rng=rng(k))[0] for k in range(100)}
    assert xs == {0, 1}


# --- V10–V12: TenCrop, ThreeCrop, CenterCrop ---------------------------------------------------------------------
@pytest.mark.parametrize("w, h, boxes", [
    (340, 256, [(0, 0, 224, 224), (116, 0, 340, 224), (0, 32, 224, 256), (116, 32, 340, 256), (58, 16, 282, 240)]),
    (256, 256, [(0, 0, 224, 224), (32, 0, 256, 224), (0, 32, 224, 256), (32, 32, 256, 256), (16, 16, 240, 240)]),
    (341, 256, [(0, 0, 224, 224), (116, 0, 340, 224), (0, 32, 224, 256), (116, 32, 340, 256), (58, 16, 282, 240)]),
    (455, 256, [(0, 0, 224, 224), (228, 0, 452, 224), (0, 32, 224, 256), (228, 32, 452, 256),
                (114, 16, 338, 240)]),
    (256, 341, [(0, 0, 224, 224), (32, 0, 256, 224), (0, 116, 224, 340), (32, 116, 256, 340), (16, 58, 240, 282)]),
    (256, 455, [(0, 0, 224, 224), (32, 0, 256, 224), (0, 228, 224, 452), (32, 228, 256, 452),
                (16, 114, 240, 338)]),
])
def test_v10_ten_crop(w, h, boxes):
    assert ten_crop_boxes(w, h, 224, 224) == boxes


@pytest.mark.parametrize("w, h, boxes", [
    (341, 256, [(0, 0, 256, 256), (84, 0, 340, 256), (42, 0, 298, 256)]),
    (340, 256, [(0, 0, 256, 256), (84, 0, 340, 256), (42, 0, 298, 256)]),
    (455, 256, [(0, 0, 256, 256), (198, 0, 454, 256), (99, 0, 355, 256)]),
    (256, 256, [(0, 0, 256, 256), (0, 0, 256, 256), (0, 0, 256, 256)]),
    (256, 341, [(0, 0, 256, 256), (0, 84, 256, 340), (0, 42, 256, 298)]),
    (256, 455, [(0, 0, 256, 256), (0, 198, 256, 454), (0, 99, 256, 355)]),
])
def test_v11_three_crop(w, h, boxes):
    assert three_crop_boxes(w, h, 256, 256) == boxes


def test_81_three_crop_rows_and_mismatch():
    assert three_crop_boxes(120, 240, 120, 120) == [(0, 0, 120, 120), (0, 120, 120, 240), (0, 60, 120, 180)]
    assert three_crop_boxes(224, 224, 224, 224) == [(0, 0, 224, 224)] * 3
    with pytest.raises(ValueError, match="three_crop_boxes"):
        three_crop_boxes(340, 256, 224, 224)


@pytest.mark.parametrize("w, h, crop, box", [
    (320, 240, 224, (48, 8, 272, 232)),  # also the unit tests' CenterCrop(224) row
    (340, 256, 224, (58, 16, 282, 240)),
    (341, 256, 224, (58, 16, 282, 240)),
    (455, 256, 224, (115, 16, 339, 240)),
    (341, 256, 256, (42, 0, 298, 256)),
    (455, 256, 256, (99, 0, 355, 256)),
    (256, 341, 224, (16, 58, 240, 282)),
    (256, 256, 256, (0, 0, 256, 256)),
])
def test_v12_center_crop(w, h, crop, box):
    assert center_crop_box(w, h, crop, crop) == box


def test_center_crop_larger_than_image_is_truncated():
    assert center_crop_box(200, 100, 224, 224) == (0, 0, 200, 100)


# --- V13 and RandomResizedCrop bounds ----------------------------------------------------------------------------
@pytest.mark.parametrize("w, h, box", [
    (340, 256, (42, 0, 298, 256)),
    (341, 256, (42, 0, 298, 256)),  # also the unit tests' fallback row: 256x256
    (455, 256, (99, 0, 355, 256)),
    (256, 341, (0, 42, 256, 298)),
])
def test_v13_rrc_fallback(w, h, box):
    for seed in range(5):
        got = random_resized_crop_box(w, h, area_range=(0.9, 0.9), aspect_ratio_range=(10.0, 10.1), rng=rng(seed))
        assert got == box


def test_81_rrc_bounds():
    for seed in range(2000):
        x1, y1, x2, y2 = random_resized_crop_box(341, 256, area_range=(0.08, 1.0), aspect_ratio_range=(3 / 4, 4 / 3),
                                                 rng=rng(seed))
        assert inside((x1, y1, x2, y2), 341, 256)
        cw, ch = x2 - x1, y2 - y1
        assert 0.08 - 0.01 <= cw * ch / (256 * 341) <= 1 + 0.01
        assert 3 / 4 - 0.01 <= ch / cw <= 4 / 3 + 0.01


def test_rrc_offsets_are_inclusive():
    xs = {random_resized_crop_box(10, 10, area_range=(0.81, 0.81), aspect_ratio_range=(1.0, 1.0), rng=rng(k))[0]
          for k in range(100)}
    assert xs == {0, 1}  # 9x9 crop on 10x10: x in {0, 1}, both ends reachable


# --- boxes inside the image, any size ----------------------------------------------------------------------------
@pytest.mark.parametrize("w, h", SIZES)
def test_boxes_inside_image(w, h):
    for seed in range(30):
        r = rng(seed)
        for rc, fixed in itertools.product((False, True), (5, 13)):
            box = multiscale_crop_box(w, h, input_size=224, scales=SCALES, max_wh_scale_gap=1, random_crop=rc,
                                      num_fixed_crops=fixed, rng=r)
            assert inside(box, w, h)
        assert inside(random_resized_crop_box(w, h, area_range=(0.08, 1.0), aspect_ratio_range=(3 / 4, 4 / 3),
                                              rng=r), w, h)
    for crop in (16, 224, 256, 600):
        assert inside(center_crop_box(w, h, crop, crop), w, h)
        assert all(inside(b, w, h) for b in ten_crop_boxes(w, h, crop, crop))
    s = min(w, h)
    assert all(inside(b, w, h) for b in three_crop_boxes(w, h, s, s))


# --- plan_views ---------------------------------------------------------------------------------------------------
def test_plan_views_maps_back_to_source():
    (v,) = plan_views(320, 240, Augment(crop="center", crop_size=224), flow=False, rng=rng())
    sx, sy = 320 / 341, 240 / 256
    assert v.box == pytest.approx((58 * sx, 16 * sy, 282 * sx, 240 * sy))
    assert (v.out_w, v.out_h, v.mirror, v.invert_flow_x) == (224, 224, False, False)


def test_plan_views_ten_crop_order_and_mirrors():
    views = plan_views(320, 240, Augment(crop="ten", crop_size=224), flow=True, rng=rng())
    assert len(views) == 10 == Augment(crop="ten").num_crops
    sx, sy = 320 / 341, 240 / 256
    for k, (x1, y1, x2, y2) in enumerate(ten_crop_boxes(341, 256, 224, 224)):
        plain, mirrored = views[2 * k], views[2 * k + 1]
        assert plain.box == mirrored.box == pytest.approx((x1 * sx, y1 * sy, x2 * sx, y2 * sy))
        assert (plain.mirror, mirrored.mirror) == (False, True)
        assert not plain.invert_flow_x and not mirrored.invert_flow_x  # TenCrop mirrors never invert flow


def test_plan_views_three_crop_order():
    views = plan_views(455, 256, Augment(crop="three", crop_size=256), flow=False, rng=rng())
    assert len(views) == 3 == Augment(crop="three", crop_size=256).num_crops
    assert [v.box for v in views] == [(0, 0, 256, 256), (198, 0, 454, 256), (99, 0, 355, 256)]
    assert all((v.out_w, v.out_h) == (256, 256) for v in views)


@pytest.mark.parametrize("crop", ["multiscale", "random_resized"])
def test_plan_views_out_size(crop):
    (v,) = plan_views(320, 240, Augment(crop=crop), flow=False, rng=rng())
    assert (v.out_w, v.out_h) == (224, 224)
    (v,) = plan_views(320, 240, Augment(crop=crop, out_size=None), flow=False, rng=rng())
    w_src, h_src = v.box[2] - v.box[0], v.box[3] - v.box[1]
    assert (v.out_w, v.out_h) == (round(w_src * 341 / 320), round(h_src * 256 / 240))


def test_plan_views_flip_ratio_one_flow_inverts():
    views = plan_views(320, 240, Augment(crop="multiscale", flip_ratio=1.0), flow=True, rng=rng())
    assert [(v.mirror, v.invert_flow_x) for v in views] == [(True, True)]
    views = plan_views(320, 240, Augment(crop="multiscale", flip_ratio=1.0), flow=False, rng=rng())
    assert [(v.mirror, v.invert_flow_x) for v in views] == [(True, False)]


AUGS = [
    Augment(crop="multiscale", random_crop=False, num_fixed_crops=13, flip_ratio=0.5),
    Augment(crop="multiscale", random_crop=True, flip_ratio=0.5),
    Augment(crop="random_resized", flip_ratio=0.5),
    Augment(crop="center", flip_ratio=0.5),
    Augment(crop="three", crop_size=256, flip_ratio=0.5),
    Augment(crop="ten", flip_ratio=0.5),
    Augment(resize="fixed", size=(340, 256), crop="multiscale", flip_ratio=0.5),
    Augment(resize="none", crop="none", flip_ratio=0.5),
]


@pytest.mark.parametrize("aug", AUGS)
@pytest.mark.parametrize("src_w, src_h", SIZES)
def test_plan_views_properties(aug, src_w, src_h):
    flips = set()
    for seed, flow in itertools.product(range(20), (False, True)):
        views = plan_views(src_w, src_h, aug, flow=flow, rng=rng(seed))
        assert len(views) == aug.num_crops and all(isinstance(v, View) for v in views)
        for v in views:
            x1, y1, x2, y2 = v.box
            assert 0 <= x1 < x2 <= src_w + 1e-9 and 0 <= y1 < y2 <= src_h + 1e-9
            assert v.out_w >= 1 and v.out_h >= 1
        # one flip decision per video: every view agrees (TenCrop's own mirrors alternate on top of it)
        flip = views[0].mirror
        assert all(v.mirror == (flip != (aug.crop == "ten" and k % 2 == 1)) for k, v in enumerate(views))
        assert all(v.invert_flow_x == (flow and flip) for v in views)
        flips.add(flip)
        assert views == plan_views(src_w, src_h, aug, flow=flow, rng=rng(seed))  # reproducible
    assert flips == {False, True}  # flip_ratio 0.5 over 40 draws produces both outcomes


@pytest.mark.parametrize("kwargs, field", [
    ({"resize": "long_side"}, "resize"),
    ({"crop": "five"}, "crop"),
    ({"short_side": 0}, "short_side"),
    ({"size": (340,)}, "size"),
    ({"crop_size": -1}, "crop_size"),
    ({"scales": ()}, "scales"),
    ({"scales": (1.0, 1.5)}, "scales"),
    ({"max_wh_scale_gap": -1}, "max_wh_scale_gap"),
    ({"num_fixed_crops": 7}, "num_fixed_crops"),
    ({"area_range": (0.5, 0.2)}, "area_range"),
    ({"area_range": (0.0, 1.0)}, "area_range"),
    ({"aspect_ratio_range": (2.0, 1.0)}, "aspect_ratio_range"),
    ({"out_size": 0}, "out_size"),
    ({"flip_ratio": 1.5}, "flip_ratio"),
    ({"crop": "three", "crop_size": 224}, "crop_size"),
])
def test_augment_validation(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Augment(**kwargs)


def test_augment_lists_become_tuples():
    aug = Augment(size=[340, 256], scales=[1, 0.875], area_range=[0.08, 1.0], aspect_ratio_range=[0.75, 1.25])
    assert (aug.size, aug.scales, aug.area_range, aug.aspect_ratio_range) == ((340, 256), (1, 0.875), (0.08, 1.0),
                                                                                (0.75, 1.25))
    hash(aug)


def test_num_crops():
    assert [Augment(crop=c, crop_size=256).num_crops for c in ("center", "multiscale", "none", "three", "ten")] \
        == [1, 1, 1, 3, 10]
