"""The synthetic dataset at a chosen frame size, generated once into a cache folder, as `--cfg-options` overrides.

`tsn profile --synthetic 340x256` and `tsn bench data-benchmark` run real recipes on it: the frames have the size
the recipe expects (340x256, short side 320, short side 256), so decode and resize costs are those of real data.
A folder is reused when its lists exist and match the requested spec (recorded in spec.json), so repeated runs
time the loaders, not the generator.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pipelines.geometry import parse_wxh
from pipelines.synthetic_data import SyntheticSpec, make_synthetic_dataset

# The model zoo's three preprocessings as frame sizes of 16:9 footage (most of Kinetics): the fixed 340x256 resize,
# short side 320 and short side 256 (widths rounded to even sizes, which the synthetic generator needs).
FRAME_SIZES = {"340x256": (340, 256), "320p": (568, 320), "256p": (456, 256)}
NUM_CLASSES = SyntheticSpec().num_classes


def parse_size(text: str) -> tuple[int, int]:
    """'340x256' -> (340, 256); a preprocessing name ('320p') -> its frame size."""
    if text in FRAME_SIZES:
        return FRAME_SIZES[text]
    try:
        return parse_wxh(text)
    except ValueError:
        raise ValueError(f"frame size {text!r}: expected WxH (e.g. 340x256) or one of {sorted(FRAME_SIZES)}") from None


def ensure_dataset(root: str | Path, width: int, height: int, *, videos_per_class: int, val_per_class: int = 2,
                   num_frames: int = 32, workers: int = 2) -> Path:
    """`root/<W>x<H>_v<N>_t<V>_f<F>` (N train and V val videos per class, F frames each), generated unless an
    identical one is already there; returns that folder."""
    spec = SyntheticSpec(width=width, height=height, train_per_class=videos_per_class, val_per_class=val_per_class,
                         num_frames=num_frames, videos=False)
    folder = Path(root) / f"{width}x{height}_v{videos_per_class}_t{val_per_class}_f{num_frames}"
    stamp = folder / "spec.json"
    wanted = json.dumps(dataclasses.asdict(spec), sort_keys=True)
    if not (stamp.is_file() and stamp.read_text() == wanted):
        make_synthetic_dataset(folder, spec, workers=workers)
        stamp.write_text(wanted)
    return folder


def overrides(folder: str | Path, *, repeat: int = 1) -> list[str]:
    """--cfg-options pointing every split of an RGB frame recipe at the synthetic set (test = val list).

    repeat > 1 lists every video that many times (lists written beside the originals): the same files, but epochs
    as long as a real dataset's, so a throughput run is not dominated by epoch boundaries. Only for throughput:
    an evaluation on a repeated list counts each video several times.
    """
    folder = Path(folder)
    train, val = _repeated(folder / "train_list_rawframes.txt", repeat), _repeated(folder / "val_list_rawframes.txt",
                                                                                repeat)
    out = [f"model.num_classes={NUM_CLASSES}", "data.source=frames", "data.modality=RGB",
           "data.filename_tmpl=img_{:05}.jpg", "data.start_index=1"]
    for split, path in (("train", train), ("val", val), ("test", val)):
        out += [f"data.{split}_list={path}", f"data.{split}_prefix={folder / 'rawframes'}"]
    return out


def _repeated(list_file: Path, repeat: int) -> Path:
    if repeat <= 1:
        return list_file
    tiled = list_file.with_name(f"{list_file.stem}_x{repeat}.txt")
    if not tiled.is_file():
        tiled.write_text(list_file.read_text() * repeat)
    return tiled


def data_overrides(root: Path, kind: str = "rawframes") -> list[str]:
    """--cfg-options pointing a recipe's lists at a synthetic dataset (kind: rawframes|flow|videos|videos_vp9)."""
    prefix = Path(root) / ("videos" if kind.startswith("videos") else "rawframes")
    out = []
    for split, name in (("train", "train"), ("val", "val"), ("test", "val")):
        out += [f"data.{split}_list={Path(root) / f'{name}_list_{kind}.txt'}", f"data.{split}_prefix={prefix}"]
    return out
