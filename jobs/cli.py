"""The `tsn` command: one click group, one subcommand per job (each also runs as `python jobs/<job>.py`).

Expected errors print one line, `tsn <job>: error: <message>`, and exit 1 (jobs/console/errors.py); `tsn --debug`
or TSN_DEBUG=1 shows their traceback.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # python jobs/cli.py: the repo root, not jobs/, goes first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import click

from jobs.bench import bench
from jobs.configs import configs_command
from jobs.console.dali_env import warn_install_problems
from jobs.console.errors import DEBUG_ENV, Group, enable_debug
from jobs.convert import convert
from jobs.demo import demo_command
from jobs.export import export_command
from jobs.fuse import fuse_command
from jobs.plot import plot_command
from jobs.predict import predict_command
from jobs.prepare import prepare
from jobs.profile import profile_command
from jobs.test import test_command
from jobs.train import train_command


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help=f"Show the traceback of expected errors too (or set {DEBUG_ENV}=1).")
def cli(debug):
    """TSN (Temporal Segment Networks) on NVIDIA DALI: train, test, fuse, predict, prepare, profile, export, plot."""
    if debug:
        enable_debug()
    warn_install_problems()       # package metadata only: two DALI wheels, or DALI's CUDA major != torch's


for command in (train_command, test_command, fuse_command, predict_command, demo_command, prepare, convert,
                profile_command, bench, configs_command, export_command, plot_command):
    cli.add_command(command)


if __name__ == "__main__":
    cli()
