"""Probe video files once (frame count, fps, VFR, codec, GOP, NVDEC support) and cache the result.

Frame count (`count="auto"`, the default): demux every packet (reads the file once, no decoding),
count the non-empty video packets, then decode the last GOP to prove the tail is intact.
  * Packets == frames holds for codecs with exactly one displayed picture per packet
    (`pyav_decode.PTS_EXACT_CODECS`): H.264/HEVC/AV1 access units in MP4/MKV, VP8/VP9 in WebM (a
    superframe bundles the hidden alt-ref with its one shown frame), MJPEG. It is also what DALI's
    `fn.decoders.video` counts when the header has no nb_frames, so our bounds and DALI's agree.
  * It is not reliable for MPEG-4 Part 2 (an FFmpeg-muxed AVI with B-frames showed 301 packets for
    300 frames; DivX "packed B-frames" put two pictures in one packet) nor for other codecs, nor
    when packet pts are missing or repeat. Those get a full decode that counts output frames --
    the same count `decode_sampled_frames`' sequential path uses -- as does any file failing the tail check.
  * A damaged file reports `num_frames` = the longest run of frames, from frame 0 in presentation
    order, that all decode; status stays "ok" and `reason` says what was lost. A truncated MP4
    whose moov atom is at the end (most muxers' default) cannot be opened at all: "unreadable".
  * `count="decode"` forces the full decode (slower; a complete integrity check for a scanner).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

import av
import numpy as np
from tqdm import tqdm

from pipelines import jsonl_cache, packed
from pipelines.pyav_decode import (
    VideoDecodeError,
    expand_table,
    iter_frames,
    open_video,
    read_packet_table,
    regular_table,
)
from pipelines.spawn import spawn_map
from pipelines.timeout import DecodeTimeout, call_with_timeout

INDEX_VERSION = 1  # bump when probe semantics change: cached lines of another version are re-probed
# NVDEC (DALI "mixed") rule, from NVIDIA's Video Codec SDK (NVDEC Video Decoder API Programming Guide, chapter 2
# "Video Decoder Capabilities", Table 1; NVDEC Application Note, "NVDEC Hardware Capabilities") and DALI's
# FramesDecoderGpu, which refuses a stream outside cuvidGetDecoderCaps' limits ("Video is too small in at least one
# dimension"):
#  * 8-bit 4:2:0 only (H.264 4:2:2/4:4:4 fail before Blackwell; 10-bit not relied on here);
#  * per codec a minimum and a maximum coded size (below). DALI 2.4 queries the decoder (cuvidGetDecoderCaps) inside
#    its operator but exposes no capability query in Python, so these are the documented values; the GPU check
#    compares them with the device's own and decodes a VP9 file below the minimum (docs/GPU_CHECK.md, nvdec);
#  * AV1 only on GA10x/Ada/Blackwell: not on GA100 (A100) or Hopper (H100/H200/GH200), so it is
#    accepted only when the caller names a GPU that has it;
#  * MJPEG is left out although DALI maps it to cudaVideoCodec_JPEG: not verified; it decodes on CPU.
# codec -> ((min width, min height), max width and height)
_NVDEC_LIMITS = {"h264": ((48, 16), 4096), "hevc": ((144, 144), 8192), "vp8": ((48, 16), 4096),
                 "vp9": ((128, 128), 8192), "av1": ((128, 128), 8192), "mpeg4": ((48, 16), 2032)}
_NVDEC_420_8BIT = frozenset({"yuv420p", "yuvj420p", "nv12"})
_NO_AV1_GPUS = ("A100", "A30", "H100", "H200", "H800", "GH200")


@dataclass(frozen=True)
class VideoInfo:
    path: str
    status: str            # "ok" | "missing" | "unreadable" | "zero_frames" | "unsupported"
    reason: str            # "" for a clean file; why not ok, or what an "ok" damaged file lost
    num_frames: int        # frames 0..num_frames-1 (presentation order) all decode (see module doc)
    fps: float             # nominal rate for CFR, mean rate (frames / span) for VFR; 0.0 if unknown
    vfr: bool              # pts steps differ by more than timestamp rounding (1 tick or 1 %)
    codec: str             # FFmpeg codec name: "h264", "vp9", "mpeg4", "mjpeg", ...
    pix_fmt: str
    width: int
    height: int
    keyframe_interval: float  # num_frames / keyframes among them: the mean GOP length in frames
    size_bytes: int
    mtime_ns: int
    # The packet table as 9 numbers when it is regular (pyav_decode.regular_table: even pts steps, a keyframe every
    # k frames, as `tsn prepare resize` writes): the PyAV reader then skips its demux pass. None: demuxed per read.
    packets: list[int] | None = None

    @property
    def nvdec_ok(self) -> bool:
        """nvdec_supports(codec, pix_fmt, width, height) with no GPU named: derived, never cached, so an index
        written under older NVDEC limits is judged by the current ones."""
        return nvdec_supports(self.codec, self.pix_fmt, self.width, self.height)


def nvdec_min_size(codec: str) -> tuple[int, int] | None:
    """NVDEC's smallest coded (width, height) for `codec` (FFmpeg's name); None for a codec never sent to NVDEC."""
    limits = _NVDEC_LIMITS.get(codec)
    return limits[0] if limits else None


def nvdec_supports(codec: str, pix_fmt: str, width: int, height: int, gpu_name: str | None = None) -> bool:
    """Whether DALI's mixed video decoder (NVDEC) takes this stream; a loader sends the others to a CPU decoder."""
    if codec not in _NVDEC_LIMITS or pix_fmt not in _NVDEC_420_8BIT:
        return False
    if codec == "av1" and (gpu_name is None or any(g in gpu_name.upper() for g in _NO_AV1_GPUS)):
        return False
    (min_w, min_h), max_side = _NVDEC_LIMITS[codec]
    return min_w <= width <= max_side and min_h <= height <= max_side


def _info(path, status, reason, size=0, mtime=0, **kw) -> VideoInfo:
    base = {"num_frames": 0, "fps": 0.0, "vfr": False, "codec": "", "pix_fmt": "", "width": 0,
            "height": 0, "keyframe_interval": 0.0}
    base.update(kw)
    return VideoInfo(path=path, status=status, reason=reason, size_bytes=size, mtime_ns=mtime, **base)


def probe_video(path: str, *, count: str = "auto") -> VideoInfo:
    """Never raises for bad files; bounded work: one demux pass plus at most one full decode."""
    path = str(path)
    try:
        size, mtime = packed.stat(path)
    except FileNotFoundError:
        return _info(path, "missing", "file not found")
    except OSError as exc:
        return _info(path, "unreadable", f"cannot stat: {exc}")
    if packed.split(path) is None and not os.path.isfile(path):
        return _info(path, "unreadable", "not a regular file", size, mtime)
    if size == 0:
        return _info(path, "unreadable", "empty file (0 bytes)", size, mtime)
    try:
        container, stream = open_video(path)
    except (av.error.FFmpegError, OSError, VideoDecodeError) as exc:
        return _info(path, "unreadable", f"cannot open: {exc}", size, mtime)
    try:
        return _probe_open(path, container, stream, count, size, mtime)
    except Exception as exc:
        return _info(path, "unreadable", f"probe failed: {type(exc).__name__}: {exc}", size, mtime)
    finally:
        container.close()


def _probe_open(path, container, stream, count, size, mtime) -> VideoInfo:
    ctx = stream.codec_context
    codec = ctx.name if ctx is not None else str(getattr(stream, "codec_tag", "") or "")
    meta = {"codec": codec, "pix_fmt": (ctx.pix_fmt if ctx is not None else "") or "",
            "width": stream.width or 0, "height": stream.height or 0}
    if ctx is None:
        return _info(path, "unsupported", f"no FFmpeg decoder for codec {codec!r}", size, mtime, **meta)
    table = read_packet_table(container, stream)
    if table.num_packets == 0:
        return _info(path, "zero_frames", "video stream has no packets", size, mtime, **meta)
    errors: list[str] = []
    trusted = count == "auto" and table.seekable and _tail_decodes(container, stream, table)
    if trusted:
        num, reason = table.num_packets, ""
    else:
        try:
            num = _count_decoded(path, table, errors)
        except av.error.DecoderNotFoundError as exc:
            return _info(path, "unsupported", f"no decoder: {exc}", size, mtime, **meta)
        reason = "" if num >= table.num_packets else (
            f"only frames 0..{num - 1} of {table.num_packets} decode ({'; '.join(errors[-2:])})")
    if num == 0:
        return _info(path, "unreadable", f"no frame decodes ({'; '.join(errors[-2:])})", size, mtime, **meta)
    pts = table.pts[:num]
    if not table.seekable and not bool(np.all(np.diff(pts) > 0)):
        pts = pts[:0]  # no usable timestamps: fps falls back to the header rate
    fps, vfr = _rate(pts, float(table.time_base), stream)
    keys = int(np.count_nonzero(table.key_index < num)) if table.seekable else len(table.key_index)
    regular = regular_table(table) if trusted else None     # only a table every frame of which decodes
    return _info(path, "ok", reason, size, mtime, num_frames=int(num), fps=fps, vfr=vfr,
                 keyframe_interval=num / max(keys, 1), packets=regular, **meta)


def _tail_decodes(container, stream, table) -> bool:
    """Decode from the last keyframe to EOF: every packet pts from there must come out, error-free."""
    first = int(table.key_index[-1])
    container.seek(int(table.pts[first]), backward=True, any_frame=False, stream=stream)
    errors: list[str] = []
    got = {f.pts for f in iter_frames(container, stream, errors)}
    return not errors and all(int(p) in got for p in table.pts[first:])


def _count_decoded(path, table, errors: list[str]) -> int:
    container, stream = open_video(path)  # fresh open: decode from the very first packet
    try:
        if not table.seekable:
            return sum(1 for _ in iter_frames(container, stream, errors))
        got = {f.pts for f in iter_frames(container, stream, errors)}
    finally:
        container.close()
    present = np.fromiter((int(p) in got for p in table.pts), bool, table.pts.size)
    return int(present.size if present.all() else np.argmin(present))  # leading run that decodes


def _rate(pts: np.ndarray, tb: float, stream) -> tuple[float, bool]:
    nominal = float(stream.guessed_rate or stream.average_rate or 0)
    if pts.size < 2 or tb <= 0:
        return nominal, False
    steps = np.diff(pts)
    vfr = bool(steps.max() - steps.min() > max(1.0, 0.01 * float(np.median(steps))))
    mean = (pts.size - 1) / (float(pts[-1] - pts[0]) * tb)
    if not vfr and nominal > 0 and abs(nominal - mean) <= 0.01 * mean:
        return nominal, False  # exact rational rate (e.g. 30000/1001) instead of a rounded mean
    return float(mean), vfr


def packet_tables(infos: dict[str, VideoInfo]) -> dict[str, tuple[str, bytes]]:
    """path -> (codec, regular packet table as int64 bytes) of the readable videos whose entry has one: what the PyAV
    reader is given (pipelines/readers.py); bytes, because a list of 9 ints costs ~3x the memory per video."""
    return {p: (i.codec, np.asarray(i.packets, np.int64).tobytes()) for p, i in infos.items()
            if i.status == "ok" and i.packets}


def indexed_table(tables: dict[str, tuple[str, bytes]], path: str):
    """The PacketTable that `packet_tables` keeps for `path` (pyav_decode.PacketTable), or None: the read demuxes."""
    known = tables.get(path)
    return None if known is None else expand_table(np.frombuffer(known[1], np.int64), known[0])


# ---------------------------------------------------------------- cache (JSON lines beside the list)

def index_path_for(list_path: str) -> str:
    return f"{list_path}.index.jsonl"


def load_index(cache_path: str) -> dict[str, VideoInfo]:
    """Later lines win (the file is appended to while probing); unparsable lines are ignored."""
    names = {f.name for f in fields(VideoInfo)}

    def parse(row: dict) -> tuple[str, VideoInfo]:
        row.pop("nvdec_ok", None)       # an index from before it was derived (VideoInfo.nvdec_ok) stored it
        if set(row) - {"packets"} != names - {"packets"}:    # an index from before `packets` loads without it
            raise KeyError("not a VideoInfo of this version")
        return row["path"], VideoInfo(**row)

    return jsonl_cache.read(cache_path, INDEX_VERSION, parse)


def _line(info: VideoInfo) -> str:
    return jsonl_cache.encode(INDEX_VERSION, asdict(info))


def _probe_one(job: tuple[str, float | None]) -> VideoInfo:
    path, timeout_s = job
    try:
        return call_with_timeout(probe_video, timeout_s, path, label=path)
    except DecodeTimeout as exc:
        return _info(path, "unreadable", str(exc))


def _probe_all(paths: list[str], workers: int, progress: bool, timeout_s, sink) -> None:
    """Probe `paths` (in `workers` processes when worth it), calling `sink(info)` for each."""
    jobs = [(p, timeout_s) for p in paths]
    if workers <= 1 or len(jobs) < 4 * workers:     # a pool's start-up costs more than it saves
        workers = 1
    results = spawn_map(_probe_one, jobs, workers, chunksize=max(1, min(64, len(jobs) // (workers * 8))))
    for info in tqdm(results, total=len(jobs), desc="probe videos", unit="file", disable=not progress):
        sink(info)


def build_index(paths: list[str], cache_path: str | None, *, workers: int = 2, progress: bool = True,
                timeout_s: float | None = 120.0) -> dict[str, VideoInfo]:
    """path -> VideoInfo for every path. Entries in `cache_path` whose (size_bytes, mtime_ns) match
    the file on disk are reused; new or changed files are probed in `workers` processes and
    appended to the cache as they finish (an interrupted run resumes); missing files are reported
    as "missing" without probing. At the end the cache is rewritten, compacted, atomically.
    cache_path None: probe every file, cache nothing (one video given to `tsn predict`)."""
    cached = load_index(cache_path) if cache_path else {}
    result: dict[str, VideoInfo] = {}
    todo: list[str] = []
    for p in dict.fromkeys(str(p) for p in paths):
        try:
            st = packed.stat(p)
        except OSError:
            result[p] = _info(p, "missing", "file not found")
            continue
        hit = cached.get(p)
        if hit is not None and (hit.size_bytes, hit.mtime_ns) == st:
            result[p] = hit
        else:
            todo.append(p)
    if todo and not cache_path:
        _probe_all(todo, workers, progress, timeout_s, lambda info: result.__setitem__(info.path, info))
    elif todo:
        with jsonl_cache.appending(cache_path) as cache:
            def sink(info: VideoInfo) -> None:
                result[info.path] = info
                cache.write(_line(info))
            _probe_all(todo, workers, progress, timeout_s, sink)
    if cache_path:
        jsonl_cache.rewrite(cache_path, (_line(result[p]) for p in result if result[p].status != "missing"))
    return {str(p): result[str(p)] for p in paths}
