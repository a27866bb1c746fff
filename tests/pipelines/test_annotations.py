"""Annotation lists: the MMAction2 formats parse, and every malformed input names its file and line."""
from __future__ import annotations

import os

import numpy as np
import pytest

from jobs.dataprep.listio import Found, list_line
from jobs.evaluation.fusion import read_labels
from jobs.recipes.config import load_config
from jobs.recipes.loaders import DataError, build_loader
from pipelines.annotations import (
    AnnotationError,
    FrameLayout,
    VideoRecord,
    format_rawframe_line,
    format_video_line,
    load_class_names,
    load_labels,
    load_rawframe_list,
    load_video_list,
)
from pipelines.jpeg import BadJpeg, jpeg_size
from pipelines.readers import BadSample
from tests.helpers import synthetic_overrides


def write(tmp_path, text, name="list.txt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_formats_of_spec_4_1(tmp_path):
    # MMAction2 v0.24.1 tests/data/annotations: `imgs 5 127`, with_offset `imgs 2 5 127`, multi-label `imgs 5 3 5`
    (rec,) = load_rawframe_list(write(tmp_path, "imgs 5 127\n"), data_prefix="root")
    assert (rec.path, rec.total_frames, rec.labels, rec.offset) == ("root/imgs", 5, (127,), 0)
    (rec,) = load_rawframe_list(write(tmp_path, "imgs 2 5 127\n"), with_offset=True)
    assert (rec.offset, rec.total_frames, rec.label) == (2, 5, 127)
    (rec,) = load_rawframe_list(write(tmp_path, "imgs 5 3 5\n"), multi_class=True)
    assert rec.labels == (3, 5)
    videos = load_video_list(write(tmp_path, "a/b.mp4 3\n\nc.webm 0\n"), data_prefix="v")
    assert [(r.path, r.label, r.total_frames) for r in videos] == [("v/a/b.mp4", 3, None), ("v/c.webm", 0, None)]
    assert videos[1].source.endswith("list.txt:3")


@pytest.mark.parametrize("text,kwargs,message", [
    ("a 5 1\nb five 2\n", {}, ":2: offset/total_frames must be integers"),
    ("a 5 1\nb 5\n", {}, ":2: expected '<frame_dir> <total_frames> <label>', got 2 fields"),
    ("a 5 1 2\n", {}, ":1: expected '<frame_dir> <total_frames> <label>'"),
    ("a 5 x\n", {}, ":1: labels must be integers"),
    ("a 5 12\n", {"num_classes": 12}, ":1: label 12 outside [0, 12)"),
    ("a 5 -1\n", {}, ":1: label -1 outside"),
    ("a 3 5 1\n", {"with_offset": False}, ":1: expected"),
    ("", {}, "the list has no entries"),
])
def test_malformed_rawframe_lines_name_file_and_line(tmp_path, text, kwargs, message):
    path = write(tmp_path, text)
    with pytest.raises(AnnotationError) as err:
        load_rawframe_list(path, **kwargs)
    assert str(err.value).startswith(path) and message in str(err.value)


def test_malformed_video_line_and_missing_list(tmp_path):
    path = write(tmp_path, "ok.mp4 1\nbad.mp4 1 2\n")
    with pytest.raises(AnnotationError, match=r"list.txt:2: expected '<video_path> <label>'"):
        load_video_list(path)
    with pytest.raises(AnnotationError, match=r"nope\.txt: annotation list not found"):
        load_rawframe_list(str(tmp_path / "nope.txt"))


def test_frame_templates_and_start_index():
    rec = VideoRecord("d", (0,), 10, offset=3)
    assert FrameLayout("img_{:05}.jpg", 1).frame_paths(rec, [1, 2]) == ["d/img_00004.jpg", "d/img_00005.jpg"]
    assert FrameLayout("{:05}.jpg", 1).frame_paths(rec, [1]) == ["d/00004.jpg"]
    flow = FrameLayout("flow_{}_{:05d}.jpg", 0, "Flow")
    assert flow.frame_paths(VideoRecord("d", (0,), 10), [0]) == ["d/flow_x_00000.jpg", "d/flow_y_00000.jpg"]
    assert FrameLayout("{}_{:05d}.jpg", 1, "Flow").frame_paths(VideoRecord("d", (0,), 9), [7])[1] == "d/y_00007.jpg"
    with pytest.raises(ValueError, match="no placeholder"):
        FrameLayout("img.jpg")
    with pytest.raises(ValueError, match="does not fit modality"):
        FrameLayout("img_{:05}.jpg", 1, "Flow")


def test_jpeg_header_checks(synthetic_root):
    good = np.fromfile(next((synthetic_root / "rawframes").glob("train_*/img_00001.jpg")), np.uint8)
    assert jpeg_size(good) == (80, 64)
    for buf, why in [(b"", "empty"), (b"hello world", "no SOI"), (good[: len(good) // 2], "truncated")]:
        with pytest.raises(BadJpeg, match=why):
            jpeg_size(np.frombuffer(bytes(buf), np.uint8))


def _copy_dataset(root, tmp_path):
    import shutil
    dst = tmp_path / "data"
    shutil.copytree(root, dst, symlinks=False, ignore=shutil.ignore_patterns("videos"))
    return dst


def test_missing_and_corrupt_frames_raise_in_eval_and_are_skipped_in_training(synthetic_root, tmp_path):
    data = _copy_dataset(synthetic_root, tmp_path)
    vids = sorted(p.name for p in (data / "rawframes").glob("val_*"))
    (data / "rawframes" / vids[0] / "img_00012.jpg").unlink()                          # a missing frame
    (data / "rawframes" / vids[1] / "img_00005.jpg").write_bytes(b"not a jpeg")        # a corrupt frame
    cfg = load_config("tsn_r18_synthetic_rgb", synthetic_overrides(data) +
                      ["data.val_videos_per_gpu=4", "data.workers=1", "val.sampler.num_clips=24"])
    lst = data / "val_list_rawframes.txt"
    # evaluation refuses before any work: every sampled frame is stat'ed up front, the error names line and file
    with pytest.raises(DataError) as err:
        build_loader(cfg, "val")
    assert str(err.value) == (f"1 unusable videos in {lst}:\n  {lst}:1: {data / 'rawframes' / vids[0]}: 1 of the 24 "
                              f"sampled frame files missing, first {data / 'rawframes' / vids[0] / 'img_00012.jpg'}")
    # a frame that is present but not a JPEG is found when it is read: the loader raises the source's own error
    # (not DALI's wrapper of it), naming the list line and the file
    (data / "rawframes" / vids[0] / "img_00012.jpg").write_bytes((data / "rawframes" / vids[0] / "img_00011.jpg")
                                                                 .read_bytes())
    with pytest.raises(BadSample) as err:
        for _ in build_loader(cfg, "val"):
            pass
    assert str(err.value) == (f"{lst}:2: {data / 'rawframes' / vids[1] / 'img_00005.jpg'}: not a JPEG (no SOI "
                              "marker), nor a PNG or another image format the decoder reads")
    (data / "rawframes" / vids[0] / "img_00012.jpg").unlink()                          # missing again
    # training policy on the same list: both videos skipped, logged with line and reason, the epoch completes
    cfg = load_config("tsn_r18_synthetic_rgb", synthetic_overrides(data) + [
        f"data.train_list={data / 'val_list_rawframes.txt'}", "data.workers=1", "data.videos_per_gpu=4",
        "train.sampler.num_clips=24", "data.max_bad_fraction=0.5"])
    loader = build_loader(cfg, "train", work_dir=str(tmp_path / "work"))
    n = sum(len(b.index) for b in loader)
    assert n == len(loader.source.records)
    bad = {b["line"]: b["reason"] for b in loader.bad_samples()}
    assert set(bad) == {f"{data / 'val_list_rawframes.txt'}:1", f"{data / 'val_list_rawframes.txt'}:2"}
    assert "missing file" in bad[f"{data / 'val_list_rawframes.txt'}:1"]
    assert "not a JPEG" in bad[f"{data / 'val_list_rawframes.txt'}:2"]


def test_too_many_bad_samples_abort(synthetic_root, tmp_path):
    data = _copy_dataset(synthetic_root, tmp_path)
    for d in sorted((data / "rawframes").glob("val_*"))[:3]:
        (d / "img_00001.jpg").unlink()
    cfg = load_config("tsn_r18_synthetic_rgb", synthetic_overrides(data) + [
        f"data.train_list={data / 'val_list_rawframes.txt'}", "data.workers=1", "train.sampler.num_clips=24",
        "data.max_bad_fraction=0.01"])
    loader = build_loader(cfg, "train", work_dir=str(tmp_path / "work"))
    with pytest.raises(RuntimeError, match=r"3 of 12 videos unreadable"):
        for _ in loader:
            pass


def test_not_utf8_or_binary_lists_name_file_and_line(tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("a 5 1\nb 5 2\ncaf\xe9 5 3\n".encode("latin-1"))
    with pytest.raises(AnnotationError, match=rf"^{latin1}:3: not UTF-8 text \(byte 0xe9 at column 4\)$"):
        load_rawframe_list(str(latin1))
    binary = tmp_path / "frames.tar"
    binary.write_bytes(b"a.mp4 1\n" + bytes(range(256)))
    with pytest.raises(AnnotationError, match=rf"^{binary}:2: not UTF-8 text \(NUL byte at column 1"):
        load_video_list(str(binary))
    bom = tmp_path / "bom.txt"                      # Windows editors start UTF-8 files with a BOM: not part of a path
    bom.write_bytes("\ufeffa 5 1\n".encode())
    assert load_rawframe_list(str(bom), data_prefix="r")[0].path == os.path.join("r", "a")
    with pytest.raises(AnnotationError, match=r": is a folder, not a list file"):
        load_rawframe_list(str(tmp_path))


RECORDS = {   # kind -> (loader keyword arguments, records as (path, labels, total_frames, offset))
    "rawframes": ({}, [("class_a/v1", (3,), 120, 0), ("v2", (0,), 0, 0)]),
    "rawframes+offset": ({"with_offset": True}, [("v1", (7,), 40, 125), ("v1", (8,), 16, 0)]),
    "multi-label": ({"multi_class": True}, [("v1", (0, 4, 9), 30, 0), ("v2", (5,), 31, 0)]),
    "videos": ({"multi_class": True}, [("a/b.mp4", (2,), None, 0), ("c.webm", (1, 3), None, 0)]),
}


@pytest.mark.parametrize("kind", RECORDS)
def test_format_then_parse_round_trip(tmp_path, kind):
    """records -> the lines `tsn prepare` writes -> the loaders' records: the same records."""
    kwargs, rows = RECORDS[kind]
    if kind == "videos":
        lines = [format_video_line(p, labels) for p, labels, _, _ in rows]
    else:
        lines = [format_rawframe_line(p, total, labels, offset=offset if kwargs.get("with_offset") else None)
                 for p, labels, total, offset in rows]
    path = write(tmp_path, "".join(line + "\n" for line in lines))
    if kind == "videos":
        records = load_video_list(path, data_prefix="root", **kwargs)
    else:
        records = load_rawframe_list(path, data_prefix="root", **kwargs)
    assert [(r.path, r.labels, r.total_frames, r.offset) for r in records] == \
        [(os.path.join("root", p), labels, total, offset) for p, labels, total, offset in rows]
    assert [r.source for r in records] == [f"{path}:1", f"{path}:2"]


def test_format_refuses_what_could_not_be_read_back():
    for bad_path in ("my video", "", "#hidden", "tab\there"):
        with pytest.raises(ValueError, match="cannot be a list path"):
            format_video_line(bad_path, (1,))
    with pytest.raises(ValueError, match="labels"):
        format_rawframe_line("v", 5, ())
    with pytest.raises(ValueError, match="offset/total_frames"):
        format_rawframe_line("v", -1, (0,))


def test_dataprep_list_lines_read_back(tmp_path):
    """`tsn prepare filelist` writes through listio.list_line; the loaders read those lines back."""
    frames = write(tmp_path, list_line(Found("k/v1", 30), (4,)) + "\n", "frames.txt")
    clips = write(tmp_path, list_line(Found("v1", None), (4,), clip=(50, 25)) + "\n", "clips.txt")
    videos = write(tmp_path, list_line(Found("k/v1.mp4", None), (4, 6)) + "\n", "videos.txt")
    (rec,) = load_rawframe_list(frames)
    assert (rec.path, rec.total_frames, rec.labels) == ("k/v1", 30, (4,))
    (rec,) = load_rawframe_list(clips, with_offset=True)
    assert (rec.offset, rec.total_frames, rec.labels) == (50, 25, (4,))
    (rec,) = load_video_list(videos, multi_class=True)
    assert (rec.path, rec.labels) == ("k/v1.mp4", (4, 6))


def test_load_labels_any_single_label_kind_skipping_comments(tmp_path):
    assert load_labels(write(tmp_path, "# header\na 5 3\n\n  # indented comment\nb 6 1\n")) == [3, 1]
    assert load_labels(write(tmp_path, "a.mp4 2\nb.mp4 0\n")) == [2, 0]
    assert load_labels(write(tmp_path, "a 10 5 7\nb 0 5 8\n")) == [7, 8]
    with pytest.raises(AnnotationError, match=r"list.txt:2: 2 fields, but the first entry \(rawframes\) has 3"):
        load_labels(write(tmp_path, "a 5 3\nb.mp4 1\n"))
    with pytest.raises(AnnotationError, match=r"list.txt:1: labels must be integers"):
        load_labels(write(tmp_path, "a 5 three\n"))
    # jobs.evaluation.fusion reads `tsn fuse --labels` through the same parser
    np.testing.assert_array_equal(read_labels(write(tmp_path, "#c\na 5 3\nb 5 1\n")), [3, 1])


def test_class_names(tmp_path):
    assert load_class_names(write(tmp_path, "jump\nrun\n\n", "classes.txt"), 2) == ("jump", "run")
    with pytest.raises(AnnotationError, match=r"classes.txt:2: empty class name"):
        load_class_names(write(tmp_path, "jump\n\nrun\n", "classes.txt"))
    with pytest.raises(AnnotationError, match=r"classes.txt: 2 class names for 3 classes"):
        load_class_names(write(tmp_path, "jump\nrun\n", "classes.txt"), 3)
