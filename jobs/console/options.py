"""`--cfg-options a=1 b=2`: MMAction2's one-flag-many-values shape, as a click option (also repeatable)."""
from __future__ import annotations

import click


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
    """`--device cpu | cuda | cuda:N`, the one spelling every command uses (jobs/training/distributed.py)."""
    from jobs.training.distributed import DEVICE_HELP
    return click.option("--device", default=default, show_default=default is not None, help=DEVICE_HELP)
