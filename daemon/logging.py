"""Structured logging: one event per line, JSON for machines, readable text for people.

`configure_logging(level, fmt)` sets up structlog (and routes the standard library's
`logging` through the same renderer, so asyncio's and aiosqlite's warnings look alike):

* processors: context variables (`structlog.contextvars.bind_contextvars`), the level, an
  ISO-8601 UTC timestamp, then the renderer;
* `fmt="json"`, or `"auto"` when the stream is not a terminal (journald, files, pipes): one
  JSON object per line, exceptions as plain traceback text under "exception";
* `fmt="console"`, or `"auto"` on a terminal: aligned text, colored unless NO_COLOR is set.

Tracebacks never include local variables: they can hold secrets (passwords, tokens).
Event names are dotted `noun.verb` ("definitions.loaded", "run.finished"), values go in
keys. Calling `configure_logging` again replaces the previous setup.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from typing import Any, Final, Literal, TextIO, cast

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from daemon.adapters.journald import JournalProcessor, stdout_is_journal
from daemon.errors import ConfigError

LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
FORMATS: Final = ("auto", "json", "console")


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    *,
    stream: TextIO | Literal["stdout", "stderr"] = "stdout",
) -> None:
    """Send every structlog event (and stdlib log record) at `level` or above to `stream`.

    `stream` is "stdout" (the daemon's journal; the default), "stderr" (commands whose
    stdout carries data), or a file. "stdout" and "stderr" are looked up at every write,
    so a later redirection of sys.stdout / sys.stderr is followed, never a closed stream.
    """
    if level.lower() not in LEVELS:
        raise ConfigError("log.level", f"{level!r} is not one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ConfigError("log.format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
    out = cast(TextIO, _CurrentStream(stream)) if isinstance(stream, str) else stream
    threshold = LEVELS[level.lower()]
    as_json = fmt == "json" or (fmt == "auto" and not _is_tty(out))
    renderer = _json_renderer() if as_json else _console_renderer(out)
    journal: list[Processor] = []
    if as_json and (stream == "stdout" or stream is sys.stdout) and stdout_is_journal(sys.stdout):
        journal = [structlog.processors.format_exc_info, JournalProcessor()]

    structlog.configure(
        processors=[*_shared_processors(), *journal, *renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        context_class=dict,
        # Not cached: a reconfiguration (tests, `serve` after the CLI) reaches every logger.
        cache_logger_on_first_use=False,
    )
    _route_stdlib(out, threshold, renderer)


def reset_logging() -> None:
    """Undo `configure_logging`: structlog's defaults, and our stdlib handler removed."""
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _TickdHandler)]:
        root.removeHandler(handler)


def get_logger(**initial: Any) -> Any:
    """A logger with `initial` key-values bound (e.g. `get_logger(component="loop")`)."""
    return structlog.get_logger(**initial)


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _json_renderer() -> list[Processor]:
    # format_exc_info renders with traceback.format_exception: no locals, ever.
    return [
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.processors.UnicodeDecoder(),
        structlog.processors.JSONRenderer(default=str),
    ]


def _console_renderer(out: TextIO) -> list[Processor]:
    colors = _is_tty(out) and not os.environ.get("NO_COLOR")
    return [
        structlog.processors.StackInfoRenderer(),
        # plain_traceback: the standard library's format, without rich's locals display.
        structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        ),
    ]


class _CurrentStream(io.TextIOBase):
    """Whatever sys.stdout or sys.stderr is at the moment of each write."""

    def __init__(self, name: Literal["stdout", "stderr"]) -> None:
        if name not in ("stdout", "stderr"):
            raise ValueError(f"stream must be 'stdout', 'stderr' or a file, not {name!r}")
        self._name = name

    @property
    def _target(self) -> TextIO:
        target: TextIO = getattr(sys, self._name)
        return target

    def write(self, text: str) -> int:
        return self._target.write(text)

    def flush(self) -> None:
        self._target.flush()

    def isatty(self) -> bool:
        return self._target.isatty()


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real file
        return False


class _TickdHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler installed here; found and replaced on reconfiguration."""


def _add_logger_name(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    if record is not None:
        event_dict.setdefault("logger", record.name)
    return event_dict


def _route_stdlib(out: TextIO, threshold: int, renderer: list[Processor]) -> None:
    handler = _TickdHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*_shared_processors(), _add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _TickdHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
