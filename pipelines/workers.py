"""How DALI's Python workers (the parallel external source) are started: fork where it is safe, spawn elsewhere.

DALI refuses to fork its workers once the CUDA driver is initialised in the process ("Cannot fork a process when
the CUDA has been initialized", nvidia/dali/_multiproc/pool.py), and anything may initialise it: a GPU pipeline's
build, `torch.cuda.is_available()`, a CUDA tensor. Spawned workers start a fresh interpreter and receive the source
object pickled (a few KiB: records, reader, sampler, augmentation), so they are safe in every state; fork is kept
where it is safe because it starts faster and shares the parent's pages.
"""
from __future__ import annotations


def cuda_driver_initialized() -> bool:
    """DALI's own test, the one its worker pool applies before forking."""
    from nvidia.dali import backend
    return bool(backend.IsDriverInitialized())


def start_method(backend: str) -> str:
    """"spawn" for GPU pipelines (their build initialises CUDA, and later loaders of the same process must not fork)
    or when the driver is already initialised; otherwise "fork"."""
    return "spawn" if backend == "gpu" or cuda_driver_initialized() else "fork"
