"""The user docs against the code: the README's recipe tables, and every `tsn` / `make` command the docs show.

The recipe table is written by hand from MMAction2's model-zoo README; these tests check that each row names a
shipped recipe whose modality and test protocol are the ones the row states, and that no recipe is left out.
Commands are checked the way a reader would try them: the command path exists and `--help` lists every option used.
"""
from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from jobs.cli import cli
from jobs.recipes.config import load_config, shipped_configs
from tests.helpers import ROOT

README = ROOT / "README.md"
DOCS = [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]

# Hand count of the model-zoo table under "## Recipes": the 26 configs MMAction2's TSN README links (UCF-101 1,
# Kinetics-400 9, data benchmark 6, Something-Something 4, MiT 1, M-MiT 1, ActivityNet 4), plus the v0.8.0 UCF-101
# 75e recipe and the two short-side-256 Kinetics rows named after their checkpoints.
MODEL_ZOO_ROWS = 1 + 9 + 6 + 4 + 1 + 1 + 4 + 3
TEST_ONLY_ROWS = 6          # data benchmark: {340x256, 320p, 256p} x {10crop, 3crop}
CROPS = {"TenCrop": "ten", "ThreeCrop": "three", "CenterCrop": "center"}


def section(text: str, heading: str) -> str:
    """The body of the `## heading` section (up to the next level-2 heading)."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README.md has no '## {heading}' section"
    return match.group(1)


def tables(text: str) -> dict[str, list[list[str]]]:
    """Markdown tables of `text`, keyed by their header line: rows as lists of stripped cells."""
    out, block = {}, []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if len(block) > 2:
            out[block[0]] = [[c.strip() for c in row.strip().strip("|").split("|")] for row in block[2:]]
        block = []
    return out


def recipe_tables() -> tuple[list[list[str]], list[list[str]]]:
    found = tables(section(README.read_text(), "Recipes"))
    zoo = found.get("| recipe | dataset | modality | test protocol | model-zoo top-1 |")
    test_only = found.get("| recipe | frames | test protocol |")
    assert zoo is not None and test_only is not None, f"recipe tables not found; headers: {list(found)}"
    return zoo, test_only


def name_of(cell: str) -> str:
    match = re.fullmatch(r"`(tsn_\w+)`", cell)
    assert match, f"first cell should be a `recipe` name, got {cell!r}"
    return match.group(1)


def protocol(text: str) -> tuple[bool, int, str, int]:
    """'25 clips x TenCrop 224' / 'dense 8 clips x 10 positions, CenterCrop 224' -> (dense, clips, crop, size)."""
    match = re.fullmatch(r"(dense )?(\d+) clips x (?:10 positions, )?(TenCrop|ThreeCrop|CenterCrop) (\d+)", text)
    assert match, f"unreadable test protocol {text!r}"
    return bool(match.group(1)), int(match.group(2)), CROPS[match.group(3)], int(match.group(4))


def test_model_zoo_table_lists_every_training_recipe_once():
    zoo, _ = recipe_tables()
    names = [name_of(row[0]) for row in zoo]
    shipped = set(shipped_configs())
    assert len(names) == MODEL_ZOO_ROWS
    assert len(set(names)) == len(names), "a recipe is listed twice"
    assert not sorted(set(names) - shipped), "rows that are not shipped recipes"
    training = {n for n in shipped if "synthetic" not in n and not n.startswith("tsn_r50_test_")}
    assert set(names) == training, f"shipped recipes missing from the README: {sorted(training - set(names))}"


def test_test_only_table_lists_the_six_test_recipes():
    _, test_only = recipe_tables()
    names = [name_of(row[0]) for row in test_only]
    assert len(names) == len(set(names)) == TEST_ONLY_ROWS
    assert set(names) <= set(shipped_configs())
    assert all(n.startswith("tsn_r50_test_") for n in names)


@pytest.mark.parametrize("row", recipe_tables()[0], ids=lambda row: row[0].strip("`"))
def test_model_zoo_row_states_the_recipes_modality_and_protocol(row):
    name, _dataset, modality, test_protocol, top1 = row
    cfg = load_config(name_of(name))
    assert modality == {"RGB": "RGB", "Flow": "flow"}[cfg.data.modality]
    s, a = cfg.test.sampler, cfg.test.augment
    assert protocol(test_protocol) == (s.dense, s.num_clips, a.crop, a.crop_size)
    assert re.fullmatch(r"(mAP )?\d+\.\d+( / \d+\.\d+)?( [¹²³])?", top1), top1


@pytest.mark.parametrize("row", recipe_tables()[1], ids=lambda row: row[0].strip("`"))
def test_test_only_row_states_the_recipes_protocol(row):
    name, _frames, test_protocol = row
    s, a = (cfg := load_config(name_of(name))).test.sampler, cfg.test.augment
    assert protocol(test_protocol) == (s.dense, s.num_clips, a.crop, a.crop_size)


# ------------------------------------------------------------------------------------------ commands in the docs

def shell_lines(text: str):
    """Commands of the shell code blocks (continuations joined, comments dropped) and of inline `tsn ...` spans."""
    for block in re.findall(r"^```(?:shell|bash|sh)\n(.*?)^```", text, re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line)
            yield from (part.strip() for part in re.split(r"&&|\|\||;|\s\|\s", line) if part.strip())
    yield from re.findall(r"`(tsn [^`]+)`", text)


def doc_commands() -> list[tuple[str, list[str]]]:
    """(where, tokens after `tsn`) for every tsn command, `python jobs/<job>.py` and torchrun line; ('make', [target])."""
    found = []
    for doc in DOCS:
        for line in shell_lines(doc.read_text()):
            words = line.split()
            where = f"{doc.name}: {line}"
            if words[0] == "tsn":
                found.append((where, words[1:]))
            elif words[0] in ("torchrun", "python") and (job := next((w for w in words if w.startswith("jobs/")), None)):
                found.append((where, [re.fullmatch(r"jobs/(\w+)\.py", job).group(1)] + words[words.index(job) + 1:]))
            elif words[0] == "make":
                found.append((where, ["make"] + words[1:]))
    return found


COMMANDS = doc_commands()


def test_the_docs_show_commands():
    assert len(COMMANDS) > 40          # the quick start, DATASETS.md and PERFORMANCE.md are mostly commands
    assert ("README.md: make demo", ["make", "demo"]) in COMMANDS
    assert ("README.md: make test", ["make", "test"]) in COMMANDS


@pytest.mark.parametrize("where, words", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_doc_command_exists_with_its_options(where, words):
    if words[0] == "make":
        targets = re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), re.M)
        assert words[1] in targets, f"{where}: no make target {words[1]!r}"
        return
    root_help = CliRunner().invoke(cli, ["--help"]).output
    while words and words[0].startswith("--"):        # options of the `tsn` group itself (`tsn --debug train ...`)
        assert re.search(rf"(?<![\w-]){words[0]}(?![\w-])", root_help), f"{where}: tsn has no option {words[0]}"
        words = words[1:]
    if not words or words[0].startswith(("<", "...")):  # a placeholder (`tsn <command> ...`), not a command to run
        return
    path, group = [], cli
    for word in words:                       # descend through groups: `tsn prepare flow`, `tsn bench data-benchmark`
        sub = group.get_command(click.Context(group), word) if isinstance(group, click.Group) else None
        if sub is None:
            break
        path.append(word)
        group = sub
    assert path, f"{where}: {words[0]!r} is not a tsn command"
    result = CliRunner().invoke(cli, path + ["--help"])
    assert result.exit_code == 0, f"{where}: `tsn {' '.join(path)} --help` failed\n{result.output}"
    rest = " ".join(words[len(path):])
    for option in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest))):
        assert re.search(rf"(?<![\w-]){option}(?![\w-])", result.output), \
            f"{where}: `tsn {' '.join(path)}` has no option {option}"
    shipped = set(shipped_configs())
    for word in words[len(path):]:
        if re.fullmatch(r"tsn_r\d+\w*", word):
            assert word in shipped, f"{where}: {word} is not a shipped recipe"
