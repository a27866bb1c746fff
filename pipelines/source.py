"""The DALI external source: one batch of videos -> sampled frames plus their crop/flip arguments.

It runs inside DALI's Python worker processes (parallel=True, one batch per call), so it is a plain picklable
object whose output depends only on (epoch, iteration): the order, the frame indices and the geometry of every
video come from `video_rng(seed, epoch, video)`. Pixel work is left to DALI; this only reads bytes and does the
numpy sampling and geometry of MMAction2 v0.24.1 mmaction/datasets/pipelines/{loading,augmentations}.py.

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
from .augment import Step, draw_steps, step_columns
from .geometry import Augment, View, plan_views
from .host_resample import cut_views
from .layout import ClipLayout
from .plan import GraphPlan
from .readers import BadSample, Clip
from .sampling import Sampler, video_rng
from .sharding import Shard, batches, epoch_order, loadable, shard_videos
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


def is_integral(view: View) -> bool:
    return all(float(v).is_integer() for v in view.box)


def is_plain_crop(view: View) -> bool:
    """An integer box of exactly the output size: a linear resample at scale 1 is a copy, so slice instead."""
    x1, y1, x2, y2 = view.box
    return is_integral(view) and (x2 - x1, y2 - y1) == (view.out_w, view.out_h)


def slice_box(view: View, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer decode window (x0, y0, x1, y1) around a float view box, with a 1 px margin for interpolation."""
    x1, y1, x2, y2 = view.box
    return (max(0, math.floor(x1) - 1), max(0, math.floor(y1) - 1),
            min(width, math.ceil(x2) + 1), min(height, math.ceil(y2) + 1))


@dataclass(frozen=True)
class Column:
    """One output of the external source: dense columns are one (N, ...) array of `dtype` per batch; ragged ones
    (encoded bytes, frame indices: sizes differ per sample) a list of arrays."""

    name: str
    dtype: type | None = None      # None: ragged


@dataclass
class ClipSource:
    records: list[VideoRecord] = field(repr=False)
    reader: object                 # FrameFolderReader | PyAVReader | VideoFileReader
    sampler: Sampler
    augment: Augment
    epochs: Epochs
    plan: GraphPlan                # which graph variant consumes these columns (pipelines/plan.py)
    start_index: int = 0
    flow: bool = False
    on_error: str = "raise"        # "raise" | "skip"
    bad_log: str | None = None     # JSON lines of skipped samples
    first_iteration: int = 0       # a rebuilt pipeline resumes its first epoch here (pipelines/recovery.py)
    only: int | None = None        # probe: every epoch is one batch holding just this shard entry
    steps: tuple[Step, ...] = ()   # augmentation steps on the views (pipelines/augment.py); need the device variant
    _plan_epoch: int = field(default=-1, repr=False)
    _plan: list = field(default_factory=list, repr=False)

    def __post_init__(self):
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")
        if self.plan.decode_slice and (self.augment.num_crops != 1 or self.reader.per_video):
            raise ValueError("decode_slice needs a single-view frame-folder pipeline")
        if self.plan.views_in_workers and (self.flow or self.reader.per_video or hasattr(self.reader, "layout")):
            raise ValueError("views_in_workers needs frames decoded in Python (the PyAV reader)")
        if self.plan.host_resample and (self.flow or self.reader.per_video):
            raise ValueError("host_resample needs an RGB pipeline of frame samples")
        if self.steps and self.plan.host_resample:
            raise ValueError("augmentation steps run on the graph's views: plan the device variant "
                             "(plan_graph(..., steps=True))")
        self.layout = ClipLayout.of(self.sampler, self.augment, flow=self.flow)

    def __setstate__(self, state: dict):
        """Unpickled in a spawned DALI worker, at its start: the worker dies with its parent (pipelines/workers.py)."""
        self.__dict__.update(state)
        arm_spawned_worker()

    def sliced(self, view: View) -> bool:
        """Whether the graph cuts this box with fn.slice (else fn.resize): a plain crop, or on the host-resample
        path any integer box (the loader resamples it)."""
        return is_integral(view) if self.plan.host_resample else is_plain_crop(view)

    @property
    def columns(self) -> list[Column]:
        """The external source's outputs in order; the graph names its nodes from the same list."""
        if self.plan.views_in_workers:      # finished views, (N, out_h, out_w, 3) uint8 per crop
            cols = [Column(f"view{c}", np.uint8) for c in range(self.layout.crops)]
            cols += [Column(name, dtype) for name, dtype in step_columns(self.steps, self.layout)]
            return cols + [Column("index", np.int64)]
        cols = [Column("data")] + ([Column("frames")] if self.reader.per_video else [])
        if self.plan.decode_slice:
            cols += [Column("anchor", np.int32), Column("shape", np.int32)]
        for u in range(len(self.layout.groups)):
            cols += [Column(f"roi_start{u}", np.float32), Column(f"roi_end{u}", np.float32),
                     Column(f"sliced{u}", np.bool_), Column(f"corner{u}", np.int32), Column(f"extent{u}", np.int32)]
        for c in range(self.layout.crops):
            cols.append(Column(f"mirror{c}", np.int32))
            if self.flow:
                cols.append(Column(f"invert{c}", np.uint8))
        cols += [Column(name, dtype) for name, dtype in step_columns(self.steps, self.layout)]
        return cols + [Column("index", np.int64)]

    def num_batches(self) -> int:
        per_rank = math.ceil(len(self.records) / self.epochs.shard.world_size)
        return math.ceil(per_rank / self.epochs.batch_size)

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
            self._emit(columns, video if counted else -1, clip, views, drawn)
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

    def _emit(self, columns: dict, index: int, clip: Clip, views: list[View], drawn: dict):
        """Append one video's rows: one per frame (frame-level readers) or one per video (video decoder)."""
        n = 1 if self.reader.per_video else len(clip.data)
        if self.plan.views_in_workers:
            for c, pixels in enumerate(cut_views(clip.data, views, self.layout)):
                columns[f"view{c}"] += pixels
            for name, value in drawn.items():
                columns[name] += [value] * n
            columns["index"] += [index] * n
            return
        columns["data"] += clip.data
        if self.reader.per_video:
            columns["frames"].append(clip.frames)
        x0 = y0 = 0
        if self.plan.decode_slice:
            # The exact box when the loader resamples it (the decoded window is the view), else a 1 px margin.
            exact = self.plan.host_resample and is_integral(views[0])
            x0, y0, x1, y1 = (int(v) for v in views[0].box) if exact else slice_box(views[0], clip.width, clip.height)
            columns["anchor"] += [(x0, y0)] * n                 # image_slice takes (x, y)
            columns["shape"] += [(x1 - x0, y1 - y0)] * n
        for u, members in enumerate(self.layout.groups):
            first = views[members[0]]
            bx1, by1, bx2, by2 = first.box
            # fn.resize ROIs follow the tensor's axis order (y, x), relative to the decoded (maybe sliced) image. An x
            # range given end-first mirrors the output: the first view's flip rides on its resample for free (the
            # host-resample loader flips every view itself).
            left, right = (bx2, bx1) if first.mirror and not self.plan.host_resample else (bx1, bx2)
            columns[f"roi_start{u}"] += [(by1 - y0, left - x0)] * n
            columns[f"roi_end{u}"] += [(by2 - y0, right - x0)] * n
            columns[f"sliced{u}"] += [self.sliced(first)] * n
            columns[f"corner{u}"] += [(int(bx1) - x0, int(by1) - y0)] * n
            columns[f"extent{u}"] += [(int(bx2) - int(bx1), int(by2) - int(by1))] * n
        for c, view in enumerate(views):
            columns[f"mirror{c}"] += [int(view.mirror)] * n
            # Flow samples alternate x, y (v0.24.1 loading.py RawFrameDecode); a Flip inverts only the x components.
            if self.flow:
                columns[f"invert{c}"] += [(int(view.invert_flow_x and i % 2 == 0),) for i in range(n)]
        for name, value in drawn.items():                       # one draw per video, on each of its samples
            columns[name] += [value] * n
        columns["index"] += [index] * n


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
