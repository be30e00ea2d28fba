"""Argument types of the CLI: times, durations, statuses, tags, counts.

Each raises argparse.ArgumentTypeError with a message naming what is allowed, so a bad
value exits 2 before anything is read or written.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta, tzinfo

from daemon.config import parse_duration
from daemon.domain.ticks import TickStatus
from daemon.errors import ConfigError


def parse_time(value: str, *, now: datetime, zone: tzinfo = UTC) -> datetime:
    """ "now", "now+2h", "now-1d", or ISO-8601 (naive times are read in `zone`)."""
    text = value.strip()
    if text.startswith("now"):
        rest = text[3:]
        if not rest:
            return now
        sign = rest[0]
        if sign not in "+-":
            raise argparse.ArgumentTypeError(f"{value!r}: write now, now+2h or now-30m")
        try:
            delta = parse_duration(rest[1:], "time")
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(f"{value!r}: {exc}") from None
        return now + delta if sign == "+" else now - delta
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a time; use ISO-8601 such as 2026-03-29T02:30 or "
            "2026-03-29T00:30Z, or now, now+2h"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)


def parse_window(value: str) -> timedelta:
    try:
        return parse_duration(value, "--window")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def tick_status(value: str) -> TickStatus:
    try:
        return TickStatus(value.upper())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a tick status; use one of {', '.join(s.value for s in TickStatus)}"
        ) from None


def duration(value: str) -> timedelta:
    try:
        return parse_duration(value, "--since")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive whole number")
    return n
