"""TV-L1 in PyTorch (jobs/dataprep/tvl1_torch.py) against OpenCV's DualTVL1 on the CPU: each building block
against the OpenCV function it stands for, the whole flow against cv2.optflow on synthetic motion with known
flow and on camera-like H.264 content (tests/jobs/dataprep/flow_content.py says what that content is),
`tsn prepare flow --backend torch` against `--backend opencv` file by file, and the flow recipe training on it.

Tolerances: the target of the issue, mean end-point difference <= 0.05 px and >= 99 % of quantised pixels within
1 level (p99 <= 0.3 px). Measured (docs/DATASETS.md, "TV-L1 on a GPU"): mean <= 0.0065 px and >= 99.9 % within
1 level on the comparison set, 0.027 px / 99.46 % on the worst clip seen; what remains is float rounding order,
amplified where TV-L1 itself is unstable (OpenCV against itself with 0.001 grey levels of input noise moves as much).
"""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from jobs.cli import cli
from jobs.dataprep import tvl1_torch as tv
from jobs.dataprep.flow import FlowOptions, load_cv2
from jobs.media.naming import count_frames
from tests.jobs.dataprep.flow_content import agreement, camera_like_frames, moved_pair

MEAN_EPE, P99_EPE, WITHIN_1 = 0.05, 0.3, 0.99


@pytest.fixture(scope="module")
def cv2():
    cv2 = load_cv2()
    cv2.setNumThreads(1)
    return cv2


def opencv_flows(cv2, frames: list[np.ndarray]) -> np.ndarray:
    calc = cv2.optflow.DualTVL1OpticalFlow_create()
    return np.stack([calc.calc(a, b, None) for a, b in itertools.pairwise(frames)])


def torch_flows(frames: list[np.ndarray]) -> np.ndarray:
    s = torch.from_numpy(np.stack(frames))
    return tv.tvl1_flow(s[:-1], s[1:]).permute(0, 2, 3, 1).numpy()


def as_t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))[None]


# ---------------------------------------------------------------- building blocks vs OpenCV

def test_defaults_are_opencvs(cv2):
    t = cv2.optflow.DualTVL1OpticalFlow_create()
    ours = tv.TVL1Params().record()
    theirs = {"tau": t.getTau(), "lambda": t.getLambda(), "theta": t.getTheta(), "nscales": t.getScalesNumber(),
              "warps": t.getWarpingsNumber(), "epsilon": t.getEpsilon(), "inner_iterations": t.getInnerIterations(),
              "outer_iterations": t.getOuterIterations(), "scale_step": t.getScaleStep(), "gamma": t.getGamma(),
              "median_filtering": t.getMedianFiltering()}
    assert ours == pytest.approx(theirs) and not t.getUseInitialFlow()


@pytest.mark.parametrize("h, w", [(256, 340), (205, 272), (48, 64), (21, 23)])
def test_resize_down_and_up_match_cv2(cv2, h, w):
    a = np.random.default_rng(h).uniform(0, 255, (h, w)).astype(np.float32)
    down = cv2.resize(a, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
    assert tv.pyramid_sizes(h, w, tv.TVL1Params())[1] == down.shape
    ours = tv.resize_linear(as_t(a), down.shape, (1 / 0.8, 1 / 0.8))[0].numpy()
    np.testing.assert_allclose(ours, down, atol=1e-4)
    up = cv2.resize(down, (w, h), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(tv.resize_linear(as_t(down), (h, w))[0].numpy(), up, atol=1e-4)


def test_pyramid_stops_before_16_px():
    sizes = tv.pyramid_sizes(40, 300, tv.TVL1Params())
    assert sizes == [(40, 300), (32, 240), (26, 192), (21, 154), (17, 123)]
    assert tv.pyramid_sizes(24, 300, tv.TVL1Params()) == [(24, 300), (19, 240)]  # next would be 15 px high


def test_remap_cubic_matches_cv2_inside_and_outside(cv2):
    rng = np.random.default_rng(1)
    h, w = 40, 50
    img = cv2.GaussianBlur(rng.uniform(0, 255, (h, w)).astype(np.float32), (0, 0), 1.5)
    u1 = (rng.standard_normal((h, w)) * 4).astype(np.float32)
    u2 = (rng.standard_normal((h, w)) * 4).astype(np.float32)
    u1[:3] += 70  # far outside: all taps read the constant border 0
    map_x = (np.arange(w)[None] + u1).astype(np.float32)
    map_y = (np.arange(h)[:, None] + u2).astype(np.float32)
    ref = cv2.remap(img, map_x, map_y, cv2.INTER_CUBIC)  # default BORDER_CONSTANT, value 0
    ours = tv.remap_cubic(as_t(img)[None], as_t(u1), as_t(u2))[0, 0].numpy()
    np.testing.assert_allclose(ours, ref, atol=2e-3)
    assert (ref[:3] == 0).all() and np.abs(ref).max() > 100


def test_median_and_centered_gradient_match_cv2(cv2):
    u = np.random.default_rng(2).standard_normal((19, 27)).astype(np.float32)
    np.testing.assert_array_equal(tv.median_blur(as_t(u), 5)[0].numpy(), cv2.medianBlur(u, 5))
    gx, gy = tv.centered_gradient(as_t(u))
    kernel = np.array([[-0.5, 0, 0.5]], np.float32)
    ref_x = cv2.filter2D(u, -1, kernel, borderType=cv2.BORDER_REPLICATE)
    ref_y = cv2.filter2D(u, -1, kernel.T, borderType=cv2.BORDER_REPLICATE)
    np.testing.assert_allclose(gx[0].numpy(), ref_x, atol=1e-6)
    np.testing.assert_allclose(gy[0].numpy(), ref_y, atol=1e-6)


def test_divergence_is_minus_the_adjoint_of_forward_gradient():
    """<grad u, p> = -<u, div p> for every u and every p the scheme can reach: p's x part stays 0 on the last
    column and its y part on the last row, because the forward gradient is 0 there (IPOL 2013, eq. 27-28)."""
    g = torch.Generator().manual_seed(0)
    u, px, py = (torch.randn(2, 13, 17, generator=g, dtype=torch.float64) for _ in range(3))
    px[:, :, -1] = 0
    py[:, -1, :] = 0
    dx, dy = tv.forward_gradient(u)
    assert torch.allclose((dx * px + dy * py).sum(), -(u * tv.divergence(px, py)).sum())
    assert (dx[:, :, -1] == 0).all() and (dy[:, -1, :] == 0).all()


# ---------------------------------------------------------------- whole flow vs OpenCV

@pytest.mark.parametrize("shift, angle", [((2.3, -1.4), 0.0), ((0.0, 0.0), 3.0), ((-4.6, 3.2), -2.0)])
def test_equal_to_opencv_on_known_motion(cv2, shift, angle):
    first, second, true = moved_pair(72, 96, shift, angle, seed=2)
    ref = opencv_flows(cv2, [first, second])[0]
    ours = torch_flows([first, second])[0]
    a = agreement(ref, ours)
    assert a["epe_mean"] <= MEAN_EPE and a["epe_p99"] <= P99_EPE and a["q_within_1"] >= WITHIN_1, a
    interior = (slice(10, -10), slice(10, -10))  # loosely the known motion, away from the borders
    assert np.median(np.linalg.norm(ours - true, axis=-1)[interior]) < 0.25


@pytest.mark.parametrize("h, w, photo", [(48, 64, False), (96, 128, False), (64, 80, True), (128, 170, True)])
def test_equal_to_opencv_on_camera_like_h264(cv2, h, w, photo):
    """Made texture, or a real photograph (matplotlib's sample image), moved by a pan, a smooth non-rigid field and
    an independent object, with sensor noise, through H.264."""
    frames = camera_like_frames(h, w, n=3, seed=1, photo=photo)
    ref, ours = opencv_flows(cv2, frames), torch_flows(frames)
    assert np.linalg.norm(ref, axis=-1).mean() > 1.0  # there is real motion to agree on
    a = agreement(ref, ours)
    assert a["epe_mean"] <= MEAN_EPE and a["epe_p99"] <= P99_EPE and a["q_within_1"] >= WITHIN_1, a


def test_batch_equals_pair_by_pair():
    """Per-pair stopping under a mask: a pair's flow does not depend on the others in the batch (pairs that stop
    at different iterations: still, slow and fast motion)."""
    first, second, _ = moved_pair(40, 56, (1.5, 0.5), 0.0, seed=3)
    still = first.copy()
    _, fast, _ = moved_pair(40, 56, (-5.0, 3.0), 4.0, seed=3)
    i0 = torch.from_numpy(np.stack([first, first, first]))
    i1 = torch.from_numpy(np.stack([second, still, fast]))
    batch = tv.tvl1_flow(i0, i1)
    for k in range(3):
        torch.testing.assert_close(batch[k], tv.tvl1_flow(i0[k:k + 1], i1[k:k + 1])[0], atol=1e-4, rtol=0)
    assert batch[1].abs().max() < 1e-3  # no motion, no flow


# ---------------------------------------------------------------- tsn prepare flow --backend torch

def write_frames(folder, frames):
    folder.mkdir(parents=True)
    for i, f in enumerate(frames, start=1):
        Image.fromarray(f).save(folder / f"img_{i:05}.jpg", quality=100)


def test_prepare_flow_torch_writes_the_opencv_files(tmp_path):
    src = tmp_path / "frames"
    write_frames(src / "cls/v1", camera_like_frames(48, 64, n=4, seed=5))
    write_frames(src / "cls/v2", camera_like_frames(48, 64, n=3, seed=6))
    out = {}
    for backend in ("torch", "opencv"):
        dst = tmp_path / backend
        result = CliRunner().invoke(cli, ["prepare", "flow", str(src), str(dst), "--backend", backend,
                                          "--workers", "0", "--batch-size", "2"])
        assert result.exit_code == 0, result.output
        meta = json.loads((dst / "flow_meta.json").read_text())
        assert meta["backend"] == backend and meta["algorithm"] == "tvl1" and meta["published_algorithm"]
        out[backend] = dst
    for vid, n in (("cls/v1", 4), ("cls/v2", 3)):
        assert count_frames(out["torch"] / vid, "{}_{:05d}.jpg") == n - 1
        names = sorted(p.name for p in (out["opencv"] / vid).iterdir())
        assert sorted(p.name for p in (out["torch"] / vid).iterdir()) == names
        # JPEG (quality 95) turns a 1-level flip of a quantised pixel into +-2 on a few neighbours, so the files
        # are held to 2 levels (measured on these clips: 98.1 % within 1, 99.3 % within 2, mean 0.22 at worst).
        diff = np.stack([np.asarray(Image.open(out["torch"] / vid / name)).astype(int)
                         - np.asarray(Image.open(out["opencv"] / vid / name)) for name in names])
        assert np.mean(np.abs(diff) <= 2) >= WITHIN_1 and np.abs(diff).mean() < 0.3, vid
    # Resuming a folder with the other backend is allowed (they agree); the record then names both.
    (out["torch"] / "cls/v2").rename(tmp_path / "moved")
    result = CliRunner().invoke(cli, ["prepare", "flow", str(src), str(out["torch"]), "--workers", "0"])
    assert result.exit_code == 0 and (out["torch"] / "cls/v2/x_00002.jpg").exists()
    meta = json.loads((out["torch"] / "flow_meta.json").read_text())
    assert meta["backend"] == "opencv" and meta["backends"] == ["opencv", "torch"]  # auto on cpu -> opencv


def test_backend_choice_and_refusals():
    assert FlowOptions().backend == "opencv"  # auto on the CPU: OpenCV is the faster one there (measured)
    assert FlowOptions(device="cuda:1").backend == "torch"
    with pytest.raises(ValueError, match="TV-L1 only"):
        FlowOptions(algo="farneback", backend="torch")
    with pytest.raises(ValueError, match="device"):
        FlowOptions(device="gpu0")
    result = CliRunner().invoke(cli, ["prepare", "flow", ".", "out", "--backend", "opencv", "--device", "cuda"])
    assert result.exit_code == 1 and "Traceback" not in result.output and "CPU" in result.output


def test_missing_cuda_device_is_one_message(tmp_path):
    (tmp_path / "in/v").mkdir(parents=True)
    result = CliRunner().invoke(cli, ["prepare", "flow", str(tmp_path / "in"), str(tmp_path / "out"),
                                      "--device", f"cuda:{torch.cuda.device_count()}"])
    assert result.exit_code == 1 and "CUDA device" in result.output and "Traceback" not in result.output


@pytest.mark.timeout(300)
def test_flow_recipe_trains_on_torch_flow(tmp_path):
    """Flow of the synthetic frames by `--backend torch` has the true motion's direction inside the moving disc,
    and tsn_r18_synthetic_flow's loader reads it and a few steps fit a batch of it."""
    from jobs.recipes.config import load_config
    from jobs.recipes.loaders import build_loader
    from jobs.runtime.amp import make_amp
    from jobs.runtime.distributed import Dist
    from jobs.runtime.weights import build_model
    from jobs.training.loop import Trainer, train_step
    from pipelines.synthetic_data import SyntheticSpec, make_synthetic_dataset

    root = tmp_path / "synthetic"
    # 2 classes (moving right / left), 2 training videos of 6 frames: 5 flow frames = one 5-frame flow stack.
    make_synthetic_dataset(root, SyntheticSpec(num_colours=1, num_directions=2, train_per_class=1, val_per_class=0,
                                               num_frames=6, videos=False))
    result = CliRunner().invoke(cli, ["prepare", "flow", str(root / "rawframes"), str(tmp_path / "flow"),
                                      "--source", "frames", "--backend", "torch", "--workers", "0"])
    assert result.exit_code == 0, result.output
    checked = 0
    for vid in sorted(p.name for p in (root / "rawframes").iterdir()):
        for c in "xy":
            truth = np.asarray(Image.open(root / "rawframes" / vid / f"{c}_00001.jpg")).astype(int) - 128
            ours = np.asarray(Image.open(tmp_path / "flow" / vid / f"{c}_00001.jpg")).astype(int) - 127
            moving = np.abs(truth) >= 8  # the disc, along an axis the class moves on
            if moving.sum() > 20:
                assert np.sign(np.median(ours[moving])) == np.sign(np.median(truth[moving])), (vid, c)
                checked += 1
    assert checked >= 2
    cfg = load_config("tsn_r18_synthetic_flow", [f"data.train_list={root / 'train_list_flow.txt'}",
                                                 f"data.train_prefix={tmp_path / 'flow'}", "data.workers=1",
                                                 "data.videos_per_gpu=2", "model.num_classes=2"])
    batch = next(iter(build_loader(cfg, "train")))
    assert batch.clips.shape[-3] == 10  # 5 flow frames x (x, y)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    amp, scaler = make_amp(False, torch.device("cpu"))
    trainer = Trainer(model=model, optimizer=opt, scheduler=sched, scaler=scaler, amp=amp, normalize=cfg.normalize,
                      dist=Dist())
    losses = [train_step(trainer, batch.clips, batch.labels) for _ in range(8)]
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0]
