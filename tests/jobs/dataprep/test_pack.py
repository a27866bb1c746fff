"""Packed shards: the tar is a standard one, the index points at the right bytes, packing is resumable to the same
bytes, parts of a split job are disjoint and complete, and unpacking gives back the original files and lists."""
from __future__ import annotations

import filecmp
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobs.cli import cli
from jobs.dataprep import pack as pack_mod
from jobs.dataprep import worksplit
from jobs.dataprep.worksplit import WorkSplit
from pipelines import packed
from tests.helpers import ROOT

LISTS = ("train_list_rawframes.txt", "train_list_flow.txt", "val_list_rawframes.txt", "val_list_flow.txt")


def _invoke(*args):
    return CliRunner().invoke(cli, ["prepare", *(str(a) for a in args)])


def _entries(list_file: Path) -> list[list[str]]:
    return [line.split() for line in list_file.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def packed_frames(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("packed")
    result = _invoke("pack", *(synthetic_root / n for n in LISTS), "--root", synthetic_root / "rawframes",
                     "--out", out, "--shard-size", "300KiB")
    assert result.exit_code == 0, result.output
    return out


def test_pack_writes_only_shards_indexes_and_lists(packed_frames, synthetic_root):
    files = sorted(p.name for p in packed_frames.iterdir())
    shards = [f for f in files if f.endswith(".tar")]
    indexes = [f for f in files if f.endswith(".tar.idx.json")]
    assert len(shards) > 1                                  # 300 KiB splits the synthetic set
    assert {s + ".idx.json" for s in shards} == set(indexes)
    assert len(files) == len(shards) + len(indexes) + len(LISTS), files


def test_shards_are_plain_tar_in_webdataset_naming(packed_frames, synthetic_root):
    folders = {e[0] for n in LISTS for e in _entries(synthetic_root / n)}
    seen_keys = set()
    for shard in pack_mod.shards_in(packed_frames):
        with tarfile.open(shard) as tar:                    # Python's own tar reader, as `tar tf` would list it
            for member in tar.getmembers():
                key, rest = member.name.split(".", 1)       # webdataset: key up to the first dot
                assert key in folders and rest.endswith(".jpg")
                seen_keys.add(key)
                # the tar's bytes of this member equal the original file
                original = synthetic_root / "rawframes" / key / rest
                assert tar.extractfile(member).read() == original.read_bytes()
    assert seen_keys == folders                            # every folder packed, in exactly ...
    count = sum(len(tarfile.open(s).getnames()) for s in pack_mod.shards_in(packed_frames))
    assert count == sum(len(os.listdir(synthetic_root / "rawframes" / f)) for f in folders)   # ... one place


def test_write_order_is_shuffled_across_classes(packed_frames, synthetic_root):
    label = {e[0]: e[-1] for e in _entries(synthetic_root / "train_list_rawframes.txt")}
    order = []
    for shard in pack_mod.shards_in(packed_frames):
        with tarfile.open(shard) as tar:
            for name in tar.getnames():
                key = name.split(".", 1)[0]
                if key in label and (not order or order[-1] != key):
                    order.append(key)
    assert order != sorted(order)
    labels = [label[k] for k in order]
    assert labels != sorted(labels)


def test_packed_lists_point_into_shards(packed_frames, synthetic_root):
    for name in LISTS:
        before, after = _entries(synthetic_root / name), _entries(packed_frames / name)
        assert [b[1:] for b in before] == [a[1:] for a in after]      # counts and labels, same order
        for b, a in zip(before, after):
            shard, logical = packed.split(a[0])
            assert logical == b[0] and (packed_frames / shard).is_file()
            # any frame is one pread away and has the original bytes
            frame = sorted(os.listdir(synthetic_root / "rawframes" / b[0]))[0]
            data = packed.read_bytes(str(packed_frames / f"{a[0]}/{frame}"))
            assert data.tobytes() == (synthetic_root / "rawframes" / b[0] / frame).read_bytes()


def test_one_open_per_shard(packed_frames, synthetic_root):
    packed.close_all()
    opens = packed.shard_opens()
    shards = pack_mod.shards_in(packed_frames)
    for shard in shards:
        index = packed.ShardIndex.load(str(shard))
        for logical in index.members:
            packed.read_packed(str(shard), logical)
    assert packed.shard_opens() - opens == len(shards)


def test_unpack_gives_back_files_and_lists(packed_frames, synthetic_root, tmp_path):
    args = ["unpack", packed_frames, tmp_path]
    for name in LISTS:
        args += ["--list", packed_frames / name]
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    for name in LISTS:
        assert (tmp_path / name).read_text().split() == (synthetic_root / name).read_text().split()
        for entry in _entries(synthetic_root / name):
            cmp = filecmp.dircmp(synthetic_root / "rawframes" / entry[0], tmp_path / entry[0])
            assert not cmp.left_only and not cmp.right_only and not cmp.diff_files
            assert filecmp.cmpfiles(cmp.left, cmp.right, cmp.common_files, shallow=False)[0] == cmp.common_files


def test_killed_pack_resumes_to_the_same_bytes(synthetic_root, tmp_path):
    """SIGKILL in the middle of the third shard (a hook on the tar writer kills the process for real), then the same
    command again: the folder ends byte for byte as an uninterrupted pack's."""
    lists = [str(synthetic_root / n) for n in LISTS[:2]]
    args = lambda out: ["prepare", "pack", *lists, "--root", str(synthetic_root / "rawframes"), "--out", str(out),
                        "--prefix", "k", "--shard-size", "200KiB", "--seed", "3"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert CliRunner().invoke(cli, args(whole)).exit_code == 0
    shards = len(list(whole.glob("*.tar")))
    members_per_shard = len(tarfile.open(next(whole.glob("*.tar"))).getnames())
    hook = f"""
import os, signal, tarfile
real, calls = tarfile.TarFile.addfile, [0]
def dying(self, info, fileobj=None):
    calls[0] += 1
    if calls[0] == {2 * members_per_shard + 10}:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, info, fileobj)
tarfile.TarFile.addfile = dying
from jobs.cli import cli
cli({args(killed)!r})
"""
    run = subprocess.run([sys.executable, "-c", hook], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    finished = sorted(p.name for p in killed.glob("*.tar"))
    assert 0 < len(finished) < shards                                       # stopped part-way
    assert list(killed.glob(".*.part"))                                     # a half-written shard, hidden
    assert not list(killed.glob("*.txt"))                                   # no list yet

    assert CliRunner().invoke(cli, args(killed)).exit_code == 0
    assert sorted(p.name for p in killed.iterdir() if not p.name.startswith(".")) == \
        sorted(p.name for p in whole.iterdir())
    for p in whole.iterdir():
        assert filecmp.cmp(p, killed / p.name, shallow=False), p.name


def test_truncated_shard_is_refused_and_named(packed_frames, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(packed_frames, copy)
    shard = pack_mod.shards_in(copy)[1]
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size // 2)
    result = _invoke("check-shards", copy)
    assert result.exit_code == 1
    assert f"{shard}: truncated" in result.output
    # and a read through the index names the shard and the member
    index = packed.ShardIndex.load(str(shard))
    last = max(index.members, key=lambda k: index.members[k][0])
    with pytest.raises(packed.PackedError, match=f"{shard.name}.*{last}.*cut short"):
        packed.read_packed(str(shard), last)


def test_full_check_decodes_every_member_and_names_a_damaged_one(packed_frames, tmp_path):
    assert _invoke("check-shards", packed_frames, "--full").exit_code == 0
    copy = tmp_path / "copy"
    shutil.copytree(packed_frames, copy)
    shard = pack_mod.shards_in(copy)[0]
    index = packed.ShardIndex.load(str(shard))
    victim = sorted(index.members)[5]
    offset, size = index.members[victim]
    with open(shard, "r+b") as f:                      # same size, bytes no decoder accepts
        f.seek(offset)
        f.write(b"\0" * size)
    result = _invoke("check-shards", copy, "--full")
    assert result.exit_code == 1
    assert f"{shard}: member {victim!r}" in result.output


def test_split_parts_are_disjoint_and_complete_and_merge_to_the_lists(synthetic_root, tmp_path):
    lists = [synthetic_root / n for n in LISTS]
    out = tmp_path / "parts"
    for i in range(3):
        result = _invoke("pack", *lists, "--root", synthetic_root / "rawframes", "--out", out,
                         "--shard-size", "300KiB", "--shard", f"{i}/3")
        assert result.exit_code == 0, result.output
        if i < 2:
            assert _invoke("merge", out).exit_code == 1         # refuses while a part is missing
    result = _invoke("merge", out)
    assert result.exit_code == 0, result.output
    owners: dict[str, str] = {}
    for shard in pack_mod.shards_in(out):
        for logical in packed.ShardIndex.load(str(shard)).members:
            folder = logical.rsplit("/", 1)[0]
            assert owners.setdefault(folder, shard.name) == shard.name      # a folder lives in one shard only
    folders = {e[0] for n in LISTS for e in _entries(synthetic_root / n)}
    assert set(owners) == folders                                            # and every folder somewhere
    assert {s.name.split("-")[1] for s in pack_mod.shards_in(out)} == {"0000", "0001", "0002"}
    for name in LISTS:
        after = _entries(out / name)
        assert [packed.split(a[0])[1] for a in after] == [b[0] for b in _entries(synthetic_root / name)]


@pytest.mark.parametrize("count", [1, 3, 7])
def test_work_split_is_disjoint_and_complete(count):
    items = list(range(100))
    parts = [WorkSplit(i, count).take(items) for i in range(count)]
    assert sorted(x for p in parts for x in p) == items
    assert sum(len(p) for p in parts) == len(items)


def test_work_split_from_slurm_array():
    env = {"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "10"}
    assert worksplit.parse(None, env) == WorkSplit(2, 3)
    assert worksplit.parse("1/4", env) == WorkSplit(1, 4)            # the option wins
    assert worksplit.parse(None, {}) == WorkSplit()
    with pytest.raises(ValueError, match="0 <= I < N"):
        worksplit.parse("3/3")


def test_frames_split_three_ways_equals_one_run(synthetic_root, tmp_path):
    src = tmp_path / "videos"
    src.mkdir()
    for p in sorted((synthetic_root / "videos").glob("train_000*.mp4"))[:6]:
        shutil.copy(p, src / p.name)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert _invoke("frames", src, whole, "--workers", 0).exit_code == 0
    for i in range(3):
        result = _invoke("frames", src, parts, "--workers", 0, "--shard", f"{i}/3")
        assert result.exit_code == 0, result.output
        assert (parts / f"frames_failures.part-{i}-of-3.jsonl").exists()
    made = [sorted(os.listdir(parts / d)) for d in sorted(os.listdir(whole)) if (whole / d).is_dir()]
    assert made == [sorted(os.listdir(whole / d)) for d in sorted(os.listdir(whole)) if (whole / d).is_dir()]
    assert _invoke("merge", parts).exit_code == 0
    assert (parts / "frames_failures.jsonl").exists()


def test_tagged_packs_of_two_nodes_concatenate_to_the_whole_list(synthetic_root, tmp_path):
    """Two nodes each pack their own half of a list (as after a split extraction on node-local disks) into one
    shared folder; `cat` of their tagged lists lists every video once, each pointing into an existing shard."""
    lines = (synthetic_root / "train_list_rawframes.txt").read_text().splitlines()
    out = tmp_path / "shared"
    for tag, half in (("n0", lines[::2]), ("n1", lines[1::2])):
        part = tmp_path / f"{tag}.txt"
        part.write_text("\n".join(half) + "\n")
        result = _invoke("pack", part, "--root", synthetic_root / "rawframes", "--out", out, "--tag", tag)
        assert result.exit_code == 0, result.output
    joined = _entries(out / "n0.n0.txt") + _entries(out / "n1.n1.txt")
    assert sorted(packed.split(e[0])[1] for e in joined) == sorted(line.split()[0] for line in lines)
    assert {packed.split(e[0])[0].split("-")[1] for e in joined} == {"n0", "n1"}
    assert all(packed.exists(str(out / f"{e[0]}/img_00001.jpg")) for e in joined)
