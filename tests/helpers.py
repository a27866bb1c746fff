"""Helpers shared by test modules (fixtures live in conftest.py)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]     # the repository root


def synthetic_overrides(root, kind: str = "rawframes") -> list[str]:
    """--cfg-options that point a recipe's train/val/test lists at the synthetic set (kind: rawframes|flow|videos)."""
    from jobs.dataprep.synthetic import data_overrides
    return data_overrides(root, kind)
