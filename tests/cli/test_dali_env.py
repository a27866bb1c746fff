"""DALI wheel vs torch's CUDA build (jobs/console/dali_env.py): the extra `make install` picks and the start-up
warning, on faked package metadata (no package is installed or removed)."""
from __future__ import annotations

import importlib.machinery
import subprocess
import sys
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from jobs.console import dali_env
from tests.helpers import ROOT


def _dists(*names):
    return lambda: [SimpleNamespace(metadata={"Name": n}) for n in names]


def test_distributions_and_their_cuda_major_from_the_names(monkeypatch):
    monkeypatch.setattr(dali_env.importlib.metadata, "distributions",
                        _dists("nvidia-dali-cuda120", "nvidia_dali_cuda130", "nvidia-dali-tf-plugin-cuda120",
                               "nvidia-nvimgcodec-cu13", "torch"))
    assert dali_env.dali_distributions() == {"nvidia-dali-cuda120": 12, "nvidia-dali-cuda130": 13}


def test_torch_cuda_version_is_read_without_importing_torch(tmp_path, monkeypatch):
    pkg = tmp_path / "torch"
    pkg.mkdir()
    (pkg / "version.py").write_text("__version__ = '2.11.0+cu130'\ncuda: Optional[str] = '13.0'\nhip = None\n")
    spec = importlib.machinery.ModuleSpec("torch", None, is_package=True)
    spec.submodule_search_locations = [str(pkg)]
    monkeypatch.setattr(dali_env.importlib.util, "find_spec", lambda name: spec if name == "torch" else None)
    assert dali_env.torch_cuda_version() == "13.0"
    (pkg / "version.py").write_text("__version__ = '2.11.0+cpu'\ncuda: Optional[str] = None\n")
    assert dali_env.torch_cuda_version() is None
    monkeypatch.setattr(dali_env.importlib.util, "find_spec", lambda name: None)
    assert dali_env.torch_cuda_version() is None


@pytest.mark.parametrize("cuda,extra", [("12.8", "cu12"), ("13.0", "cu13"), (None, "cu13")])
def test_the_extra_follows_torchs_cuda_major(cuda, extra):
    assert dali_env.extra_for(cuda) == extra


def test_a_cuda_major_without_a_dali_wheel_is_refused():
    with pytest.raises(ValueError, match=r"CUDA 11\.8: DALI 2\.4 has wheels for CUDA 12, 13 only"):
        dali_env.extra_for("11.8")


def test_install_problems_by_hand():
    assert dali_env.install_problems({"nvidia-dali-cuda130": 13}, "13.0", gpu=True) == []
    mismatch = dali_env.install_problems({"nvidia-dali-cuda120": 12}, "13.0", gpu=True)
    assert len(mismatch) == 1 and "built for CUDA 12 but torch for CUDA 13.0" in mismatch[0]
    assert "'.[cu13]'" in mismatch[0]
    # On a machine without an NVIDIA GPU neither side uses CUDA: the mismatch is harmless there.
    assert dali_env.install_problems({"nvidia-dali-cuda120": 12}, "13.0", gpu=False) == []
    both = dali_env.install_problems({"nvidia-dali-cuda120": 12, "nvidia-dali-cuda130": 13}, "13.0", gpu=False)
    assert len(both) == 1 and "2 DALI distributions" in both[0]
    assert "pip uninstall -y nvidia-dali-cuda120 nvidia-dali-cuda130" in both[0]
    assert "pip install nvidia-dali-cuda130~=2.4" in both[0]
    # Both at once on a GPU machine: the shared files, and the wheel of the wrong major.
    assert len(dali_env.install_problems({"nvidia-dali-cuda120": 12, "nvidia-dali-cuda130": 13}, "13.0",
                                         gpu=True)) == 2


def test_the_cli_warns_at_start_up(monkeypatch):
    from jobs.cli import cli
    monkeypatch.setattr(dali_env.importlib.metadata, "distributions",
                        _dists("nvidia-dali-cuda120", "nvidia-dali-cuda130"))
    monkeypatch.setattr(dali_env, "torch_cuda_version", lambda: "13.0")
    monkeypatch.setattr(dali_env, "has_nvidia_gpu", lambda: True)
    result = CliRunner().invoke(cli, ["configs", "--help"])
    assert result.exit_code == 0
    warnings = [line for line in result.output.splitlines() if line.startswith("tsn: warning:")]
    assert len(warnings) == 2 and "share nvidia/dali/" in warnings[0] and "built for CUDA 12" in warnings[1]
    monkeypatch.setattr(dali_env.importlib.metadata, "distributions", _dists("nvidia-dali-cuda130"))
    assert "tsn: warning:" not in CliRunner().invoke(cli, ["configs", "--help"]).output


def test_the_module_answers_make_without_importing_torch_or_dali():
    code = ("import runpy, sys; sys.argv = ['x', 'extra']\n"
            "try:\n    runpy.run_module('jobs.console.dali_env', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'nvidia.dali') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    extra, loaded = out.splitlines()
    assert extra in ("cu12", "cu13") and loaded == "[]"
