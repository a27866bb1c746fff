"""`tsn prepare resize/frames/flow` on tiny synthetic H.264 videos made here with PyAV."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner

from jobs.cli import cli
from jobs.dataprep.flow import (
    FlowOptions,
    extract_flow,
    flow_function,
    load_cv2,
    quantize,
)
from jobs.dataprep.runner import Task, run_tasks
from jobs.dataprep.videoio import Resize, target_size
from jobs.media.naming import count_frames
from tests.helpers import ROOT as REPO

GOOD = {"cls_a/v1.mp4": (16, 96, 72), "cls_a/v2.mp4": (12, 96, 72), "cls_b/v3.mp4": (20, 72, 96)}


def make_video(path: Path, n: int, w: int, h: int, rate: int = 25, gop: int | None = None) -> None:
    """A white square moving right on black: n frames, w x h, H.264 yuv420p (`gop`: a keyframe every gop frames)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if gop:
            stream.options = {"x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        for i in range(n):
            img = np.zeros((h, w, 3), np.uint8)
            img[h // 4: h // 4 + 16, 2 * i: 2 * i + 16] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    for rel, (n, w, h) in GOOD.items():
        make_video(root / rel, n, w, h)
    return root


@pytest.fixture
def with_corrupt(videos, tmp_path) -> Path:
    """The good videos plus a text file named .mp4 and a truncated mp4."""
    root = tmp_path / "src"
    shutil.copytree(videos, root)
    (root / "cls_b/notavideo.mp4").write_text("hello\n")
    data = (videos / "cls_a/v1.mp4").read_bytes()
    (root / "cls_b/truncated.mp4").write_bytes(data[: len(data) // 2])
    return root


def probe(path: Path) -> tuple[int, int, int, Fraction, list[int], int]:
    """(w, h, frames, rate, keyframe indices, audio streams)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        keys = [f.key_frame for f in c.decode(s)]
        return s.width, s.height, len(keys), s.average_rate, [i for i, k in enumerate(keys) if k], len(c.streams.audio)


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*.jpg")}


def test_target_size_rounding():
    assert target_size(96, 72, Resize(short_side=48)) == (64, 48)
    assert target_size(72, 96, Resize(short_side=48)) == (48, 64)
    assert target_size(96, 72, Resize(short_side=45), even=True) == (60, 46)  # 45 is odd: yuv420p needs even
    assert target_size(96, 72, Resize(size=(340, 256))) == (340, 256)


def test_resize_cli_sizes_gop_report_and_exit(with_corrupt, tmp_path):
    dst = tmp_path / "resized"
    args = ["resize", str(with_corrupt), str(dst), "--short-side", "48", "--gop", "8", "--workers", "2"]
    result = CliRunner().invoke(cli, ["prepare", *args])
    assert result.exit_code == 1, result.output
    failed = [json.loads(x) for x in (dst / "resize_failures.jsonl").read_text().splitlines()]
    assert sorted(Path(f["path"]).name for f in failed) == ["notavideo.mp4", "truncated.mp4"]
    assert all(f["reason"] for f in failed)
    short_side_48 = {(96, 72): (64, 48), (72, 96): (48, 64)}      # by hand: 96 x 48 / 72 = 64, both even
    for rel, (n, w, h) in GOOD.items():
        ow, oh, frames, rate, keys, audio = probe(dst / rel)
        assert (ow, oh) == short_side_48[(w, h)]
        assert frames == n and rate == 25 and audio == 0
        assert keys == list(range(0, n, 8))  # closed, fixed GOP: a keyframe every 8 frames
    assert not list(dst.rglob(".*.part"))


def test_resize_writes_fastdecode_h264_unless_told(videos, tmp_path):
    """x264 records its settings in the stream (an SEI message): fastdecode means CAVLC and no deblocking."""
    for tune, want in (([], b"cabac=0"), (["--tune", "none"], b"cabac=1")):
        dst = tmp_path / f"out{len(tune)}"
        result = CliRunner().invoke(cli, ["prepare", "resize", str(videos), str(dst), "--short-side", "48", *tune])
        assert result.exit_code == 0, result.output
        data = (dst / "cls_a/v1.mp4").read_bytes()
        assert want in data and (b"deblock=0" in data) == (not tune)


def _nal_ref_idc(packet: bytes) -> int:
    """Largest nal_ref_idc of a length-prefixed (MP4) H.264 access unit's NAL units (ITU-T H.264 7.3.1)."""
    ref, i = 0, 0
    while i + 4 < len(packet):
        size = int.from_bytes(packet[i:i + 4], "big")
        ref = max(ref, (packet[i + 4] >> 5) & 3)
        i += 4 + size
    return ref


def test_resize_writes_only_unreferenced_b_frames(videos, tmp_path):
    """No B-pyramid: the decoder's B-pictures are exactly the packets no picture references (nal_ref_idc 0), so
    a sparse read decodes only the I/P chain up to its target."""
    dst = tmp_path / "out"
    result = CliRunner().invoke(cli, ["prepare", "resize", str(videos), str(dst), "--short-side", "48"])
    assert result.exit_code == 0, result.output
    b_frames = unreferenced = 0
    for rel in GOOD:
        with av.open(str(dst / rel)) as c:
            s = c.streams.video[0]
            unreferenced += sum(_nal_ref_idc(bytes(p)) == 0 for p in c.demux(s) if p.size)
            c.seek(0)
            b_frames += sum(f.pict_type == av.video.frame.PictureType.B for f in c.decode(s))
    assert b_frames > 0 and unreferenced == b_frames
    assert b"b_pyramid=0" in (dst / "cls_a/v1.mp4").read_bytes()


def test_resize_keeps_its_gop_whatever_the_source_gop(tmp_path):
    """The source's keyframes (every 5 frames here) must not reappear in the output: a keyframe every --gop frames
    exactly (the video index then keeps the packet table as 9 numbers, pipelines/pyav_decode.regular_table)."""
    make_video(tmp_path / "src/a.mp4", 30, 64, 48, gop=5)
    assert probe(tmp_path / "src/a.mp4")[4] == [0, 5, 10, 15, 20, 25]
    result = CliRunner().invoke(cli, ["prepare", "resize", str(tmp_path / "src"), str(tmp_path / "out"),
                                      "--short-side", "48", "--gop", "8", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert probe(tmp_path / "out/a.mp4")[4] == [0, 8, 16, 24]


def test_resize_exact_size_and_cfr_from_vfr(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    # Variable frame rate: frames at 0, 40, 80, 200, 240, 280 ms (a 120 ms hole after the 3rd).
    with av.open(str(src / "vfr.mkv"), "w") as out:
        stream = out.add_stream("libx264")
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for i, ms in enumerate([0, 40, 80, 200, 240, 280]):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    result = CliRunner().invoke(cli, ["prepare", "resize", str(src), str(tmp_path / "o"), "--size", "40x30",
                                          "--fps", "25", "--workers", "0"])
    assert result.exit_code == 0, result.output
    with av.open(str(tmp_path / "o/vfr.mp4")) as c:
        decoded = [(round(f.time, 3), f.width, f.height) for f in c.decode(video=0)]
    # The hole is filled by repeating the previous frame on the 40 ms grid: 8 frames, 0..280 ms.
    assert decoded == [(0.04 * i, 40, 30) for i in range(8)]


def test_frames_lists_match_disk_and_resume(videos, tmp_path):
    dst, lists = tmp_path / "frames", tmp_path / "lists"
    args = ["frames", str(videos), str(dst), "--short-side", "48", "--workers", "2"]
    assert CliRunner().invoke(cli, ["prepare", *args]).exit_code == 0
    for rel, (n, _, _) in GOOD.items():
        folder = dst / rel[:-4]
        assert count_frames(folder, "img_{:05}.jpg") == n == len(os.listdir(folder))
        assert (folder / "img_00001.jpg").exists() and not (folder / f"img_{n + 1:05d}.jpg").exists()
    from PIL import Image
    assert Image.open(dst / "cls_b/v3/img_00001.jpg").size == (48, 64)
    # Official-style annotations over the synthetic set: the listed counts are the files on disk.
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "classInd.txt").write_text("1 cls_a\n2 cls_b\n")
    for k in (1, 2, 3):
        (ann / f"trainlist0{k}.txt").write_text("cls_a/v1.mp4 1\ncls_b/v3.mp4 2\n")
        (ann / f"testlist0{k}.txt").write_text("cls_a/v2.mp4\n")
    result = CliRunner().invoke(cli, ["prepare", "filelist", "ucf101", "--ann-dir", str(ann), "--root", str(dst),
                                          "--out", str(lists)])
    assert result.exit_code == 0, result.output
    assert (lists / "ucf101_train_split_1_rawframes.txt").read_text().splitlines() == ["cls_a/v1 16 0", "cls_b/v3 20 1"]
    assert (lists / "ucf101_val_split_1_rawframes.txt").read_text().splitlines() == ["cls_a/v2 12 0"]
    # Resume: delete one output, leave a half-written temp folder behind, run again.
    before = mtimes(dst)
    shutil.rmtree(dst / "cls_a/v2")
    (dst / "cls_a/.v2.part").mkdir()
    (dst / "cls_a/.v2.part/img_00001.jpg").touch()
    result = CliRunner().invoke(cli, ["prepare", *args])
    assert result.exit_code == 0 and "1 done, 2 already complete" in result.output
    after = mtimes(dst)
    redone = {k for k in after if k.startswith("cls_a/v2/")}
    assert len(redone) == 12 and not (dst / "cls_a/.v2.part").exists()
    kept = {k: v for k, v in before.items() if not k.startswith("cls_a/v2/")}
    assert len(kept) == 36 and all(after[k] == v for k, v in kept.items())  # finished videos untouched


def test_frames_corrupt_inputs_reported(with_corrupt, tmp_path):
    dst = tmp_path / "frames"
    report = tmp_path / "bad.jsonl"
    result = CliRunner().invoke(cli, ["prepare", "frames", str(with_corrupt), str(dst), "--template", "{:05}.jpg",
                                          "--start-index", "0", "--workers", "2", "--report", str(report)])
    assert result.exit_code == 1
    failed = {Path(json.loads(x)["path"]).name for x in report.read_text().splitlines()}
    assert failed == {"notavideo.mp4", "truncated.mp4"}
    assert count_frames(dst / "cls_a/v1", "{:05}.jpg") == 16 and (dst / "cls_a/v1/00000.jpg").exists()
    assert not (dst / "cls_b/notavideo").exists() and not (dst / "cls_b/truncated").exists()


def test_flow_from_frames_and_from_videos(videos, tmp_path):
    frames_dir = tmp_path / "frames"
    assert CliRunner().invoke(cli, ["prepare", "frames", str(videos), str(frames_dir), "--short-side", "32",
                                        "--workers", "0"]).exit_code == 0
    flow_dir = tmp_path / "flow"
    result = CliRunner().invoke(cli, ["prepare", "flow", str(frames_dir), str(flow_dir), "--workers", "2"])
    assert result.exit_code == 0, result.output
    for rel, (n, _, _) in GOOD.items():
        assert count_frames(flow_dir / rel[:-4], "{}_{:05d}.jpg") == n - 1
    meta = json.loads((flow_dir / "flow_meta.json").read_text())
    assert meta["algorithm"] == "tvl1" and meta["bound"] == 20 and meta["published_algorithm"]
    assert meta["source"] == "frames" and meta["params"]["tau"] == pytest.approx(0.25)
    # Farneback straight from videos, RGB stored alongside: counts agree by construction.
    fb = tmp_path / "fb"
    result = CliRunner().invoke(cli, ["prepare", "flow", str(videos), str(fb), "--algo", "farneback", "--with-rgb",
                                          "--short-side", "32", "--template", "flow_{}_{:05d}.jpg", "--workers", "2"])
    assert result.exit_code == 0 and "NOT the published" in result.output
    assert count_frames(fb / "cls_a/v2", "img_{:05}.jpg") == 12
    assert count_frames(fb / "cls_a/v2", "flow_{}_{:05d}.jpg") == 11
    assert json.loads((fb / "flow_meta.json").read_text())["published_algorithm"] is False
    # A different algorithm into the same folder is refused rather than mixed.
    result = CliRunner().invoke(cli, ["prepare", "flow", str(frames_dir), str(flow_dir), "--algo", "farneback"])
    assert result.exit_code == 1 and "different flow settings" in result.output


def test_quantize_exact_levels():
    f = np.array([-25.0, -20.0, 0.0, 3.0, -2.0, 20.0, 25.0])
    assert quantize(f, 20).tolist() == [0, 0, 127, 146, 114, 255, 255]
    assert quantize(np.zeros((2, 2, 2), np.float32)).dtype == np.uint8


def textured_pair(shift_x: int, shift_y: int, w: int = 64, h: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random texture and the same texture moved by (shift_x, shift_y) px."""
    cv2 = load_cv2()
    noise = np.random.default_rng(0).random((h + 20, w + 20)).astype(np.float32)
    tex = cv2.GaussianBlur(noise, (0, 0), 2.0)
    big = ((tex - tex.min()) / (tex.max() - tex.min()) * 255).astype(np.uint8)
    first = big[10:10 + h, 10:10 + w]
    second = big[10 - shift_y:10 - shift_y + h, 10 - shift_x:10 - shift_x + w]
    return first, second


def test_tvl1_known_translation_quantised(tmp_path):
    first, second = textured_pair(3, -2)
    q = quantize(flow_function("tvl1")(first, second), 20)
    expected = (int((3 + 20) * 255 / 40), int((-2 + 20) * 255 / 40))  # (146, 114)
    for c in (0, 1):
        interior = q[8:-8, 8:-8, c].astype(int)
        assert np.median(interior) == pytest.approx(expected[c], abs=1)
        assert np.mean(np.abs(interior - expected[c]) <= 2) > 0.95
    # Same through the files: JPEG (quality 95) keeps a near-constant field within 2 levels.
    from PIL import Image
    (tmp_path / "in/v").mkdir(parents=True)
    Image.fromarray(first).save(tmp_path / "in/v/img_00001.jpg", quality=100)
    Image.fromarray(second).save(tmp_path / "in/v/img_00002.jpg", quality=100)
    extract_flow(Task(tmp_path / "in/v", tmp_path / "out/v"), FlowOptions(), "frames")
    x = np.asarray(Image.open(tmp_path / "out/v/x_00001.jpg"))[8:-8, 8:-8].astype(int)
    y = np.asarray(Image.open(tmp_path / "out/v/y_00001.jpg"))[8:-8, 8:-8].astype(int)
    assert abs(np.median(x) - expected[0]) <= 2 and abs(np.median(y) - expected[1]) <= 2


def test_missing_opencv_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` raise ImportError
    with pytest.raises(RuntimeError, match=r"pip install 'tsn-dali\[flow\]'"):
        load_cv2()


def die_on_v2(task: Task) -> None:
    if task.src.name == "v2":
        os._exit(3)  # a decoder segfault looks like this to the pool
    task.dst.mkdir(parents=True)


def test_runner_isolates_a_crashing_input(tmp_path):
    tasks = [Task(tmp_path / name, tmp_path / "out" / name) for name in ("v1", "v2", "v3", "v4")]
    summary = run_tasks(tasks, die_on_v2, workers=2, report_path=tmp_path / "r.jsonl", desc="t")
    assert [Path(f.path).name for f in summary.failures] == ["v2"]
    assert "worker process died" in summary.failures[0].reason
    assert summary.done == 3 and all((tmp_path / "out" / n).exists() for n in ("v1", "v3", "v4"))


def test_prepare_runs_as_a_script():
    result = subprocess.run([sys.executable, "jobs/prepare.py", "--help"], cwd=REPO, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0 and "filelist" in result.stdout and "flow" in result.stdout
