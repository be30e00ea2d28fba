"""The `tickd` command line: `tickd [global options] <command> [options]`.

Global options (--config, --store, --definitions) are accepted before or after the
command. Exit codes: 0 ok, 1 failure, 2 bad usage, 78 configuration error, 130 interrupted.
Data goes to stdout (`--json` on listings), messages and logs to stderr.

To add a command, write `daemon/cli/<name>.py` with

    def register(subparsers: Subparsers) -> None:
        parser = add_command(subparsers, "<name>", run=run, help="...")
        parser.add_argument(...)

    def run(args: argparse.Namespace, config: Config) -> int:
        return run_async(_body, args, config)   # when it needs the store

and add its `register` to COMMANDS below. `run` gets the resolved Config; logging is
already set up on stderr (`serve` may reconfigure it to stdout for the journal).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

from daemon.cli import check, enqueue, history, operate, runctl, serve, why
from daemon.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Subparsers,
    add_global_options,
    config_from_args,
    error,
)
from daemon.errors import ConfigError, TickdError
from daemon.logging import configure_logging

# The commands, in the order `tickd --help` lists them. Add new command modules here.
COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    serve.register,
    check.register,
    operate.register,
    history.register,
    runctl.register,
    enqueue.register,
    runctl.register_housekeeping,
    why.register,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickd",
        description="tickd runs Python jobs on cron schedules and in answer to sensors.",
        epilog="Run `tickd <command> --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    add_global_options(parser)
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="<command>")
    for register in COMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `tickd` with `argv` (default: sys.argv[1:]) and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or bad usage (argparse printed why)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        config = config_from_args(args)
        configure_logging(config.log.level, config.log.format, stream="stderr")
        code: int = args.func(args, config)
        return code
    except ConfigError as exc:
        error(str(exc))
        return EXIT_CONFIG
    except TickdError as exc:
        error(str(exc))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout closed early (`tickd check | head`): not an error of ours; silence the
        # second BrokenPipeError Python would raise when flushing at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE


def _version() -> str:
    try:
        return metadata.version("tickd")
    except metadata.PackageNotFoundError:
        return "unknown"
