"""The checkpoint format: it carries the resolved config and class names, old files still load, every unusable file
is a CheckpointError naming it, and a full disk leaves the previous checkpoint as it was."""
from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from jobs.cli import cli
from jobs.recipes.config import config_dict, load_config
from jobs.runtime import checkpoint as ckpt
from jobs.runtime.checkpoint import CheckpointError, read_checkpoint
from jobs.runtime.weights import build_model, load_for_eval
from jobs.training.schedule import StepSchedule
from tests.helpers import synthetic_overrides

RECIPE = "tsn_r18_synthetic_rgb"


def training_checkpoint(cfg, path, classes=None):
    """A checkpoint built exactly as the trainer builds it (one function: checkpoint.training_state)."""
    torch.manual_seed(0)
    model = build_model(cfg.model)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, StepSchedule(3, cfg.optim.lr_steps, cfg.optim.gamma))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    state = ckpt.training_state(cfg, model, optimizer, scheduler, scaler, epoch=2, iteration=6, best_metric=0.5,
                                rng={"torch": torch.get_rng_state()}, classes=classes)
    ckpt.write_checkpoint(state, path)
    return model


def test_training_state_carries_resolved_config_and_classes(synthetic_root, tmp_path):
    cfg = load_config(RECIPE, synthetic_overrides(synthetic_root) + ["test.sampler.num_clips=2", "optim.lr=0.3"])
    names = tuple((synthetic_root / "classes.txt").read_text().split())
    model = training_checkpoint(cfg, tmp_path / "e.pth", names)
    loaded = read_checkpoint(tmp_path / "e.pth")
    assert loaded.config() == cfg                        # the whole resolved config, overrides included
    assert loaded.classes == names and len(names) == cfg.model.num_classes
    assert loaded.meta == {"num_classes": 12, "arch": "resnet18", "config_name": RECIPE}
    assert loaded.data["epoch"] == 2 and loaded.data["iteration"] == 6
    again = load_for_eval(cfg.model, loaded)
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    # --cfg-options still apply on top of the stored config
    assert loaded.config(["test.sampler.num_clips=7"]).test.sampler.num_clips == 7


def test_old_checkpoint_with_recipe_name_falls_back_to_the_recipe(tmp_path):
    torch.save({"model": {}, "config": RECIPE, "epoch": 1}, tmp_path / "old.pth")
    assert read_checkpoint(tmp_path / "old.pth").config() == load_config(RECIPE)
    torch.save({"model": {}, "config": "tsn_r18_renamed_since"}, tmp_path / "gone.pth")
    with pytest.raises(CheckpointError, match=r"gone\.pth: stores the recipe name 'tsn_r18_renamed_since' only"):
        read_checkpoint(tmp_path / "gone.pth").config()
    torch.save({"state_dict": {}, "meta": {"epoch": 100}}, tmp_path / "mmaction2.pth")
    with pytest.raises(CheckpointError, match=r"mmaction2\.pth: holds no config"):
        read_checkpoint(tmp_path / "mmaction2.pth").config()


def test_stored_config_that_no_longer_validates_names_the_file(tmp_path):
    data = config_dict(load_config(RECIPE))
    data["model"]["renamed_knob"] = 1
    torch.save({"model": {}, "config": data}, tmp_path / "future.pth")
    with pytest.raises(CheckpointError, match=r"future\.pth \(stored config\): model\.renamed_knob: unknown key"):
        read_checkpoint(tmp_path / "future.pth").config()


def test_classes_file_beside_the_list_or_in_the_prefix_parent(tmp_path):
    lists, data = tmp_path / "lists", tmp_path / "data"
    (data / "rawframes").mkdir(parents=True)
    lists.mkdir()
    cfg = load_config(RECIPE, [f"data.train_list={lists / 'train.txt'}", f"data.train_prefix={data / 'rawframes'}"])
    assert ckpt.classes_file(cfg) is None
    (data / "classes.txt").write_text("".join(f"c{i}\n" for i in range(12)))
    assert ckpt.classes_file(cfg) == data / "classes.txt"
    (lists / "classes.txt").write_text("".join(f"beside{i}\n" for i in range(12)))
    assert ckpt.classes_file(cfg) == lists / "classes.txt"          # beside the list comes first
    assert ckpt.dataset_classes(cfg, warn=pytest.fail)[3] == "beside3"
    (lists / "classes.txt").write_text("a\nb\n")
    warnings = []
    assert ckpt.dataset_classes(cfg, warn=warnings.append) is None
    assert warnings == [f"{lists / 'classes.txt'}: 2 class names for 12 classes: class names not stored in checkpoints"]


def test_test_and_predict_without_recipe(synthetic_root, tmp_path):
    """The stored config drives `tsn test CKPT`; an explicit recipe wins; predict names classes from the checkpoint."""
    cfg = load_config(RECIPE, synthetic_overrides(synthetic_root) + ["data.workers=1", "test.sampler.num_clips=2"])
    names = tuple((synthetic_root / "classes.txt").read_text().split())
    training_checkpoint(cfg, tmp_path / "e.pth", names)
    run = CliRunner()
    stored = run.invoke(cli, ["test", str(tmp_path / "e.pth"), "--device", "cpu"])
    assert stored.exit_code == 0, stored.output
    assert "test protocol: 2 clips x 1 crop(s)" in stored.output and "evaluated 12 of 12 videos" in stored.output
    explicit = run.invoke(cli, ["test", RECIPE, str(tmp_path / "e.pth"), "--device", "cpu", "--cfg-options",
                                *synthetic_overrides(synthetic_root), "data.workers=1", "test.sampler.num_clips=4"])
    assert explicit.exit_code == 0, explicit.output
    assert "test protocol: 4 clips x 1 crop(s)" in explicit.output
    folder = sorted((synthetic_root / "rawframes").glob("val_*"))[0]
    result = run.invoke(cli, ["predict", str(tmp_path / "e.pth"), str(folder), "--json", "--topk", "12",
                              "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["topk"]
    assert sorted(r["label"] for r in rows) == list(range(12))
    assert all(r["name"] == names[r["label"]] for r in rows)


def test_old_checkpoint_runs_tsn_test_through_the_recipe_name(synthetic_root, tmp_path):
    torch.manual_seed(0)
    model = build_model(load_config(RECIPE).model)
    torch.save({"model": model.state_dict(), "config": RECIPE, "epoch": 1,
                "meta": {"num_classes": 12, "arch": "resnet18"}}, tmp_path / "old.pth")
    result = CliRunner().invoke(cli, ["test", str(tmp_path / "old.pth"), "--device", "cpu", "--cfg-options",
                                      *synthetic_overrides(synthetic_root), "data.workers=1",
                                      "test.sampler.num_clips=3"])
    assert result.exit_code == 0, result.output
    assert "evaluated 12 of 12 videos" in result.output and "top1_acc" in result.output


def test_unusable_files_name_the_file_and_the_problem(tmp_path):
    torch.save({"model": {"w": torch.arange(5000.0)}}, tmp_path / "good.pth")
    whole = (tmp_path / "good.pth").read_bytes()
    cases = {"empty.pth": (b"", "empty file"),
             "cut.pth": (whole[: len(whole) // 3], "truncated (zip archive incomplete)"),
             "text.pth": (b"epoch 3, lr 0.01\n", "not a torch checkpoint")}
    for name, (content, why) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError) as err:
            read_checkpoint(tmp_path / name)
        assert str(err.value).startswith(f"{tmp_path / name}: {why}")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r"list\.pth: not a torch checkpoint \(holds a list, not a dict\)"):
        read_checkpoint(tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r": is a folder"):
        read_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match=r"nope\.pth: checkpoint not found"):
        read_checkpoint(tmp_path / "nope.pth")


def test_every_truncation_of_a_checkpoint_is_a_checkpoint_error(tmp_path):
    """A file cut at any byte (a copy interrupted, a disk filled) is refused with a reason, never half-loaded."""
    torch.save({"model": {"w": torch.ones(64)}, "epoch": 1}, tmp_path / "good.pth")
    whole = (tmp_path / "good.pth").read_bytes()
    cut = tmp_path / "cut.pth"
    for n in range(0, len(whole), max(1, len(whole) // 97)):
        cut.write_bytes(whole[:n])
        with pytest.raises(CheckpointError) as err:
            read_checkpoint(cut, weights_only=True)
        assert str(err.value).startswith(f"{cut}: ") and ("truncated" in str(err.value) or n < 4), (n, err.value)


def test_weights_only_refusal_says_how_to_trust(tmp_path):
    torch.save({"model": {}, "meta": {"rng": np.random.get_state()}}, tmp_path / "x.pth")   # numpy: not weights-only
    with pytest.raises(CheckpointError, match=r"x\.pth: cannot be read with weights_only=True .*pass --trusted"):
        read_checkpoint(tmp_path / "x.pth", weights_only=True)


def test_is_checkpoint_path(tmp_path):
    (tmp_path / "recipe.toml").write_text("")
    (tmp_path / "weights").write_bytes(b"x")
    assert ckpt.is_checkpoint_path(str(tmp_path / "weights")) and ckpt.is_checkpoint_path("missing/epoch_3.pth")
    assert not ckpt.is_checkpoint_path(str(tmp_path / "recipe.toml")) and not ckpt.is_checkpoint_path(RECIPE)


class FullDisk:
    """A file whose writes fail with ENOSPC once `room` bytes are written (what a full disk does to torch.save)."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            self.f.write(bytes(data[: self.room]))
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_full_disk_checkpoint_write_names_the_file_and_keeps_the_previous(tmp_path, monkeypatch):
    ckpt.save_checkpoint({"model": {"w": torch.zeros(4)}, "epoch": 1}, tmp_path, "epoch_1.pth")
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode), room=200))
    with pytest.raises(CheckpointError) as err:
        ckpt.save_checkpoint({"model": {"w": torch.ones(10_000)}, "epoch": 2}, tmp_path, "epoch_2.pth")
    assert str(err.value) == f"{tmp_path / 'epoch_2.pth'}: cannot write (No space left on device)"
    with pytest.raises(CheckpointError, match="the previous file is unchanged"):
        ckpt.write_checkpoint({"epoch": 3}, tmp_path / "epoch_1.pth")      # overwriting: the old one stays
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_1.pth", "latest"]    # no temp file left behind
    assert ckpt.find_latest(tmp_path).name == "epoch_1.pth"
    assert ckpt.load_checkpoint(tmp_path / "epoch_1.pth")["epoch"] == 1
