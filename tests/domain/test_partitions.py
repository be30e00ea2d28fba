"""Partitions: keys, windows and their DST behaviour, from tables of literal times."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.domain.partitions import (
    DailyPartitions,
    HourlyPartitions,
    MonthlyPartitions,
    PartitionsDefinition,
    StaticPartitions,
    TimeWindow,
    TimeWindowPartitions,
    WeeklyPartitions,
)
from daemon.errors import InvalidPartitionError, UnknownTimezoneError

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
LORD_HOWE = "Australia/Lord_Howe"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def as_utc(w: TimeWindow) -> tuple[datetime, datetime]:
    # Two datetimes sharing a tzinfo compare by wall time (fold ignored): compare in UTC.
    return w.start.astimezone(UTC), w.end.astimezone(UTC)


DAILY_UTC = DailyPartitions("2024-01-01")
DAILY_BERLIN = DailyPartitions("2024-01-01", BERLIN)
DAILY_BERLIN_0230 = DailyPartitions("2024-01-01", BERLIN, hour_offset=2, minute_offset=30)
DAILY_NY = DailyPartitions("2024-01-01", NEW_YORK)
HOURLY_UTC = HourlyPartitions("2024-01-01-00:00")
HOURLY_UTC_30 = HourlyPartitions("2024-01-01-00:00", minute_offset=30)
HOURLY_BERLIN = HourlyPartitions("2024-01-01-00:00", BERLIN)
HOURLY_NY = HourlyPartitions("2024-01-01-00:00", NEW_YORK)
HOURLY_NY_30 = HourlyPartitions("2024-01-01-00:00", NEW_YORK, minute_offset=30)
HOURLY_LORD_HOWE = HourlyPartitions("2024-01-01-00:00", LORD_HOWE)
WEEKLY_UTC = WeeklyPartitions("2024-01-01")  # first Sunday on or after: 2024-01-07
WEEKLY_BERLIN_MON_06 = WeeklyPartitions("2024-01-01", BERLIN, day_offset=1, hour_offset=6)
WEEKLY_NY = WeeklyPartitions("2024-01-01", NEW_YORK)
MONTHLY_UTC = MonthlyPartitions("2024-01-01")
MONTHLY_BERLIN = MonthlyPartitions("2024-01-01", BERLIN)
MONTHLY_NY_15_09 = MonthlyPartitions("2024-01-01", NEW_YORK, day_offset=15, hour_offset=9)


# -- windows ------------------------------------------------------------------------------

WINDOWS = [
    # (partitions, key, start, end) -- start and end in UTC
    (DAILY_UTC, "2024-01-01", utc(2024, 1, 1), utc(2024, 1, 2)),
    (DAILY_UTC, "2024-02-29", utc(2024, 2, 29), utc(2024, 3, 1)),
    (DAILY_BERLIN, "2024-01-15", utc(2024, 1, 14, 23), utc(2024, 1, 15, 23)),
    (DAILY_BERLIN, "2024-03-31", utc(2024, 3, 30, 23), utc(2024, 3, 31, 22)),  # 23 h
    (DAILY_BERLIN, "2024-10-27", utc(2024, 10, 26, 22), utc(2024, 10, 27, 23)),  # 25 h
    (DAILY_NY, "2024-03-10", utc(2024, 3, 10, 5), utc(2024, 3, 11, 4)),  # 23 h
    (DAILY_NY, "2024-11-03", utc(2024, 11, 3, 4), utc(2024, 11, 4, 5)),  # 25 h
    # 02:30 does not exist on 2024-03-31: the boundary is the jump, 02:00 CET = 01:00Z
    (DAILY_BERLIN_0230, "2024-03-30", utc(2024, 3, 30, 1, 30), utc(2024, 3, 31, 1)),
    (DAILY_BERLIN_0230, "2024-03-31", utc(2024, 3, 31, 1), utc(2024, 4, 1, 0, 30)),
    # 02:30 happens twice on 2024-10-27: the first one, 02:30 CEST
    (DAILY_BERLIN_0230, "2024-10-27", utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)),
    # Santiago skips local midnight: the day starts at 01:00 -03
    (
        DailyPartitions("2024-09-01", "America/Santiago"),
        "2024-09-08",
        utc(2024, 9, 8, 4),
        utc(2024, 9, 9, 3),
    ),
    # Samoa skipped 2011-12-30 entirely: 2011-12-29 ends when 2011-12-31 starts
    (
        DailyPartitions("2011-12-01", "Pacific/Apia"),
        "2011-12-29",
        utc(2011, 12, 29, 10),
        utc(2011, 12, 30, 10),
    ),
    (HOURLY_UTC, "2024-01-01-05:00", utc(2024, 1, 1, 5), utc(2024, 1, 1, 6)),
    (HOURLY_UTC_30, "2024-01-01-05:30", utc(2024, 1, 1, 5, 30), utc(2024, 1, 1, 6, 30)),
    (HOURLY_BERLIN, "2024-03-31-01:00", utc(2024, 3, 31, 0), utc(2024, 3, 31, 1)),
    (HOURLY_BERLIN, "2024-03-31-03:00", utc(2024, 3, 31, 1), utc(2024, 3, 31, 2)),
    (HOURLY_BERLIN, "2024-10-27-01:00", utc(2024, 10, 26, 23), utc(2024, 10, 27, 0)),
    (HOURLY_BERLIN, "2024-10-27-02:00", utc(2024, 10, 27, 0), utc(2024, 10, 27, 2)),  # 2 h
    (HOURLY_BERLIN, "2024-10-27-03:00", utc(2024, 10, 27, 2), utc(2024, 10, 27, 3)),
    (HOURLY_NY, "2024-03-10-01:00", utc(2024, 3, 10, 6), utc(2024, 3, 10, 7)),
    (HOURLY_NY, "2024-03-10-03:00", utc(2024, 3, 10, 7), utc(2024, 3, 10, 8)),
    (HOURLY_NY, "2024-11-03-01:00", utc(2024, 11, 3, 5), utc(2024, 11, 3, 7)),  # 2 h
    (HOURLY_NY, "2024-11-03-02:00", utc(2024, 11, 3, 7), utc(2024, 11, 3, 8)),
    # 02:30 does not exist on 2024-03-10: 01:30 runs on to 03:30 EDT, one real hour
    (HOURLY_NY_30, "2024-03-10-01:30", utc(2024, 3, 10, 6, 30), utc(2024, 3, 10, 7, 30)),
    (HOURLY_NY_30, "2024-11-03-01:30", utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 7, 30)),
    # Lord Howe springs forward 30 minutes, 02:00 -> 02:30, at 2024-10-05 15:30Z: wall
    # 02:00 does not exist, so 01:00 runs on to 03:00 +11, 90 real minutes
    (HOURLY_LORD_HOWE, "2024-10-06-01:00", utc(2024, 10, 5, 14, 30), utc(2024, 10, 5, 16)),
    (HOURLY_LORD_HOWE, "2024-10-06-03:00", utc(2024, 10, 5, 16), utc(2024, 10, 5, 17)),
    # ... and falls back 30 minutes, 02:00 -> 01:30, at 2024-04-06 15:00Z
    (HOURLY_LORD_HOWE, "2024-04-07-00:00", utc(2024, 4, 6, 13), utc(2024, 4, 6, 14)),
    (HOURLY_LORD_HOWE, "2024-04-07-01:00", utc(2024, 4, 6, 14), utc(2024, 4, 6, 15, 30)),
    (HOURLY_LORD_HOWE, "2024-04-07-02:00", utc(2024, 4, 6, 15, 30), utc(2024, 4, 6, 16, 30)),
    (WEEKLY_UTC, "2024-01-07", utc(2024, 1, 7), utc(2024, 1, 14)),
    (WEEKLY_BERLIN_MON_06, "2024-03-25", utc(2024, 3, 25, 5), utc(2024, 4, 1, 4)),  # 167 h
    (WEEKLY_NY, "2024-11-03", utc(2024, 11, 3, 4), utc(2024, 11, 10, 5)),  # 169 h
    (MONTHLY_UTC, "2024-02-01", utc(2024, 2, 1), utc(2024, 3, 1)),
    (MONTHLY_UTC, "2024-12-01", utc(2024, 12, 1), utc(2025, 1, 1)),
    (MONTHLY_BERLIN, "2024-03-01", utc(2024, 2, 29, 23), utc(2024, 3, 31, 22)),
    (MONTHLY_NY_15_09, "2024-10-15", utc(2024, 10, 15, 13), utc(2024, 11, 15, 14)),
]


@pytest.mark.parametrize(("parts", "key", "start", "end"), WINDOWS)
def test_window_of_key_and_back(
    parts: TimeWindowPartitions, key: str, start: datetime, end: datetime
) -> None:
    window = parts.window(key)
    assert as_utc(window) == (start, end)
    assert window.start.tzinfo == ZoneInfo(parts.timezone)
    assert window.end.tzinfo == ZoneInfo(parts.timezone)
    assert parts.key_for(start) == key
    assert parts.key_for(end - timedelta(microseconds=1)) == key
    assert parts.key_for(end) != key
    assert parts.key_closed_by(end) == key
    assert parts.key_closed_by(end - timedelta(microseconds=1)) != key


def test_window_holds_wall_times_of_its_zone() -> None:
    window = DAILY_BERLIN.window("2024-10-27")
    assert (window.start.hour, window.start.utcoffset()) == (0, timedelta(hours=2))
    assert (window.end.hour, window.end.utcoffset()) == (0, timedelta(hours=1))
    assert window.end.astimezone(UTC) - window.start.astimezone(UTC) == timedelta(hours=25)


def test_time_window_contains_compares_instants() -> None:
    window = HOURLY_NY.window("2024-11-03-01:00")
    second_one_thirty = utc(2024, 11, 3, 6, 30).astimezone(ZoneInfo(NEW_YORK))  # 01:30 EST
    assert second_one_thirty in window
    assert utc(2024, 11, 3, 7) not in window
    assert datetime(2024, 11, 3, 1, 30) not in window  # naive: never inside


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (datetime(2024, 1, 1), utc(2024, 1, 2)),
        (utc(2024, 1, 2), utc(2024, 1, 2)),
        (utc(2024, 1, 2), utc(2024, 1, 1)),
    ],
)
def test_time_window_rejects_naive_or_empty(start: datetime, end: datetime) -> None:
    with pytest.raises(ValueError, match="time window"):
        TimeWindow(start, end)


# -- key_for ------------------------------------------------------------------------------

KEY_FOR = [
    (DAILY_BERLIN, utc(2024, 3, 30, 23), "2024-03-31"),  # local midnight
    (DAILY_BERLIN, utc(2024, 3, 30, 22, 59, 59, 999999), "2024-03-30"),
    (DAILY_BERLIN, utc(2024, 10, 27, 22, 59), "2024-10-27"),  # 23:59 CET
    (DAILY_BERLIN, utc(2024, 10, 27, 23), "2024-10-28"),
    (DAILY_BERLIN, utc(2023, 12, 31, 23), "2024-01-01"),  # the very first instant
    (DAILY_BERLIN, utc(2023, 12, 31, 22, 59, 59), None),  # before the first partition
    (DAILY_BERLIN, datetime(2024, 6, 1, 7, 30, tzinfo=ZoneInfo("Asia/Tokyo")), "2024-06-01"),
    (DAILY_BERLIN, datetime(2024, 6, 1, 6, 30, tzinfo=ZoneInfo("Asia/Tokyo")), "2024-05-31"),
    (HOURLY_NY, utc(2024, 11, 3, 5, 30), "2024-11-03-01:00"),  # 01:30 EDT
    (HOURLY_NY, utc(2024, 11, 3, 6, 30), "2024-11-03-01:00"),  # 01:30 EST, second time
    (HOURLY_NY, utc(2024, 11, 3, 7), "2024-11-03-02:00"),
    (HOURLY_NY, utc(2024, 3, 10, 6, 59, 59), "2024-03-10-01:00"),
    (HOURLY_NY, utc(2024, 3, 10, 7), "2024-03-10-03:00"),  # 02:00 does not exist
    (HOURLY_NY_30, utc(2024, 11, 3, 6, 15), "2024-11-03-01:30"),  # 01:15 EST, second time
    (HOURLY_NY_30, utc(2024, 11, 3, 5, 15), "2024-11-03-00:30"),  # 01:15 EDT, first time
    (HOURLY_LORD_HOWE, utc(2024, 10, 5, 15, 29), "2024-10-06-01:00"),  # 01:59 +10:30
    (HOURLY_LORD_HOWE, utc(2024, 10, 5, 15, 30), "2024-10-06-01:00"),  # 02:30 +11
    (HOURLY_LORD_HOWE, utc(2024, 10, 5, 16), "2024-10-06-03:00"),
    (HOURLY_LORD_HOWE, utc(2024, 4, 6, 15, 15), "2024-04-07-01:00"),  # 01:45 +10:30
    (WEEKLY_UTC, utc(2024, 1, 6, 23, 59), None),
    (WEEKLY_UTC, utc(2024, 1, 13, 23, 59), "2024-01-07"),
    (WEEKLY_UTC, utc(2024, 1, 14), "2024-01-14"),
    (WEEKLY_BERLIN_MON_06, utc(2024, 4, 1, 3, 59), "2024-03-25"),  # Monday 05:59 CEST
    (WEEKLY_BERLIN_MON_06, utc(2024, 4, 1, 4), "2024-04-01"),
    (MONTHLY_UTC, utc(2024, 2, 29, 23, 59), "2024-02-01"),
    (MONTHLY_NY_15_09, utc(2024, 11, 15, 13, 59), "2024-10-15"),
    (MONTHLY_NY_15_09, utc(2024, 11, 15, 14), "2024-11-15"),
]


@pytest.mark.parametrize(("parts", "t", "key"), KEY_FOR)
def test_key_for(parts: TimeWindowPartitions, t: datetime, key: str | None) -> None:
    assert parts.key_for(t) == key
    if key is not None:
        assert t in parts.window(key)


# -- key_closed_by and end_offset ---------------------------------------------------------

KEY_CLOSED_BY = [
    (DAILY_UTC, utc(2024, 1, 2), "2024-01-01"),  # exactly at midnight: the day before closes
    (DAILY_UTC, utc(2024, 1, 1, 23, 59, 59), None),
    (DAILY_UTC, utc(2024, 1, 1), None),
    (DAILY_UTC, utc(2024, 3, 5, 12), "2024-03-04"),
    (DailyPartitions("2024-01-01", end_offset=1), utc(2023, 12, 31, 12), None),
    (DailyPartitions("2024-01-01", end_offset=1), utc(2024, 1, 1), "2024-01-01"),
    (DailyPartitions("2024-01-01", end_offset=1), utc(2024, 1, 2), "2024-01-02"),
    (DailyPartitions("2024-01-01", end_offset=2), utc(2024, 1, 2), "2024-01-03"),
    (DailyPartitions("2024-01-01", end_offset=-1), utc(2024, 1, 2), None),
    (DailyPartitions("2024-01-01", end_offset=-1), utc(2024, 1, 3), "2024-01-01"),
    (DAILY_BERLIN, utc(2024, 3, 31, 22), "2024-03-31"),  # local midnight of April 1st
    (DAILY_BERLIN, utc(2024, 3, 31, 21, 59, 59), "2024-03-30"),
    (DAILY_NY, utc(2024, 11, 4, 5), "2024-11-03"),
    (DAILY_NY, utc(2024, 11, 4, 4), "2024-11-02"),  # 23:00 EST, the 25 h day still runs
    (HOURLY_BERLIN, utc(2024, 3, 31, 1), "2024-03-31-01:00"),  # 03:00 CEST; no 02:00
    (
        HourlyPartitions("2024-01-01-00:00", BERLIN, end_offset=1),
        utc(2024, 3, 31, 1),
        "2024-03-31-03:00",
    ),
    (
        HourlyPartitions("2024-01-01-00:00", BERLIN, end_offset=-1),
        utc(2024, 3, 31, 2),
        "2024-03-31-01:00",
    ),
    (HOURLY_LORD_HOWE, utc(2024, 10, 5, 15, 30), "2024-10-06-00:00"),  # 02:30 +11
    (HOURLY_LORD_HOWE, utc(2024, 10, 5, 16), "2024-10-06-01:00"),  # 03:00 +11
    (HOURLY_NY, utc(2024, 11, 3, 6), "2024-11-03-00:00"),  # 01:00 EST: 01:00 still runs
    (HOURLY_NY, utc(2024, 11, 3, 7), "2024-11-03-01:00"),  # 02:00 EST
    (WEEKLY_UTC, utc(2024, 1, 14), "2024-01-07"),
    (WEEKLY_UTC, utc(2024, 1, 13, 23, 59), None),
    (MONTHLY_UTC, utc(2024, 3, 1), "2024-02-01"),
    (MONTHLY_BERLIN, utc(2024, 3, 31, 22), "2024-03-01"),
    (MONTHLY_BERLIN, utc(2024, 3, 31, 21, 59), "2024-02-01"),
]


@pytest.mark.parametrize(("parts", "t", "key"), KEY_CLOSED_BY)
def test_key_closed_by(parts: TimeWindowPartitions, t: datetime, key: str | None) -> None:
    assert parts.key_closed_by(t) == key


# -- keys_between and keys_until ----------------------------------------------------------

KEYS_BETWEEN = [
    (
        DAILY_UTC,
        "2024-01-30",
        "2024-02-02",
        ["2024-01-30", "2024-01-31", "2024-02-01", "2024-02-02"],
    ),
    (DAILY_UTC, "2024-05-05", "2024-05-05", ["2024-05-05"]),
    (
        HOURLY_BERLIN,
        "2024-03-31-00:00",
        "2024-03-31-04:00",
        ["2024-03-31-00:00", "2024-03-31-01:00", "2024-03-31-03:00", "2024-03-31-04:00"],
    ),
    (
        HOURLY_BERLIN,
        "2024-10-27-01:00",
        "2024-10-27-03:00",
        ["2024-10-27-01:00", "2024-10-27-02:00", "2024-10-27-03:00"],
    ),
    (
        WEEKLY_UTC,
        "2024-01-07",
        "2024-01-28",
        ["2024-01-07", "2024-01-14", "2024-01-21", "2024-01-28"],
    ),
    (
        MONTHLY_UTC,
        "2024-11-01",
        "2025-02-01",
        ["2024-11-01", "2024-12-01", "2025-01-01", "2025-02-01"],
    ),
    (
        DailyPartitions("2011-12-01", "Pacific/Apia"),
        "2011-12-29",
        "2011-12-31",
        ["2011-12-29", "2011-12-31"],
    ),
]


@pytest.mark.parametrize(("parts", "first", "last", "keys"), KEYS_BETWEEN)
def test_keys_between(parts: TimeWindowPartitions, first: str, last: str, keys: list[str]) -> None:
    assert parts.keys_between(first, last) == keys


def test_keys_between_rejects_reversed_range() -> None:
    with pytest.raises(InvalidPartitionError) as info:
        DAILY_UTC.keys_between("2024-01-05", "2024-01-04")
    assert info.value.key == "2024-01-04"
    assert "expected a key at or after '2024-01-05', the first key of the range" in str(info.value)


@pytest.mark.parametrize(("first", "last"), [("2024-01-5", "2024-01-06"), ("2024-01-05", "x")])
def test_keys_between_rejects_malformed_keys(first: str, last: str) -> None:
    with pytest.raises(InvalidPartitionError, match="expected a date 'YYYY-MM-DD'"):
        DAILY_UTC.keys_between(first, last)


KEYS_UNTIL = [
    (DAILY_UTC, utc(2024, 1, 5), None, ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]),
    (DAILY_UTC, utc(2024, 1, 5), 2, ["2024-01-03", "2024-01-04"]),
    (DAILY_UTC, utc(2024, 1, 5), 10, ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]),
    (DAILY_UTC, utc(2024, 1, 5), 0, []),
    (DAILY_UTC, utc(2024, 1, 1, 12), None, []),
    (DAILY_UTC, utc(2023, 6, 1), 3, []),
    (
        DailyPartitions("2024-01-01", end_offset=1),
        utc(2024, 1, 3, 12),
        None,
        ["2024-01-01", "2024-01-02", "2024-01-03"],
    ),
    (
        HourlyPartitions("2024-03-31-00:00", BERLIN),
        utc(2024, 3, 31, 3),  # 05:00 CEST
        None,
        ["2024-03-31-00:00", "2024-03-31-01:00", "2024-03-31-03:00", "2024-03-31-04:00"],
    ),
    (
        HourlyPartitions("2024-03-31-00:00", BERLIN),
        utc(2024, 3, 31, 3),
        3,
        ["2024-03-31-01:00", "2024-03-31-03:00", "2024-03-31-04:00"],
    ),
    (MONTHLY_UTC, utc(2024, 4, 15), 2, ["2024-02-01", "2024-03-01"]),
]


@pytest.mark.parametrize(("parts", "t", "limit", "keys"), KEYS_UNTIL)
def test_keys_until(
    parts: TimeWindowPartitions, t: datetime, limit: int | None, keys: list[str]
) -> None:
    assert parts.keys_until(t, limit=limit) == keys


def test_keys_until_rejects_negative_limit() -> None:
    with pytest.raises(ValueError, match="limit must be None or a non-negative integer, got -1"):
        DAILY_UTC.keys_until(utc(2024, 2, 1), limit=-1)


# -- start, cron, describe ----------------------------------------------------------------


@pytest.mark.parametrize(
    "start",
    [
        "2024-01-01",
        date(2024, 1, 1),
        datetime(2024, 1, 1),  # naive: a wall time in Europe/Berlin
        datetime(2023, 12, 31, 23, tzinfo=UTC),
        datetime(2024, 1, 1, tzinfo=ZoneInfo(BERLIN)),
    ],
)
def test_start_forms_are_equivalent(start: str | date | datetime) -> None:
    parts = DailyPartitions(start, BERLIN)
    assert parts == DAILY_BERLIN
    assert hash(parts) == hash(DAILY_BERLIN)
    assert parts.start == datetime(2024, 1, 1, tzinfo=ZoneInfo(BERLIN))


FIRST_KEYS = [
    (DailyPartitions(datetime(2024, 1, 1, 0, 1)), "2024-01-02"),  # not on a boundary
    (DailyPartitions("2024-01-01", hour_offset=6), "2024-01-01"),
    (WeeklyPartitions("2024-01-03"), "2024-01-07"),  # Wednesday -> next Sunday
    (WeeklyPartitions("2024-01-03", day_offset=3), "2024-01-03"),
    (MonthlyPartitions("2024-03-15"), "2024-04-01"),
    (MonthlyPartitions("2024-03-15", day_offset=15), "2024-03-15"),
    (HourlyPartitions("2024-03-31", BERLIN), "2024-03-31-00:00"),  # a bare date: midnight
    (HourlyPartitions("2024-03-31-02:00", BERLIN), "2024-03-31-03:00"),  # in the gap
    (HourlyPartitions(datetime(2024, 1, 1, 0, 10), minute_offset=15), "2024-01-01-00:15"),
]


@pytest.mark.parametrize(("parts", "first"), FIRST_KEYS)
def test_first_partition_starts_at_or_after_start(parts: TimeWindowPartitions, first: str) -> None:
    assert parts.keys_until(parts.window(first).end) == [first]
    assert parts.start == parts.window(first).start
    assert parts.key_for(parts.start) == first
    # aware arithmetic is wall arithmetic within one tzinfo: step back in UTC
    assert parts.key_for(parts.start.astimezone(UTC) - timedelta(microseconds=1)) is None


def test_start_in_a_gap_starts_at_the_jump() -> None:
    parts = HourlyPartitions("2024-03-31-02:00", BERLIN)
    assert parts.start.astimezone(UTC) == utc(2024, 3, 31, 1)


@pytest.mark.parametrize(
    ("parts", "cron"),
    [
        (DAILY_UTC, "0 0 * * *"),
        (DailyPartitions("2024-01-01", hour_offset=6, minute_offset=30), "30 6 * * *"),
        (HOURLY_UTC, "0 * * * *"),
        (HourlyPartitions("2024-01-01-00:00", minute_offset=15), "15 * * * *"),
        (WEEKLY_UTC, "0 0 * * 0"),
        (WeeklyPartitions("2024-01-01", day_offset=1, hour_offset=9), "0 9 * * 1"),
        (MONTHLY_UTC, "0 0 1 * *"),
        (
            MonthlyPartitions("2024-01-01", day_offset=15, hour_offset=6, minute_offset=45),
            "45 6 15 * *",
        ),
    ],
)
def test_cron_ticks_when_a_window_closes(parts: TimeWindowPartitions, cron: str) -> None:
    assert parts.cron == cron


@pytest.mark.parametrize(
    ("parts", "text"),
    [
        (DAILY_UTC, "daily partitions from '2024-01-01' (each day from 00:00 in UTC)"),
        (
            HourlyPartitions("2024-01-01-00:00", BERLIN, end_offset=1, minute_offset=30),
            "hourly partitions from '2024-01-01-00:30' (each hour from :30 in Europe/Berlin, "
            "end_offset 1)",
        ),
        (
            WEEKLY_BERLIN_MON_06,
            "weekly partitions from '2024-01-01' (each week from Monday 06:00 in Europe/Berlin)",
        ),
        (
            MONTHLY_NY_15_09,
            "monthly partitions from '2024-01-15' "
            "(each month from day 15 09:00 in America/New_York)",
        ),
    ],
)
def test_describe(parts: PartitionsDefinition, text: str) -> None:
    assert parts.describe() == text
    assert str(parts) == text


def test_time_window_partitions_are_frozen_slotted_values() -> None:
    assert DailyPartitions("2024-01-01", BERLIN) == DAILY_BERLIN
    assert DailyPartitions("2024-01-01", NEW_YORK) != DAILY_BERLIN
    weekly: object = WeeklyPartitions("2024-01-01", BERLIN)
    assert weekly != DAILY_BERLIN
    with pytest.raises(dataclasses.FrozenInstanceError):
        DAILY_BERLIN.end_offset = 1  # type: ignore[misc]
    assert not hasattr(DAILY_BERLIN, "__dict__")
    assert {DAILY_BERLIN, DailyPartitions(date(2024, 1, 1), BERLIN)} == {DAILY_BERLIN}
    assert pickle.loads(pickle.dumps(DAILY_BERLIN_0230)) == DAILY_BERLIN_0230
    shifted = dataclasses.replace(DAILY_BERLIN, end_offset=1)
    assert shifted == DailyPartitions("2024-01-01", BERLIN, end_offset=1)
    assert shifted.key_closed_by(utc(2024, 1, 1, 12)) == "2024-01-01"


# -- invalid keys, starts and options -----------------------------------------------------

INVALID_KEYS = [
    (DAILY_UTC, "2024-1-01", "expected a date 'YYYY-MM-DD'"),
    (DAILY_UTC, "20240101", "expected a date 'YYYY-MM-DD'"),
    (DAILY_UTC, "2024-02-30", "expected a date 'YYYY-MM-DD'"),
    (DAILY_UTC, "2024-01-01-00:00", "expected a date 'YYYY-MM-DD'"),
    (DAILY_UTC, " 2024-01-01", "expected a date 'YYYY-MM-DD'"),
    (DAILY_UTC, "\u0662\u0660\u0662\u0664-01-01", "expected a date 'YYYY-MM-DD'"),  # Arabic digits
    (DAILY_UTC, "", "expected a date 'YYYY-MM-DD'"),
    (DAILY_UTC, "2023-12-31", "expected a key at or after '2024-01-01', the first one"),
    (DAILY_UTC, "9999-12-31", "with a window within years 1 to 9999"),
    (HOURLY_UTC, "2024-01-01", "expected 'YYYY-MM-DD-HH:MM' with minutes 00"),
    (HOURLY_UTC, "2024-01-01-24:00", "expected 'YYYY-MM-DD-HH:MM' with minutes 00"),
    (HOURLY_UTC, "2024-01-01-5:00", "expected 'YYYY-MM-DD-HH:MM' with minutes 00"),
    (HOURLY_UTC, "2024-01-01-05:30", "expected 'YYYY-MM-DD-HH:MM' with minutes 00"),
    (HOURLY_UTC_30, "2024-01-01-05:00", "expected 'YYYY-MM-DD-HH:MM' with minutes 30"),
    (HOURLY_BERLIN, "2024-03-31-02:00", "the clocks skip over this one"),
    (HOURLY_NY, "2024-03-10-02:00", "the clocks skip over this one"),
    (HOURLY_NY_30, "2024-03-10-02:30", "the clocks skip over this one"),
    (HOURLY_LORD_HOWE, "2024-10-06-02:00", "the clocks skip over this one"),
    (WEEKLY_UTC, "2024-01-08", "expected 'YYYY-MM-DD' naming a Sunday"),
    (WEEKLY_BERLIN_MON_06, "2024-01-07", "expected 'YYYY-MM-DD' naming a Monday"),
    (MONTHLY_UTC, "2024-01-02", "expected 'YYYY-MM-DD' naming day 01 of a month"),
    (MONTHLY_UTC, "2024-01", "expected 'YYYY-MM-DD' naming day 01 of a month"),
    (DailyPartitions("2011-12-01", "Pacific/Apia"), "2011-12-30", "the clocks skip over this one"),
]


@pytest.mark.parametrize(("parts", "key", "expected"), INVALID_KEYS)
def test_invalid_keys(parts: TimeWindowPartitions, key: str, expected: str) -> None:
    for call in (parts.validate_key, parts.window):
        with pytest.raises(InvalidPartitionError) as info:
            call(key)
        assert info.value.key == key
        assert info.value.definition == str(parts)
        assert str(info.value).startswith(f"partition key {key!r} is not valid for {parts}; ")
        assert expected in str(info.value)


def test_invalid_key_message_in_full() -> None:
    with pytest.raises(InvalidPartitionError) as info:
        WEEKLY_UTC.validate_key("2024-01-08")
    assert str(info.value) == (
        "partition key '2024-01-08' is not valid for weekly partitions from '2024-01-07' "
        "(each week from Sunday 00:00 in UTC); expected 'YYYY-MM-DD' naming a Sunday"
    )


@pytest.mark.parametrize(
    ("make", "value", "expected"),
    [
        (DailyPartitions, "2024/01/01", "expected 'YYYY-MM-DD', a date or a datetime"),
        (DailyPartitions, "2024-13-01", "expected 'YYYY-MM-DD', a date or a datetime"),
        (DailyPartitions, "2024-01-01-00:00", "expected 'YYYY-MM-DD', a date or a datetime"),
        (WeeklyPartitions, "yesterday", "expected 'YYYY-MM-DD', a date or a datetime"),
        (MonthlyPartitions, "2024-03", "expected 'YYYY-MM-DD', a date or a datetime"),
        (
            HourlyPartitions,
            "2024-01-01T00:00",
            "expected 'YYYY-MM-DD-HH:MM' or 'YYYY-MM-DD', a date or a datetime",
        ),
        (DailyPartitions, 20240101, "expected a string, a date or a datetime"),
    ],
)
def test_invalid_start(
    make: Callable[[Any], TimeWindowPartitions], value: object, expected: str
) -> None:
    with pytest.raises(ValueError) as info:
        make(value)
    assert f"invalid start {value!r}" in str(info.value)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    "name", ["Mars/Olympus", "utc", "", "America", "../etc/passwd", "/etc/localtime"]
)
def test_unknown_timezone(name: str) -> None:
    with pytest.raises(UnknownTimezoneError) as info:
        DailyPartitions("2024-01-01", name)
    assert info.value.timezone == name
    assert str(info.value).startswith(f"daily partitions: unknown timezone {name!r}; use an IANA")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: DailyPartitions("2024-01-01", hour_offset=24),
            "hour_offset must be an integer from 0 to 23, got 24",
        ),
        (
            lambda: DailyPartitions("2024-01-01", minute_offset=-1),
            "minute_offset must be an integer from 0 to 59",
        ),
        (
            lambda: HourlyPartitions("2024-01-01", minute_offset=60),
            "minute_offset must be an integer from 0 to 59",
        ),
        (
            lambda: WeeklyPartitions("2024-01-01", day_offset=7),
            "day_offset must be an integer from 0 to 6",
        ),
        (
            lambda: MonthlyPartitions("2024-01-01", day_offset=29),
            "day_offset must be an integer from 1 to 28",
        ),
        (
            lambda: MonthlyPartitions("2024-01-01", day_offset=0),
            "day_offset must be an integer from 1 to 28",
        ),
        (lambda: DailyPartitions("2024-01-01", end_offset=True), "end_offset must be an integer"),
    ],
)
def test_invalid_offsets(make: Callable[[], TimeWindowPartitions], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("call", ["key_for", "key_closed_by", "keys_until"])
def test_naive_instants_are_refused(call: str) -> None:
    with pytest.raises(ValueError, match="daily partitions need an aware datetime"):
        getattr(DAILY_UTC, call)(datetime(2024, 1, 2))


# -- static partitions --------------------------------------------------------------------


def test_static_partitions() -> None:
    parts = StaticPartitions(["us", "eu", "apac"])
    assert parts.keys() == ("us", "eu", "apac")
    assert parts == StaticPartitions(("us", "eu", "apac"))
    assert parts != StaticPartitions(("eu", "us", "apac"))  # order matters
    assert isinstance(parts, PartitionsDefinition)
    parts.validate_key("eu")
    with pytest.raises(InvalidPartitionError) as info:
        parts.validate_key("EU")
    assert str(info.value) == (
        "partition key 'EU' is not valid for static partitions ('us', 'eu', 'apac'); "
        "expected one of 'us', 'eu', 'apac'"
    )
    assert hash(parts) == hash(StaticPartitions(["us", "eu", "apac"]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        parts.partition_keys = ()  # type: ignore[misc]


def test_static_partitions_shorten_long_key_lists() -> None:
    parts = StaticPartitions([f"k{i}" for i in range(8)])
    assert parts.describe() == "static partitions ('k0', 'k1', 'k2', 'k3', 'k4', ... 3 more)"


@pytest.mark.parametrize(
    ("keys", "error", "message"),
    [
        ([], ValueError, "static partitions need at least one key, got none"),
        (
            ["a", "b", "a", "c", "b", "a"],
            ValueError,
            "static partitions have duplicate keys: 'a', 'b'",
        ),
        (["a", ""], ValueError, "static partition key '' is invalid"),
        (["a", "b\n"], ValueError, "static partition key 'b\\\\n' is invalid"),
        (["a", 1], TypeError, "static partition keys must be strings, got 1"),
        ("abc", TypeError, "static partitions take a sequence of keys"),
        ({"a", "b"}, TypeError, "static partitions take a sequence of keys"),
    ],
)
def test_static_partitions_reject_bad_keys(
    keys: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        StaticPartitions(keys)  # type: ignore[arg-type]


# -- properties ---------------------------------------------------------------------------

ZONES = [
    "UTC",
    BERLIN,
    NEW_YORK,
    LORD_HOWE,
    "America/Santiago",
    "Pacific/Apia",
    "Europe/Dublin",  # negative DST in tzdata
    "Asia/Kolkata",
    "America/St_Johns",
]
ALL_PARTITIONS = [
    make(zone)
    for zone in ZONES
    for make in (
        lambda z: DailyPartitions("2000-01-01", z),
        lambda z: DailyPartitions("2000-01-01", z, hour_offset=2, minute_offset=30),
        lambda z: HourlyPartitions("2000-01-01-00:00", z),
        lambda z: HourlyPartitions("2000-01-01-00:00", z, minute_offset=30),
        lambda z: WeeklyPartitions("2000-01-01", z, day_offset=0, hour_offset=1),
        lambda z: MonthlyPartitions(
            "2000-01-01", z, day_offset=28, hour_offset=2, minute_offset=15
        ),
    )
]
INSTANTS = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=200, deadline=None)
@given(parts=st.sampled_from(ALL_PARTITIONS), t=INSTANTS)
def test_keys_and_windows_agree_and_tile(parts: TimeWindowPartitions, t: datetime) -> None:
    key = parts.key_for(t)
    assert key is not None
    window = parts.window(key)
    assert t in window
    assert parts.key_for(window.start) == key
    assert parts.key_closed_by(window.end) == key
    parts.validate_key(key)
    keys = [key]
    for _ in range(3):  # the next key starts where the window of the one before ends
        end = parts.window(keys[-1]).end
        following = parts.key_for(end)
        assert following is not None
        assert following > keys[-1]
        assert parts.window(following).start.astimezone(UTC) == end.astimezone(UTC)
        keys.append(following)
    assert parts.keys_between(keys[0], keys[-1]) == keys
    assert parts.keys_until(parts.window(keys[2]).end, limit=3) == keys[:3]
