"""Expected errors as one line on stderr, `tsn <command>: error: <message>`, exit status 1, no traceback.

Expected errors are the user's to fix: a bad recipe, annotation list or data, too many unreadable videos, a missing,
corrupt or unfitting checkpoint, ImageNet weights that cannot be had offline. Each is raised as one of the project's
own types (EXPECTED) with a message that names the file (and line). Anything else is a bug and keeps its traceback.
`tsn --debug ...`, `python jobs/<job>.py --debug ...` or TSN_DEBUG=1 shows the traceback of expected errors too.

`run(command)` is the entry point of every command module (`python jobs/train.py`); the `tsn` group (jobs/cli.py,
class Group here) goes through it as well whenever click would run it standalone.
"""
from __future__ import annotations

import os
import sys
from typing import NoReturn

import click

from jobs.dataprep.listio import AnnotationError as OfficialAnnotationError
from jobs.exporting.spec import ExportError
from jobs.reporting.runs import ReportError
from jobs.training.checkpoint import CheckpointError
from jobs.training.config import ConfigError
from jobs.training.distributed import DeviceError
from jobs.training.loaders import DataError
from jobs.training.tester import Incomplete
from model.backbone import WeightsUnavailable
from pipelines.annotations import AnnotationError
from pipelines.loader import TooManyBadSamples
from pipelines.readers import BadSample
from pipelines.recovery import DecoderFailure
from pipelines.watchdog import LoaderStalled, WorkerDied

EXPECTED: tuple[type[Exception], ...] = (
    ConfigError,              # recipe: unknown key, wrong type, TOML syntax, unknown recipe name
    AnnotationError,          # annotation list / classes.txt: malformed line, label range, empty, missing, not UTF-8
    OfficialAnnotationError,  # `tsn prepare filelist`: a dataset's official annotation files
    DataError,                # data under the raise policy (evaluation), a missing data folder
    TooManyBadSamples,        # training skipped more than data.max_bad_fraction
    BadSample,                # one unreadable video under the raise policy
    Incomplete,               # `tsn test`: fewer videos evaluated than the list holds
    CheckpointError,          # missing, empty, truncated, corrupt, unwritable, or another architecture / class count
    WeightsUnavailable,       # ImageNet weights offline and not cached, a missing `pretrained` file
    DeviceError,              # --device names a device this machine does not have
    LoaderStalled,            # no batch within data.batch_timeout (names the batch and its list lines)
    WorkerDied,               # a DALI data worker died (names its pid, signal and the batch)
    DecoderFailure,           # DALI failed on a batch whose videos each decode alone
    ExportError,              # `tsn export`: a bad size, an unreadable or unverifiable export
    ReportError,              # `tsn plot`: a missing or malformed log
)
DEBUG_ENV = "TSN_DEBUG"
WORKER_MARK = "Exception traceback received from worker"   # DALI's wrapper of an error in a Python worker
_QUALNAMES = {f"{t.__module__}.{t.__qualname__}" for t in EXPECTED}
_state = {"debug": False}   # set by the `tsn --debug` option during one run()


def debug_enabled() -> bool:
    return _state["debug"] or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def enable_debug():
    _state["debug"] = True


def expected_message(err: BaseException) -> str | None:
    """The message to print for an expected error, or None for an unexpected one (which keeps its traceback)."""
    if isinstance(err, EXPECTED):
        return str(err)
    text = str(err)
    if WORKER_MARK in text:
        # DALI's worker processes send back only built-in exception types: a BadSample raised while reading reaches
        # this process as Exception(<the worker's traceback>), whose text ends "pipelines.readers.BadSample: <msg>".
        lines = text.rstrip().splitlines()
        for i in range(len(lines) - 1, -1, -1):
            name, sep, message = lines[i].partition(": ")
            if sep and name in _QUALNAMES:
                return "\n".join([message, *lines[i + 1:]])
    return None


def _command_path(command: click.Command, args: list[str]) -> str:
    """`tsn train`, `tsn prepare check`: the command, then the subcommands named in `args` (options skipped).

    The `tsn` group itself (class Group) is "tsn"; any other command run as a script is "tsn <its name>".
    """
    words = ["tsn"] if isinstance(command, Group) else ["tsn", command.name or ""]
    for arg in args:
        if not isinstance(command, click.Group):
            break
        if arg.startswith("-"):
            continue
        command = command.commands.get(arg)
        if command is None:
            break
        words.append(arg)
    return " ".join(w for w in words if w)


def _strip_debug(args: list[str]) -> list[str]:
    """A single command (`python jobs/train.py`) takes --debug anywhere before a `--`."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" in args[:end]:
        enable_debug()
    return [a for a in args[:end] if a != "--debug"] + args[end:]


def run(command: click.Command, args: list[str] | None = None, **extra) -> NoReturn:
    """Run a click command as a program: its exit status, click's own usage errors, expected errors in one line."""
    _state["debug"] = False
    args = list(sys.argv[1:] if args is None else args)
    if not isinstance(command, click.Group):
        args = _strip_debug(args)
    try:
        code = click.Command.main(command, args, standalone_mode=False, **extra)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except Exception as err:
        message = expected_message(err)
        if message is None or debug_enabled():
            raise
        click.echo(f"{_command_path(command, args)}: error: {message}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)


class Group(click.Group):
    """A click group whose standalone run (`tsn ...`, CliRunner) goes through `run`."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        run(self, None if args is None else list(args), prog_name=prog_name, complete_var=complete_var, **extra)
