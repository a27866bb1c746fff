"""Expected errors as one line on stderr, `tsn <command>: error: <message>`, exit status 1, no traceback.

Expected errors are the user's to fix: a bad recipe, annotation list or data, too many unreadable videos, a missing,
corrupt or unfitting checkpoint, ImageNet weights that cannot be had offline. Each is raised as one of the project's
own types, every one a subclass of pipelines/errors.py `UserError`, with a message that names the file (and line).
Anything else is a bug and keeps its traceback. Recognising them imports nothing: a command loads only what it runs.
`tsn --debug ...`, `python jobs/<job>.py --debug ...` or TSN_DEBUG=1 shows the traceback of expected errors too.

`run(command)` is the entry point of every command module (`python jobs/train.py`); the `tsn` group (jobs/cli.py,
class Group here) goes through it as well whenever click would run it standalone.
"""
from __future__ import annotations

import os
import sys
from typing import NoReturn

import click

from pipelines.errors import UserError

DEBUG_ENV = "TSN_DEBUG"
WORKER_MARK = "Exception traceback received from worker"   # DALI's wrapper of an error in a Python worker
_state = {"debug": False}   # set by the `tsn --debug` option during one run()


def debug_enabled() -> bool:
    return _state["debug"] or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def enable_debug():
    _state["debug"] = True


def expected_message(err: BaseException) -> str | None:
    """The message to print for an expected error, or None for an unexpected one (which keeps its traceback)."""
    if isinstance(err, UserError):
        return str(err)
    text = str(err)
    if WORKER_MARK in text:
        # DALI's worker processes send back only built-in exception types: a BadSample raised while reading reaches
        # this process as Exception(<the worker's traceback>), whose text ends "pipelines.readers.BadSample: <msg>".
        lines = text.rstrip().splitlines()
        for i in range(len(lines) - 1, -1, -1):
            name, sep, message = lines[i].partition(": ")
            if sep and _is_user_error(name):
                return "\n".join([message, *lines[i + 1:]])
    return None


def _is_user_error(qualified_name: str) -> bool:
    """Whether `module.Class` names a UserError type. The module is looked up, never imported: a worker's error
    comes from a reader or source this process has already loaded to build the pipeline."""
    module, _, name = qualified_name.rpartition(".")
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and issubclass(cls, UserError)


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
        command = command.get_command(click.Context(command), arg)   # a lazy group imports it by name
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
