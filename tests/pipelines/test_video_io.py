"""Video-file I/O: probing + index cache, frame-exact sparse PyAV decoding, decode timeout."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipelines import pyav_decode, video_index
from pipelines.pyav_decode import (
    DecodeOptions,
    FrameIndexError,
    VideoDecodeError,
    decode_frame_list,
    decode_sampled_frames,
)
from pipelines.timeout import DecodeTimeout, abandoned_calls, call_with_timeout, end_idle_threads
from pipelines.video_index import build_index, load_index, probe_video

N, W, H, FPS = 60, 96, 64, 30
SCATTERED = [59, 0, 31, 31, 12, 47, 1]


def frame_image(i: int) -> np.ndarray:
    """(H, W, 3) uint8: frame number i as 6 bars of 16 px (bit b set -> white bar b), a red level
    that steps with i in the top half, and a horizontal blue ramp in the bottom half."""
    img = np.zeros((H, W, 3), np.uint8)
    for b in range(6):
        if (i >> b) & 1:
            img[:, b * 16:(b + 1) * 16] = 255
    img[: H // 2, :, 0] = np.maximum(img[: H // 2, :, 0], (i * 4) % 256)
    img[H // 2:, :, 2] = np.linspace(0, 255, W, dtype=np.uint8)[None, :]
    return img


def write_video(path: Path, codec: str, *, options=None, container_options=None, pix_fmt="yuv420p",
                gop=12, pts_ms=None) -> Path:
    with av.open(str(path), "w", options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=FPS, options=options or {})
        stream.width, stream.height, stream.pix_fmt = W, H, pix_fmt
        stream.codec_context.gop_size = gop
        if pts_ms is not None:  # irregular timestamps -> a variable-frame-rate file
            stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(frame_image(i), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    x264 = {"x264-params": "keyint=12:min-keyint=12:scenecut=0:bframes=2", "preset": "fast"}
    steps = np.resize([20, 33, 50, 33], N - 1)
    v = {
        "h264": write_video(d / "h264.mp4", "libx264", options=x264),
        "h264_faststart": write_video(d / "h264_fs.mp4", "libx264", options=x264,
                                      container_options={"movflags": "faststart"}),
        "vp9": write_video(d / "vp9.webm", "libvpx-vp9", gop=10, options={
            "g": "10", "keyint_min": "10", "deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}),
        "mjpeg": write_video(d / "mjpeg.avi", "mjpeg", pix_fmt="yuvj420p"),
        # AVI has no pts: with B-frames these take the sequential (count output frames) path
        "h264_avi": write_video(d / "h264.avi", "libx264", options=x264),
        "mpeg4_avi": write_video(d / "mpeg4.avi", "mpeg4", options={
            "bf": "2", "g": "12", "sc_threshold": "1000000000"}),
        # HEVC with B-frames: the other codec whose unreferenced pictures decode_sampled_frames skips
        "hevc": write_video(d / "hevc.mp4", "libx265", options={
            "x265-params": "keyint=12:min-keyint=12:scenecut=0:bframes=3:log-level=error", "preset": "fast"}),
        "vfr": write_video(d / "vfr.mkv", "libx264", options=x264,
                           pts_ms=np.concatenate([[0], np.cumsum(steps)]).tolist()),
    }
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video\n" * 20)
    for name in ("h264", "h264_faststart"):
        data = v[name].read_bytes()
        (d / f"cut_{v[name].name}").write_bytes(data[: len(data) // 2])
    v.update(empty=d / "empty.mp4", text=d / "text.mp4", cut_h264=d / "cut_h264.mp4",
             cut_h264_faststart=d / "cut_h264_fs.mp4", missing=d / "missing.mp4")
    return v


def full_decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_h264_fixture_has_b_frames(videos):
    with av.open(str(videos["h264"])) as c:
        pts = [p.pts for p in c.demux(video=0) if p.size]
    assert len(pts) == N and pts != sorted(pts)  # decode order != presentation order


@pytest.mark.parametrize("name", ["h264", "vp9", "mjpeg", "vfr", "h264_avi", "mpeg4_avi"])
def test_decode_frames_is_frame_exact(videos, name):
    ref = full_decode(videos[name])
    assert ref.shape == (N, H, W, 3)
    # the pattern makes every frame distinct, so an off-by-one would be caught
    assert all(not np.array_equal(ref[i], ref[i + 1]) for i in range(N - 1))
    out = decode_sampled_frames(str(videos[name]), SCATTERED)
    assert out.shape == (len(SCATTERED), H, W, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, ref[SCATTERED])
    rng = np.random.default_rng(1)
    for _ in range(5):
        idx = rng.integers(0, N, size=9).tolist()
        np.testing.assert_array_equal(decode_sampled_frames(str(videos[name]), idx), ref[idx])
    # The reader's form: one array per index; a repeated index is its own copy (a view cut from one must not
    # see another's writes).
    frames = decode_frame_list(str(videos[name]), SCATTERED)
    assert len(frames) == len(SCATTERED)
    for got, i in zip(frames, SCATTERED):
        np.testing.assert_array_equal(got, ref[i])
    assert not np.shares_memory(frames[2], frames[3])            # SCATTERED[2] == SCATTERED[3]


@pytest.mark.parametrize("name,gop", [("h264", 12), ("vp9", 10)])
def test_decode_frames_seeks_instead_of_decoding_from_start(videos, name, gop, monkeypatch):
    produced = []
    real = pyav_decode.iter_frames

    def counting(*args):
        for frame in real(*args):
            produced.append(frame.pts)
            yield frame

    monkeypatch.setattr(pyav_decode, "iter_frames", counting)
    decode_sampled_frames(str(videos[name]), [N - 2])
    assert 0 < len(produced) <= gop  # one GOP at most, not the 59 frames before it


@pytest.mark.parametrize("options", [
    DecodeOptions(), DecodeOptions(skip_nonref=False), DecodeOptions(drain=False),
    DecodeOptions(skip_nonref=False, drain=False), DecodeOptions(threads=2, thread_type="FRAME"),
], ids=repr)
@pytest.mark.parametrize("name", ["h264", "vfr", "hevc"])
def test_decode_frames_is_frame_exact_with_every_option(videos, name, options):
    ref = full_decode(videos[name])
    rng = np.random.default_rng(2)
    for idx in [SCATTERED, [11, 23, 35, 47, 59], [5, 6, 7], *(rng.integers(0, N, size=12).tolist() for _ in range(4))]:
        np.testing.assert_array_equal(decode_sampled_frames(str(videos[name]), idx, options=options), ref[idx])


def test_decode_frames_does_not_decode_pictures_no_target_needs(videos, monkeypatch):
    """Targets at the end of each 12-frame GOP. Decoding everything produces all 60 pictures. Draining the decoder
    once a GOP's target packet is in drops the B-frames stored after it (they show before it, no target needs
    them); skipping unrequested non-reference pictures (20 of the fixture's 60) drops more. Same pixels each time
    (test_decode_frames_is_frame_exact_with_every_option)."""
    produced = []
    real = pyav_decode.iter_frames

    def counting(*args):
        for frame in real(*args):
            produced.append(frame.pts)
            yield frame

    monkeypatch.setattr(pyav_decode, "iter_frames", counting)
    path, idx = str(videos["h264"]), [11, 23, 35, 47, 59]
    counts = []
    for options in (DecodeOptions(skip_nonref=False, drain=False), DecodeOptions(skip_nonref=False), DecodeOptions()):
        produced.clear()
        decode_sampled_frames(path, idx, options=options)
        counts.append(len(produced))
    assert counts[0] == N and counts[0] > counts[1] > counts[2]


def test_decode_frames_survives_a_lying_keyframe_index(videos, monkeypatch):
    """Claimed keyframes that are not keyframes, and a seek that overshoots its target, must
    still give the exact frames (backward seek + the replay-from-start fallback)."""
    path = str(videos["h264"])
    ref = full_decode(videos["h264"])
    real_table = pyav_decode.packet_table(path)
    monkeypatch.setattr(pyav_decode, "packet_table", lambda p, opened=None: dataclasses.replace(
        real_table, key_index=np.arange(N, dtype=np.int64), key_dts=real_table.pts))
    # ^ "every frame is a keyframe"
    np.testing.assert_array_equal(decode_sampled_frames(path, SCATTERED), ref[SCATTERED])

    real_seek = pyav_decode._seek
    calls = []

    def overshooting_seek(container, stream, table, k, how):
        calls.append(how)
        return real_seek(container, stream, table, N - 1 if len(calls) == 1 else k, how)

    monkeypatch.setattr(pyav_decode, "_seek", overshooting_seek)
    np.testing.assert_array_equal(decode_sampled_frames(path, [5, 6]), ref[[5, 6]])
    assert calls[:2] == ["pts", "dts"]  # the overshoot was retried at the keyframe's dts


def test_decode_frames_errors_name_file_and_index(videos):
    path = str(videos["h264"])
    for bad in (N, -1):
        with pytest.raises(FrameIndexError, match=rf"h264\.mp4.*index {bad}"):
            decode_sampled_frames(path, [0, bad])
    for name in ("missing", "text", "empty"):
        with pytest.raises(VideoDecodeError, match=videos[name].name):
            decode_sampled_frames(str(videos[name]), [0])
    assert decode_sampled_frames(path, []).shape == (0, H, W, 3)


def test_dali_cpu_decoder_matches_decode_frames(videos):
    from nvidia.dali import fn, pipeline_def, types

    path = str(videos["vp9"])

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        enc = fn.external_source(name="enc", dtype=types.UINT8, ndim=1)
        return fn.decoders.video(enc, device="cpu", frames=SCATTERED, pad_mode="none")

    p = pipe()
    p.build()
    p.feed_input("enc", [np.fromfile(path, np.uint8)])
    (out,) = p.run()
    dali = np.asarray(out.as_array())[0]
    ours = decode_sampled_frames(path, SCATTERED)
    assert dali.shape == ours.shape
    per_frame = np.abs(dali.astype(np.int16) - ours.astype(np.int16)).mean(axis=(1, 2, 3))
    assert per_frame.max() <= 2.0, per_frame  # colour-conversion differences only
    # and each DALI frame is closer to the requested frame than to its neighbours
    ref = full_decode(videos["vp9"]).astype(np.int16)
    for k, i in enumerate(SCATTERED):
        dist = np.abs(ref - dali[k].astype(np.int16)).mean(axis=(1, 2, 3))
        assert int(np.argmin(dist)) == i


def _heap_in_use() -> int | None:
    """Bytes glibc's malloc holds for live allocations (mallinfo2: arenas + mmapped chunks); None off glibc."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                   "fsmblks", "uordblks", "fordblks", "keepcost")]
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
    except (OSError, AttributeError):
        return None
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


@pytest.mark.parametrize("name", ["h264", "vp9"])
def test_sparse_reads_keep_native_memory_flat(videos, name):
    """Every read stops demuxing before the end of the file; PyAV's demux generator dropped unfinished kept ~170
    bytes of native memory per read (and per seek), so loader workers grew by MiBs per epoch. 300 more reads of
    4 seeks each must leave malloc's live bytes where they were (a leak of that size would add ~200 KB)."""
    if _heap_in_use() is None:
        pytest.skip("needs glibc's mallinfo2")
    rng = np.random.default_rng(0)
    draws = [np.sort(rng.choice(N, 4, replace=False)) for _ in range(400)]
    for idx in draws[:100]:  # warm: caches, the allocator's free lists
        decode_sampled_frames(str(videos[name]), idx)
    before = _heap_in_use()
    for idx in draws[100:]:
        decode_sampled_frames(str(videos[name]), idx)
    assert _heap_in_use() - before < 32 * 1024


@pytest.mark.parametrize("name,codec,kfi", [
    ("h264", "h264", 12.0), ("h264_faststart", "h264", 12.0), ("vp9", "vp9", 10.0),
    ("mjpeg", "mjpeg", 1.0), ("h264_avi", "h264", 12.0),
    ("mpeg4_avi", "mpeg4", 10.0)])  # FFmpeg's mpeg4 encoder ends with an extra I-frame: 6 keys
def test_probe_good_files(videos, name, codec, kfi):
    with av.open(str(videos[name])) as c:  # ground truth: keyframes the decoder reports
        assert N / sum(f.key_frame for f in c.decode(video=0)) == pytest.approx(kfi)
    for count in ("auto", "decode"):
        info = probe_video(str(videos[name]), count=count)
        assert (info.status, info.reason, info.num_frames) == ("ok", "", N)
        assert info.fps == pytest.approx(FPS, rel=1e-3) and not info.vfr
        assert (info.codec, info.width, info.height) == (codec, W, H)
        assert info.keyframe_interval == pytest.approx(kfi)
        assert info.nvdec_ok == (codec in ("h264", "mpeg4"))      # VP9 96x64 is below NVDEC's 128x128 minimum
        assert info.size_bytes == videos[name].stat().st_size


def test_probe_flags_variable_frame_rate(videos):
    info = probe_video(str(videos["vfr"]))
    assert info.status == "ok" and info.num_frames == N and info.vfr
    assert not probe_video(str(videos["h264"])).vfr


@pytest.mark.timeout(30)
def test_probe_bad_inputs_never_raise(videos):
    assert probe_video(str(videos["missing"])).status == "missing"
    assert probe_video(str(videos["empty"])).status == "unreadable"
    text = probe_video(str(videos["text"]))
    assert text.status == "unreadable" and "cannot open" in text.reason
    # MP4 cut in half with its moov atom at the end: nothing can be indexed -> unreadable
    assert probe_video(str(videos["cut_h264"])).status == "unreadable"
    # faststart MP4 cut in half: the frames that decode are reported, and all of them decode
    cut = probe_video(str(videos["cut_h264_faststart"]))
    assert cut.status == "ok" and 0 < cut.num_frames < N and "decode" in cut.reason
    ref = full_decode(videos["h264_faststart"])
    last = [cut.num_frames - 1, 0]
    np.testing.assert_array_equal(decode_sampled_frames(str(videos["cut_h264_faststart"]), last,
                                                        num_frames=cut.num_frames),
                                  ref[last])
    with pytest.raises(FrameIndexError):
        decode_sampled_frames(str(videos["cut_h264_faststart"]), [cut.num_frames], num_frames=cut.num_frames)
    with pytest.raises(VideoDecodeError, match="cannot open"):
        decode_sampled_frames(str(videos["text"]), [0])


@pytest.mark.timeout(120)
def test_build_index_reuses_cache(videos, tmp_path, monkeypatch):
    src = [videos["h264"], videos["vp9"], videos["mjpeg"]]
    paths = []
    for i in range(999):  # hard links: 999 names, 3 inodes -> each name is probed separately
        p = tmp_path / f"v{i:04d}{src[i % 3].suffix}"
        os.link(src[i % 3], p)
        paths.append(str(p))
    changing = tmp_path / "changing.mp4"
    shutil.copy(videos["h264"], changing)
    paths.append(str(changing))
    cache = str(tmp_path / "train.txt.index.jsonl")

    probed: list[str] = []
    real = video_index._probe_all

    def counting(todo, *args):
        probed.extend(todo)
        return real(todo, *args)

    monkeypatch.setattr(video_index, "_probe_all", counting)
    first = build_index(paths, cache, workers=2, progress=False)
    assert len(probed) == 1000 and list(first) == paths
    assert all(i.status == "ok" and i.num_frames == N for i in first.values())
    assert len(load_index(cache)) == 1000

    probed.clear()
    second = build_index(paths, cache, workers=2, progress=False)
    assert probed == [] and second == first

    st = changing.stat()
    os.utime(changing, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    missing = str(tmp_path / "gone.mp4")
    third = build_index(paths + [missing], cache, workers=2, progress=False)
    assert probed == [str(changing)]  # only the changed file; the missing one needs no probe
    assert third[str(changing)].mtime_ns == st.st_mtime_ns + 10**9
    assert third[missing].status == "missing"


def _demuxed(path) -> tuple[list[int], list[int], list[int]]:
    """Ground truth from the demuxer: presentation-sorted pts, the presentation index and min(pts, dts) of each
    keyframe packet."""
    with av.open(str(path)) as c:
        rows = [(p.pts, p.dts, p.is_keyframe) for p in c.demux(video=0) if p.size]
    pts = sorted(r[0] for r in rows)
    keys = sorted((r[0], min(r[0], r[1])) for r in rows if r[2])
    return pts, [pts.index(k) for k, _ in keys], [d for _, d in keys]


@pytest.mark.parametrize("name", ["h264", "h264_faststart"])
def test_regular_packet_table_is_nine_numbers_that_give_the_table_back(videos, name, monkeypatch):
    """Fixed-GOP constant-rate files: the index keeps the packet table as 9 numbers; expanded, they give the
    demuxer's pts and keyframes exactly, and a read given them decodes the same frames without demuxing."""
    info = probe_video(str(videos[name]))
    assert info.packets is not None and len(info.packets) == 9
    table = pyav_decode.expand_table(info.packets, info.codec)
    pts, key_index, key_dts = _demuxed(videos[name])
    assert table.pts.tolist() == pts and table.key_index.tolist() == key_index and table.key_dts.tolist() == key_dts
    assert table.num_packets == N and table.seekable and table.codec == info.codec
    ref = full_decode(videos[name])
    monkeypatch.setattr(pyav_decode, "read_packet_table", lambda *a: pytest.fail("demuxed although given a table"))
    pyav_decode.clear_table_cache()
    frames = decode_frame_list(str(videos[name]), SCATTERED, table=table)
    np.testing.assert_array_equal(np.stack(frames), ref[SCATTERED])


@pytest.mark.parametrize("name", ["vfr", "vp9", "hevc", "h264_avi", "mpeg4_avi", "cut_h264_faststart"])
def test_irregular_or_untrusted_tables_are_not_kept(videos, name):
    """Uneven pts (VFR; WebM's 1 ms timestamps at 30 fps), keyframe dts that do not all sit the same distance
    before their pts (this x265 stream), no usable pts (AVI with B-frames, MPEG-4 Part 2) or a damaged tail:
    each read demuxes."""
    info = probe_video(str(videos[name]))
    assert info.status == "ok" and info.packets is None


def test_index_lines_from_before_packets_still_load(videos, tmp_path):
    """An index written before `packets` existed is reused as it is (no re-probe of a whole dataset)."""
    info = probe_video(str(videos["h264"]))
    row = {k: v for k, v in dataclasses.asdict(info).items() if k != "packets"}
    cache = tmp_path / "old.index.jsonl"
    cache.write_text(json.dumps({"v": video_index.INDEX_VERSION, **row}) + "\n")
    assert load_index(str(cache)) == {info.path: dataclasses.replace(info, packets=None)}


@pytest.mark.timeout(10)
def test_call_with_timeout():
    assert call_with_timeout(lambda a, b=0: a + b, 5.0, 2, b=3) == 5
    assert call_with_timeout(lambda: "direct", None) == "direct"
    with pytest.raises(ZeroDivisionError):
        call_with_timeout(lambda: 1 / 0, 5.0)
    before = abandoned_calls()
    with pytest.raises(DecodeTimeout, match="slow.mp4") as err:
        call_with_timeout(time.sleep, 0.2, 3.0, label="slow.mp4")
    assert err.value.path == "slow.mp4" and isinstance(err.value, TimeoutError)
    assert abandoned_calls() == before + 1  # the sleeping thread is still running (documented)


class _SleepySource:
    """DALI parallel external_source callback: every sample 'hangs' 30 s inside a timeout."""

    def __call__(self, sample_info):
        try:
            call_with_timeout(time.sleep, 0.3, 30.0, label=f"sample{sample_info.idx_in_epoch}")
            flag = 0
        except DecodeTimeout:
            flag = 1
        return np.array([flag], np.int32)


@pytest.mark.timeout(60)
def test_timeout_works_inside_dali_parallel_worker():
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=2, num_threads=1, device_id=None, py_num_workers=1,
                  py_start_method="spawn")
    def pipe():
        return fn.external_source(source=_SleepySource(), parallel=True, batch=False,
                                  dtype=types.INT32, ndim=1)

    p = pipe()
    p.build()
    (out,) = p.run()
    assert np.asarray(out.as_array()).ravel().tolist() == [1, 1]


@pytest.mark.timeout(20)
def test_call_with_timeout_keeps_one_thread_and_retires_an_abandoned_one():
    """Calls from one thread share one decode thread (a thread per call grew a worker's memory, pipelines/timeout.py);
    after a timeout the next call gets a new thread, and the abandoned one ends once its stuck call returns."""
    import threading

    def current():
        return threading.current_thread()
    first, second = call_with_timeout(current, 5.0), call_with_timeout(current, 5.0)
    assert first is second and first is not threading.current_thread()
    # An earlier test's abandoned call (test_call_with_timeout sleeps 3 s) may still be running: let it end first,
    # or it could end between the two counts below.
    deadline = time.monotonic() + 10
    while abandoned_calls() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert abandoned_calls() == 0
    with pytest.raises(DecodeTimeout):
        call_with_timeout(time.sleep, 0.1, 0.5)
    third = call_with_timeout(current, 5.0)
    assert third is not first and abandoned_calls() == 1
    first.join(5.0)                          # the sleep ends, then the abandoned thread ends too
    assert not first.is_alive() and abandoned_calls() == 0
    seen = []
    worker = threading.Thread(target=lambda: seen.append(call_with_timeout(current, 5.0)))
    worker.start()
    worker.join()
    assert seen[0] is not third              # another calling thread has its own decode thread


@pytest.mark.timeout(30)
def test_end_idle_threads_ends_the_idle_ones_and_spares_a_busy_one():
    """Before a fork (pipelines/graph.py start_workers): idle decode threads end, one busy with a call finishes it."""
    import threading

    def current():
        return threading.current_thread()
    idle = call_with_timeout(current, 5.0)               # this thread's decode thread, idle again
    started, release, busy = threading.Event(), threading.Event(), []

    def blocking():
        started.set()
        release.wait(10)
        return threading.current_thread()
    caller = threading.Thread(target=lambda: busy.append(call_with_timeout(blocking, 20.0)))
    caller.start()
    assert started.wait(5)
    end_idle_threads()
    assert not idle.is_alive()
    release.set()
    caller.join(10)
    assert busy and busy[0].is_alive()                   # its call returned, and it still serves its caller
    assert call_with_timeout(current, 5.0) not in (idle, busy[0])    # this caller gets a new one
