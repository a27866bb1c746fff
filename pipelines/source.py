"""The DALI external source: one batch of videos -> sampled frames plus their crop/flip arguments.

It runs inside DALI's Python worker processes (parallel=True, one batch per call), so it is a plain picklable
object whose output depends only on (epoch, iteration): the order, the frame indices and the geometry of every
video come from `video_rng(seed, epoch, video)`. This reads bytes and does the numpy sampling and geometry of
MMAction2 v0.24.1 mmaction/datasets/pipelines/{loading,augmentations}.py; what it emits per sample (and, for PyAV
frames, the views it cuts) is the graph variant's business (pipelines/variants/).

Every per-sample argument column is one dense (N, ...) array per batch, not N small arrays: each array costs a
shared-memory slot, a pickle entry and a feed into DALI (~650 of them per training batch of 96 frames). Only the
encoded bytes stay a list (their sizes differ).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from .annotations import VideoRecord
from .augment import Step
from .geometry import Augment, View, plan_views
from .layout import ClipLayout
from .readers import BadSample, Clip
from .sampling import Sampler, video_rng
from .sharding import Shard, batches, epoch_order, loadable, per_rank, shard_videos
from .variants.base import Column, Variant
from .variants.parts import draw_steps
from .workers import arm_spawned_worker

MAX_SUBSTITUTES = 20   # skip mode: how many other videos to try in place of a bad one


@dataclass(frozen=True)
class Epochs:
    """Order, sharding and batching of a loader's videos."""

    batch_size: int
    shuffle: bool
    pad_mark: bool          # evaluation: mark padding so each video counts once across ranks
    seed: int = 0
    start_epoch: int = 0    # resume: the epoch the first pipeline epoch stands for
    shard: Shard = Shard()


@dataclass
class ClipSource:
    records: list[VideoRecord] = field(repr=False)
    reader: object                 # FrameFolderReader | PyAVReader | VideoFileReader (its `kind`: ReaderKind)
    sampler: Sampler
    augment: Augment
    epochs: Epochs
    variant: Variant               # the graph variant that defines and consumes the columns (pipelines/plan.py)
    start_index: int = 0
    flow: bool = False
    on_error: str = "raise"        # "raise" | "skip"
    bad_log: str | None = None     # JSON lines of skipped samples
    first_iteration: int = 0       # a rebuilt pipeline resumes its first epoch here (pipelines/recovery.py)
    only: int | None = None        # probe: every epoch is one batch holding just this shard entry
    steps: tuple[Step, ...] = ()   # augmentation steps on the views (pipelines/augment.py); need the device variant
    # The batches of the epoch last asked for (batch_entries); not constructor fields, so dataclasses.replace starts
    # a new source with an empty plan.
    _plan_epoch: int = field(default=-1, init=False, repr=False, compare=False)
    _plan: list = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")
        self.layout = ClipLayout.of(self.sampler, self.augment, flow=self.flow)

    def __setstate__(self, state: dict):
        """Unpickled in a spawned DALI worker, at its start: the worker dies with its parent (pipelines/workers.py)."""
        self.__dict__.update(state)
        arm_spawned_worker()

    @property
    def columns(self) -> list[Column]:
        """The external source's outputs in order (the variant's); the graph names its nodes from the same list."""
        return self.variant.columns(self)

    def num_batches(self) -> int:
        return math.ceil(per_rank(len(self.records), self.epochs.shard) / self.epochs.batch_size)

    def batch_entries(self, epoch: int, iteration: int) -> np.ndarray:
        """Shard entries of one batch (negative = evaluation padding, see sharding.shard_videos)."""
        if epoch != self._plan_epoch:
            e = self.epochs
            order = epoch_order(len(self.records), epoch=epoch, seed=e.seed, shuffle=e.shuffle)
            self._plan = batches(shard_videos(order, e.shard, pad_mark=e.pad_mark), e.batch_size)
            self._plan_epoch = epoch
        return self._plan[iteration]

    def __call__(self, info):
        epoch = self.epochs.start_epoch + info.epoch_idx
        if self.only is not None:
            if info.iteration >= 1:
                raise StopIteration
            entries = [self.only]
        else:
            iteration = info.iteration + (self.first_iteration if info.epoch_idx == 0 else 0)
            if iteration >= self.num_batches():
                raise StopIteration
            entries = self.batch_entries(epoch, iteration)
        columns = {column.name: [] for column in self.columns}
        for entry in entries:
            video, clip, views, drawn = self._load(int(entry), epoch)
            # Evaluation counts each video once: padding and substitutes for skipped videos are marked -1.
            counted = entry >= 0 and (video == entry or not self.epochs.pad_mark)
            self.variant.emit(columns, self, video if counted else -1, clip, views, drawn)
        return tuple(columns[c.name] if c.dtype is None else np.asarray(columns[c.name], c.dtype) for c in self.columns)

    def _load(self, entry: int, epoch: int) -> tuple[int, Clip, list[View], dict]:
        """(video actually loaded, its frames, its views, its steps' values {column: array})."""
        video = loadable(entry)
        for _ in range(MAX_SUBSTITUTES + 1):
            record = self.records[video]
            try:
                if record.problem:
                    raise BadSample(f"{record.path}: {record.problem}")
                if record.total_frames is None or record.total_frames < 1:
                    raise BadSample(f"{record.path}: no frames (total_frames={record.total_frames})")
                rng = video_rng(self.epochs.seed, epoch, video)
                indices = self.sampler(record.total_frames, self.start_index, rng)
                clip = self.reader.read(record, indices)
                views = plan_views(clip.width, clip.height, self.augment, flow=self.flow, rng=rng)
                # The steps draw last, so the sampling and geometry streams are those of a recipe without steps.
                return video, clip, views, draw_steps(self.steps, rng, self.layout)
            except BadSample as err:
                if self.on_error == "raise":
                    raise BadSample(f"{record.source}: {err}") from None
                self._log_bad(record, str(err), epoch)
                video = (video + 1) % len(self.records)     # deterministic substitute
        raise BadSample(f"{MAX_SUBSTITUTES + 1} consecutive unreadable videos, last: {record.source}")

    def _log_bad(self, record: VideoRecord, reason: str, epoch: int):
        """One JSON line per skipped sample; a log that cannot be written (a full disk) warns, and training goes on."""
        if self.bad_log is None:
            return
        line = json.dumps({"path": record.path, "line": record.source, "reason": reason,
                           "rank": self.epochs.shard.rank, "epoch": epoch})
        try:
            # One short write per line on O_APPEND: lines of several workers never interleave.
            with open(self.bad_log, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError as err:
            import logging
            logging.getLogger(__name__).warning(
                "%s: cannot record a skipped sample (%s): %s; it is not counted against max_bad_fraction",
                self.bad_log, err.strerror or err, record.source)


def read_bad_log(path: str | None) -> list[dict]:
    """Entries of a bad-sample log, first occurrence of each path only.

    A line that does not parse (the last one, cut short by a kill or a full disk) is skipped with a warning.
    """
    if not path or not os.path.exists(path):
        return []
    seen, out, torn = set(), [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            try:
                entry = json.loads(line)
                key = entry["path"]
            except (json.JSONDecodeError, TypeError, KeyError):
                if line.strip():
                    torn.append(n)
                continue
            if key not in seen:
                seen.add(key)
                out.append(entry)
    if torn:
        import logging
        logging.getLogger(__name__).warning("%s: skipped unparsable line(s) %s (a write cut short?)", path,
                                            ", ".join(map(str, torn)))
    return out
