"""The `tsn` command: one click group, one subcommand per job (each also runs as `python jobs/<job>.py`)."""
from __future__ import annotations

import click

from jobs.config import shipped_configs
from jobs.demo import demo_command
from jobs.fuse import fuse_command
from jobs.predict import predict_command
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


for command in (train_command, test_command, fuse_command, predict_command, demo_command):
    cli.add_command(command)


def _optional(module: str, attr: str, name: str):
    """Jobs whose modules may be absent in a partial checkout still leave the rest of the CLI usable."""
    import importlib
    try:
        cli.add_command(getattr(importlib.import_module(module), attr), name)
    except ImportError as err:  # pragma: no cover - only in a broken install
        click.echo(f"warning: `tsn {name}` unavailable: {err}", err=True)
