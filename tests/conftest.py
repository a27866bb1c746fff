"""Shared fixtures and the `gpu` marker's automatic skip."""
from __future__ import annotations

import faulthandler
import os
import sys
from pathlib import Path

import pytest
import torch

# pytest-timeout's signal method cannot end a test whose main thread waits in C code while the SIGALRM lands on
# another thread (DALI, torch and our watchdogs all run threads): one such hang kept a CI run waiting until its
# 90-minute limit, with no clue where. So a test still running HARD_STOP_AFTER_S past its own timeout makes
# faulthandler print every thread's stack to the real stderr and end the run: a red CI that says where it hung.
HARD_STOP_AFTER_S = float(os.environ.get("TSN_TEST_HARD_STOP_S", 60))
_real_stderr = pytest.StashKey()


def pytest_configure(config):
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        config.stash[_real_stderr] = sys.stderr
        return
    with capture.global_and_fixture_disabled():
        config.stash[_real_stderr] = os.fdopen(os.dup(sys.stderr.fileno()), "w")


def _timeout_s(item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    return float(item.config.getini("timeout") or 0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    timeout = _timeout_s(item)
    if timeout > 0:
        faulthandler.dump_traceback_later(timeout + HARD_STOP_AFTER_S, exit=True,
                                          file=item.config.stash[_real_stderr])
    try:
        yield
    finally:
        if timeout > 0:
            faulthandler.cancel_dump_traceback_later()


def pytest_collection_modifyitems(config, items):
    # device_count(), not is_available(): the latter initialises the CUDA driver, after which DALI may not fork.
    if torch.cuda.device_count():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA: no GPU on this machine")
    for item in items:
        # The marker, not item.keywords: keywords also hold parent names, and tests/gpu/ is a node named "gpu".
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A small synthetic dataset (12 classes, 2 train + 1 val videos per class) shared by the whole session.

    $TSN_TEST_SYNTHETIC_ROOT names one already made with this spec (the GPU check makes it once for its isolated
    tests, each of which is a session of its own)."""
    from pipelines.synthetic_data import SyntheticSpec, make_synthetic_dataset
    ready = os.environ.get("TSN_TEST_SYNTHETIC_ROOT")
    if ready:
        return Path(ready)
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_dataset(root, SyntheticSpec(train_per_class=2, val_per_class=1, num_frames=24))
    return root


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory):
    """A checkpoint of tsn_r18_synthetic_rgb with random weights (seed 0), in our format."""
    from jobs.recipes.config import load_config
    from jobs.runtime.weights import build_model
    path = tmp_path_factory.mktemp("ckpt") / "random.pth"
    torch.manual_seed(0)
    torch.save({"model": build_model(load_config("tsn_r18_synthetic_rgb").model).state_dict()}, path)
    return path
