"""`tsn prepare check --full`: decode every frame of every folder or video the way training decodes it.

Frame folders go through DALI's CPU image decoder (`fn.decoders.image`, nvImageCodec over libjpeg-turbo), the
operator of the CPU training graph, after the header checks FrameFolderReader makes (image_size, one frame size per
folder). That decoder does not raise for every corrupt JPEG: a file whose entropy-coded body is scrambled (headers
and EOI intact) decodes to garbage on the CPU while libjpeg-turbo reports "Corrupt JPEG data ..." / "Unsupported
marker type ..." on the process's stderr (measured with DALI 2.4). So a batch of frames fails when the pipeline
raises OR the decoder wrote to file descriptor 2 while it ran; its culprits are then found by decoding its files one
at a time, rebuilding the pipeline after each error (an error leaves a DALI pipeline unusable).

Videos are decoded frame by frame with PyAV (pipelines.pyav_decode.iter_frames, each frame converted to RGB as
decode_sampled_frames does), the decoder CPU training uses. A video is flagged for decoder errors, for fewer frames than
the video index counted, and for ending before the frame count or duration its header declares: a file cut
mid-stream in a container that keeps no index (WebM/MKV) still opens, and the index counts only what is there.

Work runs in `workers` spawned processes (safe beside CUDA or DALI threads in the parent). Results are cached in
a JSON-lines file keyed by path, size and mtime (for a folder: the number, total size and newest mtime of its frame
files), appended as they arrive: an interrupted check resumes, and a changed file is checked again.
"""
from __future__ import annotations

import io
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from pipelines import jsonl_cache, packed
from pipelines.spawn import spawn_map

CACHE_VERSION = 1           # bump when what a check decides changes: cached results of another version are redone
BATCH_FILES = 256           # frames per DALI batch: several folders of a typical list, bounded memory
VIDEO_TIMEOUT_S = 600.0     # a decode that hangs (pathological file) is reported, not waited for
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Job:
    """One list entry to decode: a frame folder (its frame files) or a video file."""

    key: tuple              # (what, path, files, bytes, newest mtime_ns): the cache key
    path: str
    files: tuple[str, ...] = ()     # frame folders: every frame file, in order
    gray: bool = False              # flow frames decode to one channel
    frames: int = 0                 # videos: how many frames the video index counted


def folder_job(path: str, files: list[str], gray: bool, what: str) -> Job:
    sizes = [packed.stat(f) for f in files]        # (size, mtime_ns) of a file or of a packed member
    key = (what, path, len(files), sum(s for s, _ in sizes), max((t for _, t in sizes), default=0))
    return Job(key, path, tuple(files), gray)


def video_job(path: str, frames: int) -> Job:
    size, mtime = packed.stat(path)
    return Job(("video", path, 1, size, mtime), path, frames=frames)


# ---------------------------------------------------------------- frame folders (DALI CPU decoder)

class _Decoder:
    """A one-operator DALI pipeline, external input -> fn.decoders.image on the CPU; rebuilt after an error."""

    def __init__(self, gray: bool):
        self.gray = gray
        self.pipe = None

    def _build(self):
        from nvidia.dali import fn, pipeline_def, types

        @pipeline_def(batch_size=BATCH_FILES, num_threads=1, device_id=None, prefetch_queue_depth=1,
                      exec_async=False, exec_pipelined=False)
        def graph():
            enc = fn.external_source(name="enc", dtype=types.UINT8, ndim=1, no_copy=False)
            return fn.decoders.image(enc, device="cpu", output_type=types.GRAY if self.gray else types.RGB)

        self.pipe = graph()
        self.pipe.build()
        self.pipe.feed_input("enc", [_tiny_jpeg()])    # one-time messages of a first run stay out of the checks
        self.pipe.run()

    def decode(self, buffers: list[np.ndarray]) -> str:
        """"" if the batch decodes cleanly, else why not (DALI's error, or what the decoder wrote to stderr)."""
        if self.pipe is None:
            self._build()
        try:
            with _stderr_captured() as captured:
                self.pipe.feed_input("enc", buffers)
                self.pipe.run()
        except Exception as err:          # DALI raises RuntimeError; the pipeline is dead either way
            self.pipe = None
            return _dali_reason(str(err), captured.text)
        return captured.text


class _Captured:
    text = ""


class _stderr_captured:
    """Redirect file descriptor 2 (where native libraries print) to a temporary file for the `with` block."""

    def __enter__(self) -> _Captured:
        sys.stderr.flush()
        self.result = _Captured()
        self.tmp = tempfile.TemporaryFile()
        self.saved = os.dup(2)
        os.dup2(self.tmp.fileno(), 2)
        return self.result

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.tmp.seek(0)
        text = _ANSI.sub("", self.tmp.read().decode("utf-8", "replace"))
        self.tmp.close()
        self.result.text = "; ".join(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
        return False


def _dali_reason(message: str, printed: str) -> str:
    """The useful part of a DALI pipeline error: the lines after 'encountered:', plus what the decoder printed."""
    tail = message.split("encountered:", 1)[-1]
    lines = [line.strip() for line in tail.splitlines()
             if line.strip() and "pipeline object is no longer valid" not in line and "Critical error" not in line]
    return "; ".join(dict.fromkeys(lines + ([printed] if printed else []))) or "DALI decoder error"


def _tiny_jpeg() -> np.ndarray:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 150)).save(buf, "JPEG")
    return np.frombuffer(buf.getvalue(), np.uint8)


_decoders: dict[bool, _Decoder] = {}


def check_folders(jobs: list[Job]) -> list[tuple[Job, list[tuple[str, str]]]]:
    """Every frame of every folder in `jobs` (one DALI batch when all is well): [(job, problems)]."""
    from pipelines.jpeg import BadJpeg, image_size

    bad: dict[str, list[tuple[str, str]]] = {j.path: [] for j in jobs}     # folder -> [(file, reason)]
    batch: list[tuple[Job, str, np.ndarray]] = []
    for job in jobs:
        size = None
        for f in job.files:
            try:
                buf = packed.read_bytes(f)   # a frame file, or a member of a packed shard
                wh = image_size(buf)              # the checks FrameFolderReader makes before DALI sees a file
            except (OSError, BadJpeg) as err:
                bad[job.path].append((f, str(err)))
                continue
            if size is not None and wh != size:
                bad[job.path].append((f, f"frame size {wh} differs from {size} in the same folder"))
                continue
            size = wh
            batch.append((job, f, buf))
    for gray in (False, True):
        group = [item for item in batch if item[0].gray == gray]
        decoder = _decoders.setdefault(gray, _Decoder(gray))
        for start in range(0, len(group), BATCH_FILES):
            part = group[start:start + BATCH_FILES]
            if not decoder.decode([buf for _, _, buf in part]):
                continue
            for job, f, buf in part:          # find the culprits one by one
                reason = decoder.decode([buf])
                if reason:
                    bad[job.path].append((f, reason))
    out = []
    for job in jobs:
        files = bad[job.path]
        problems = [("corrupt_frame", f"{len(files)} of {len(job.files)} frames do not decode cleanly, first "
                                      f"{files[0][0]}: {files[0][1]}")] if files else []
        out.append((job, problems))
    return out


# ---------------------------------------------------------------- videos (PyAV)

def check_video(job: Job) -> list[tuple[Job, list[tuple[str, str]]]]:
    from pipelines.timeout import DecodeTimeout, call_with_timeout
    try:
        problems = call_with_timeout(_decode_video, VIDEO_TIMEOUT_S, job, label=job.path)
    except DecodeTimeout as err:
        problems = [("decode_error", str(err))]
    return [(job, problems)]


def _decode_video(job: Job) -> list[tuple[str, str]]:
    import av

    from pipelines.pyav_decode import VideoDecodeError, iter_frames, open_video
    errors: list[str] = []
    try:
        container, stream = open_video(job.path)
    except (av.error.FFmpegError, OSError, VideoDecodeError) as err:
        return [("decode_error", f"cannot open: {err}")]
    try:
        n, first, last = 0, None, None
        try:
            for frame in iter_frames(container, stream, errors):
                frame.to_ndarray(format="rgb24")
                n += 1
                if frame.pts is not None:
                    first = frame.pts if first is None else min(first, frame.pts)
                    last = frame.pts if last is None else max(last, frame.pts)
        except (av.error.FFmpegError, ValueError) as err:     # colour conversion of a broken frame
            errors.append(f"frame {n}: {err}")
        problems = []
        if errors:
            problems.append(("decode_error", f"{len(errors)} decoder error(s), first: {errors[0]}"))
        if n == 0:
            return problems or [("decode_error", "no frame decodes")]
        if n < job.frames:
            problems.append(("decode_error", f"only {n} of the {job.frames} frames the video index counted decode"))
        short = _short_of_header(container, stream, n, first, last)
        if short:
            problems.append(("truncated", short))
        return problems
    finally:
        container.close()


def _short_of_header(container, stream, n: int, first, last) -> str:
    """Why the decoded frames end before the header says the video does ("" if they do not).

    MP4/MOV sample tables declare a frame count; WebM/MKV only a duration, compared with the span the decoded
    frames cover. Missing frames count only beyond max(2, 5 %) of the declared length: timestamp rounding, an
    edit list that starts a trimmed clip after its first keyframe, or a B-frame delay never account for that much,
    a file cut mid-stream (an interrupted download or copy) usually loses far more.
    """
    rate = float(stream.average_rate or stream.guessed_rate or 0)
    if stream.frames:
        declared, missing = float(stream.frames), float(stream.frames - n)
        what = f"{n} of the {stream.frames} frames the header declares decode"
    else:
        if first is None or rate <= 0 or stream.time_base is None:
            return ""
        if stream.duration:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration and len(container.streams) == 1:   # a container duration may be an audio track's
            seconds = container.duration / 1e6
        else:
            return ""
        covered = float((last - first) * stream.time_base) + 1.0 / rate
        declared, missing = seconds * rate, (seconds - covered) * rate
        what = f"decoded frames cover {covered:.3f} s of the {seconds:.3f} s the header declares"
    return f"{what} (~{math.floor(missing + 0.5)} frames missing)" if missing > max(2.0, 0.05 * declared) else ""


# ---------------------------------------------------------------- cache + parallel driver

def _load_cache(path: str) -> dict[tuple, list[tuple[str, str]]]:
    return jsonl_cache.read(path, CACHE_VERSION, lambda row: (tuple(row["key"]), [tuple(p) for p in row["problems"]]))


def _line(key: tuple, problems) -> str:
    return jsonl_cache.encode(CACHE_VERSION, {"key": list(key), "problems": [list(p) for p in problems]})


def _chunks(jobs: list[Job]) -> list[list[Job]]:
    """Folder jobs grouped into tasks of about BATCH_FILES frames (one DALI batch each); one video per task."""
    tasks, current, files = [], [], 0
    for job in jobs:
        if not job.files:
            tasks.append([job])
            continue
        if current and files + len(job.files) > BATCH_FILES:
            tasks.append(current)
            current, files = [], 0
        current.append(job)
        files += len(job.files)
    return tasks + ([current] if current else [])


def _run_task(task: list[Job]) -> list[tuple[Job, list[tuple[str, str]]]]:
    return check_folders(task) if task[0].files else check_video(task[0])


def decode_check(jobs: list[Job], cache_path: str, *, workers: int = 2,
                 progress: bool = False) -> dict[str, list[tuple[str, str]]]:
    """path -> problems for every job, decoding only those the cache does not hold; the cache is appended to as
    results arrive and rewritten compacted at the end."""
    cached = _load_cache(cache_path)
    result = {j.path: cached[j.key] for j in jobs if j.key in cached}
    todo = [j for j in jobs if j.key not in cached]
    tasks = _chunks(todo)
    bar = tqdm(total=len(jobs), initial=len(result), desc="decode", unit="entry", disable=not progress)
    with jsonl_cache.appending(cache_path) as cache:
        def sink(done):
            for job, problems in done:
                result[job.path] = problems
                cached[job.key] = problems
                cache.write(_line(job.key, problems))
            bar.update(len(done))
        for done in spawn_map(_run_task, tasks, workers if len(tasks) > 1 else 1, ordered=False):
            sink(done)
    bar.close()
    keep = {j.key for j in jobs}
    jsonl_cache.rewrite(cache_path, (_line(k, p) for k, p in cached.items() if k in keep))
    return result
