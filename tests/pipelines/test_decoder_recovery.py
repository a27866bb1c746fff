"""A decoder failure inside DALI (valid JPEG frame header, damaged tables behind it) under the skip policy: the bad
video is found, logged, skipped with the policy's deterministic substitute, and the epoch goes on; under the raise
policy the error names its list line and file."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from jobs.recipes.config import load_config
from jobs.recipes.loaders import build_loader
from pipelines.readers import BadSample
from pipelines.sharding import epoch_order
from tests.helpers import synthetic_overrides


def damage_huffman_tables(path):
    """Damage what lies behind the frame header: every Huffman table's code counts become impossible (> 256 codes).

    SOI, the SOF (the size the loader's header check reads) and EOI stay valid, so the file passes that check and
    fails only inside DALI's decoder. (A scrambled entropy-coded body alone does not do it: DALI 2.4's libjpeg-turbo
    decodes it to garbage with "Corrupt JPEG data" warnings, tested below.)"""
    data = bytearray(path.read_bytes())
    i = 2
    while data[i + 1] != 0xDA:                        # walk the marker segments up to the start of scan
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if data[i + 1] == 0xC4:
            data[i + 5:i + 21] = b"\xff" * 16
        i += 2 + length
    path.write_bytes(bytes(data))


def scramble_entropy_body(path):
    """Keep every marker segment through the SOS header and the final EOI; randomise the scan data."""
    data = bytearray(path.read_bytes())
    sos = data.find(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")
    body = np.random.default_rng(0).integers(0, 256, len(data) - 2 - start, dtype=np.uint8)
    data[start:-2] = body.tobytes()
    path.write_bytes(bytes(data))


@pytest.fixture()
def damaged(synthetic_root, tmp_path):
    """A copy of the synthetic frames where one training video's JPEGs all have damaged Huffman tables."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root, ignore=shutil.ignore_patterns("videos"))
    lines = (root / "train_list_rawframes.txt").read_text().split("\n")
    bad_line = 5                                                           # 1-based list line
    folder = root / "rawframes" / lines[bad_line - 1].split()[0]
    for jpeg in folder.glob("img_*.jpg"):
        damage_huffman_tables(jpeg)
    return root, bad_line - 1


def test_training_epoch_survives_and_delivers_the_policys_substitutes(damaged, tmp_path):
    root, bad = damaged
    cfg = load_config("tsn_r18_synthetic_rgb", synthetic_overrides(root) + [
        "data.workers=1", "data.videos_per_gpu=4", "data.max_bad_fraction=0.2"])
    loader = build_loader(cfg, "train", work_dir=str(tmp_path / "work"))
    n = len(loader.source.records)
    delivered = np.concatenate([b.index.numpy() for b in loader])
    # The skip policy: every entry of the epoch's order loads itself, the bad one loads its successor instead.
    order = epoch_order(n, epoch=0, seed=cfg.runtime.seed, shuffle=True)
    expected = np.where(order == bad, (bad + 1) % n, order)
    assert delivered.tolist() == expected.tolist()
    logged = [json.loads(line) for line in (tmp_path / "work" / "bad_samples.jsonl").read_text().splitlines()]
    assert {e["line"] for e in logged} == {f"{root / 'train_list_rawframes.txt'}:{bad + 1}"}
    assert all("decoder failed" in e["reason"] for e in logged)
    # The next epoch starts clean on the rebuilt pipeline and skips the video up front.
    again = np.concatenate([b.index.numpy() for b in loader])
    order1 = epoch_order(n, epoch=1, seed=cfg.runtime.seed, shuffle=True)
    assert again.tolist() == np.where(order1 == bad, (bad + 1) % n, order1).tolist()


def test_raise_policy_names_the_file_and_line(damaged):
    root, bad = damaged
    cfg = load_config("tsn_r18_synthetic_rgb", synthetic_overrides(root) + [
        "data.workers=1", "data.videos_per_gpu=4", "data.on_error=raise"])
    with pytest.raises(BadSample, match=rf"train_list_rawframes.txt:{bad + 1}: .*the decoder failed"):
        for _ in build_loader(cfg, "train"):
            pass


def test_scrambled_entropy_body_decodes_without_error(tmp_path):
    """What DALI 2.4's CPU decoder does with a damaged scan: garbage pixels, no error (so nothing to recover from;
    `tsn prepare check --full` is where such files are caught)."""
    from nvidia.dali import fn, pipeline_def
    from PIL import Image
    path = tmp_path / "f.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(path, quality=90)
    clean = np.asarray(Image.open(path))
    scramble_entropy_body(path)
    encoded = np.fromfile(path, np.uint8)

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def decode():
        return fn.decoders.image(fn.external_source(source=lambda: [encoded], batch=True), device="cpu")

    (out,) = decode().run()
    pixels = np.asarray(out[0])
    assert pixels.shape == (64, 80, 3)
    assert np.abs(pixels.astype(int) - clean.astype(int)).mean() > 20      # decoded, but not the picture


def test_truncated_video_is_skipped_with_the_policys_substitute(synthetic_root, tmp_path):
    """A video list with one file truncated mid-stream: logged with its list line, replaced by the next video, and
    the rest of the epoch is the order the skip policy defines."""
    videos = tmp_path / "videos"
    shutil.copytree(synthetic_root / "videos", videos)
    lines = (synthetic_root / "train_list_videos.txt").read_text().split("\n")
    bad = 3                                                                # 0-based list index
    victim = videos / lines[bad].split()[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])                            # cut mid-stream (the index is at the end)
    listed = tmp_path / "train.txt"
    listed.write_text("\n".join(lines))
    cfg = load_config("tsn_r18_synthetic_video_rgb", synthetic_overrides(synthetic_root, "videos") + [
        f"data.train_list={listed}", f"data.train_prefix={videos}", "data.workers=1", "data.videos_per_gpu=4",
        "data.max_bad_fraction=0.2"])
    loader = build_loader(cfg, "train", work_dir=str(tmp_path / "work"))
    n = len(loader.source.records)
    delivered = np.concatenate([b.index.numpy() for b in loader])
    order = epoch_order(n, epoch=0, seed=cfg.runtime.seed, shuffle=True)
    assert delivered.tolist() == np.where(order == bad, (bad + 1) % n, order).tolist()
    logged = [json.loads(line) for line in (tmp_path / "work" / "bad_samples.jsonl").read_text().splitlines()]
    assert [e["line"] for e in logged] == [f"{listed}:{bad + 1}"] and logged[0]["path"] == str(victim)
