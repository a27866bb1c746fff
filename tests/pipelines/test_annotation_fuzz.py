"""Property tests of the annotation-list parsers: whatever bytes or tokens a list holds, the outcome is records or an
AnnotationError that names the file (and the line); what the writers produce parses back to the same records."""
from __future__ import annotations

import os
import re
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.annotations import (
    AnnotationError,
    format_rawframe_line,
    format_video_line,
    load_class_names,
    load_labels,
    load_rawframe_list,
    load_video_list,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

PARSERS = {
    "rawframes": lambda p: load_rawframe_list(p, num_classes=10),
    "rawframes+offset": lambda p: load_rawframe_list(p, with_offset=True),
    "multi-label": lambda p: load_rawframe_list(p, multi_class=True, num_classes=400),
    "videos": lambda p: load_video_list(p, multi_class=True),
    "video single": lambda p: load_video_list(p, num_classes=5),
    "labels": lambda p: load_labels(p),
    "classes": lambda p: load_class_names(p),
}


def check_outcome(path: str, content: bytes):
    """Every parser on `content`: records, or an AnnotationError whose message starts `path:` (`path:N:` with N an
    existing line when it is about one line)."""
    with open(path, "wb") as f:
        f.write(content)
    n_lines = len(content.split(b"\n"))
    for kind, parse in PARSERS.items():
        try:
            out = parse(path)
        except AnnotationError as err:
            message = str(err)
            assert message.startswith(f"{path}:") or message.startswith(f"{path}: "), (kind, message)
            line = re.match(rf"{re.escape(path)}:(\d+): ", message)
            assert line is None or 1 <= int(line.group(1)) <= n_lines, (kind, message)
            continue
        assert len(out) > 0, kind
        if kind in ("rawframes", "rawframes+offset", "multi-label", "videos", "video single"):
            for r in out:
                assert r.labels and all(lab >= 0 for lab in r.labels), (kind, r)
                assert r.total_frames is None or r.total_frames >= 0
                assert r.offset >= 0 and r.source.startswith(f"{path}:")


@FUZZ
@given(content=st.binary(max_size=300))
def test_random_bytes(tmp_path, content):
    check_outcome(str(tmp_path / "list.txt"), content)


# Tokens a list line may plausibly hold, right or wrong: numbers (also out of range, signed, non-ASCII digits),
# paths, comment marks, and the whitespace str.split() knows besides spaces.
TOKENS = st.one_of(
    st.integers(-3, 500).map(str),
    st.sampled_from(["0", "-0", "+7", "1_000", "99999999999999999999", "1e3", "0x10", "٣", "nan", "#", "#x",
                     "a/b.mp4", "class a", "train_0001", "\ufeffv", "ü", ".", "\\"]),
    st.text(alphabet=string.ascii_letters + string.digits + "/._-", min_size=1, max_size=8),
)
SEPARATORS = st.sampled_from([" ", "  ", "\t", " \r", "\x0b", "\x0c", "\u3000", "\u00a0"])


@st.composite
def list_text(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        tokens = draw(st.lists(TOKENS, max_size=6))
        lines.append(draw(SEPARATORS).join(tokens))
    ending = draw(st.sampled_from(["\n", "\r\n", ""]))
    return (ending.join(lines) + ending).encode("utf-8")


@FUZZ
@given(content=list_text())
def test_random_tokens(tmp_path, content):
    check_outcome(str(tmp_path / "list.txt"), content)


PATHS = st.text(alphabet=string.ascii_letters + string.digits + "/._-", min_size=1, max_size=20).filter(
    lambda p: not p.startswith("#"))
LABELS = st.lists(st.integers(0, 10_000), min_size=1, max_size=4).map(tuple)


@FUZZ
@given(rows=st.lists(st.tuples(PATHS, LABELS, st.integers(0, 10**6), st.integers(0, 10**6)), min_size=1,
                     max_size=5),
       kind=st.sampled_from(["rawframes", "rawframes+offset", "videos"]))
def test_written_lines_parse_back(tmp_path, rows, kind):
    path = str(tmp_path / "list.txt")
    if kind == "videos":
        lines = [format_video_line(p, labels) for p, labels, _, _ in rows]
    else:
        with_offset = kind == "rawframes+offset"
        lines = [format_rawframe_line(p, total, labels, offset if with_offset else None)
                 for p, labels, total, offset in rows]
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    if kind == "videos":
        parsed = [(r.path, r.labels) for r in load_video_list(path, data_prefix="d", multi_class=True)]
        assert parsed == [(os.path.join("d", p), labels) for p, labels, _, _ in rows]
    else:
        parsed = [(r.path, r.labels, r.total_frames, r.offset)
                  for r in load_rawframe_list(path, data_prefix="d", with_offset=with_offset, multi_class=True)]
        assert parsed == [(os.path.join("d", p), labels, total, offset if with_offset else 0)
                          for p, labels, total, offset in rows]
