"""Shared command-line shapes: `--cfg-options a=1 b=2` (MMAction2's one-flag-many-values, also repeatable) and
`[CONFIG] CHECKPOINT` (test, predict)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

from jobs.runtime.devices import DEVICE_HELP

if TYPE_CHECKING:
    from jobs.recipes.config import Config
    from jobs.runtime.checkpoint import Checkpoint


class KeyValueOption(click.Option):
    """A multiple=True option that also swallows the `key=value` words following it."""

    def add_to_parser(self, parser, ctx):
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            opt = parser._long_opt.get(name) or parser._short_opt.get(name)
            if opt is None:
                continue
            store = opt.process

            def process(value, state, store=store):
                store(value, state)
                while state.rargs and "=" in state.rargs[0] and not state.rargs[0].startswith("-"):
                    store(state.rargs.pop(0), state)

            opt.process = process


def cfg_options(fn):
    return click.option("--cfg-options", multiple=True, cls=KeyValueOption,
                        help="key=value overrides: --cfg-options optim.lr=0.02 data.workers=4")(fn)


def device_option(default: str | None = None):
    """`--device cpu | cuda | cuda:N`, the one spelling every command uses (jobs/runtime/devices.py)."""
    return click.option("--device", default=default, show_default=default is not None, help=DEVICE_HELP)


def config_and_checkpoint(words: tuple[str, ...], overrides) -> tuple[Config, Checkpoint, tuple[str, ...]]:
    """`[CONFIG] CHECKPOINT REST...` -> (Config, Checkpoint, REST).

    The first word is the checkpoint when it looks like one (an existing file that is not a .toml/.json recipe, or
    a .pth/.pt/.ckpt name) or is the only word; the config then comes from the checkpoint. A CONFIG given first
    wins over the stored one. `overrides` (--cfg-options) apply either way.
    """
    from jobs.recipes.config import load_config
    from jobs.runtime.checkpoint import is_checkpoint_path, read_checkpoint
    if not words:
        raise click.UsageError("missing argument CHECKPOINT")
    if is_checkpoint_path(words[0]) or len(words) == 1:
        checkpoint = read_checkpoint(words[0])
        return checkpoint.config(overrides), checkpoint, tuple(words[1:])
    cfg = load_config(words[0], overrides)
    return cfg, read_checkpoint(words[1]), tuple(words[2:])
