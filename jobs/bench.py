"""`tsn bench data-benchmark`: the model zoo's Kinetics-400 Data Benchmark grid (jobs/profiling/data_benchmark.py).
`tsn bench video-decode`: our CPU video decoding against decord (jobs/profiling/video_decode_bench.py)."""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not jobs/, goes first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import json

import click

from jobs.console.errors import run
from jobs.console.options import device_option
from jobs.profiling.data_benchmark import AUGMENTS, SIZES, SMOKE_NOTE, Small, first_videos, format_grid, run_cell
from jobs.profiling.video_decode_bench import KINDS, format_rows, parse_variant, run_bench


@click.group("bench")
def bench():
    """Benchmark grids from the model zoo."""


@bench.command("data-benchmark")
@click.option("--sizes", default=",".join(SIZES), show_default=True, help="Preprocessings to run (comma list).")
@click.option("--augments", default=",".join(AUGMENTS), show_default=True, help="Training augmentations.")
@click.option("--epochs", type=int, default=1, show_default=True, help="Training epochs per cell.")
@click.option("--videos-per-class", type=int, default=2, show_default=True,
              help="Synthetic training videos per class (12 classes).")
@click.option("--val-per-class", type=int, default=1, show_default=True, help="Synthetic test videos per class.")
@click.option("--test-videos", type=int, default=4, show_default=True,
              help="Test on the first N videos of the test list (0 = all): 25x10 views are ~all the run time.")
@click.option("--arch", default="resnet18", show_default=True, help="Backbone (the model zoo used resnet50).")
@click.option("--batch", type=int, default=8, show_default=True, help="Training videos per batch.")
@click.option("--throughput-batches", type=int, default=6, show_default=True, help="Timed batches per pipeline.")
@device_option("cpu")
@click.option("--data-root", default="work_dirs/synthetic", show_default=True, help="Synthetic data cache.")
@click.option("--work-dir", default="work_dirs/data_benchmark", show_default=True, help="Checkpoints and logs.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the rows as JSON.")
def data_benchmark(sizes, augments, epochs, videos_per_class, val_per_class, test_videos, arch, batch,
                   throughput_batches, device, data_root, work_dir, out):
    """Run the Kinetics-400 Data Benchmark grid on synthetic frames of each preprocessing's size."""
    from jobs.dataprep.synthetic import ensure_dataset, overrides, parse_size
    from jobs.runtime.devices import dali_device, pick_device
    say = lambda msg: click.echo(msg, err=True)
    small = Small(epochs=epochs, arch=arch, batch=batch, throughput_batches=throughput_batches)
    device = dali_device(pick_device(device))[0]      # the DALI device: cpu | gpu
    rows = []
    for size in sizes.split(","):
        if size not in SIZES:
            raise click.BadParameter(f"{size!r}: choose from {', '.join(SIZES)}", param_hint="--sizes")
        w, h = parse_size(size)
        folder = ensure_dataset(data_root, w, h, videos_per_class=videos_per_class, val_per_class=val_per_class)
        for augment in augments.split(","):
            if augment not in AUGMENTS:
                raise click.BadParameter(f"{augment!r}: choose from {', '.join(AUGMENTS)}", param_hint="--augments")
            data = overrides(folder) + first_videos(folder / "val_list_rawframes.txt", test_videos)
            rows += run_cell(size, augment, data, small, Path(work_dir), device, say)
    click.echo(f"Kinetics-400 Data Benchmark grid ({arch}, {epochs} epoch(s), {videos_per_class} training videos per "
               f"class, {test_videos or 'all'} test videos, synthetic frames, device {device})")
    click.echo(format_grid(rows))
    click.echo(f"note: {SMOKE_NOTE}")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps({"rows": rows, "note": SMOKE_NOTE, "small": small.__dict__}, indent=2))


@bench.command("video-decode")
@click.option("--recipe", default="tsn_r50_video_1x1x8_100e_kinetics400_rgb", show_default=True,
              help="Whose train and test samplers give the frame indices.")
@click.option("--kinds", default="all", show_default=True,
              help="File families (comma list of numbers, 1-based, from: " + "; ".join(
                  f"{i + 1} {k.name}" for i, k in enumerate(KINDS)) + "), or all.")
@click.option("--files", type=int, default=3, show_default=True, help="Files per family.")
@click.option("--epochs", type=int, default=4, show_default=True, help="Clips per file (one sampler draw each).")
@click.option("--rounds", type=int, default=3, show_default=True, help="Alternating rounds (one run per decoder).")
@click.option("--workers", type=int, default=2, show_default=True, help="Decoding processes (1: this process).")
@click.option("--variant", "variants", multiple=True,
              help="Also time decode_sampled_frames with these DecodeOptions, e.g. threads=2,thread_type=FRAME or "
                   "skip_nonref=0 (repeatable).")
@click.option("--data-root", default="work_dirs/video_decode_bench", show_default=True,
              help="Where the generated files are kept (reused).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the rows as JSON.")
def video_decode(recipe, kinds, files, epochs, rounds, workers, variants, data_root, out):
    """Clips/s of pipelines/pyav_decode.py decode_sampled_frames vs decord and torchcodec (exact and approximate seek)
    on generated H.264 files (needs `decord`; torchcodec is skipped, with the reason, where it cannot load)."""
    say = lambda msg: click.echo(msg, err=True)
    from jobs.profiling.reference_loader import missing
    if missing("decord"):
        raise click.UsageError("this benchmark needs the decord package: pip install 'tsn-dali[decord]'")
    try:
        chosen = KINDS if kinds == "all" else tuple(KINDS[int(i) - 1] for i in kinds.split(","))
    except (ValueError, IndexError):
        raise click.BadParameter(f"{kinds!r}: numbers 1-{len(KINDS)} or all", param_hint="--kinds") from None
    try:
        extra = tuple(parse_variant(v) for v in variants)
    except (ValueError, TypeError) as err:
        raise click.BadParameter(str(err), param_hint="--variant") from None
    rows = run_bench(Path(data_root), recipe=recipe, kinds=chosen, files=files, epochs=epochs, rounds=rounds,
                     workers=workers, variants=extra, say=say)
    click.echo(f"decode_sampled_frames vs decord and torchcodec ({recipe} samplers, {workers} worker process(es), one "
               f"FFmpeg/decord thread each, median of {rounds} alternating rounds; ratios = ours / the peer's clips/s "
               "in the same round)")
    click.echo(format_rows(rows))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(rows, indent=2))


@bench.command("shards")
@click.option("--videos-per-class", type=int, default=170, show_default=True,
              help="Synthetic 340x256 training frame folders per class (12 classes).")
@click.option("--val-per-class", type=int, default=10, show_default=True, help="Synthetic test folders per class.")
@click.option("--rounds", type=int, default=3, show_default=True, help="Alternating rounds.")
@click.option("--workers", type=int, default=2, show_default=True, help="DALI worker processes.")
@click.option("--no-strace", is_flag=True, help="Do not count openat() calls with strace.")
@click.option("--data-root", default="work_dirs/synthetic", show_default=True, help="Synthetic data cache.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the rows as JSON.")
def shards(videos_per_class, val_per_class, rounds, workers, no_strace, data_root, out):
    """Frame folders vs packed shards: clips/s, opens and bytes read per clip, warm and cold page cache; pack and
    unpack MB/s."""
    from jobs.dataprep.synthetic import ensure_dataset
    from jobs.profiling.shards_bench import BenchOptions, format_rows, run_bench
    say = lambda msg: click.echo(msg, err=True)
    folder = ensure_dataset(data_root, 340, 256, videos_per_class=videos_per_class, val_per_class=val_per_class)
    opts = BenchOptions(workers=workers, count_opens=not no_strace)
    packing, rows = run_bench(folder, folder.parent / (folder.name + "_shards"), opts, rounds, say)
    click.echo(f"pack: {packing}")
    click.echo(format_rows(rows))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps({"pack": packing, "rows": rows}, indent=2))


if __name__ == "__main__":
    run(bench)
