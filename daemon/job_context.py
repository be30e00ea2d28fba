"""Building the `JobContext` a job function receives, for every executor.

`context.log` is a `JobLogger`: each call both goes to structlog (bound with `run_id`
and `job`, so it reaches the daemon's journal like any other event) and hands one line,
the JSON of the event and its fields, to a sink `(stream, text)`, with stream "log". The
executor behind the sink keeps those lines with the run (`tickd logs RUN_ID`).

Exceptions logged with `exception()` or `exc_info=True` are rendered as plain traceback
text, never with local variables (they may hold secrets).
"""

from __future__ import annotations

import contextlib
import json
import sys
import traceback
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Final, TypeAlias

import structlog

from daemon.context import JobContext
from daemon.definitions import Job
from daemon.domain.runs import Run
from daemon.errors import TickdError

LogSink: TypeAlias = Callable[[str, str], None]
"""Receives (stream, text); the job logger always uses stream "log"."""

LOG_STREAM: Final = "log"

_ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]
_RESERVED: Final = frozenset({"event", "level"})


class JobLogger:
    """What `context.log` is: structlog-like methods taking an event name and fields.

    `log.info("rows.loaded", table="users", rows=120)`; `bind(**fields)` returns a logger
    that adds `fields` to every event.
    """

    __slots__ = ("_fields", "_logger", "_sink")

    def __init__(self, sink: LogSink, logger: Any, fields: Mapping[str, Any] | None = None):
        self._sink = sink
        self._logger = logger
        self._fields: dict[str, Any] = dict(fields or {})

    def bind(self, **fields: Any) -> JobLogger:
        return JobLogger(self._sink, self._logger.bind(**fields), {**self._fields, **fields})

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    warn = warning

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)

    def critical(self, event: str, **fields: Any) -> None:
        self._emit("critical", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """An error event with the exception being handled (its traceback, no locals)."""
        fields.setdefault("exc_info", True)
        self._emit("error", event, fields)

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        exc_info = fields.pop("exc_info", None)
        line: dict[str, Any] = {"event": event, "level": level}
        line.update((k, v) for k, v in self._fields.items() if k not in _RESERVED)
        line.update((k, v) for k, v in fields.items() if k not in _RESERVED)
        rendered = _render_exception(exc_info)
        if rendered is not None:
            line["exception"] = rendered
        with contextlib.suppress(OSError, ValueError):  # a closed pipe must not fail the job
            self._sink(LOG_STREAM, json.dumps(line, default=str))
        if rendered is not None:
            fields["exception"] = rendered
        getattr(self._logger, level)(event, **fields)


def make_job_context(run: Run, job: Job, log_sink: LogSink) -> JobContext:
    """The context for one execution of `run`, whose job is `job`."""
    return job_context_for(
        job,
        run_id=run.run_id,
        run_config=run.run_config,
        tags=run.tags,
        partition_key=run.partition_key,
        attempt=run.attempt,
        log_sink=log_sink,
    )


def job_context_for(
    job: Job,
    *,
    run_id: str,
    run_config: Mapping[str, Any],
    tags: Mapping[str, str],
    partition_key: str | None,
    attempt: int,
    log_sink: LogSink,
) -> JobContext:
    """The same as `make_job_context`, from a run's fields (a worker process has no Run)."""
    logger = structlog.get_logger("tickd.job", run_id=run_id, job=job.name)
    return JobContext(
        run_id=run_id,
        job_name=job.name,
        run_config=run_config,
        tags=tags,
        partition_key=partition_key,
        partition_window=_partition_window(job, partition_key, logger),
        attempt=attempt,
        log=JobLogger(log_sink, logger),
    )


def _partition_window(job: Job, key: str | None, logger: Any) -> Any:
    window = getattr(job.partitions, "window", None)
    if key is None or not callable(window):
        return None
    try:
        return window(key)
    except (TickdError, ValueError) as exc:
        # Keys are validated when runs are created; a stale one (the partitions changed
        # since) leaves the window unknown rather than failing the run before it starts.
        logger.warning("run.partition_window_unknown", partition_key=key, error=str(exc))
        return None


def _render_exception(exc_info: object) -> str | None:
    info = _exc_info(exc_info)
    if info is None:
        return None
    return "".join(traceback.format_exception(*info)).rstrip("\n")


def _exc_info(exc_info: object) -> _ExcInfo | None:
    if isinstance(exc_info, BaseException):
        return type(exc_info), exc_info, exc_info.__traceback__
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and exc_info[1] is not None:
        return exc_info
    if exc_info:
        current = sys.exc_info()
        if current[1] is not None:
            return current
    return None
