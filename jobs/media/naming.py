"""Frame file names: format templates like MMAction2's `filename_tmpl`, and counting them on disk.

RGB templates have one field, the frame index (`img_{:05}.jpg`, `{:05}.jpg`, `image_{:05d}.jpg`).
Flow templates have two, the direction then the index (`{}_{:05d}.jpg` -> `x_00001.jpg`,
`flow_{}_{:05d}.jpg` -> `flow_x_00001.jpg`). A list's `total_frames` is the number of files that
match the template, so the same template must be used to extract, to list and to train.
"""
from __future__ import annotations

import os
import re
import string
from pathlib import Path

FLOW_DIRECTIONS = ("x", "y")


def _fields(template: str) -> list[tuple[str, str | None]]:
    """(literal text, field spec or None) pairs; raises on templates with 0 or > 2 fields."""
    parts = [(text, None if name is None else spec or "")
             for text, name, spec, _ in string.Formatter().parse(template)]
    n = sum(spec is not None for _, spec in parts)
    if n not in (1, 2):
        raise ValueError(f"frame template {template!r} needs 1 field (RGB) or 2 (flow: direction, index)")
    return parts


def is_flow_template(template: str) -> bool:
    return sum(spec is not None for _, spec in _fields(template)) == 2


def frame_name(template: str, index: int, direction: str | None = None) -> str:
    """File name of frame `index`; `direction` ('x'/'y') is required exactly for flow templates."""
    if is_flow_template(template):
        if direction not in FLOW_DIRECTIONS:
            raise ValueError(f"flow template {template!r} needs direction 'x' or 'y'")
        return template.format(direction, index)
    if direction is not None:
        raise ValueError(f"RGB template {template!r} takes no direction")
    return template.format(index)


def frame_regex(template: str, direction: str | None = None) -> re.Pattern[str]:
    """Regex matching the file names `template` produces (any index width, so 1e5+ frames still count)."""
    flow = is_flow_template(template)
    if flow != (direction is not None):
        raise ValueError(f"template {template!r}: direction {direction!r} does not fit")
    out, seen = [], 0
    for text, spec in _fields(template):
        out.append(re.escape(text))
        if spec is None:
            continue
        # In a flow template the first field is the direction, the second the index.
        out.append(re.escape(direction) if flow and seen == 0 else r"(?P<index>\d+)")
        seen += 1
    return re.compile("".join(out))


def _matches(folder: str | os.PathLike, template: str, direction: str | None) -> int:
    pattern = frame_regex(template, direction)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    return sum(1 for name in names if pattern.fullmatch(name))


def count_frames(folder: str | os.PathLike, template: str) -> int:
    """The frame count of a frame folder, by the one rule every command uses (`tsn prepare filelist`, `tsn predict`
    on a folder or on a parent of folders): the number of files in `folder` named like `template`, every match
    counted, gaps or not, as MMAction2's tools/data/build_file_list.py does (v0.24.1, `len(glob(...))`). A folder
    with a gap therefore lists more frames than its consecutive run from the first index, and the missing file is
    reported when a sample needs it (`tsn prepare check`, or the loader's up-front check in evaluation).

    Flow templates (two fields): the x files, and the y count must agree (ValueError otherwise: an extraction cut
    short). 0 if the folder does not exist.
    """
    if not is_flow_template(template):
        return _matches(folder, template, None)
    nx, ny = _matches(folder, template, "x"), _matches(folder, template, "y")
    if nx != ny:
        raise ValueError(f"{folder}: {nx} x-flow but {ny} y-flow files")
    return nx


def frame_index(template: str, name: str, direction: str | None = None) -> int | None:
    """Index encoded in `name`, or None if it does not match the template."""
    match = frame_regex(template, direction).fullmatch(name)
    return None if match is None else int(match.group("index"))


def list_frames(folder: Path, template: str) -> list[Path]:
    """RGB frame files of `folder` sorted by their index (not by name: widths may differ)."""
    indexed = [(frame_index(template, name), name) for name in os.listdir(folder)]
    return [folder / name for index, name in sorted(i for i in indexed if i[0] is not None)]
