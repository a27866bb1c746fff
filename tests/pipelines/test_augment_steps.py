"""Augmentation steps in the DALI graph (pipelines/augment.py): each built-in against an independent computation.

Every pixel test reads the per-video parameters the source drew back from its columns, applies them with numpy /
OpenCV / torchvision to the loader's output WITHOUT the step (the device variant of the graph, the variant a recipe
with steps runs), and compares with the loader's output WITH the step. The steps draw after the sampling and
geometry, so both loaders see the same videos, frames and boxes.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections import namedtuple

import cv2
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from jobs.recipes.config import ConfigError, dump_config, load_config
from jobs.recipes.loaders import build_loader
from pipelines.augment import Step
from pipelines.plan import plan_graph
from pipelines.readers import ReaderKind
from pipelines.variants.device import DeviceResample
from pipelines.variants.host import HostResample
from tests.helpers import ROOT, synthetic_overrides

RECIPE = "tsn_r18_synthetic_rgb"           # 80 x 64 frames -> 3 segments of one 56 x 56 view
SMALL = ["data.videos_per_gpu=6", "data.val_videos_per_gpu=3", "data.test_videos_per_gpu=2", "data.workers=1",
         "test.sampler.num_clips=2"]
BatchInfo = namedtuple("BatchInfo", "iteration epoch_idx")
JITTER = {"brightness": 0.5, "contrast": 0.5, "saturation": 0.5, "hue": 0.3}
ORDER = ("brightness", "contrast", "saturation", "hue")      # color_jitter's default order


def toml(value) -> str:
    """A Python value as a TOML inline value (for --cfg-options)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return json.dumps(value)


def steps_option(split: str, *steps: dict) -> str:
    return f"{split}.steps={toml(list(steps))}"


def config(root, *options, recipe=RECIPE, kind="rawframes"):
    return load_config(recipe, synthetic_overrides(root, kind) + SMALL + list(options))


def first_batch(cfg, split="train", **kw):
    loader = build_loader(cfg, split, **kw)
    return loader, next(iter(loader))


def drawn(loader, epoch: int = 0, iteration: int = 0) -> dict:
    """The source's columns for one batch, {name: (N, ...) array}: what the graph received."""
    cols = loader.source(BatchInfo(iteration, epoch))
    return {c.name: np.asarray(v) for c, v in zip(loader.source.columns, cols) if c.dtype is not None}


def per_video(columns: dict, name: str, videos: int) -> np.ndarray:
    """(B, ...) one value per video, after checking that every sample of a video carries the same value."""
    rows = columns[name].reshape(videos, -1, *columns[name].shape[1:])
    assert (rows == rows[:, :1]).all(), f"{name}: samples of one video disagree"
    return rows[:, 0]


def pair(root, step_tables, split="train", *options, loader_kw=None, **kw):
    """(loader and batch without steps on the device variant, loader and batch with the steps); clips on the CPU."""
    loader_kw = loader_kw or {}
    base_loader, base = first_batch(config(root, *options, **kw), split, gpu_graph=True, **loader_kw)
    loader, batch = first_batch(config(root, steps_option(split, *step_tables), *options, **kw), split, **loader_kw)
    base.clips, batch.clips = base.clips.cpu(), batch.clips.cpu()
    assert torch.equal(base.index, batch.index) and base.clips.shape == batch.clips.shape
    return base_loader, base, loader, batch


def hwc(view: torch.Tensor) -> np.ndarray:
    """(C, H, W) uint8 -> (H, W, C) contiguous numpy."""
    return np.ascontiguousarray(view.permute(1, 2, 0).numpy())


# ----------------------------------------------------------------------------- independent references

def mm_gray(img: np.ndarray) -> np.ndarray:
    return 0.2989 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]


def mm_color_jitter(img: np.ndarray, b, c, s, shift, order) -> np.ndarray:
    """MMAction2 v0.24.1 ColorJitter.__call__ on one uint8 RGB frame, written out with numpy and OpenCV."""
    x = img.astype(np.float32)
    for op in order:
        if op == "brightness":
            x = x * b
        elif op == "contrast":
            x = c * x + (1 - c) * np.mean(mm_gray(x))
        elif op == "saturation":
            x = s * x + (1 - s) * mm_gray(x)[..., None]
        else:
            u8 = np.clip(x, 0, 255).astype(np.uint8)
            # One pixel per row: OpenCV converts each pixel by its per-pixel definition (a row of one is shorter
            # than any vector loop; the vector loop truncates where the definition rounds, see pipelines/augment.py).
            hsv = cv2.cvtColor(u8.reshape(-1, 1, 3), cv2.COLOR_RGB2HSV)
            hsv[..., 0] = (hsv[..., 0].astype(np.int32) + int(shift)) % 180
            x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).reshape(u8.shape).astype(np.float32)
    return np.clip(x, 0, 255).astype(np.uint8)


def compare(expected: list[np.ndarray], got: list[np.ndarray], max_diff: int, max_fraction: float):
    diff = np.abs(np.stack(expected).astype(int) - np.stack(got).astype(int))
    assert diff.max() <= max_diff and (diff > 0).mean() <= max_fraction, \
        f"max {diff.max()}, {100 * (diff > 0).mean():.3f}% of values differ"


# ----------------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("order", [ORDER, ("hue", "saturation", "brightness", "contrast")])
def test_color_jitter_is_mmaction2_color_jitter(synthetic_root, order):
    _, base, loader, batch = pair(synthetic_root, [{"kind": "color_jitter", **JITTER, "order": list(order)}])
    videos = len(batch.index)
    cols = drawn(loader)
    params = [per_video(cols, f"step0_{n}", videos) for n in ("brightness", "contrast", "saturation", "hue_shift")]
    for values, (lo, hi) in zip(params, [(0.5, 1.5)] * 3 + [(-76, 76)]):     # int(0.3 * 255) = 76
        assert values.min() >= lo and values.max() <= hi and len(set(values.tolist())) == videos
    expected, got = [], []
    for v in range(videos):
        b, c, s, shift = (p[v] for p in params)
        for k in range(batch.clips.shape[1]):
            expected.append(mm_color_jitter(hwc(base.clips[v, k]), b, c, s, shift, order))
            got.append(hwc(batch.clips[v, k]))
    # float32 summation order (DALI vs numpy) moves a truncation across an integer now and then; a hue step then
    # converts the other integer (measured: 0.04% of values off by 1, one value by 2).
    compare(expected, got, max_diff=2, max_fraction=0.005)
    assert np.abs(np.stack(got).astype(int) - base.clips.numpy().reshape(len(got), 3, 56, 56).transpose(
        0, 2, 3, 1)).mean() > 10      # the step really changes the pixels


def test_grayscale_is_torchvision_random_grayscale(synthetic_root):
    _, base, loader, batch = pair(synthetic_root, [{"kind": "grayscale", "p": 0.5}])
    on = per_video(drawn(loader), "step0_apply", len(batch.index))
    assert 0 < on.sum() < len(on), "the test needs gray and colour videos in its batch"
    for v, flag in enumerate(on):
        expected = TF.rgb_to_grayscale(base.clips[v], num_output_channels=3) if flag else base.clips[v]
        compare([expected.numpy()], [batch.clips[v].numpy()], max_diff=1, max_fraction=0.001)


def test_random_erasing_is_torchvision_random_erasing(synthetic_root):
    fill = [10, 200, 30]
    _, base, loader, batch = pair(synthetic_root, [{"kind": "random_erasing", "p": 0.7, "value": fill}])
    cols = drawn(loader)
    anchors, shapes = (per_video(cols, f"step0_{n}", len(batch.index)) for n in ("anchor", "shape"))
    erased = shapes.prod(axis=1) > 0
    assert 0 < erased.sum() < len(erased), "the test needs erased and untouched videos in its batch"
    for v in range(len(batch.index)):
        (top, left), (h, w) = anchors[v].astype(int), shapes[v].astype(int)
        if erased[v]:
            # torchvision's constraints: h < H, w < W, inside the view; area in scale * H * W (before rounding)
            assert 0 < h < 56 and 0 < w < 56 and top + h <= 56 and left + w <= 56
            assert 0.02 * 56 * 56 * 0.5 <= h * w <= 0.33 * 56 * 56 * 1.5
            assert 0.3 / 2 <= h / w <= 3.3 * 2
        expected = TF.erase(base.clips[v], top, left, h, w, torch.tensor(fill, dtype=torch.uint8)[:, None, None])
        assert torch.equal(batch.clips[v], expected)


def test_identity_parameters_give_the_pixels_of_the_recipe_without_steps(synthetic_root):
    identity = [{"kind": "color_jitter", "brightness": 0, "contrast": 0, "saturation": 0, "hue": 0},
                {"kind": "grayscale", "p": 0.0}, {"kind": "random_erasing", "p": 0.0}]
    _, base, loader, batch = pair(synthetic_root, identity)
    assert loader.source.variant == DeviceResample()
    assert torch.equal(batch.clips, base.clips)


def test_steps_draw_after_the_geometry_reproducibly_and_per_video(synthetic_root):
    step = steps_option("train", {"kind": "color_jitter", **JITTER}, {"kind": "random_erasing", "p": 1.0})
    plain = build_loader(config(synthetic_root), "train", gpu_graph=True)
    with_steps = build_loader(config(synthetic_root, step), "train")
    again = build_loader(config(synthetic_root, step), "train")
    other_seed = build_loader(config(synthetic_root, step, "runtime.seed=1"), "train")
    for epoch in (0, 1):
        before, after, repeat = (drawn(x, epoch) for x in (plain, with_steps, again))
        assert all(np.array_equal(before[name], after[name]) for name in before)      # the same frames and boxes
        assert set(after) - set(before) == {f"step0_{n}" for n in ("brightness", "contrast", "saturation",
                                                                   "hue_shift")} | {"step1_anchor", "step1_shape"}
        assert all(np.array_equal(after[name], repeat[name]) for name in after)       # same seed: same draws
        b = per_video(after, "step0_brightness", 6)                                    # one draw per video
        assert len(set(b.tolist())) == 6
        assert not np.array_equal(b, per_video(drawn(other_seed, epoch), "step0_brightness", 6))
    assert not np.array_equal(drawn(with_steps, 0)["step0_brightness"], drawn(with_steps, 1)["step0_brightness"])


@pytest.mark.parametrize("split", ["val", "test"])
def test_steps_of_evaluation_splits_cover_every_view(synthetic_root, split):
    _, base, _, batch = pair(synthetic_root, [{"kind": "grayscale", "p": 1.0}], split)
    assert batch.clips.shape[1] == {"val": 3, "test": 2}[split]
    for v in range(len(batch.index)):
        expected = TF.rgb_to_grayscale(base.clips[v], num_output_channels=3)
        compare([expected.numpy()], [batch.clips[v].numpy()], max_diff=1, max_fraction=0.001)


def test_steps_on_dali_video_decoder_sequences(synthetic_root):
    """One DALI sample per video, (F, H, W, C): the steps find H and W by name and take one row per video."""
    steps = [{"kind": "color_jitter", **JITTER}, {"kind": "random_erasing", "p": 1.0, "value": 128}]
    _, base, loader, batch = pair(synthetic_root, steps, "val", "data.decoder=dali", recipe="tsn_r18_synthetic_video_rgb",
                                  kind="videos_vp9")
    assert loader.source.reader.kind is ReaderKind.VIDEO
    cols = drawn(loader)
    videos = len(batch.index)
    params = [per_video(cols, f"step0_{n}", videos) for n in ("brightness", "contrast", "saturation", "hue_shift")]
    anchors, shapes = (per_video(cols, f"step1_{n}", videos).astype(int) for n in ("anchor", "shape"))
    expected, got = [], []
    for v in range(videos):
        for k in range(batch.clips.shape[1]):
            jittered = mm_color_jitter(hwc(base.clips[v, k]), *(p[v] for p in params), ORDER)
            (top, left), (h, w) = anchors[v], shapes[v]
            jittered[top:top + h, left:left + w] = 128
            expected.append(jittered)
            got.append(hwc(batch.clips[v, k]))
    compare(expected, got, max_diff=2, max_fraction=0.005)


# ------------------------------------------------------------------------------------------ configuration

@pytest.mark.parametrize("table, message", [
    ({"kind": "colour_jitter"}, r"train\.steps\[0\]\.kind: unknown step 'colour_jitter'"),
    ({"kind": "color_jitter", "brightnes": 0.2}, r"train\.steps\[0\]\.brightnes: unknown parameter of color_jitter"),
    ({"kind": "color_jitter", "brightness": 1.5}, r"train\.steps\[0\]\.brightness: must be in \[0, 1\]"),
    ({"kind": "color_jitter", "hue": [-0.6, 0.1]}, r"train\.steps\[0\]\.hue: the range \[-0.6, 0.1\] must lie"),
    ({"kind": "color_jitter", "order": ["hue"]}, r"train\.steps\[0\]\.order: expected the four names"),
    ({"kind": "grayscale", "p": 2}, r"train\.steps\[0\]\.p: a probability must be in \[0, 1\]"),
    ({"kind": "random_erasing", "value": [1, 2]}, r"train\.steps\[0\]\.value: expected one number or three"),
    ({"kind": "no_such_module_xyz:fn"}, r"train\.steps\[0\]\.kind: cannot import 'no_such_module_xyz'"),
    ({"kind": "json:no_such_function"}, r"train\.steps\[0\]\.kind: 'json' has no function 'no_such_function'"),
    ({"p": 0.5}, r"train\.steps\[0\]\.kind: missing"),
])
def test_bad_steps_are_refused_at_load_naming_the_key(table, message):
    with pytest.raises(ConfigError, match=message):
        load_config(RECIPE, [steps_option("train", table)])


def test_colour_steps_refused_for_flow():
    with pytest.raises(ConfigError, match=r"train\.steps\[0\]: grayscale needs RGB views"):
        load_config("tsn_r18_synthetic_flow", [steps_option("train", {"kind": "grayscale"})])
    cfg = load_config("tsn_r18_synthetic_flow", [steps_option("train", {"kind": "random_erasing", "value": 128})])
    assert cfg.train.steps[0].kind == "random_erasing"


def test_recipe_tables_defaults_and_dump_round_trip(tmp_path):
    recipe = tmp_path / "with_steps.toml"
    recipe.write_text(textwrap.dedent(f"""\
        base = "{(ROOT / 'jobs/recipes/tsn_r18_synthetic_rgb.toml').as_posix()}"
        [[train.steps]]
        kind = "color_jitter"
        brightness = 0.4
        [[train.steps]]
        kind = "random_erasing"
        scale = [0.1, 0.2]
        """))
    cfg = load_config(str(recipe))
    jitter, erasing = (s.impl for s in cfg.train.steps)
    # brightness 0.4 -> [0.6, 1.4]; unset ones take MMAction2's defaults (0.5 -> [0.5, 1.5], hue 0.1 -> [-0.1, 0.1])
    assert (jitter.brightness, jitter.contrast, jitter.hue) == ((0.6, 1.4), (0.5, 1.5), (-0.1, 0.1))
    assert (erasing.p, erasing.scale, erasing.ratio, erasing.value) == (0.5, (0.1, 0.2), (0.3, 3.3), (0.0,))
    assert cfg.val.steps == () and cfg.test.steps == ()
    dump_config(cfg, tmp_path / "dumped.json")
    assert load_config(str(tmp_path / "dumped.json")) == cfg


def test_steps_choose_the_device_variant_in_plan_graph():
    cpu = {"reader": ReaderKind.JPEG, "flow": False, "crops": 1}
    assert plan_graph("cpu", **cpu) == HostResample(roi_decode=True)
    assert plan_graph("cpu", **cpu, steps=True) == DeviceResample()
    assert plan_graph("gpu", **cpu, steps=True) == DeviceResample()


# ------------------------------------------------------------------------------------------- user steps

USER_MODULE = '''
"""A user's own step, outside the project: per video with probability p, the photographic negative 255 - v."""
import os
import re

import numpy as np
from nvidia.dali import fn, types


def negative(frames, params, backend):
    flag = params["flag"]                      # per sample, drawn below; a CPU node
    if backend == "gpu":
        flag = flag.gpu()
    return fn.cast(flag * (255 - frames) + (1 - flag) * frames, dtype=types.UINT8)


def draw(rng, params):
    if params.get("log"):
        with open(params["log"], "a") as f:
            f.write(f"{os.getpid()}\\n")
    return {"flag": np.uint8(rng.random() < params["p"])}


negative.draw = draw
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_video_steps.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("my_video_steps", None)


def test_user_step_from_outside_the_package(synthetic_root, user_module):
    _, base, loader, batch = pair(synthetic_root, [{"kind": "my_video_steps:negative", "p": 0.5}])
    flags = per_video(drawn(loader), "step0_flag", len(batch.index))
    assert 0 < flags.sum() < len(flags)
    for v, flag in enumerate(flags):
        assert torch.equal(batch.clips[v], 255 - base.clips[v] if flag else base.clips[v])


def test_user_step_params_clash_and_inconsistent_draws(user_module):
    (user_module / "bad_steps.py").write_text(textwrap.dedent("""\
        import numpy as np
        def f(frames, params, backend):
            return frames
        f.draw = lambda rng, params: {"flag": np.uint8(1)}
        def g(frames, params, backend):
            return frames
        g.draw = lambda rng, params: {"x": np.zeros(int(rng.integers(1, 3)), np.float32)}
        """))
    with pytest.raises(ValueError, match="flag: both a recipe parameter and a name returned by"):
        Step("bad_steps:f", {"flag": 1})
    step = Step("bad_steps:g")
    with pytest.raises(ValueError, match="every call must return the same names, dtypes and shapes"):
        for seed in range(20):
            step.impl.draw(np.random.default_rng(seed), None)


def test_user_step_in_a_one_epoch_training(synthetic_root, user_module, tmp_path):
    """`tsn train`'s code path in a fresh process that finds the step module through PYTHONPATH only."""
    log, work = tmp_path / "draws.log", tmp_path / "work"
    options = synthetic_overrides(synthetic_root) + [
        "optim.epochs=1", "data.videos_per_gpu=8", "data.workers=1", "runtime.log_interval=1",
        steps_option("train", {"kind": "my_video_steps:negative", "p": 0.5, "log": str(log)})]
    code = ("import sys; from jobs.recipes.config import load_config; from jobs.training.trainer import train; "
            "train(load_config('tsn_r18_synthetic_rgb', sys.argv[2:]), sys.argv[1], device='cpu')")
    env = dict(os.environ, PYTHONPATH=str(user_module), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", code, str(work), *options], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    saved = json.loads((work / "config.json").read_text())
    assert saved["train"]["steps"] == [{"kind": "my_video_steps:negative", "params": {"p": 0.5, "log": str(log)}}]
    pids = [int(line) for line in log.read_text().split()]
    # One draw per training video (24) in DALI's worker processes, plus the shape probe in the training process.
    workers = [p for p in pids if p != proc.pid]
    assert len(workers) >= 24 and proc.pid in pids       # more if the pipeline prefetched into a next epoch
    assert "Epoch(val) [1]" in output


def test_the_documented_example_step(synthetic_root, tmp_path, monkeypatch):
    """docs/AUGMENTATIONS.md's my_steps.py, as printed there, against numpy's solarize of the drawn thresholds."""
    doc = (ROOT / "docs" / "AUGMENTATIONS.md").read_text()
    code = re.search(r"^## Your own step\n.*?^```python\n(.*?)^```", doc, re.M | re.S).group(1)
    (tmp_path / "my_steps.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        _, base, loader, batch = pair(synthetic_root, [{"kind": "my_steps:solarize", "p": 0.7, "low": 100}])
        thresholds = per_video(drawn(loader), "step0_threshold", len(batch.index))
    finally:
        sys.modules.pop("my_steps", None)
    assert (thresholds == 256).any() and ((thresholds >= 100) & (thresholds < 256)).any()
    for v, t in enumerate(thresholds):
        x = base.clips[v].numpy()
        assert np.array_equal(batch.clips[v].numpy(), np.where(x >= t, 255 - x, x))
