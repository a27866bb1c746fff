"""The augmentation steps' per-video values as external-source columns, `step{i}_{name}` (steps: pipelines/augment.py).

The source draws them after the geometry (`draw_steps`), the device variant declares them (`step_columns`) and
applies the steps to its views (`apply_steps`). Only that variant runs steps (pipelines/plan.py).
"""
from __future__ import annotations

import numpy as np

from ..augment import Step
from ..layout import ClipLayout


def step_columns(steps: tuple[Step, ...], layout: ClipLayout) -> list[tuple[str, type]]:
    """(column name, dtype) of every step's per-video values, in step order."""
    return [(f"step{i}_{name}", dtype) for i, step in enumerate(steps)
            for name, dtype in step.impl.columns(layout).items()]


def draw_steps(steps: tuple[Step, ...], rng: np.random.Generator, layout: ClipLayout) -> dict:
    """One video's values {column name: array}; called after the sampling and geometry draws on the same `rng`."""
    return {f"step{i}_{name}": value for i, step in enumerate(steps)
            for name, value in step.impl.draw(rng, layout).items()}


def apply_steps(views: list, nodes: dict, steps: tuple[Step, ...], layout: ClipLayout, backend: str) -> list:
    """Each step, in order, on every view node (the same per-video parameters for all of a video's views)."""
    for i, step in enumerate(steps):
        params = {name: nodes[f"step{i}_{name}"] for name in step.impl.columns(layout)}
        views = [step.impl.apply(view, params, backend) for view in views]
    return views
