"""`tsn configs`: list the shipped recipes (one per model-zoo row, same names), or show one resolved."""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not jobs/, goes first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import json

import click

from jobs.console.errors import run
from jobs.console.options import cfg_options
from jobs.recipes.config import config_dict, load_config, shipped_configs


@click.command("configs")
@click.argument("name", required=False)
@cfg_options
def configs_command(name, cfg_options):
    """List the shipped recipes; with NAME, print that recipe fully resolved (base + overrides) as JSON."""
    if name is None:
        for recipe in shipped_configs():
            click.echo(recipe)
        return
    click.echo(json.dumps(config_dict(load_config(name, cfg_options)), indent=2))


if __name__ == "__main__":
    run(configs_command)
