"""`--verify`: run the exported file and PyTorch eager on the same clips and compare the logits.

Eager is the path `tsn test` takes (jobs/evaluation/scoring.py `evaluate`): `Normalize` on the uint8 clips, then
TSN.forward, so the in-graph normalisation is checked too. The check passes when max |exported - eager| <= rtol *
max |eager| over the batch (fp32 on CPU measures 1e-7..1e-6 of the logit scale; rtol = 1e-4 leaves room for other
kernels).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from jobs.exporting.formats import example_input, load_runner
from jobs.exporting.spec import DEFAULT_RTOL, ExportSpec, VerifyFailed
from jobs.recipes.config import Config
from model.tsn import TSN
from pipelines.normalize import Normalize

MIN_SCALE = 1e-6              # an all-zero reference must not make every difference a failure by 0 / 0


@dataclass(frozen=True)
class Check:
    name: str
    batch: int
    max_abs_diff: float
    scale: float              # max |eager logit|
    tolerance: float          # rtol * scale

    @property
    def ok(self) -> bool:
        return bool(self.max_abs_diff <= self.tolerance)     # NaN fails

    def line(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        return (f"{self.name} (B={self.batch}): max abs difference {self.max_abs_diff:.3g}, tolerance "
                f"{self.tolerance:.3g} (rtol x max|logit| {self.scale:.3g}): {verdict}")


def eager_logits(tsn: TSN, clips: torch.Tensor, normalize: Normalize | None) -> np.ndarray:
    """(B, V, C, H, W) -> (B, K) with the eager model: uint8 clips through Normalize, float clips as they are."""
    with torch.no_grad():
        return tsn(normalize(clips) if normalize is not None else clips.float()).numpy()


def compare(name: str, got: np.ndarray, want: np.ndarray, rtol: float) -> Check:
    if got.shape != want.shape:
        raise VerifyFailed(f"{name}: exported logits have shape {got.shape}, eager {want.shape}")
    scale = max(float(np.abs(want).max()), MIN_SCALE)
    return Check(name, len(want), float(np.abs(got.astype(np.float64) - want).max()), scale, rtol * scale)


def real_clips(cfg: Config, spec: ExportSpec) -> tuple[torch.Tensor | None, str]:
    """One batch of the recipe's test loader cut to the export's (views, H, W), or (None, why it was skipped).

    The loader's views are crop-major (pipelines/loader.py): the first `spec.views` are the first crop set's.
    """
    test_list = cfg.data.test_list
    if not test_list or not os.path.isfile(test_list):
        return None, f"real-clip check skipped: no test data ({test_list or 'data.test_list is empty'} not found)"
    from jobs.recipes.loaders import build_loader
    loader = build_loader(cfg, "test", batch=spec.batch)
    batch = next(iter(loader))
    clips = batch.clips                                       # (B, V_test, C, H, W) uint8
    _, v, c, h, w = clips.shape
    if (h, w) != (spec.height, spec.width) or c != spec.channels:
        return None, (f"real-clip check skipped: the test loader gives {c}x{h}x{w} views, the export takes "
                      f"{spec.channels}x{spec.height}x{spec.width}")
    if v < spec.views:
        return None, f"real-clip check skipped: the test loader gives {v} views a video, the export takes {spec.views}"
    return clips[:, :spec.views].contiguous(), f"real clip: {test_list} (first batch, {spec.views} of {v} views)"


def verify(path: str | Path, spec: ExportSpec, tsn: TSN, normalize: Normalize, *, real: torch.Tensor | None = None,
           rtol: float = DEFAULT_RTOL, seed: int = 0) -> list[Check]:
    """Checks of the exported file at `path` against eager `tsn`; raises VerifyFailed naming the file if any fails.

    Random clips at the export batch size, and with a dynamic batch also at another size (batch + 2); then
    `real` (uint8 clips from the test loader, see real_clips) if given.
    """
    run = load_runner(path, spec.format)
    inside = normalize if spec.input == "uint8" else None
    cases = [("random clips", example_input(spec, seed=seed + 1))]
    if spec.dynamic_batch:
        cases.append(("random clips, other batch", example_input(spec, spec.batch + 2, seed=seed + 2)))
    if real is not None:
        # float input: what the user feeds is the normalised clip
        cases.append(("real clip", real if spec.input == "uint8" else normalize(real)))
    checks = []
    for name, clips in cases:
        if not spec.dynamic_batch and len(clips) != spec.batch:
            clips = clips.repeat(-(-spec.batch // len(clips)), 1, 1, 1, 1)[:spec.batch]   # a static graph's B
        want = eager_logits(tsn, clips, inside)
        checks.append(compare(name, np.asarray(run(clips.numpy())), want, rtol))
    failed = [c for c in checks if not c.ok]
    if failed:
        worst = max(failed, key=lambda c: c.max_abs_diff / c.scale)
        raise VerifyFailed(f"{path}: exported {spec.format} model differs from PyTorch eager: max abs difference "
                           f"{worst.max_abs_diff:.3g} > tolerance {worst.tolerance:.3g} (rtol {rtol:g} x max|logit| "
                           f"{worst.scale:.3g}) on {worst.name}\n" + "\n".join(c.line() for c in checks))
    return checks
