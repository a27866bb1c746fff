"""A process where the CUDA driver is already initialised: DALI refuses to fork its Python workers there, so every
loader must start them with spawn and still deliver the same batches.

The state is simulated by making DALI's own driver check (the one its worker pool applies before forking,
nvidia/dali/_multiproc/pool.py) answer True; on a CPU-only machine nothing else changes.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from nvidia.dali import backend

from jobs.recipes.config import load_config
from jobs.recipes.loaders import build_loader
from pipelines.workers import start_method
from tests.helpers import ROOT, synthetic_overrides

SMALL = ["data.workers=2", "data.videos_per_gpu=3", "data.val_videos_per_gpu=3", "data.test_videos_per_gpu=1"]
KINDS = {
    "rgb_frames": ("tsn_r18_synthetic_rgb", "rawframes", "train", []),
    "flow_frames": ("tsn_r18_synthetic_flow", "flow", "train", []),
    "video_pyav": ("tsn_r18_synthetic_video_rgb", "videos", "val", ["data.decoder=pyav"]),
    "video_dali_cpu": ("tsn_r18_synthetic_video_rgb", "videos_vp9", "val", ["data.decoder=dali"]),
}


@pytest.fixture()
def cuda_initialised(monkeypatch):
    monkeypatch.setattr(backend, "IsDriverInitialized", lambda: True)


def test_fork_is_refused_by_dali_when_driver_is_initialised(synthetic_root, cuda_initialised, monkeypatch):
    """The failure this guards against is real: forcing fork in this state makes DALI raise."""
    monkeypatch.setattr("pipelines.graph.start_method", lambda device: "fork")
    cfg = load_config("tsn_r18_synthetic_rgb", synthetic_overrides(synthetic_root) + SMALL)
    with pytest.raises(RuntimeError, match="Cannot fork"):
        build_loader(cfg, "train")


def test_start_method_follows_the_driver_state(monkeypatch):
    assert start_method("cpu") == "fork" and start_method("gpu") == "spawn"
    monkeypatch.setattr(backend, "IsDriverInitialized", lambda: True)
    assert start_method("cpu") == "spawn"


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_loader_kind_spawns_and_yields_the_same_batches(synthetic_root, kind, monkeypatch):
    recipe, lists, split, extra = KINDS[kind]
    cfg = load_config(recipe, synthetic_overrides(synthetic_root, lists) + SMALL + extra)
    forked = list(build_loader(cfg, split))
    monkeypatch.setattr(backend, "IsDriverInitialized", lambda: True)
    loader = build_loader(cfg, split)
    assert loader.pipeline._py_start_method == "spawn"
    spawned = list(loader)
    assert len(spawned) == len(forked) > 0
    for a, b in zip(forked, spawned):
        assert torch.equal(a.index, b.index) and torch.equal(a.labels, b.labels)
        assert torch.equal(a.clips, b.clips)


DRIVER = """
import sys
from nvidia.dali import backend
backend.IsDriverInitialized = lambda: True      # as if CUDA had been initialised before the loaders
from jobs.cli import cli
cli(sys.argv[1:])
"""


def test_train_and_test_complete_with_driver_initialised(synthetic_root, tmp_path):
    opts = ["--cfg-options", *synthetic_overrides(synthetic_root),
            "data.workers=2", "optim.epochs=1", "data.videos_per_gpu=8", "runtime.log_interval=100"]
    work = tmp_path / "work"
    run = lambda *args: subprocess.run([sys.executable, "-c", DRIVER, *args], cwd=ROOT, capture_output=True,
                                       text=True, timeout=600)
    train = run("train", "tsn_r18_synthetic_rgb", "--work-dir", str(work), "--device", "cpu", *opts)
    assert train.returncode == 0, train.stderr[-3000:]
    test = run("test", "tsn_r18_synthetic_rgb", str(work / "epoch_1.pth"), "--device", "cpu", *opts)
    assert test.returncode == 0, test.stderr[-3000:]
    assert "evaluated 12 of 12 videos" in test.stdout
