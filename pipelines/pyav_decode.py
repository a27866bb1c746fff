"""Frame-exact sparse decoding of one video file on the CPU with PyAV.

Frame index i means the i-th frame in *presentation* order, counted from 0. The map from index to
timestamp is built from the demuxed packets (`PacketTable`), never from fps arithmetic: H.264 with
B-frames stores packets in decode order, WebM rounds timestamps to 1 ms (33/34 ms steps at 30 fps)
and VFR files have no arithmetic at all, so `start + i / fps` would silently pick neighbours. The
table costs one demux pass (no decoding; a few ms for a 10 s clip) and is cached per process.

Decoding seeks to the keyframe at/before a target only when that keyframe lies after the current
decode position (otherwise decoding on is no more work), then decodes forward to the target's pts.
The seek target is the keyframe's pts (what the MP4/MKV/WebM demuxers index by); AVI demuxers index
by dts, so a seek that overshoots is retried at the keyframe's dts, then from the very start.

Packet pts map 1:1 to frames only for codecs with one picture per packet (`PTS_EXACT_CODECS`) in
containers that store real pts. AVI stores none: its demuxer invents pts = decode position, which
is wrong for H.264/HEVC with B-frames (checked: decoded pts come out 1,2,4,3,6,7,5,...). Those,
other codecs (MPEG-4 Part 2 with packed B-frames in AVI, e.g. UCF-101's XviD) and streams whose
packet pts are missing or repeat are decoded sequentially from the start, counting output frames:
exact by construction, cost linear in the largest index (fine for short clips).

Speed (measured, docs/PERFORMANCE_VIDEO.md): one container open per call (the packet table is demuxed from
the container that then decodes); one decoder thread (loader workers already fill the cores; slice threads
do nothing for one-slice pictures and frame threads cost more CPU per clip); on the way to a target,
H.264/HEVC pictures that no other picture references and that are not requested are not decoded at all
(`skip_frame`, set per packet); after the last target before a seek the decoder is drained instead of fed
further packets; only requested frames are converted to RGB, with one colour converter per call.
"""
from __future__ import annotations

import bisect
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from . import packed

PTS_EXACT_CODECS = frozenset({"h264", "hevc", "av1", "vp8", "vp9", "mjpeg"})
_REORDERING_CODECS = frozenset({"h264", "hevc"})  # B-frames: presentation order != decode order
_NO_PTS_CONTAINERS = frozenset({"avi"})  # demuxer fills pts from the packet's decode position
_TABLE_CACHE_SIZE = 256  # tables are small (8 bytes per frame); bounded so long runs stay flat
# Codecs whose decoder honours skip_frame="NONREF" by dropping exactly the pictures no other picture
# references (H.264 nal_ref_idc == 0, HEVC sub-layer non-reference NAL types). VP9 realtime streams
# refresh a reference with every frame, MJPEG/AV1 have nothing to skip: they decode everything.
_SKIP_NONREF_CODECS = frozenset({"h264", "hevc"})


class VideoDecodeError(RuntimeError):
    """A requested frame could not be produced; the message names the file and the index."""


class FrameIndexError(VideoDecodeError, IndexError):
    """A requested index is outside [0, num_frames)."""


@dataclass(frozen=True)
class DecodeOptions:
    """How `decode_sampled_frames` drives FFmpeg. The defaults are the fastest measured for TSN's sparse reads
    inside parallel loader workers (docs/PERFORMANCE_VIDEO.md); the others exist to measure them."""

    threads: int = 1             # decoder threads; 0 = FFmpeg's choice
    thread_type: str = "SLICE"   # "SLICE" | "FRAME" | "AUTO" (only matters with threads != 1)
    skip_nonref: bool = True     # H.264/HEVC: do not decode unrequested non-reference pictures
    drain: bool = True           # flush the decoder after the last target before a seek (see iter_frames)


DEFAULT_OPTIONS = DecodeOptions()


@dataclass(frozen=True)
class PacketTable:
    """What the demuxer says about the video stream, without decoding anything."""

    codec: str
    time_base: Fraction
    pts: np.ndarray        # (N,) int64, pts of non-empty video packets sorted = presentation order
    key_index: np.ndarray  # (K,) int64, presentation index of each keyframe, ascending
    key_dts: np.ndarray    # (K,) int64, min(pts, dts) of those keyframes: the dts-indexed seek target
    start_ts: int          # smallest pts/dts of any packet: seeking here restarts from the beginning
    num_packets: int       # non-empty video packets demuxed (== N when seekable)
    seekable: bool         # PTS_EXACT codec, real pts (not AVI+B-frames), all present and unique


def regular_table(table: PacketTable) -> list[int] | None:
    """A seekable table whose pts step evenly and whose keyframes recur every k frames (what `tsn prepare resize`
    writes, and constant-rate files from most encoders) as 9 integers, for the video index to keep: a read that is
    given it skips the demux pass (~1.5 ms per 10 s clip). None for any other table (it is demuxed per read)."""
    pts, keys = table.pts, table.key_index
    if not table.seekable or pts.size < 2 or keys.size == 0 or table.num_packets != pts.size:
        return None
    key_step = int(keys[1] - keys[0]) if keys.size > 1 else int(pts.size)
    tb = table.time_base
    regular = [tb.numerator, tb.denominator, int(pts[0]), int(pts[1] - pts[0]), int(pts.size), int(keys[0]),
               key_step, int(table.key_dts[0] - pts[keys[0]]), int(table.start_ts)]
    rebuilt = expand_table(regular, table.codec)   # kept only if it gives back every value exactly
    same = all(np.array_equal(getattr(rebuilt, f), getattr(table, f)) for f in ("pts", "key_index", "key_dts"))
    return regular if same else None


def expand_table(regular: Sequence[int], codec: str) -> PacketTable:
    """The PacketTable that `regular_table` described: pts0 + i*step for i < n, keyframes at key0 + j*key_step."""
    tb_num, tb_den, pts0, step, n, key0, key_step, shift, start = (int(v) for v in regular)
    pts = pts0 + step * np.arange(n, dtype=np.int64)
    keys = np.arange(key0, n, max(key_step, 1), dtype=np.int64)
    return PacketTable(codec=codec, time_base=Fraction(tb_num, tb_den), pts=pts, key_index=keys,
                       key_dts=pts[keys] + shift, start_ts=start, num_packets=n, seekable=True)


def open_video(path: str) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    container = av.open(packed.media(path), mode="r")
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{path}: no video stream")
    return container, container.streams.video[0]


def read_packet_table(container, stream) -> PacketTable:
    """Demux every packet of `stream` once. Stops quietly at a damaged tail (truncated files)."""
    rows = []  # (pts, dts, is_keyframe) per non-empty packet; the loop does no more (it runs per read)
    try:
        with closing(container.demux(stream)) as packets:
            for packet in packets:
                if packet.size:  # 0: the flush packet at EOF, or an empty placeholder (AVI drops)
                    rows.append((packet.pts, packet.dts, packet.is_keyframe))
    except av.error.FFmpegError:
        pass  # keep what was demuxed before the damage; decoding decides how much of it is usable
    count = len(rows)
    start = min((x for p, d, _ in rows for x in (p, d) if x is not None), default=None)
    pts = [p for p, _, _ in rows if p is not None]
    keys = [(p, p if d is None else min(p, d)) for p, d, key in rows if key and p is not None]
    arr = np.asarray(pts, dtype=np.int64)
    order = np.argsort(arr, kind="stable")
    sorted_pts = arr[order]
    unique = sorted_pts.size == 0 or bool(np.all(np.diff(sorted_pts) > 0))
    keys.sort()
    key_pts = np.asarray([k[0] for k in keys], dtype=np.int64)
    codec = stream.codec_context.name if stream.codec_context is not None else ""
    fake_pts = codec in _REORDERING_CODECS and bool(
        _NO_PTS_CONTAINERS & set(container.format.name.split(",")))
    return PacketTable(
        codec=codec,
        time_base=stream.time_base or Fraction(1, 1),
        pts=sorted_pts,
        key_index=np.searchsorted(sorted_pts, key_pts).astype(np.int64),
        key_dts=np.asarray([k[1] for k in keys], dtype=np.int64),
        start_ts=int(start or 0),
        num_packets=count,
        seekable=(codec in PTS_EXACT_CODECS and not fake_pts and unique and len(pts) == count
                  and len(keys) > 0),
    )


_tables: OrderedDict[tuple, PacketTable] = OrderedDict()


def _table_key(path: str) -> tuple:
    return (os.path.abspath(path), *packed.stat(path))


def packet_table(path: str, opened: tuple | None = None) -> PacketTable:
    """Per-process LRU cache keyed by (path, size, mtime) so an edited file is re-read. `opened`: a
    (container, stream) already open on `path` to demux on a cache miss instead of opening the file
    again (an open costs as much as decoding a frame or two); it is then left at the end of the file."""
    key = _table_key(path)
    if key in _tables:
        _tables.move_to_end(key)
        return _tables[key]
    if opened is not None:
        table = read_packet_table(*opened)
    else:
        container, stream = open_video(path)
        try:
            table = read_packet_table(container, stream)
        finally:
            container.close()
    _tables[key] = table
    while len(_tables) > _TABLE_CACHE_SIZE:
        _tables.popitem(last=False)
    return table


def clear_table_cache() -> None:
    """Forget every cached packet table (benchmarks: each read then pays its demux pass, as on real data)."""
    _tables.clear()


def iter_frames(container, stream, errors: list[str], keep: frozenset[int] | None = None,
                drain_after: frozenset[int] = frozenset()) -> Iterator[av.VideoFrame]:
    """Decode packet by packet; a packet the decoder rejects is recorded and skipped, so one bad
    packet does not end the stream (later frames may still decode). A fresh iterator is needed
    after every seek: a half-consumed one could still hold frames from before the seek.

    Two shortcuts, both only for one-picture-per-packet streams with real pts (`PacketTable.seekable`):
    `keep` (pts of the requested frames): every other packet is decoded with skip_frame="NONREF",
    so an unrequested picture that no other picture references costs nothing and produces no
    frame; reference pictures still decode (later pictures need them). Set per packet because the
    decoder reads it per picture (and with frame threads copies it with each packet).
    `drain_after` (pts): once all these packets are in (in decode order a later picture can come
    first), the decoder is flushed and the iterator ends, so a B-frame stream's reorder delay does
    not cost decoding the next pictures just to get the last of them out (for targets after which
    the caller seeks anyway; the seek resets the decoder)."""
    mode = None  # the skip_frame last set here; an earlier iterator may have left either value
    pending = set(drain_after)
    # Closed explicitly: PyAV's demux generator left unfinished (every read stops before the end of the file)
    # and then dropped keeps ~170 bytes of native memory each time, which grew loader workers by MiBs per epoch.
    packets = container.demux(stream)
    try:
        for packet in packets:
            if keep is not None:
                wanted = "DEFAULT" if packet.pts in keep else "NONREF"
                if wanted != mode:
                    stream.codec_context.skip_frame = mode = wanted
            try:
                yield from packet.decode()  # the size-0 packet at EOF flushes delayed frames
            except av.error.FFmpegError as exc:
                errors.append(f"pts={packet.pts}: {exc}")
            if pending and packet.pts in pending:
                pending.discard(packet.pts)
                if not pending:
                    yield from stream.codec_context.decode(None)
                    return
    except av.error.FFmpegError as exc:  # the demuxer itself failed: flush what the decoder holds
        errors.append(f"demux: {exc}")
        try:
            yield from stream.codec_context.decode(None)
        except av.error.FFmpegError:
            pass
    finally:
        packets.close()


def decode_sampled_frames(path: str, indices: Sequence[int], *, num_frames: int | None = None,
                          options: DecodeOptions = DEFAULT_OPTIONS) -> np.ndarray:
    """Frames `indices` (presentation order, 0-based) of `path` as (len(indices), H, W, 3) uint8 RGB,
    in request order (duplicates allowed). `num_frames` (a probe's `VideoInfo.num_frames`, which excludes an
    undecodable tail) bounds the valid range; without it the demuxed packet count is used."""
    frames = decode_frame_list(path, indices, num_frames=num_frames, options=options)
    if not frames:  # no index asked for: (0, H, W, 3)
        container, stream = open_video(path)
        with container:
            return np.zeros((0, stream.height, stream.width, 3), np.uint8)
    return np.stack(frames)


def decode_frame_list(path: str, indices: Sequence[int], *, num_frames: int | None = None,
                      options: DecodeOptions = DEFAULT_OPTIONS, table: PacketTable | None = None) -> list[np.ndarray]:
    """`decode_sampled_frames` as a list of (H, W, 3) uint8 arrays, one per index, each its own array (a repeated
    index is copied): what a reader hands on frame by frame, without the stack's copy of the whole clip (a fresh
    2.8 MB for 8 frames of 456x256, about a tenth of a TSN read's CPU time). `table`: this file's packet table
    from the video index (`expand_table`), instead of demuxing it here."""
    idx = [int(i) for i in indices]
    try:
        container, stream = open_video(path)
    except (OSError, av.error.FFmpegError) as exc:
        raise VideoDecodeError(f"{path}: cannot open: {exc}") from exc
    try:
        fresh = False
        if table is None:
            try:
                fresh = _table_key(path) not in _tables  # then the table is demuxed from `container`
                table = packet_table(path, opened=(container, stream))
            except (OSError, av.error.FFmpegError, VideoDecodeError) as exc:
                raise VideoDecodeError(f"{path}: cannot open: {exc}") from exc
        limit = table.num_packets if num_frames is None else num_frames
        if table.seekable:
            limit = min(limit, table.pts.size)  # a stale `num_frames` must not index past the table
        for i in idx:
            if not 0 <= i < limit:
                raise FrameIndexError(f"{path}: frame index {i} out of range [0, {limit})")
        targets = sorted(set(idx))
        if not targets:
            return []
        if not table.seekable and fresh:
            # Counting frames needs the very first packet; a seek back to the start is not exact in
            # every container these files come in (AVI), a fresh open is.
            container.close()
            container, stream = open_video(path)
        ctx = stream.codec_context
        if ctx is not None:  # before the first decode opens the codec (fixed from then on)
            ctx.thread_count, ctx.thread_type = options.threads, options.thread_type
        rgb = _converter()
        try:
            if table.seekable:
                skip = options.skip_nonref and table.codec in _SKIP_NONREF_CODECS
                got = _decode_seeking(path, container, stream, table, targets, rgb, skip, options.drain)
            else:
                got = _decode_sequential(path, container, stream, targets, rgb)
        except av.error.FFmpegError as exc:  # seek or colour conversion failed
            raise VideoDecodeError(f"{path}: decoding frames {targets} failed: {exc}") from exc
        shapes = {a.shape for a in got.values()}
        if len(shapes) != 1:
            raise VideoDecodeError(f"{path}: frame size changes mid-stream {sorted(shapes)}")
        out, seen = [], set()
        for i in idx:
            out.append(got[i].copy() if i in seen else got[i])
            seen.add(i)
        return out
    finally:
        container.close()


def _converter():
    """frame -> (H, W, 3) uint8 RGB, the same pixels as `frame.to_ndarray(format="rgb24")`, with one
    swscale context reused across the call's frames (to_ndarray builds one per frame) and one thread
    (swscale's automatic threads compete with the other loader workers for the same cores)."""
    reformatter = VideoReformatter()
    return lambda frame: reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()


def _decode_seeking(path, container, stream, table: PacketTable, targets, rgb, skip: bool,
                    drain_runs: bool) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    errors: list[str] = []
    target_pts = table.pts[targets].tolist()                                # ascending, like targets
    keep = frozenset(target_pts) if skip else None
    # Per target: ks, the number of the keyframe at/before it (-1: none), key_of, that keyframe's index.
    ks = np.searchsorted(table.key_index, targets, side="right") - 1
    key_of = np.where(ks >= 0, table.key_index[np.maximum(ks, 0)], -1)
    # Targets after which decoding stops: the last, and any whose successor starts from a later keyframe
    # (the loop below seeks for it).
    drain = [p for p, t, after in zip(target_pts, targets, [*key_of[1:].tolist(), None])
             if after is None or after > t]
    frames: Iterator | None = None
    pos = -1  # presentation index of the last frame the decoder produced (-1: not started)
    by_dts = False  # set once a pts seek overshot: this demuxer indexes by dts (AVI)
    for t, want, k, key in zip(targets, target_pts, ks.tolist(), key_of.tolist()):
        must_seek = frames is None or (k >= 0 and key > pos)   # k: keyframe number at/before t
        frame = None if must_seek else _advance(frames, want)
        if frame is None:  # seek; an overshoot (first frame already past the target) falls back
            plans = ["start"] if k < 0 else (["dts", "start"] if by_dts else ["pts", "dts", "start"])
            for how in plans:
                _seek(container, stream, table, k, how)
                # This run decodes the targets from here to the next drain target, then drains
                # (after a fallback seek to an earlier position, earlier targets' packets come
                # by again: they are not waited for).
                end = drain[bisect.bisect_left(drain, want)]
                run = frozenset(target_pts[bisect.bisect_left(target_pts, want):bisect.bisect_right(target_pts, end)])
                frames = iter_frames(container, stream, errors, keep, run if drain_runs else frozenset())
                frame = _advance(frames, want)
                if frame is not None:
                    by_dts = by_dts or how == "dts"
                    break
        if frame is None:
            detail = f"; decoder errors: {errors[-3:]}" if errors else ""
            raise VideoDecodeError(f"{path}: frame {t} (pts {want}) was not produced{detail}")
        out[t] = rgb(frame)
        pos = t
    return out


def _seek(container, stream, table: PacketTable, k: int, how: str) -> None:
    """Seek to keyframe k by its "pts" or "dts", or to the "start". MP4 and MKV demuxers index by
    pts (checked: seeking to a B-frame stream's keyframe dts lands one GOP early); AVI by dts.
    A fresh `iter_frames` must follow (the seek flushes the decoder)."""
    if how == "pts":
        target = int(table.pts[table.key_index[k]])
    else:
        target = int(table.key_dts[k]) if how == "dts" else table.start_ts
    container.seek(target, backward=True, any_frame=False, stream=stream)


def _advance(frames: Iterator, want: int) -> av.VideoFrame | None:
    """Decode on until the frame whose pts is `want`; None if a later pts shows up first or the
    stream ends (the target was skipped, e.g. the seek overshot or its packet is damaged)."""
    for frame in frames:
        if frame.pts is None or frame.pts < want:
            continue
        return frame if frame.pts == want else None
    return None


def _decode_sequential(path, container, stream, targets, rgb) -> dict[int, np.ndarray]:
    """Fallback for streams without usable packet pts: count frames from the start, no seeking (and
    no skipping: a skipped picture would not be counted)."""
    out: dict[int, np.ndarray] = {}
    errors: list[str] = []
    wanted, last = set(targets), targets[-1]
    for n, frame in enumerate(iter_frames(container, stream, errors)):
        if n in wanted:
            out[n] = rgb(frame)
        if n >= last:
            break
    missing = wanted - out.keys()
    if missing:
        raise VideoDecodeError(f"{path}: frame {min(missing)} was not produced (stream ended early; "
                               f"decoder errors: {errors[-3:]})")
    return out
