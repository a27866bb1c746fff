"""Recovering from a decoder failure inside DALI: find the video(s) responsible, mark them bad, rebuild, go on.

A file can pass every cheap check and still fail inside a DALI decoder (a JPEG whose entropy-coded body is damaged
behind valid headers; a video NVDEC rejects). DALI then raises for the whole batch and the pipeline object is no
longer usable. The loader hands that error here:
  1. each shard entry of the failed batch is decoded alone by a probe pipeline: the same graph on the same backend,
     batch of one, its source in this process (no workers), same epoch, so the same frames and the same substitute
     as in the batch;
  2. every video whose probe fails gets `problem` set, so from now on the source skips it exactly as it skips a video
     known bad up front (a deterministic substitute, pipelines/source.py) and logs it to the bad-sample log; under
     the raise policy the error names its list line and file instead;
  3. a new pipeline resumes the same epoch at the failed batch (`first_iteration`), so the data delivered after the
     failure is what the skip policy would have delivered had the video been skipped from the start.
"""
from __future__ import annotations

import dataclasses
import gc
from collections.abc import Callable

from .errors import UserError
from .readers import BadSample
from .source import ClipSource


class DecoderFailure(UserError, RuntimeError):
    """DALI failed on a batch, but no single video of it fails alone: nothing to skip."""


def _first_line(err: BaseException) -> str:
    """DALI's messages run to dozens of lines (the whole operator stack); the first meaningful one names the failure."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    useful = [ln for ln in lines if "rror" in ln and "Current pipeline object is no longer valid" not in ln]
    return (useful[-1] if useful else lines[0] if lines else type(err).__name__)[:300]


def probe(source: ClipSource, entry: int, epoch: int, build: Callable) -> str | None:
    """None if shard entry `entry` of `epoch` decodes alone, else the decoder's message."""
    alone = dataclasses.replace(source, epochs=dataclasses.replace(source.epochs, batch_size=1, start_epoch=epoch),
                                only=entry, first_iteration=0)
    pipe = build(alone, py_workers=0)
    try:
        pipe.run()
        return None
    except StopIteration:
        return None
    except RuntimeError as err:
        return _first_line(err)
    finally:
        del pipe
        gc.collect()


def culprits(source: ClipSource, epoch: int, iteration: int, build: Callable) -> dict[int, str]:
    """{video index: decoder message} for the videos of batch `iteration` of `epoch` that fail alone."""
    found = {}
    for entry in source.batch_entries(epoch, iteration):
        message = probe(source, int(entry), epoch, build)
        if message is not None:
            # The video the batch really decoded for this entry: itself, or the substitute the source chose.
            video = source._load(int(entry), epoch)[0]
            found[video] = message
    return found


def recover(source: ClipSource, err: BaseException, epoch: int, iteration: int, build: Callable) -> ClipSource:
    """The source to rebuild the pipeline from after `err` on batch `iteration` of `epoch` (see module docstring).

    Raises BadSample (raise policy: the file and list line) or DecoderFailure (no video fails alone)."""
    bad = culprits(source, epoch, iteration, build)
    if not bad:
        raise DecoderFailure(f"DALI failed on batch {iteration + 1} of epoch {epoch + 1} but each of its videos "
                             f"decodes alone: {_first_line(err)}") from err
    records = list(source.records)
    for video, message in sorted(bad.items()):
        record = records[video]
        if source.on_error == "raise":
            raise BadSample(f"{record.source}: {record.path}: the decoder failed: {message}") from None
        records[video] = dataclasses.replace(record, problem=f"decoder failed: {message}")
    return dataclasses.replace(source, records=records, first_iteration=iteration,
                               epochs=dataclasses.replace(source.epochs, start_epoch=epoch))

