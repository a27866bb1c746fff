"""`tsn convert mmaction2 SRC.pth DST.pth`: an MMAction2 TSN checkpoint -> our checkpoint format.

Test and predict also read MMAction2 files directly (keys are mapped on load); converting once gives a file
whose keys are ours and whose load report you have seen.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not jobs/, goes first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import click

from jobs.console.errors import run


@click.group("convert")
def convert():
    """Import checkpoints from other toolkits."""


@convert.command("mmaction2")
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--trusted", is_flag=True,
              help="Allow full unpickling (needed when the file's meta holds arbitrary objects); trusted files only.")
def mmaction2_command(src, dst, trusted):
    """Convert an MMAction2 0.x/1.x TSN checkpoint (`backbone.*`, `cls_head.fc_cls.*`) to ours."""
    from jobs.runtime.checkpoint import read_checkpoint, write_checkpoint
    from model.mmaction2 import convert_checkpoint
    # weights_only unless --trusted: an MMAction2 file may come from anywhere, and unpickling can run code.
    source = read_checkpoint(src, weights_only=not trusted)
    try:
        out = convert_checkpoint(source.data, Path(src).name)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    write_checkpoint(out, dst)
    state = out["model"]
    head = state.get("head.fc.weight")
    classes = f", {head.shape[0]} classes" if head is not None else ""
    click.echo(f"{src} -> {dst}: {len(state)} tensors{classes}")


if __name__ == "__main__":
    run(convert)
