"""Scoring a checkpoint: the one path from inputs to per-video scores, shared by `tsn test`, every form of
`tsn predict` (one video or frame folder, a folder, a list, the windows of a long video) and training-time validation.

`score_inputs` builds the recipe's test loader for each group of inputs, runs the model over it with at most
`runtime.max_views_per_forward` views per forward (`predict_views`), gathers every rank's rows in list order
(`evaluate`) and averages the views as the recipe says (`runtime.average_clips`, model/tsn.py `average_clips`).
It starts no process group: the caller passes the `Dist` it runs under (one process: `Dist(device=...)`).
"""
from __future__ import annotations

import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from jobs.evaluation.metrics import softmax
from jobs.recipes.config import Config
from jobs.recipes.loaders import build_loader
from jobs.runtime.amp import Amp, make_amp
from jobs.runtime.distributed import Dist, gather_objects
from model.tsn import average_clips
from pipelines.annotations import VideoRecord
from pipelines.normalize import Normalize
from pipelines.sharding import Shard


@dataclass(frozen=True)
class Inputs:
    """Videos that share one loader: a recipe (already switched to frames or videos) and its inputs, either the
    annotation list `list_file` or `records` (then `list_file`, if given, only names where the video index is
    cached; without it the index is not cached)."""

    cfg: Config
    list_file: str | None = None
    records: list[VideoRecord] | None = None
    prefix: str | None = None


@dataclass(frozen=True)
class Scored:
    """One group's scores; rows are the evaluated videos, in list order."""

    records: list[VideoRecord]      # every input, in list order (video frame counts filled in by the video index)
    scores: np.ndarray              # (N, K) float32, the views averaged by runtime.average_clips
    index: np.ndarray               # (N,) int64 list indices of the rows (every input unless some were skipped)
    average: str                    # the runtime.average_clips the scores were averaged with
    skipped: dict[str, str] = field(default_factory=dict)   # path -> why, videos skipped under the skip policy

    @property
    def complete(self) -> bool:
        return len(self.index) == len(self.records)

    @property
    def probs(self) -> np.ndarray:
        """(N, K) class probabilities: "prob" scores already are (model/tsn.py), others are softmaxed."""
        return np.asarray(self.scores, np.float64) if self.average == "prob" else softmax(self.scores)


def score_inputs(model: torch.nn.Module, groups: list[Inputs], dist: Dist, *, say=None) -> list[Scored]:
    """Every group through its own test loader and `model` (moved to dist.device); this rank's part is gathered, so
    every rank gets every row. `say`, when given, hears each group's test protocol before it runs."""
    with ExitStack() as stack:
        # A scratch folder only where the skip policy may log unreadable videos (it is why they were skipped).
        scratch = [stack.enter_context(tempfile.TemporaryDirectory(prefix="tsn_scores_"))
                   if g.cfg.data.on_error == "skip" else None for g in groups]
        # The loaders first: their DALI workers fork before this process creates a CUDA context.
        loaders = [build_loader(g.cfg, "test", shard=Shard(dist.rank, dist.world_size), device=dist.data_device,
                                device_id=dist.data_device_id, list_file=g.list_file, prefix=g.prefix,
                                records=g.records, work_dir=work)
                   for g, work in zip(groups, scratch)]
        model = model.to(dist.device)
        out = []
        for g, loader in zip(groups, loaders):
            cfg = g.cfg
            amp, _ = make_amp(cfg.runtime.amp, dist.device)
            if say is not None:
                layout, a = loader.layout, cfg.test.augment
                say(f"test protocol: {layout.clips} clips x {layout.crops} crop(s) ({a.crop} {a.crop_size}) = "
                    f"{layout.views} views per video, average_clips={cfg.runtime.average_clips}")
            logits, index = evaluate(model, loader, cfg.normalize, dist.device, amp, dist,
                                     cfg.runtime.max_views_per_forward, progress=dist.is_main)
            skipped = {b["path"]: b["reason"] for part in gather_objects(loader.bad_samples(), dist) for b in part}
            # TSN averages every view before its classifier: "score" == "none"; "prob" = softmax of that mean
            # (MMAction2 v0.24.1 mmaction/models/recognizers/base.py `average_clip`).
            scores = average_clips(torch.from_numpy(logits), cfg.runtime.average_clips).numpy()
            out.append(Scored(loader.source.records, scores, index, cfg.runtime.average_clips, skipped))
    return out


@torch.no_grad()
def predict_views(model: torch.nn.Module, x: torch.Tensor, amp: Amp, max_views: int) -> torch.Tensor:
    """Logits of (B, V, C, H, W) float clips with at most `max_views` views per forward, over the whole batch
    (B x chunk <= max_views, at least one view of each video): memory stays bounded whatever the test batch.

    TSN averages pooled features over all views before one affine layer (dropout is off in eval), so the
    view-count-weighted mean of per-chunk logits equals the logits of one big forward.
    """
    b, v = x.shape[:2]
    step = max(1, max_views // b)
    total = 0.0
    for s in range(0, v, step):
        chunk = x[:, s:s + step]
        with amp.autocast():
            total = total + model(chunk).float() * (chunk.shape[1] / v)
    return total


@torch.no_grad()
def evaluate(model, loader, normalize: Normalize, device: torch.device, amp: Amp, dist: Dist,
             max_views: int = 250, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-video logits in list order, gathered from every rank: (scores (N, K) float32, list indices (N,))."""
    model.eval()
    scores, indices = [], []
    for batch in tqdm(loader, desc="test", disable=not (progress and sys.stderr.isatty()), leave=False):
        logits = predict_views(model, normalize(batch.clips, device), amp, max_views).cpu()
        keep = batch.index >= 0       # evaluation padding (marked -1) is dropped here
        scores.append(logits[keep].numpy())
        indices.append(batch.index[keep].numpy())
    local = (np.concatenate(scores) if scores else np.zeros((0, 0), np.float32),
             np.concatenate(indices) if indices else np.zeros(0, np.int64))
    parts = gather_objects(local, dist)
    all_idx = np.concatenate([p[1] for p in parts])
    all_scores = np.concatenate([p[0] for p in parts if len(p[1])])
    order = np.argsort(all_idx, kind="stable")
    all_idx, all_scores = all_idx[order], all_scores[order]
    if len(np.unique(all_idx)) != len(all_idx):
        raise RuntimeError("evaluation counted a video twice across ranks (sharding bug)")
    return all_scores.astype(np.float32), all_idx
