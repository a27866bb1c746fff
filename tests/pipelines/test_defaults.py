"""Loader defaults per device (pipelines/defaults.py), against the rules its docstring states."""
from __future__ import annotations

import pytest

from pipelines.defaults import loader_settings


@pytest.mark.parametrize("cpus,ranks,threads", [(2, 1, 3), (16, 1, 17), (64, 8, 9), (1, 1, 2)])
def test_cpu_uses_one_thread_per_core_of_the_rank_plus_one(cpus, ranks, threads):
    s = loader_settings("cpu", workers=2, cpus=cpus, local_ranks=ranks)
    assert (s.threads, s.prefetch, s.test_batch) == (threads, 2, 2)


@pytest.mark.parametrize("cpus,ranks,threads", [(16, 1, 16), (128, 8, 16), (64, 1, 16), (8, 4, 8), (2, 1, 8)])
def test_gpu_threads_cover_the_nvdec_engines_and_stop_at_16(cpus, ranks, threads):
    s = loader_settings("gpu", workers=4, cpus=cpus, local_ranks=ranks)
    assert s.threads == threads and s.threads >= 7          # Hopper's 7 NVDEC engines, one session per thread
    assert (s.prefetch, s.test_batch, s.hw_decoder_load) == (4, 4, 0.9)


def test_prefetch_keeps_every_worker_busy_and_explicit_values_win():
    assert loader_settings("cpu", workers=6, cpus=2).prefetch == 6
    s = loader_settings("gpu", workers=4, threads=3, prefetch=1, test_batch=2, hw_decoder_load=0.5, cpus=16)
    assert (s.threads, s.prefetch, s.test_batch, s.hw_decoder_load) == (3, 1, 2, 0.5)
    with pytest.raises(ValueError, match="backend"):
        loader_settings("cuda", workers=1)
