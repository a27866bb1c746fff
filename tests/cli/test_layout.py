"""The layout rules, read from the source (imports parsed with ast, never executed):

  * pipelines/ and model/ never import jobs, nor each other;
  * the jobs sub-packages import one another only along the edges of SUBPACKAGE_EDGES, which has no cycle;
  * jobs/*.py holds only command modules (each defines a click command or group) besides __init__.py;
  * a command module is imported by nothing but the CLI group (jobs/cli.py, which names each one in COMMANDS and
    imports it when it runs): not by other commands, not by the jobs sub-packages, not by tests;
  * every command, and every subcommand of a command group, answers `--help` when run as `python jobs/<command>.py`.
"""
from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.helpers import ROOT

COMMANDS = sorted(p.stem for p in (ROOT / "jobs").glob("*.py") if p.stem not in ("__init__", "cli"))


def python_files(*tops: str):
    for top in tops:
        yield from (p for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts)


def imported_modules(path) -> set[str]:
    """Absolute module names imported by a file (relative imports resolved against its package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)   # `from jobs import train`
    return found


def top(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("layer,forbidden", [("pipelines", {"jobs", "model"}), ("model", {"jobs", "pipelines"})])
def test_lower_layers_do_not_import_upwards_or_sideways(layer, forbidden):
    bad = [f"{p.relative_to(ROOT)}: {m}" for p in python_files(layer) for m in imported_modules(p)
           if top(m) in forbidden]
    assert not bad, "\n".join(bad)


# jobs sub-package -> the jobs sub-packages it may import (besides pipelines and model). A new sub-package, or a new
# edge, is added here on purpose or not at all; the table itself must stay acyclic (test below).
SUBPACKAGE_EDGES = {
    "recipes": set(),                                   # recipes (TOML -> Config) and config -> loader
    "media": set(),                                     # frame names and counting, finding videos and frame folders
    "reporting": set(),                                 # curves, summaries and tables from logs
    "runtime": {"recipes"},                             # devices, processes, AMP, checkpoints, model weights
    "console": {"recipes", "runtime"},                  # shared command-line shapes, expected errors
    "evaluation": {"recipes", "runtime", "media"},      # scoring, test, predict, metrics, fusion
    "training": {"recipes", "runtime", "evaluation"},   # the training loop (validation is evaluation)
    "dataprep": {"recipes", "media"},                   # `tsn prepare`
    "exporting": {"recipes", "runtime"},                # `tsn export`
    "profiling": {"recipes", "runtime", "training", "evaluation", "dataprep"},   # times what the others run
}


def subpackage_imports() -> dict[tuple[str, str], list[str]]:
    """(importing sub-package, imported sub-package) -> the files with such an import."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in python_files("jobs"):
        parts = path.relative_to(ROOT).parts
        if len(parts) < 3:          # a command module or jobs/__init__.py
            continue
        for module in imported_modules(path):
            words = module.split(".")
            if words[0] == "jobs" and len(words) > 1 and words[1] != parts[1]:
                found.setdefault((parts[1], words[1]), []).append(str(path.relative_to(ROOT)))
    return found


def test_every_jobs_subpackage_is_in_the_edge_table():
    packages = {p.parent.name for p in (ROOT / "jobs").glob("*/__init__.py")}
    assert packages == set(SUBPACKAGE_EDGES), f"add to or remove from SUBPACKAGE_EDGES: {packages ^ set(SUBPACKAGE_EDGES)}"


def test_jobs_subpackages_import_only_along_the_allowed_edges():
    bad = [f"{src} -> {dst}: {', '.join(sorted(set(files)))}" for (src, dst), files in subpackage_imports().items()
           if dst not in SUBPACKAGE_EDGES.get(src, set())]
    assert not bad, "imports between jobs sub-packages outside SUBPACKAGE_EDGES:\n" + "\n".join(bad)


def test_the_allowed_edges_have_no_cycle():
    done: set[str] = set()

    def visit(package: str, path: tuple[str, ...]):
        assert package not in path, f"cycle: {' -> '.join((*path, package))}"
        if package not in done:
            for dst in SUBPACKAGE_EDGES[package]:
                visit(dst, (*path, package))
            done.add(package)

    for package in SUBPACKAGE_EDGES:
        visit(package, ())


def test_the_edge_scan_sees_real_imports():
    """The check above can fail: the scan finds the one sideways edge everybody knows (validation runs the scorer)."""
    assert "jobs/training/trainer.py" in subpackage_imports()[("training", "evaluation")]


def test_jobs_top_level_holds_only_commands():
    for name in COMMANDS + ["cli"]:
        source = (ROOT / "jobs" / f"{name}.py").read_text(encoding="utf-8")
        assert "@click.command(" in source or "@click.group(" in source, f"jobs/{name}.py is not a command module"


def test_command_modules_are_imported_only_by_the_cli_group():
    from jobs.cli import COMMANDS as GROUP
    commands = {f"jobs.{name}" for name in COMMANDS}
    bad = []
    for path in python_files("jobs", "pipelines", "model", "tests"):
        if path == ROOT / "jobs" / "cli.py":
            continue
        hits = imported_modules(path) & commands
        if hits:
            bad.append(f"{path.relative_to(ROOT)} imports {sorted(hits)}")
    assert not bad, "\n".join(bad)
    listed = {module for module, _ in GROUP.values()}
    assert commands == listed, f"command modules vs the CLI group's COMMANDS: {sorted(commands ^ listed)}"


# Every command and subcommand, run the way a user runs a script; one interpreter for all of them (runpy executes
# each file as __main__, as `python jobs/<command>.py` does), so the check costs one start-up, not thirty.
DRIVER = """
import runpy, sys
from pathlib import Path
root = Path(sys.argv[1])
failed = []
for line in sys.argv[2:]:
    script, *args = line.split()
    sys.argv = [str(root / 'jobs' / (script + '.py')), *args, '--help']
    try:
        runpy.run_path(sys.argv[0], run_name='__main__')
        failed.append(line + ': no SystemExit')
    except SystemExit as exc:
        if exc.code not in (0, None):
            failed.append(f'{line}: exit {exc.code}')
print('FAILED:' + repr(failed))
"""


def subcommands() -> list[str]:
    import click

    from jobs.cli import COMMANDS as GROUP
    from jobs.cli import cli
    lines = []
    for name in COMMANDS:
        command = cli.get_command(click.Context(cli), next(k for k, (m, _) in GROUP.items() if m == f"jobs.{name}"))
        lines.append(name)
        lines += [f"{name} {sub}" for sub in getattr(command, "commands", {})]
    return lines


def test_every_command_and_subcommand_answers_help_as_a_script():
    lines = subcommands()
    assert {"prepare check", "prepare index", "prepare synthetic", "prepare filelist", "convert mmaction2",
            "bench data-benchmark"} <= set(lines)
    result = subprocess.run([sys.executable, "-c", DRIVER, str(ROOT), *lines], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FAILED:[]" in result.stdout, result.stdout[-3000:]
    assert result.stdout.count("Usage:") + result.stdout.count("usage:") >= len(lines)
