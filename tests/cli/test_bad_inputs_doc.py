"""docs/BAD_INPUTS.md stays true to the test suite: every row names tests that exist, and every CLI error test is
in the table."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.helpers import ROOT

DOC = ROOT / "docs" / "BAD_INPUTS.md"
REF = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def rows() -> list[str]:
    """Table body rows: lines starting with '|', less separators (`| --- |`) and the header above each."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    separator = [line.startswith("|") and set(line) <= set("|-: ") for line in lines]
    return [line for i, line in enumerate(lines) if line.startswith("|") and not separator[i]
            and not (i + 1 < len(lines) and separator[i + 1])]


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_row_names_tests_that_exist():
    table = rows()
    assert len(table) > 40
    for row in table:
        refs = REF.findall(row.rsplit("|", 2)[-2])          # the last column
        assert refs, f"row names no test: {row[:80]}"
        for path, name in refs:
            assert (ROOT / path).is_file(), f"{path} (in: {row[:60]})"
            assert name in functions_in(ROOT / path), f"{path}::{name} does not exist (in: {row[:60]})"


def test_every_cli_error_test_is_in_the_table():
    named = {name for row in rows() for path, name in REF.findall(row) if path == "tests/cli/test_errors.py"}
    assert functions_in(ROOT / "tests" / "cli" / "test_errors.py") - named == set()
