"""`tsn prepare filelist`: small fixtures in each dataset's official annotation format, lists checked line by line.

Frame folders hold empty files: only the names count, exactly as the list builder counts them.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobs.cli import cli
from jobs.dataprep.activitynet import clip_bounds
from jobs.dataprep.filelist import build_filelists
from jobs.dataprep.listio import OfficialAnnotationError
from jobs.dataprep.sthv import flip_pairs, mirrored_name
from jobs.media.naming import (
    count_frames,
    frame_index,
    frame_name,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, newline="")
    return path


def frames(folder: Path, n: int, template: str = "img_{:05}.jpg", start: int = 1, flow: int = 0) -> None:
    """n RGB frame files and `flow` x/y pairs named like `x_00001.jpg`."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        (folder / template.format(i)).touch()
    for i in range(start, start + flow):
        (folder / f"x_{i:05d}.jpg").touch()
        (folder / f"y_{i:05d}.jpg").touch()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def report(out: Path) -> list[dict]:
    (path,) = out.glob("*_report.jsonl")
    return [json.loads(line) for line in lines(path)]


# --- frame naming -----------------------------------------------------------------------------

def test_frame_templates_name_and_count(tmp_path):
    assert frame_name("img_{:05}.jpg", 1) == "img_00001.jpg"
    assert frame_name("{}_{:05d}.jpg", 7, "y") == "y_00007.jpg"
    assert frame_name("flow_{}_{:05d}.jpg", 0, "x") == "flow_x_00000.jpg"
    assert frame_index("{:05}.jpg", "00012.jpg") == 12
    assert frame_index("img_{:05}.jpg", "x_00012.jpg") is None
    frames(tmp_path / "v", 5, flow=4)
    (tmp_path / "v" / "img_00006.png").touch()  # other extension: not a frame of this template
    (tmp_path / "v" / "img_100000.jpg").touch()  # past 5 digits still counts (long videos)
    assert count_frames(tmp_path / "v", "img_{:05}.jpg") == 6
    assert count_frames(tmp_path / "v", "{}_{:05d}.jpg") == 4
    (tmp_path / "v" / "y_00005.jpg").touch()
    with pytest.raises(ValueError, match="x-flow"):
        count_frames(tmp_path / "v", "{}_{:05d}.jpg")


# --- UCF-101 ----------------------------------------------------------------------------------

@pytest.fixture
def ucf(tmp_path):
    ann = tmp_path / "ucfTrainTestlist"
    # Official files use CRLF line ends.
    write(ann / "classInd.txt", "1 ApplyEyeMakeup\r\n2 Archery\r\n3 HandstandPushups\r\n")
    a8, r8 = "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "Archery/v_Archery_g08_c01.avi"
    h8 = "HandstandPushups/v_HandStandPushups_g08_c01.avi"
    a1, r1 = "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "Archery/v_Archery_g01_c01.avi"
    write(ann / "trainlist01.txt", f"{a8} 1\r\n{r8} 2\r\n{h8} 3\r\n")
    write(ann / "testlist01.txt", f"{a1}\r\n{r1}\r\n")
    write(ann / "trainlist02.txt", f"{a1} 1\r\n{r1} 2\r\n")
    write(ann / "testlist02.txt", f"{a8}\r\n")
    write(ann / "trainlist03.txt", f"{r1} 2\r\n")
    write(ann / "testlist03.txt", f"{h8}\r\n")
    root = tmp_path / "rawframes"
    frames(root / "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", 5, flow=4)
    frames(root / "Archery/v_Archery_g08_c01", 7)
    frames(root / "HandstandPushups/v_HandStandPushups_g08_c01", 3, flow=2)
    frames(root / "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01", 4, flow=3)
    (root / "Archery/v_Archery_g01_c01").mkdir()  # empty: a failed extraction
    return ann, root


def test_ucf101_rawframes_three_splits(ucf, tmp_path):
    ann, root = ucf
    out = tmp_path / "lists"
    summary = build_filelists("ucf101", ann, out, roots={"train": root, "val": root})
    assert [r.path.name for r in summary.lists] == [
        f"ucf101_{s}_split_{k}_rawframes.txt" for k in (1, 2, 3) for s in ("train", "val")]
    assert lines(out / "ucf101_train_split_1_rawframes.txt") == [
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01 5 0",
        "Archery/v_Archery_g08_c01 7 1",
        "HandstandPushups/v_HandStandPushups_g08_c01 3 2",
    ]
    assert lines(out / "ucf101_val_split_1_rawframes.txt") == ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01 4 0"]
    assert lines(out / "ucf101_val_split_1_rawframes_missing.txt") == ["Archery/v_Archery_g01_c01"]
    assert lines(out / "ucf101_train_split_2_rawframes.txt") == ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01 4 0"]
    assert lines(out / "ucf101_val_split_2_rawframes.txt") == ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01 5 0"]
    assert lines(out / "ucf101_val_split_3_rawframes.txt") == ["HandstandPushups/v_HandStandPushups_g08_c01 3 2"]
    assert lines(out / "classes.txt") == ["ApplyEyeMakeup", "Archery", "HandstandPushups"]
    assert {r["path"] for r in report(out)} == {"Archery/v_Archery_g01_c01"}
    assert "no frames" in report(out)[0]["reason"]


def test_ucf101_flow_videos_and_flat_layouts(ucf, tmp_path):
    ann, root = ucf
    build_filelists("ucf101", ann, tmp_path / "flow", roots={"train": root, "val": root}, modality="flow")
    assert lines(tmp_path / "flow/ucf101_train_split_1_flow.txt") == [
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01 4 0", "HandstandPushups/v_HandStandPushups_g08_c01 2 2"]
    videos = tmp_path / "videos"
    write(videos / "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "")
    write(videos / "Archery/v_Archery_g08_c01.avi", "")
    build_filelists("ucf101", ann, tmp_path / "v", roots={"train": videos}, fmt="videos")
    assert lines(tmp_path / "v/ucf101_train_split_1_videos.txt") == [
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 0", "Archery/v_Archery_g08_c01.avi 1"]
    assert not (tmp_path / "v/ucf101_val_split_1_videos.txt").exists()  # no val root given
    flat = tmp_path / "flat"  # level-1 layout: all folders directly under the root
    frames(flat / "v_Archery_g08_c01", 2)
    build_filelists("ucf101", ann, tmp_path / "f", roots={"train": flat})
    assert lines(tmp_path / "f/ucf101_train_split_1_rawframes.txt") == ["v_Archery_g08_c01 2 1"]


def test_ucf101_bad_line_names_file_and_line(ucf, tmp_path):
    ann, root = ucf
    write(ann / "trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\nArchery/v_Archery_g08_c01.avi 3\r\n")
    with pytest.raises(OfficialAnnotationError, match=r"trainlist01.txt:2:"):
        build_filelists("ucf101", ann, tmp_path / "o", roots={"train": root})


# --- Kinetics-400 -----------------------------------------------------------------------------

@pytest.fixture
def k400(tmp_path):
    ann = tmp_path / "kinetics400"
    write(ann / "train.csv", "label,youtube_id,time_start,time_end,split,is_cc\n"
          "abseiling,aaaaaaaaaaa,14,24,train,0\n"
          '"air drumming",bbbbbbbbbbb,5,15,train,0\n'
          '"passing American football (in game)",ccccccccccc,0.0,10.0,train,0\n'
          "abseiling,ddddddddddd,100,110,train,0\n")
    write(ann / "validate.csv", "label,youtube_id,time_start,time_end,split\n"
          "air drumming,eeeeeeeeeee,30,40,validate\n"
          "abseiling,fffffffffff,1,11,validate\n")
    write(ann / "test.csv", "youtube_id,time_start,time_end,split\nggggggggggg,0,10,test\n")  # unlabelled
    train, val = tmp_path / "videos_train", tmp_path / "videos_val"
    write(train / "abseiling/aaaaaaaaaaa_000014_000024.mp4", "")
    write(train / "air drumming/bbbbbbbbbbb_000005_000015.mp4", "")  # crawler name, not renamed
    write(train / "passing_American_football_(in_game)/ccccccccccc_000000_000010.mp4", "")
    write(val / "eeeeeeeeeee_000030_000040.mp4", "")  # flat layout
    return ann, train, val


def test_kinetics400_videos_missing_reported_not_fatal(k400, tmp_path):
    ann, train, val = k400
    out = tmp_path / "lists"
    summary = build_filelists("kinetics400", ann, out, roots={"train": train, "val": val}, fmt="videos")
    assert lines(out / "classes.txt") == ["abseiling", "air_drumming", "passing_American_football_(in_game)"]
    assert lines(out / "kinetics400_train_list_videos.txt") == [
        "abseiling/aaaaaaaaaaa_000014_000024.mp4 0",
        "passing_American_football_(in_game)/ccccccccccc_000000_000010.mp4 2",
    ]
    assert lines(out / "kinetics400_train_list_videos_missing.txt") == [
        "air_drumming/bbbbbbbbbbb_000005_000015", "abseiling/ddddddddddd_000100_000110"]
    assert lines(out / "kinetics400_val_list_videos.txt") == ["eeeeeeeeeee_000030_000040.mp4 1"]
    assert lines(out / "kinetics400_val_list_videos_missing.txt") == ["abseiling/fffffffffff_000001_000011"]
    assert not (out / "kinetics400_test_list_videos.txt").exists()
    reasons = {r["path"]: r["reason"] for r in report(out)}
    assert "whitespace" in reasons["air_drumming/bbbbbbbbbbb_000005_000015"]
    assert "not found" in reasons["abseiling/ddddddddddd_000100_000110"]
    assert [(r.written, r.missing) for r in summary.lists] == [(2, 2), (1, 1)]


def test_kinetics400_cli_exit_codes(k400, tmp_path):
    ann, train, val = k400
    args = ["filelist", "kinetics400", "--ann-dir", str(ann), "--train-root", str(train), "--val-root", str(val),
            "--out", str(tmp_path / "o"), "--format", "videos"]
    result = CliRunner().invoke(cli, ["prepare", *args])
    assert result.exit_code == 0, result.output
    assert "2 missing" in result.output
    assert CliRunner().invoke(cli, ["prepare", *args, "--strict"]).exit_code == 1
    write(ann / "validate.csv", "label,video,start\nabseiling,x,1\n")
    result = CliRunner().invoke(cli, ["prepare", *args])
    assert result.exit_code == 1 and "validate.csv:1: header lacks" in result.output


# --- Something-Something ------------------------------------------------------------------------

STH_CLASSES = ["Holding something", "Pushing something from left to right", "Pushing something from right to left",
               "Turning the camera left while filming something", "Turning the camera right while filming something"]


def test_sthv1_rawframes_and_flip_map(tmp_path):
    ann, root, out = tmp_path / "ann", tmp_path / "20bn-something-something-v1", tmp_path / "lists"
    write(ann / "something-something-v1-labels.csv", "\n".join(STH_CLASSES) + "\n")
    write(ann / "something-something-v1-train.csv", "1;Pushing something from left to right\n2;Holding something\n")
    write(ann / "something-something-v1-validation.csv", "3;Turning the camera right while filming something\n")
    frames(root / "1", 6, "{:05}.jpg")
    frames(root / "2", 3, "{:05}.jpg")
    frames(root / "3", 4, "{:05}.jpg")
    build_filelists("sthv1", ann, out, roots={"train": root, "val": root})
    assert lines(out / "sthv1_train_list_rawframes.txt") == ["1 6 1", "2 3 0"]
    assert lines(out / "sthv1_val_list_rawframes.txt") == ["3 4 4"]
    assert lines(out / "classes.txt") == STH_CLASSES
    assert lines(out / "flip_label_map.txt") == ["1 2", "2 1", "3 4", "4 3"]
    write(ann / "something-something-v1-validation.csv", "3;Juggling something\n")
    with pytest.raises(OfficialAnnotationError, match="validation.csv:1:"):
        build_filelists("sthv1", ann, out, roots={"train": root})


def test_sthv2_videos_from_json(tmp_path):
    ann, root, out = tmp_path / "labels", tmp_path / "videos", tmp_path / "lists"
    labels = {"Holding something": "0", "Pushing something from left to right": "1",
              "Pushing something from right to left": "2", "Moving something up": "3"}
    write(ann / "labels.json", json.dumps(labels))
    write(ann / "train.json", json.dumps([
        {"id": "78687", "label": "pushing a pen from left to right", "template": "Pushing [something] from left to right",
         "placeholders": ["a pen"]},
        {"id": "42326", "label": "holding cup", "template": "Holding [something]", "placeholders": ["cup"]}]))
    write(ann / "validation.json", json.dumps([
        {"id": "24", "label": "moving a cup up", "template": "Moving [something] up", "placeholders": ["a cup"]}]))
    for vid in ("78687", "42326", "24"):
        write(root / f"{vid}.webm", "")
    build_filelists("sthv2", ann, out, roots={"train": root, "val": root}, fmt="videos")
    assert lines(out / "sthv2_train_list_videos.txt") == ["78687.webm 1", "42326.webm 0"]
    assert lines(out / "sthv2_val_list_videos.txt") == ["24.webm 3"]
    assert lines(out / "flip_label_map.txt") == ["1 2", "2 1"]
    assert lines(out / "classes.txt") == list(labels)


def test_flip_pairs_need_both_classes():
    assert mirrored_name("Pushing something from Left to right") == "Pushing something from Right to left"
    assert flip_pairs(("Moving something left", "Moving something up")) == ()


# --- Moments in Time / Multi-Moments in Time ------------------------------------------------------

def test_mit_category_file_and_split_roots(tmp_path):
    ann, out = tmp_path / "ann", tmp_path / "lists"
    write(ann / "moments_categories.txt", "clapping,0\nrunning,1\nwaving,2\n")
    write(ann / "trainingSet.csv", "clapping/yt-aaa_1.mp4,clapping,3,0\nrunning/getty-bbb.mp4,running,2,1\n"
          "waving/yt-ccc_5.mp4,waving,3,0\n")
    write(ann / "validationSet.csv", "running/yt-ddd_2.mp4,running,3,0\n")
    train, val = tmp_path / "videos/training", tmp_path / "videos/validation"
    write(train / "clapping/yt-aaa_1.mp4", "")
    write(train / "running/getty-bbb.mp4", "")
    write(val / "running/yt-ddd_2.mp4", "")
    build_filelists("mit", ann, out, roots={"train": train, "val": val}, fmt="videos")
    assert lines(out / "mit_train_list_videos.txt") == ["clapping/yt-aaa_1.mp4 0", "running/getty-bbb.mp4 1"]
    assert lines(out / "mit_train_list_videos_missing.txt") == ["waving/yt-ccc_5"]
    assert lines(out / "mit_val_list_videos.txt") == ["running/yt-ddd_2.mp4 1"]
    assert lines(out / "classes.txt") == ["clapping", "running", "waving"]


def test_mmit_multi_label_lines(tmp_path):
    ann, root, out = tmp_path / "ann", tmp_path / "rawframes", tmp_path / "lists"
    write(ann / "moments_categories.txt", "adult+female+singing,0\nbarking,1\ncooking,2\n")
    write(ann / "trainingSet.csv", "adult+female+singing/v1.mp4,0,2\nbarking/v2.mp4,barking\n")
    write(ann / "validationSet.csv", "cooking/v3.mp4,2,0,1\n")
    frames(root / "v1", 4)
    frames(root / "v2", 2)
    frames(root / "v3", 3)
    build_filelists("mmit", ann, out, roots={"train": root, "val": root})
    assert lines(out / "mmit_train_list_rawframes.txt") == ["v1 4 0 2", "v2 2 1"]
    assert lines(out / "mmit_val_list_rawframes.txt") == ["v3 3 2 0 1"]
    write(ann / "validationSet.csv", "cooking/v3.mp4,7\n")
    with pytest.raises(OfficialAnnotationError, match="validationSet.csv:1:"):
        build_filelists("mmit", ann, out, roots={"val": root})


# --- ActivityNet v1.3 ---------------------------------------------------------------------------

def test_clip_bounds_rule():
    # fps = 97 / 10 = 9.7: start = int(1.0 * 9.7) = 9, end = min(int(4.5 * 9.7) = 43, 96) -> 35 frames
    assert clip_bounds(1.0, 4.5, 10.0, 97) == (9, 35)
    # end clamps to the last frame: int(12.0 * 9.7) = 116 -> 96
    assert clip_bounds(6.2, 12.0, 10.0, 97) == (60, 37)
    assert clip_bounds(10.0, 10.5, 10.0, 50) == (50, 0)  # starts at the end: empty


@pytest.fixture
def anet(tmp_path):
    ann = tmp_path / "ann"
    database = {
        "abc": {"subset": "training", "duration": 10.0, "annotations": [
            {"segment": [1.0, 4.5], "label": "Archery"}, {"segment": [6.2, 12.0], "label": "Ballet"},
            {"segment": [10.0, 11.0], "label": "Ballet"}]},
        "def": {"subset": "validation", "duration": 8.0, "annotations": [{"segment": [0.0, 8.0], "label": "Ballet"}]},
        "ghi": {"subset": "testing", "duration": 3.0, "annotations": []},
        "jkl": {"subset": "training", "duration": 5.0, "annotations": [{"segment": [0.5, 1.0], "label": "Cricket"}]},
    }
    write(ann / "activity_net.v1-3.min.json", json.dumps({"version": "VERSION 1.3", "database": database}))
    write(ann / "action_name.csv", "action\nCricket\nArchery\nBallet\n")
    root = tmp_path / "rawframes"
    frames(root / "v_abc", 97, "image_{:05d}.jpg", start=0)
    frames(root / "def", 40, "image_{:05d}.jpg", start=0)  # without MMAction2's v_ prefix
    return ann, root


def test_activitynet_video_and_clip_lists(anet, tmp_path):
    ann, root = anet
    out = tmp_path / "lists"
    build_filelists("activitynet", ann, out, roots={"train": root, "val": root})
    assert lines(out / "anet_train_video_rawframes.txt") == ["v_abc 97 1"]
    assert lines(out / "anet_train_video_rawframes_missing.txt") == ["v_jkl"]
    assert lines(out / "anet_val_video_rawframes.txt") == ["def 40 2"]
    assert lines(out / "anet_train_clip_rawframes.txt") == ["v_abc 9 35 1", "v_abc 60 37 2"]
    assert lines(out / "anet_val_clip_rawframes.txt") == ["def 0 40 2"]
    reasons = {(r["list"], r["path"]): r["reason"] for r in report(out)}
    assert "empty clip" in reasons[("anet_train_clip_rawframes.txt", "v_abc")]
    assert lines(out / "classes.txt") == ["Cricket", "Archery", "Ballet"]


def test_activitynet_without_action_names_and_videos_format(anet, tmp_path):
    ann, root = anet
    (ann / "action_name.csv").unlink()
    write(root / "v_abc.mp4", "")
    summary = build_filelists("activitynet", ann, tmp_path / "o", roots={"train": root}, fmt="videos")
    assert lines(tmp_path / "o/anet_train_video_videos.txt") == ["v_abc.mp4 0"]  # sorted: Archery, Ballet, Cricket
    assert any("action_name.csv" in n for n in summary.notes)
    assert any("clip lists need frame counts" in n for n in summary.notes)
