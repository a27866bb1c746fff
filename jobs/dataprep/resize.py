"""`tsn prepare resize`: re-encode videos for fast random access by the GPU decoder.

Output: H.264 in MP4, yuv420p, even width/height, constant frame rate, a keyframe every `gop`
frames with closed GOPs and no scene-cut keyframes (so the distance to the previous keyframe is
bounded: TSN reads a few frames spread over the whole video, and each read decodes from the
keyframe before it), no audio. Bicubic scaling, like ffmpeg's default in MMAction2's resize_videos.py.

x264's `tune=fastdecode` by default (CAVLC instead of CABAC, no deblocking, no weighted prediction):
measured on textured 456x256 footage at CRF 23, the CPU decoder needs ~40% less time per TSN clip at
the same PSNR (-0.04 dB) for ~9% larger files (docs/PERFORMANCE_VIDEO.md). B-frames stay on (the
preset's): the CPU reader skips the unreferenced ones, and without them files grow 17% at 0.6 dB less.
`b-pyramid=none` makes every B-frame unreferenced (the preset's pyramid makes one B-frame in each group a
reference): a read then decodes only the I/P chain up to its target, ~25% less CPU per TSN clip for ~1% more
disk at the same PSNR (docs/PERFORMANCE_VIDEO.md).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from jobs.dataprep.runner import Task
from jobs.dataprep.videoio import Resize, target_size, temp_path
from pipelines.workers import unfinished


@dataclass(frozen=True)
class EncodeOptions:
    resize: Resize
    fps: Fraction | None = None  # None: keep the source's average rate
    gop: int = 16
    crf: int = 23
    preset: str = "veryfast"
    tune: str | None = "fastdecode"  # an x264 --tune; None: the preset alone


def _open_output(path: Path, rate: Fraction, size: tuple[int, int], opts: EncodeOptions):
    import av

    out = av.open(str(path), "w", format="mp4")
    stream = out.add_stream("libx264", rate=rate)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.codec_context.gop_size = opts.gop
    stream.options = {
        "preset": opts.preset,
        "crf": str(opts.crf),
        "x264-params": f"keyint={opts.gop}:min-keyint={opts.gop}:scenecut=0:open-gop=0:b-pyramid=none",
        **({"tune": opts.tune} if opts.tune else {}),
    }
    return out, stream


def _frame_index(time: float | None, origin: list[float], next_index: int, rate: Fraction) -> int:
    """Output slot of a frame shown at `time` s: frames are re-timed onto the constant-rate grid
    (late frames fill gaps by repeating the previous one, early ones are dropped), like ffmpeg -vsync cfr.
    A jump of more than 2 s is a broken timestamp, not a real gap: it is closed instead of filled."""
    if time is None:
        return next_index
    if not origin:
        origin.append(time)
    index = round((time - origin[0]) * rate)
    if index - next_index > 2 * rate:
        origin[0] += (index - next_index) / rate
        index = next_index
    return index


def resize_video(task: Task, opts: EncodeOptions) -> None:
    """Re-encode `task.src` to `task.dst` (written under a temp name, renamed when complete)."""
    import av

    tmp = temp_path(task.dst)
    unfinished(tmp)                 # removed even if this worker is killed mid-task (pipelines/workers.py)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        with av.open(str(task.src)) as inp:
            if not inp.streams.video:
                raise ValueError("no video stream")
            src = inp.streams.video[0]
            src.thread_type = "AUTO"
            rate = Fraction(opts.fps or src.average_rate or src.guessed_rate or 30)
            size = target_size(src.codec_context.width, src.codec_context.height, opts.resize, even=True)
            out, stream = _open_output(tmp, rate, size, opts)
            with out:
                origin: list[float] = []
                next_index, previous = 0, None
                for frame in inp.decode(src):
                    index = _frame_index(frame.time, origin, next_index, rate)
                    if index < next_index:
                        continue
                    image = frame.reformat(width=size[0], height=size[1], format="yuv420p",
                                           interpolation="BICUBIC")
                    # The decoder marks the source's keyframes I, and libx264 forces a keyframe on an I frame:
                    # the source's GOP would break the fixed one (a keyframe at frame 250 of a GOP-250 source).
                    image.pict_type = av.video.frame.PictureType.NONE
                    for slot in range(next_index, index + 1):
                        filler = image if slot == index or previous is None else previous
                        filler.pts, filler.time_base = slot, 1 / rate  # the source's time base no longer applies
                        out.mux(stream.encode(filler))
                    next_index, previous = index + 1, image
                if next_index == 0:
                    raise ValueError("no frames could be decoded")
                out.mux(stream.encode(None))
        os.replace(tmp, task.dst)
    finally:
        tmp.unlink(missing_ok=True)
