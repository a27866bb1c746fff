"""The `tsn` command: one click group, one subcommand per job (each also runs as `python jobs/<job>.py`)."""
from __future__ import annotations

import click

from jobs.bench import bench
from jobs.configs import configs_command
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """TSN (Temporal Segment Networks) on NVIDIA DALI: train, test, fuse, predict, prepare, profile, export, plot."""


for command in (train_command, test_command, fuse_command, predict_command, demo_command, prepare, convert,
                profile_command, bench, configs_command, export_command, plot_command):
    cli.add_command(command)

