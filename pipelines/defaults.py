"""Loader settings a recipe leaves unset, derived per backend in one place (and printed by `tsn profile`); the
GPU decoders' settings (`Decoding`) have no default anywhere else.

Each value comes with the reason for it; docs/ARCHITECTURE.md ("GPU defaults") repeats the table.

  threads          CPU: one DALI thread per core of this rank, plus one (DALI's operators are the work; the extra
                   thread keeps the cores busy while another waits at a batch's end or yields to the loader's own
                   thread: on 2 cores +4% on K400 1x1x3 train and +6% on 25x3 test frames, video within the
                   noise, docs/PERFORMANCE.md). GPU: at least 8 — the
                   mixed video decoder runs one NVDEC session per thread (Hopper has 7 NVDEC engines, A100 5) and
                   nvJPEG's host-side Huffman decoding of the hybrid path runs on these threads too; at most 16,
                   beyond which NVIDIA's guidance of "CPU cores per GPU" stops paying on a shared host.
  prefetch         at least the number of Python workers: the parallel external source keeps only `prefetch` batches
                   in flight, so fewer than `workers` leaves workers idle; at least 2 so decode overlaps the step.
  hw_decoder_load  GPU JPEG decoding: the share of images sent to the hardware JPEG engines (A100/H100 NVJPG), the
                   rest going to the CUDA hybrid decoder. 0.9 (DALI's nvImageCodec decoder default in 2.x before
                   DALI PR #6366 restored 0.65; that PR measured +1.8 % throughput at 0.9): TSN decodes many small
                   frames, which the engines handle well, and the hybrid path competes with the model for SMs.
  test_batch       videos per test batch: 2 on the CPU, where a video of 25 frames is a small batch for DALI's
                   threads (the 25x3 frames protocol +17%, 25x10 +9%, PyAV video within the noise, against 1:
                   docs/PERFORMANCE.md); 4 on the GPU so the mixed decoder has several videos (NVDEC sessions) in
                   flight. Per-video results do not depend on it: each video's views are averaged alone, and
                   `runtime.max_views_per_forward` bounds the views of one forward over the whole batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .plan import check_backend


@dataclass(frozen=True)
class Decoding:
    """Decoder settings of the mixed (GPU) backend; the CPU backend ignores them. `loader_settings` fills them."""

    hw_decoder_load: float
    # libjpeg-turbo (DALI's CPU decoder, OpenCV, PIL) upsamples chroma with the "fancy" triangle filter; nvJPEG's
    # default is plain replication. True makes GPU and CPU decode the same pixels for model-zoo evaluation.
    jpeg_fancy_upsampling: bool = True


@dataclass(frozen=True)
class LoaderSettings:
    threads: int
    workers: int
    prefetch: int
    test_batch: int
    hw_decoder_load: float
    cores: int                 # CPU cores this rank may use (the machine's, divided among local ranks)

    @property
    def decoding(self) -> Decoding:
        return Decoding(hw_decoder_load=self.hw_decoder_load)

    def describe(self) -> dict:
        return {"threads": self.threads, "py_workers": self.workers, "prefetch": self.prefetch,
                "test_batch": self.test_batch, "hw_decoder_load": self.hw_decoder_load, "cores_per_rank": self.cores}


def loader_settings(backend: str, *, workers: int, threads: int | None = None, prefetch: int | None = None,
                    test_batch: int | None = None, hw_decoder_load: float | None = None,
                    local_ranks: int = 1, cpus: int | None = None) -> LoaderSettings:
    """Explicit values win; None takes the backend's default (module docstring)."""
    check_backend(backend)
    cores = max(1, (cpus or os.cpu_count() or 1) // max(1, local_ranks))
    gpu = backend == "gpu"
    if threads is None:
        threads = max(8, min(cores, 16)) if gpu else cores + 1
    if prefetch is None:
        prefetch = max(2, workers)
    if test_batch is None:
        test_batch = 4 if gpu else 2
    if hw_decoder_load is None:
        hw_decoder_load = 0.9
    return LoaderSettings(threads, workers, prefetch, test_batch, hw_decoder_load, cores)
