"""Logging: JSON lines off a terminal, tracebacks as text without locals, levels filtered."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from daemon.errors import ConfigError
from daemon.loading import LoadResult, load_definitions, log_load_result
from daemon.logging import configure_logging, reset_logging


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    reset_logging()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_with_level_timestamp_and_context() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    structlog.contextvars.bind_contextvars(instigator="every_minute")
    try:
        structlog.get_logger().info("tick.completed", run_ids=["r1"])
    finally:
        structlog.contextvars.clear_contextvars()

    [event] = lines(out)
    assert event["event"] == "tick.completed"
    assert event["level"] == "info"
    assert event["instigator"] == "every_minute"
    assert event["run_ids"] == ["r1"]
    assert event["timestamp"].endswith("Z")


def test_auto_is_json_when_the_stream_is_not_a_terminal() -> None:
    out = io.StringIO()
    configure_logging("info", "auto", stream=out)
    structlog.get_logger().info("run.enqueued", run_id="r1")
    assert lines(out)[0]["run_id"] == "r1"


def test_an_exception_is_logged_as_traceback_text_without_locals() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)

    def connect() -> None:
        password = "hunter2-secret"  # noqa: F841 (a local that must never reach the log)
        raise ConnectionError("database unreachable")

    try:
        connect()
    except ConnectionError:
        structlog.get_logger().exception("run.failed", run_id="r1")

    [event] = lines(out)
    assert event["level"] == "error"
    assert "Traceback (most recent call last)" in event["exception"]
    assert "ConnectionError: database unreachable" in event["exception"]
    assert "in connect" in event["exception"]
    assert "hunter2-secret" not in out.getvalue()


def test_levels_below_the_threshold_are_dropped() -> None:
    out = io.StringIO()
    configure_logging("warning", "json", stream=out)
    log = structlog.get_logger()
    log.info("sensor.evaluated")
    log.warning("sensor.timed_out")
    assert [e["event"] for e in lines(out)] == ["sensor.timed_out"]


def test_console_output_without_color_off_a_terminal() -> None:
    out = io.StringIO()
    configure_logging("info", "console", stream=out)
    structlog.get_logger().info("run.started", run_id="r1")
    text = out.getvalue()
    assert "run.started" in text and "run_id=r1" in text
    assert "\033[" not in text


def test_standard_library_records_take_the_same_path() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    logging.getLogger("asyncio").warning("slow callback %s", "x")
    [event] = lines(out)
    assert event["event"] == "slow callback x"
    assert event["logger"] == "asyncio"
    assert event["level"] == "warning"


def test_configuring_twice_replaces_the_setup() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", stream=first)
    configure_logging("info", "json", stream=second)
    structlog.get_logger().info("definitions.loaded")
    logging.getLogger("x").warning("once")
    assert first.getvalue() == ""
    assert [e["event"] for e in lines(second)] == ["definitions.loaded", "once"]


@pytest.mark.parametrize(("level", "fmt"), [("loud", "json"), ("info", "xml")])
def test_bad_settings_are_config_errors(level: str, fmt: str) -> None:
    with pytest.raises(ConfigError):
        configure_logging(level, fmt, stream=io.StringIO())


def test_a_load_is_logged_as_one_event_per_error_and_a_summary(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise ValueError('nope')\n")
    (tmp_path / "ok.py").write_text("from daemon import job\n@job\ndef a(context):\n    pass\n")
    result: LoadResult = load_definitions([tmp_path])

    with capture_logs() as logs:
        log_load_result(result, structlog.get_logger(), [tmp_path])

    failed, loaded = logs
    assert failed["event"] == "definitions.load_failed"
    assert failed["log_level"] == "error"
    assert failed["file"] == str(tmp_path / "broken.py")
    assert "ValueError: nope" in failed["problem"]
    assert loaded["event"] == "definitions.loaded"
    assert (loaded["jobs"], loaded["errors"], loaded["modules"]) == (1, 1, 2)


def test_a_named_stream_follows_redirection(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json", stream="stderr")
    structlog.get_logger().info("run.finished", run_id="r1")
    assert json.loads(capsys.readouterr().err)["event"] == "run.finished"
    with pytest.raises(ValueError, match="'stdout', 'stderr' or a file"):
        configure_logging("info", "json", stream="journal")  # type: ignore[arg-type]
