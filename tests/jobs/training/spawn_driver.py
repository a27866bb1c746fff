"""Test-only driver: `tsn ARGS` with DALI's Python workers spawned instead of forked.

    python tests/jobs/training/spawn_driver.py train RECIPE ...      (also under torchrun)

DALI forks its workers unless the CUDA driver is initialised (pipelines/workers.py start_method); answering True to
DALI's own driver check makes every loader spawn them, as on a GPU node, without a GPU.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))    # the repository root

from nvidia.dali import backend

backend.IsDriverInitialized = lambda: True

from jobs.cli import cli  # noqa: E402  (after the patch, so every import sees it)

if __name__ == "__main__":
    cli(sys.argv[1:], prog_name="tsn")
