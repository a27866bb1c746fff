"""`tsn train CONFIG`: train a TSN recipe on one CPU, one GPU, or many through torchrun (then it is DDP)."""
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repo root, not jobs/, goes first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import click

from jobs.console.errors import run
from jobs.console.options import cfg_options, device_option
from jobs.recipes.config import load_config
from jobs.runtime.signals import DEFAULT_SIGNAL, PREEMPTED_EXIT, parse_signal


@click.command("train")
@click.argument("config")
@click.option("--work-dir", help="Outputs (checkpoints, logs, config dump); default work_dirs/<config name>.")
@click.option("--resume", help="'auto' (latest in the work dir) or a checkpoint path: continue exactly.")
@click.option("--load-from", help="Weights to start from (ours or MMAction2's), epoch 0.")
@click.option("--amp/--no-amp", default=None, help="Mixed precision (default: the recipe's runtime.amp).")
@click.option("--auto-scale-lr", is_flag=True, help="Scale lr linearly from the recipe's own 8 x videos_per_gpu batch.")
@click.option("--no-validate", is_flag=True, help="Skip validation during training.")
@click.option("--validate", "legacy_validate", is_flag=True, hidden=True, help="Accepted for MMAction2 0.x habits.")
@click.option("--seed", type=int, help="Override runtime.seed.")
@click.option("--deterministic", is_flag=True, help="Deterministic algorithms (bit-exact resume on one process).")
@cfg_options
@device_option()
@click.option("--tensorboard", is_flag=True, help="Also write TensorBoard events to <work_dir>/tensorboard.")
@click.option("--preempt-signal", default=DEFAULT_SIGNAL, show_default=True,
              help="Besides SIGTERM, the signal that stops training after the current step with a mid-epoch "
                   f"checkpoint and exit code {PREEMPTED_EXIT} (SLURM: --signal=USR1@90); 'none' for SIGTERM only.")
@click.option("--requeue", is_flag=True, help="When stopped by a signal, requeue the job: scontrol requeue "
                                               "$SLURM_JOB_ID (where SLURM_JOB_ID is set).")
def train_command(config, work_dir, resume, load_from, amp, auto_scale_lr, no_validate, legacy_validate, seed,
                  deterministic, cfg_options, device, tensorboard, preempt_signal, requeue):
    """Train CONFIG (a recipe name or a .toml path)."""
    overrides = list(cfg_options) + ([f"runtime.seed={seed}"] if seed is not None else []) \
        + ([f"runtime.amp={str(amp).lower()}"] if amp is not None else [])
    cfg = load_config(config, overrides)
    preempt_signal = None if preempt_signal.lower() == "none" else preempt_signal
    if preempt_signal:
        try:
            parse_signal(preempt_signal)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--preempt-signal") from None
    from jobs.training.trainer import train
    # The recipe's lr is for 8 x ITS videos_per_gpu: a --cfg-options change of the batch is what gets scaled for.
    recipe_vpg = load_config(config).data.videos_per_gpu if auto_scale_lr else None
    train(cfg, work_dir or f"work_dirs/{cfg.name}", resume=resume, load_from=load_from,
        validate_every=not no_validate, deterministic=deterministic, device=device,
        auto_scale_lr=auto_scale_lr, tensorboard=tensorboard, recipe_videos_per_gpu=recipe_vpg,
        preempt_signal=preempt_signal, requeue=requeue)


if __name__ == "__main__":
    run(train_command)
