"""Per-video score files: the test job writes them (in list order), the fusion job reads them.

`.npy`: one float32 array (N, K). `.pkl`: a list of N 1-D arrays, MMAction2's `tools/test.py --out` layout.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def save_scores(path: str | Path, scores: np.ndarray):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".pkl":
        with open(path, "wb") as f:
            pickle.dump([row for row in np.asarray(scores, np.float32)], f)
    else:
        np.save(path, np.asarray(scores, np.float32))


def load_scores(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"score file {path} not found")
    if path.suffix == ".pkl":
        with open(path, "rb") as f:
            return np.stack([np.asarray(row, np.float32) for row in pickle.load(f)])
    return np.load(path)
