"""What every command shares: the global options, the resolved Config, output and exit codes.

A command module (`daemon/cli/<name>.py`) exposes `register(subparsers)`, which calls
`add_command(...)` with a `run(args, config) -> int` function. `main` parses the flags,
resolves the configuration (a ConfigError exits 78 before the command runs), sets up
logging on stderr and calls `run`. Data goes to stdout (`print_json`, `format_table`),
messages to stderr (`error`, `note`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import fields, is_dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, Final, TextIO, TypeAlias, TypeVar, TypeVarTuple

import anyio

from daemon.config import Config, resolve_config

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1  # the command ran and found a problem (or the daemon is unhealthy)
EXIT_USAGE: Final = 2  # bad flags or arguments (argparse's own code)
EXIT_CONFIG: Final = 78  # EX_CONFIG: a configuration value is invalid
EXIT_INTERRUPTED: Final = 130

Command: TypeAlias = Callable[[argparse.Namespace, Config], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

# The global options given after the command land in these attributes, so they add to
# (--definitions) or override (--config, --store) the ones given before it.
_LATE = "late_"


def add_global_options(parser: argparse.ArgumentParser, *, late: bool = False) -> None:
    """--config, --store and --definitions on `parser` (late: on a command's parser)."""
    prefix = _LATE if late else ""
    default: Any = argparse.SUPPRESS if late else None
    group = parser.add_argument_group("global options")
    group.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        dest=f"{prefix}config",
        default=default,
        help="tickd.toml to read (default: $TICKD_CONFIG, else ./tickd.toml if present)",
    )
    group.add_argument(
        "--store",
        metavar="PATH",
        dest=f"{prefix}store",
        default=default,
        help="the store (default: $TICKD_STORE, the config file, else ./var/tickd.db)",
    )
    group.add_argument(
        "--definitions",
        metavar="DIR",
        type=Path,
        action="append",
        dest=f"{prefix}definitions",
        default=default,
        help="a definitions directory; repeat for several (default: ./definitions)",
    )


def add_command(
    subparsers: Subparsers, name: str, *, run: Command, help: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A command's parser, with the global options also accepted after the command name."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description or help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_global_options(parser, late=True)
    parser.set_defaults(func=run)
    return parser


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Config:
    """The Config for the parsed global options (flags after the command win)."""
    config_file = getattr(args, f"{_LATE}config", None) or args.config
    store = getattr(args, f"{_LATE}store", None) or args.store
    definitions = [*(args.definitions or ()), *getattr(args, f"{_LATE}definitions", ())]
    return resolve_config(
        config_file=config_file, store=store, definitions=definitions, environ=environ
    )


def run_async(fn: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
    """Run an async command body on anyio's asyncio backend (aiosqlite needs asyncio)."""
    return anyio.run(fn, *args, backend="asyncio")


# ---- messages (stderr) ---------------------------------------------------------------------


def error(message: str) -> None:
    print(f"tickd: error: {message}", file=sys.stderr)


def note(message: str) -> None:
    print(f"tickd: {message}", file=sys.stderr)


# ---- data (stdout) -------------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    """Plain JSON values: datetimes as ISO-8601, durations as seconds, enums by value."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return value


def print_json(data: Any, stream: TextIO | None = None) -> None:
    out = sys.stdout if stream is None else stream
    json.dump(to_jsonable(data), out, indent=2, ensure_ascii=False)
    out.write("\n")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain table: left-aligned columns two spaces apart, "-" for None or empty."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(text.ljust(w) for text, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _cell(value: object) -> str:
    if value is None or value == "" or value == () or value == []:
        return "-"
    if isinstance(value, datetime):
        return format_time(value)
    return str(value)


def format_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S %Z").rstrip()


def format_seconds(seconds: float | None) -> str:
    """90 -> "1m30s", 7200 -> "2h", None -> "none"."""
    if seconds is None:
        return "none"
    if seconds < 1:
        return f"{seconds:g}s"
    rest = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


# ---- color ----------------------------------------------------------------------------------


def use_color(stream: TextIO) -> bool:
    """Color only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Style:
    """ANSI styles that turn into plain text when color is off."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def red(self, text: str) -> str:
        return self._wrap("31", text)

    def green(self, text: str) -> str:
        return self._wrap("32", text)
