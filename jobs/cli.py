"""The `tsn` command: one click group, one subcommand per job (each also runs as `python jobs/<job>.py`).

Expected errors print one line, `tsn <job>: error: <message>`, and exit 1 (jobs/console/errors.py); `tsn --debug`
or TSN_DEBUG=1 shows their traceback.

Commands load lazily: the group knows each one by its module (COMMANDS) and imports it when it is run or its help is
shown, and a command module imports its heavy libraries (torch, DALI, OpenCV, PyAV) only inside the command. So
`tsn --help`, `tsn configs` and `tsn <command> --help` start without them (tests/cli/test_startup.py).
"""
import sys
from importlib import import_module
from pathlib import Path

if __name__ == "__main__":  # python jobs/cli.py: the repo root, not jobs/, goes first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import click

from jobs.console.dali_env import warn_install_problems
from jobs.console.errors import DEBUG_ENV, Group, enable_debug

# command name -> (module, click object), in the order `tsn --help` lists them.
COMMANDS = {
    "train": ("jobs.train", "train_command"),
    "test": ("jobs.test", "test_command"),
    "fuse": ("jobs.fuse", "fuse_command"),
    "predict": ("jobs.predict", "predict_command"),
    "demo": ("jobs.demo", "demo_command"),
    "prepare": ("jobs.prepare", "prepare"),
    "convert": ("jobs.convert", "convert"),
    "profile": ("jobs.profile", "profile_command"),
    "bench": ("jobs.bench", "bench"),
    "configs": ("jobs.configs", "configs_command"),
    "export": ("jobs.export", "export_command"),
    "plot": ("jobs.plot", "plot_command"),
}


class LazyGroup(Group):
    """A group whose subcommands are imported by name when needed, not when the group is built."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name]
        return getattr(import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help=f"Show the traceback of expected errors too (or set {DEBUG_ENV}=1).")
def cli(debug):
    """TSN (Temporal Segment Networks) on NVIDIA DALI: train, test, fuse, predict, prepare, profile, export, plot."""
    if debug:
        enable_debug()
    warn_install_problems()       # package metadata only: two DALI wheels, or DALI's CUDA major != torch's


if __name__ == "__main__":
    cli()
