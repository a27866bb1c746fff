"""The `tsn` command: one click group, one subcommand per job (each also runs as `python jobs/<job>.py`)."""
from __future__ import annotations

import click

from jobs.bench import bench
from jobs.config import shipped_configs
from jobs.convert import convert
from jobs.demo import demo_command
from jobs.fuse import fuse_command
from jobs.predict import predict_command
from jobs.preflight import check_command, index_command, synthetic_command
from jobs.prepare import prepare
from jobs.profile import profile_command
from jobs.test import test_command
from jobs.train import train_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """TSN (Temporal Segment Networks) on NVIDIA DALI: train, test, fuse, predict, prepare data, profile."""


@cli.command("configs")
def configs_command():
    """List the shipped recipes (model-zoo names)."""
    for name in shipped_configs():
        click.echo(name)


for command in (train_command, test_command, fuse_command, predict_command, demo_command, prepare, convert,
                profile_command, bench):
    cli.add_command(command)
for command in (synthetic_command, index_command, check_command):
    prepare.add_command(command)

