"""`tsn profile CONFIG --variant ...`: the recipe and variants of it, each loader timed the same way, in one run.

A variant is a set of --cfg-options-style overrides applied on top of the recipe (after the command's own
--cfg-options), written as one shell word:

    --variant "train.steps=[{kind='grayscale', p=0.5}]"
    --variant "jitter: train.steps=[{kind='color_jitter', brightness=0.4}]; data.workers=4"

`NAME:` is optional (before the first `=`; default: the overrides as written); overrides are separated by `;`
outside quotes and brackets; each value is TOML, as in --cfg-options. The base recipe is timed first, then every
variant, one after the other on the same videos, each with `warmup` untimed batches. One row per (split, variant):
clips/s, ms/batch and the share of the base, share = variant clips/s / base clips/s. On the CPU, when a variant
adds augmentation steps to a split without any, the base is also timed on the graph's device variant (the variant
steps need, pipelines/plan.py), so the table shows what the steps cost apart from the variant.
"""
from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass

from jobs.profiling.data import rates, sync_work
from jobs.profiling.timing import forever, time_batches
from jobs.recipes.config import Config, ConfigError
from jobs.recipes.loaders import build_loader


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: tuple[str, ...]


def split_overrides(text: str) -> list[str]:
    """'a=1; b=[{x=1, y="p;q"}]' -> ['a=1', 'b=[{x=1, y="p;q"}]']: split on ';' outside quotes and brackets."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == ";" and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_variant(text: str) -> Variant:
    """'[NAME:] KEY=VALUE[; KEY=VALUE ...]' -> Variant; a ':' after the first '=' belongs to a value."""
    head, eq = text.find(":"), text.find("=")
    name = None
    if 0 <= head < eq:
        name, text = text[:head].strip(), text[head + 1:]
    overrides = split_overrides(text)
    if not overrides or any("=" not in o for o in overrides):
        raise ConfigError(f"--variant {text!r}: expected [NAME:] KEY=VALUE[; KEY=VALUE ...]")
    return Variant(name or "; ".join(overrides), tuple(overrides))


def time_loader(cfg: Config, split: str, *, device: str, warmup: int, batches: int, gpu_graph: bool = False) -> dict:
    """The DALI loader of `split` alone: rates() of `batches` batches after `warmup` (pipeline closed after)."""
    loader = build_loader(cfg, split, device=device, device_id=0 if device == "gpu" else None, gpu_graph=gpu_graph)
    layout = loader.layout
    stream = forever(lambda: loader)
    t = time_batches(stream, warmup=warmup, count=batches, size=lambda b: len(b.index), work=sync_work(device))
    stream.close()
    return {**rates(t, layout.frames_per_video, layout.views), "batch": loader.source.epochs.batch_size,
            "graph": loader.source.variant.name}


def profile_variants(base: Config, variants: list[tuple[Variant, Config]], *, splits: tuple[str, ...],
                     device: str, warmup: int, batches: int, say: Callable[[str], None] = print) -> list[dict]:
    """Rows [{split, variant, overrides, clips_per_s, ms_per_batch, share, ...}], the base first in each split."""
    rows = []
    for split in splits:
        runs = [(Variant("base", ()), base, False)]
        # Augmentation steps move a CPU loader to the device variant of the graph (pipelines/plan.py): the base on
        # that variant separates what the steps cost from what the variant costs.
        if device == "cpu" and not getattr(base, split).steps and any(getattr(c, split).steps for _, c in variants):
            runs.append((Variant("base, device graph", ()), base, True))
        runs += [(v, c, False) for v, c in variants]
        base_rate = None
        for variant, cfg, gpu_graph in runs:
            say(f"[variants/{split}] {variant.name}: {warmup} warm-up + {batches} timed batches")
            r = time_loader(cfg, split, device=device, warmup=warmup, batches=batches, gpu_graph=gpu_graph)
            gc.collect()      # that loader's pipeline (and its workers) go before the next one starts
            base_rate = base_rate or r["clips_per_s"]
            rows.append({"split": split, "variant": variant.name, "overrides": list(variant.overrides),
                         **r, "share": r["clips_per_s"] / base_rate})
    return rows
