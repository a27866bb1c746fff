"""Every recipe kind reads packed shards with the same pixels as the folders/files they were packed from; a damaged
member is skipped and logged in training and named (shard + member) in evaluation; a recipe trains and tests from
shards."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from jobs.recipes.config import load_config
from jobs.recipes.loaders import build_loader
from pipelines import packed
from pipelines.readers import BadSample
from pipelines.sharding import Shard, epoch_order
from tests.helpers import ROOT, synthetic_overrides

SMALL = ["data.videos_per_gpu=4", "data.val_videos_per_gpu=2", "data.test_videos_per_gpu=1", "data.workers=1"]
KINDS = {   # list kind -> (lists, folder under the synthetic root)
    "rawframes": (("train_list_rawframes.txt", "val_list_rawframes.txt"), "rawframes"),
    "flow": (("train_list_flow.txt", "val_list_flow.txt"), "rawframes"),
    "videos": (("train_list_videos.txt", "val_list_videos.txt"), "videos"),
    "videos_vp9": (("train_list_videos_vp9.txt", "val_list_videos_vp9.txt"), "videos"),
}
PROTOCOLS = {
    "multiscale_train": ("tsn_r50_1x1x3_100e_kinetics400_rgb", "train", "rawframes", []),
    "ten_crop_test": ("tsn_r50_1x1x3_100e_kinetics400_rgb", "test", "rawframes", ["test.sampler.num_clips=2"]),
    "dense_test": ("tsn_r50_dense_1x1x8_100e_kinetics400_rgb", "test", "rawframes",
                   ["test.sampler.num_sample_positions=2"]),
    "flow_train": ("tsn_r50_320p_1x1x3_110e_kinetics400_flow", "train", "flow", []),
    "flow_val": ("tsn_r50_320p_1x1x3_110e_kinetics400_flow", "val", "flow", []),
    "video_pyav_train": ("tsn_r50_video_1x1x8_100e_kinetics400_rgb", "train", "videos", ["data.decoder=pyav"]),
    "video_dali_vp9_val": ("tsn_r18_synthetic_video_rgb", "val", "videos_vp9", ["data.decoder=dali"]),
}


def pack(synthetic_root: Path, out: Path, kind: str) -> list[str]:
    """Pack one list kind; return the --cfg-options pointing at the packed lists."""
    from jobs.cli import cli
    lists, folder = KINDS[kind]
    result = CliRunner().invoke(cli, ["prepare", "pack", *(str(synthetic_root / n) for n in lists),
                                          "--root", str(synthetic_root / folder), "--out", str(out),
                                          "--shard-size", "256KiB"])
    assert result.exit_code == 0, result.output
    opts = []
    for split, name in (("train", lists[0]), ("val", lists[1]), ("test", lists[1])):
        opts += [f"data.{split}_list={out / name}", f"data.{split}_prefix={out}"]
    return opts


@pytest.fixture(scope="module")
def packed_sets(synthetic_root, tmp_path_factory):
    return {kind: pack(synthetic_root, tmp_path_factory.mktemp(f"packed_{kind}"), kind) for kind in KINDS}


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_batches_from_shards_equal_batches_from_folders(synthetic_root, packed_sets, protocol):
    recipe, split, kind, extra = PROTOCOLS[protocol]
    folders = load_config(recipe, synthetic_overrides(synthetic_root, kind) + SMALL + extra)
    shards = load_config(recipe, synthetic_overrides(synthetic_root, kind) + SMALL + extra + packed_sets[kind])
    a_loader, b_loader = build_loader(folders, split), build_loader(shards, split)
    assert all(packed.split(r.path) for r in b_loader.source.records)          # really reading shards
    n = 0
    for a, b in zip(a_loader, b_loader):
        assert torch.equal(a.clips, b.clips) and torch.equal(a.labels, b.labels) and torch.equal(a.index, b.index)
        n += 1
        if n == 2:
            break
    assert n == 2


def _damage_member(out: Path, list_name: str, line: int) -> tuple[str, str]:
    """Overwrite the first frame of the video on 0-based `line` of a packed list with bytes no decoder takes."""
    field = (out / list_name).read_text().splitlines()[line].split()[0]
    shard, logical = packed.split(str(out / field))
    index = packed.ShardIndex.load(shard)
    member = sorted(k for k in index.members if k.startswith(logical + "/img_"))
    offset, size = index.members[member[0]]
    with open(shard, "r+b") as f:
        f.seek(offset)
        f.write(b"\0" * size)
    packed.close_all()
    return shard, member[0]


def test_damaged_member_is_skipped_in_training_and_named_in_evaluation(synthetic_root, tmp_path):
    out = tmp_path / "packed"
    opts = pack(synthetic_root, out, "rawframes")
    bad = 3
    shard, member = _damage_member(out, "train_list_rawframes.txt", bad)
    # every frame sampled: the damaged first frame is always read
    cfg = load_config("tsn_r18_synthetic_rgb", synthetic_overrides(synthetic_root) + opts + [
        "data.workers=1", "data.videos_per_gpu=4", "data.max_bad_fraction=0.2", "train.sampler.num_clips=24",
        "train.sampler.clip_len=1"])
    loader = build_loader(cfg, "train", work_dir=str(tmp_path / "work"))
    n = len(loader.source.records)
    delivered = np.concatenate([b.index.numpy() for b in loader])
    order = epoch_order(n, epoch=0, seed=cfg.runtime.seed, shuffle=True)
    assert delivered.tolist() == np.where(order == bad, (bad + 1) % n, order).tolist()
    logged = [json.loads(x) for x in (tmp_path / "work" / "bad_samples.jsonl").read_text().splitlines()]
    assert len(logged) == 1 and logged[0]["line"].endswith(f"train_list_rawframes.txt:{bad + 1}")
    assert Path(shard).name in json.dumps(logged[0]) and member in json.dumps(logged[0])

    evaluation = load_config("tsn_r18_synthetic_rgb", synthetic_overrides(synthetic_root) + opts + [
        "data.workers=1", f"data.test_list={out / 'train_list_rawframes.txt'}", "test.sampler.num_clips=24",
        "test.sampler.clip_len=1"])
    with pytest.raises(BadSample, match=rf"{Path(shard).name}.*{member}"):
        for _ in build_loader(evaluation, "test"):
            pass


@pytest.mark.timeout(600)
def test_recipe_trains_and_tests_from_shards(synthetic_root, packed_sets, tmp_path):
    options = [x for o in synthetic_overrides(synthetic_root) + packed_sets["rawframes"] +
               ["data.workers=1", "optim.epochs=1", "runtime.eval_interval=1"] for x in ("--cfg-options", o)]
    env = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    train = subprocess.run([sys.executable, "jobs/train.py", "tsn_r18_synthetic_rgb", "--device", "cpu",
                            "--work-dir", str(tmp_path / "w"), *options], cwd=ROOT, capture_output=True, text=True,
                           env=dict(os.environ, **env), timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    test = subprocess.run([sys.executable, "jobs/test.py", "tsn_r18_synthetic_rgb", str(tmp_path / "w" / "epoch_1.pth"),
                           "--device", "cpu", "--dump", str(tmp_path / "s.npy"), *options], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ, **env), timeout=600)
    assert test.returncode == 0, test.stderr[-3000:]
    scores = np.load(tmp_path / "s.npy")
    val_lines = [x for x in (synthetic_root / "val_list_rawframes.txt").read_text().splitlines() if x.strip()]
    assert scores.shape == (len(val_lines), 12)         # one score row per val video, 12 classes


def test_full_check_reads_members_through_the_index_and_names_a_damaged_one(synthetic_root, tmp_path):
    from jobs.cli import cli
    out = tmp_path / "packed"
    opts = pack(synthetic_root, out, "rawframes")
    shard, member = _damage_member(out, "val_list_rawframes.txt", 2)
    args = ["check", "tsn_r18_synthetic_rgb", "--split", "val", "--full", "--workers", "0"]
    for o in synthetic_overrides(synthetic_root) + opts:
        args += ["--cfg-options", o]
    result = CliRunner().invoke(cli, ["prepare"] + args)
    assert result.exit_code == 1, result.output
    report = [json.loads(x) for x in (out / "val_list_rawframes.txt.check.jsonl").read_text().splitlines()]
    assert len(report) == 1 and report[0]["line"].endswith("val_list_rawframes.txt:3")
    assert Path(shard).name in report[0]["reason"] + report[0]["path"] and member.split("/")[-1] in report[0]["reason"]


@pytest.mark.parametrize("step", ["check", "index"])
def test_split_check_and_index_are_disjoint_complete_and_merge(synthetic_root, tmp_path, step):
    from jobs.cli import cli
    out = tmp_path / "packed"
    opts = pack(synthetic_root, out, "videos")
    for i in range(3):
        if step == "index":
            args = ["index", str(out / "val_list_videos.txt"), "--data-prefix", str(out), "--workers", "0"]
        else:
            args = ["check", "tsn_r18_synthetic_video_rgb", "--split", "val", "--full", "--workers", "0"]
            for o in synthetic_overrides(synthetic_root, "videos") + opts:
                args += ["--cfg-options", o]
        result = CliRunner().invoke(cli, ["prepare"] + args + ["--shard", f"{i}/3"])
        assert result.exit_code == 0, result.output
    stem = "val_list_videos.txt.index" if step == "index" else "val_list_videos.txt.full_check"
    path_of = (lambda row: row["path"]) if step == "index" else (lambda row: row["key"][1])   # cache rows
    parts = [[path_of(json.loads(x)) for x in (out / f"{stem}.part-{i}-of-3.jsonl").read_text().splitlines()]
             for i in range(3)]
    every = [str(out / line.split()[0]) for line in (out / "val_list_videos.txt").read_text().splitlines()]
    assert sorted(p for part in parts for p in part) == sorted(every)          # complete, and disjoint
    assert CliRunner().invoke(cli, ["prepare", "merge", str(out)]).exit_code == 0
    merged = [path_of(json.loads(x)) for x in (out / f"{stem}.jsonl").read_text().splitlines()]
    assert sorted(merged) == sorted(every)


def _batches(loader, n: int = 2):
    out = []
    for b in loader:
        out.append(b)
        if len(out) == n:
            break
    return out


def _same(a, b) -> bool:
    return torch.equal(a.clips, b.clips) and torch.equal(a.labels, b.labels) and torch.equal(a.index, b.index)


def test_ddp_shards_and_a_resumed_epoch_read_the_same_batches(synthetic_root, packed_sets):
    """Rank 1 of 2 and epoch 2 (what a resumed run starts with) from shards equal the same from folders."""
    base = synthetic_overrides(synthetic_root) + SMALL
    folders = load_config("tsn_r50_1x1x3_100e_kinetics400_rgb", base)
    shards = load_config("tsn_r50_1x1x3_100e_kinetics400_rgb", base + packed_sets["rawframes"])
    for kw in ({"shard": Shard(1, 2)}, {"start_epoch": 2}, {"start_epoch": 1, "first_batch": 2}):
        a, b = _batches(build_loader(folders, "train", **kw)), _batches(build_loader(shards, "train", **kw))
        assert len(a) == len(b) == 2 and all(_same(x, y) for x, y in zip(a, b)), kw


def test_a_list_may_mix_packed_and_folder_lines(synthetic_root, packed_sets, tmp_path):
    """Every other line of the packed list replaced by the folder line (absolute path): the same batches."""
    opts = dict(o.split("=", 1) for o in packed_sets["rawframes"])
    packed_lines = Path(opts["data.train_list"]).read_text().splitlines()
    folder_lines = (synthetic_root / "train_list_rawframes.txt").read_text().splitlines()
    mixed = [p if i % 2 else " ".join([str(synthetic_root / "rawframes" / f.split()[0]), *f.split()[1:]])
             for i, (p, f) in enumerate(zip(packed_lines, folder_lines))]
    (tmp_path / "mixed.txt").write_text("\n".join(mixed) + "\n")
    base = synthetic_overrides(synthetic_root) + SMALL
    folders = load_config("tsn_r50_1x1x3_100e_kinetics400_rgb", base)
    both = load_config("tsn_r50_1x1x3_100e_kinetics400_rgb", base + [f"data.train_list={tmp_path / 'mixed.txt'}",
                                                                      f"data.train_prefix={opts['data.train_prefix']}"])
    loader = build_loader(both, "train")
    kinds = {packed.split(r.path) is not None for r in loader.source.records}
    assert kinds == {True, False}
    a, b = _batches(build_loader(folders, "train")), _batches(loader)
    assert all(_same(x, y) for x, y in zip(a, b))


def test_allow_partial_evaluates_the_readable_videos_of_a_damaged_shard(synthetic_root, tmp_path, random_checkpoint):
    from jobs.evaluation.tester import test_checkpoint
    out = tmp_path / "packed"
    opts = pack(synthetic_root, out, "rawframes")
    shard, member = _damage_member(out, "val_list_rawframes.txt", 1)
    cfg = load_config("tsn_r18_synthetic_rgb", synthetic_overrides(synthetic_root) + opts + [
        "data.workers=1", "test.sampler.num_clips=24", "test.sampler.clip_len=1"])
    result = test_checkpoint(cfg, str(random_checkpoint), device="cpu", allow_partial=True, say=lambda _: None)
    total = len([x for x in (out / "val_list_rawframes.txt").read_text().splitlines() if x.strip()])
    assert (result["evaluated"], result["total"]) == (total - 1, total)
    [skipped] = result["skipped"]
    assert skipped["line"].endswith("val_list_rawframes.txt:2")
    assert Path(shard).name in skipped["reason"] + skipped["path"] and member.rsplit("/", 1)[-1] in skipped["reason"]


def test_check_refuses_a_truncated_shard_up_front_and_names_it(synthetic_root, tmp_path):
    """`tsn prepare check` (no --full) on a packed list: every video of a truncated shard is unusable, the reason
    names the shard; the other shards' videos pass."""
    from jobs.cli import cli
    out = tmp_path / "packed"
    opts = pack(synthetic_root, out, "rawframes")
    field = (out / "val_list_rawframes.txt").read_text().splitlines()[0].split()[0]
    shard = out / packed.split(field)[0]
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size - 1000)
    packed.close_all()
    args = ["prepare", "check", "tsn_r18_synthetic_rgb", "--split", "val", "--workers", "0"]
    for o in synthetic_overrides(synthetic_root) + opts:
        args += ["--cfg-options", o]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    report = [json.loads(x) for x in (out / "val_list_rawframes.txt.check.jsonl").read_text().splitlines()]
    in_shard = [line for line in (out / "val_list_rawframes.txt").read_text().splitlines()
                if line.startswith(shard.name + "#")]
    assert len(report) == len(in_shard) >= 1
    assert all(r["problem"] == "truncated" and f"{shard}: truncated" in r["reason"] for r in report)
