"""`tsn export [CONFIG] CKPT --format onnx|torchscript --out FILE [--verify]`: a deployable TSN graph.

The graph takes the pipeline's clips (B, V, C, H, W), uint8 by default and normalised inside with the recipe's
mean/std, and returns logits (B, num_classes) with TSN's consensus (the mean over the V views) inside.
See docs/EXPORT.md for running it with onnxruntime or torch.jit.load.
"""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not jobs/, goes first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import click

from jobs.console.errors import run
from jobs.console.options import cfg_options, config_and_checkpoint
from jobs.exporting.spec import DEFAULT_RTOL, FORMATS, INPUTS, ExportError, parse_size, spec_for


@click.command("export")
@click.argument("paths", nargs=-1, required=True, metavar="[CONFIG] CKPT")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="Graph format.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The exported file.")
@click.option("--views", type=click.IntRange(min=1),
              help="V, views per video (default: the recipe's test views of one crop set, e.g. 25 for 1x1x25).")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1),
              help="B the graph is traced with (the only one it takes without --dynamic-batch).")
@click.option("--size", help="H x W of every view: N or HxW (default: the recipe's test crop).")
@click.option("--dynamic-batch", is_flag=True, help="Any batch size (ONNX axis 0 named 'batch').")
@click.option("--input", "input_kind", type=click.Choice(INPUTS), default="uint8", show_default=True,
              help="uint8: raw pixels, normalised inside the graph; float: float32 already normalised.")
@click.option("--verify", "do_verify", is_flag=True,
              help="Compare the exported graph with PyTorch eager on random clips and one real test batch.")
@click.option("--check-only", is_flag=True, help="Do not export: verify the existing --out FILE against CKPT.")
@click.option("--rtol", default=DEFAULT_RTOL, show_default=True, type=float,
              help="--verify fails when max|exported - eager| > rtol * max|eager logit|.")
@cfg_options
def export_command(paths, fmt, out, views, batch, size, dynamic_batch, input_kind, do_verify, check_only, rtol,
                   cfg_options):
    """Export CKPT as ONNX or TorchScript, optionally verified against PyTorch eager. CONFIG: the recipe it was
    trained with (default: the one the checkpoint stores)."""
    from jobs.exporting.formats import export_model, read_spec
    from jobs.exporting.verify import real_clips, verify
    from jobs.exporting.wrapper import load_tsn, wrap
    cfg, checkpoint, rest = config_and_checkpoint(paths, cfg_options)
    if rest:
        raise click.UsageError(f"expected [CONFIG] CKPT, got {len(paths)} arguments")
    try:
        tsn = load_tsn(cfg, checkpoint)
        if check_only:
            spec = read_spec(out, fmt)
            if spec.num_classes != cfg.model.num_classes or spec.channels != cfg.model.in_channels:
                raise ExportError(f"{out}: exported for {spec.num_classes} classes x {spec.channels} channels, "
                                  f"{checkpoint.path} has {cfg.model.num_classes} x {cfg.model.in_channels}")
        else:
            spec = spec_for(cfg, fmt, views=views, batch=batch, size=parse_size(size) if size else None,
                            input=input_kind, dynamic_batch=dynamic_batch, checkpoint=checkpoint.path)
        # The real batch first: the loader's DALI workers fork before the exporter starts its threads.
        real, note = real_clips(cfg, spec) if (do_verify or check_only) else (None, "")
        if not check_only:
            export_model(wrap(tsn, cfg, spec.input), spec, out)
            click.echo(f"exported {spec.format} to {out}: {spec.describe()}")
        if do_verify or check_only:
            click.echo(note)
            checks = verify(out, spec, tsn, cfg.normalize, real=real, rtol=rtol)
            for check in checks:
                click.echo(check.line())
            click.echo(f"verified {out} against PyTorch eager ({len(checks)} checks, rtol {rtol:g})")
    except ExportError as err:
        raise click.ClickException(str(err)) from None


if __name__ == "__main__":
    run(export_command)
