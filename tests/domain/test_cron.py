"""Cron schedules in time zones: ISC cron's DST rule, seconds, validation and caching.

Expectations are literal UTC instants. Zone transitions used below:

* America/New_York: 2024-03-10 02:00 EST -> 03:00 EDT at 07:00Z; 2024-11-03 02:00 EDT ->
  01:00 EST at 06:00Z (01:00-01:59 happens at 05:xxZ and again at 06:xxZ).
* Europe/Berlin: 2024-03-31 02:00 -> 03:00 at 01:00Z; 2024-10-27 03:00 -> 02:00 at 01:00Z.
* Australia/Lord_Howe (+10:30 / +11): 2024-04-07 02:00 -> 01:30 at 2024-04-06 15:00Z;
  2024-10-06 02:00 -> 02:30 at 2024-10-05 15:30Z.
* America/Sao_Paulo: 2018-11-04 00:00 -> 01:00 at 03:00Z; 2019-02-17 00:00 -> 2019-02-16
  23:00 at 2019-02-17 02:00Z.
* Pacific/Apia: 2011-12-29 24:00 (-10) -> 2011-12-31 00:00 (+14) at 2011-12-30 10:00Z, a
  24-hour gap: 30 December 2011 never happened there.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.domain import cron as cron_module
from daemon.domain.cron import Cron, next_fire, parse_cron, zone
from daemon.errors import InvalidCronError, UnknownTimezoneError

NY = "America/New_York"
BERLIN = "Europe/Berlin"
LORD_HOWE = "Australia/Lord_Howe"
SAO_PAULO = "America/Sao_Paulo"
APIA = "Pacific/Apia"


def z(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- next_after -------------------------------------------------------------------------

NEXT_AFTER = [
    # New York, spring forward: 02:00-02:59 do not exist on 2024-03-10.
    ("30 2 * * *", NY, z(2024, 3, 9, 12), z(2024, 3, 10, 7)),  # fixed, in the gap: at 03:00
    ("30 2 * * *", NY, z(2024, 3, 10, 7), z(2024, 3, 11, 6, 30)),  # and once only
    ("0 2 * * *", NY, z(2024, 3, 10, 6), z(2024, 3, 10, 7)),
    ("30 2 * * *", NY, z(2024, 3, 10, 6, 59), z(2024, 3, 10, 7)),
    ("30 3 * * *", NY, z(2024, 3, 10, 6), z(2024, 3, 10, 7, 30)),
    ("0 3 * * *", NY, z(2024, 3, 10, 6), z(2024, 3, 10, 7)),
    ("* 2 * * *", NY, z(2024, 3, 10, 6), z(2024, 3, 11, 6)),  # wildcard: nothing in the gap
    ("*/15 * * * *", NY, z(2024, 3, 10, 6, 45), z(2024, 3, 10, 7)),  # 01:45 EST -> 03:00 EDT
    # New York, fall back: 01:00-01:59 happen twice on 2024-11-03.
    ("0 1 * * *", NY, z(2024, 11, 3, 4), z(2024, 11, 3, 5)),  # fixed: first occurrence
    ("0 1 * * *", NY, z(2024, 11, 3, 5), z(2024, 11, 4, 6)),  # not again at 06:00Z
    ("30 1 * * *", NY, z(2024, 11, 3, 5, 45), z(2024, 11, 4, 6, 30)),
    ("30 1 * * *", NY, z(2024, 11, 3, 6, 15), z(2024, 11, 4, 6, 30)),  # from the second pass
    ("15 2 * * *", NY, z(2024, 11, 3, 5), z(2024, 11, 3, 7, 15)),
    ("0 * * * *", NY, z(2024, 11, 3, 5), z(2024, 11, 3, 6)),  # wildcard: both 01:00s
    ("30 * * * *", NY, z(2024, 11, 3, 5, 45), z(2024, 11, 3, 6, 30)),
    # Berlin.
    ("30 2 * * *", BERLIN, z(2024, 3, 30, 12), z(2024, 3, 31, 1)),
    ("* 2 * * *", BERLIN, z(2024, 3, 31, 0), z(2024, 4, 1, 0)),
    ("0 2 * * *", BERLIN, z(2024, 10, 27, 0), z(2024, 10, 28, 1)),  # first 02:00 was at 00:00Z
    ("0 2 * * *", BERLIN, z(2024, 10, 26, 23), z(2024, 10, 27, 0)),
    ("0 * * * *", BERLIN, z(2024, 10, 27, 0, 30), z(2024, 10, 27, 1)),  # 02:00 CET
    # Lord Howe, 30-minute shifts.
    ("15 2 * * *", LORD_HOWE, z(2024, 10, 5, 12), z(2024, 10, 5, 15, 30)),  # gap: at 02:30
    ("30 2 * * *", LORD_HOWE, z(2024, 10, 5, 12), z(2024, 10, 5, 15, 30)),
    ("45 1 * * *", LORD_HOWE, z(2024, 4, 6, 12), z(2024, 4, 6, 14, 45)),
    ("45 1 * * *", LORD_HOWE, z(2024, 4, 6, 14, 45), z(2024, 4, 7, 15, 15)),  # not at 15:15Z
    ("45 * * * *", LORD_HOWE, z(2024, 4, 6, 14, 45), z(2024, 4, 6, 15, 15)),  # wildcard: again
    # Sao Paulo.
    ("0 0 * * *", SAO_PAULO, z(2018, 11, 3, 12), z(2018, 11, 4, 3)),  # midnight missing
    ("0 0 * * *", SAO_PAULO, z(2018, 11, 4, 3), z(2018, 11, 5, 2)),
    ("30 23 * * *", SAO_PAULO, z(2019, 2, 16, 12), z(2019, 2, 17, 1, 30)),
    ("30 23 * * *", SAO_PAULO, z(2019, 2, 17, 1, 30), z(2019, 2, 18, 2, 30)),
    ("30 * * * *", SAO_PAULO, z(2019, 2, 17, 1, 30), z(2019, 2, 17, 2, 30)),
    # Apia skipped 2011-12-30: a gap longer than 3 hours does not fire fixed-time crons.
    ("0 9 * * *", APIA, z(2011, 12, 29, 19), z(2011, 12, 30, 19)),  # 09:00 on 31 December
    ("0 9 30 12 *", APIA, z(2011, 12, 1), z(2012, 12, 29, 19)),  # next year's 30 December
    ("0 * * * *", APIA, z(2011, 12, 30, 9, 30), z(2011, 12, 30, 10)),  # 00:00 on 31 December
    # UTC and seconds.
    ("*/10 * * * * *", "UTC", z(2024, 1, 1, 0, 0, 5), z(2024, 1, 1, 0, 0, 10)),
    ("*/10 * * * * *", "UTC", z(2024, 1, 1, 0, 0, 50), z(2024, 1, 1, 0, 1)),
    ("30 0 12 * * *", "UTC", z(2024, 1, 1, 12), z(2024, 1, 1, 12, 0, 30)),
    ("*/20 30 2 * * *", NY, z(2024, 3, 10, 6), z(2024, 3, 10, 7)),
    ("0 30 1 * * *", NY, z(2024, 11, 3, 5, 30), z(2024, 11, 4, 6, 30)),
    (
        "0 30 1 * * *",
        "UTC",
        datetime(2024, 1, 1, 1, 29, 59, 999999, tzinfo=UTC),
        z(2024, 1, 1, 1, 30),
    ),
    (
        "*/15 * * * *",
        "UTC",
        datetime(2024, 1, 1, 0, 14, 59, 999999, tzinfo=UTC),
        z(2024, 1, 1, 0, 15),
    ),
    # Aliases.
    ("@hourly", "UTC", z(2024, 1, 1, 0, 30), z(2024, 1, 1, 1)),
    ("@daily", BERLIN, z(2024, 1, 1, 0, 30), z(2024, 1, 1, 23)),
    ("@weekly", "UTC", z(2024, 1, 1), z(2024, 1, 7)),
    ("@monthly", "UTC", z(2024, 1, 1), z(2024, 2, 1)),
    ("@yearly", "UTC", z(2024, 1, 1), z(2025, 1, 1)),
]


@pytest.mark.parametrize(("expression", "tz", "after", "expected"), NEXT_AFTER)
def test_next_after(expression: str, tz: str, after: datetime, expected: datetime) -> None:
    got = parse_cron(expression, tz).next_after(after)
    assert got == expected
    assert got.tzinfo is UTC


def test_next_after_accepts_any_zone_and_the_fold() -> None:
    cron = parse_cron("0 * * * *", NY)
    first = datetime(2024, 11, 3, 1, 30, tzinfo=ZoneInfo(NY))
    second = first.replace(fold=1)
    assert cron.next_after(first) == z(2024, 11, 3, 6)
    assert cron.next_after(second) == z(2024, 11, 3, 7)


# -- fire_times -------------------------------------------------------------------------

FIRE_TIMES = [
    (
        "0,30 2 * * *",
        NY,
        z(2024, 3, 10),
        z(2024, 3, 11, 12),
        [z(2024, 3, 10, 7), z(2024, 3, 11, 6), z(2024, 3, 11, 6, 30)],
    ),
    ("0 2-3 * * *", NY, z(2024, 3, 10, 5), z(2024, 3, 10, 9), [z(2024, 3, 10, 7)]),
    (
        "*/15 * * * *",
        NY,
        z(2024, 3, 10, 6, 30),
        z(2024, 3, 10, 7, 30),
        [z(2024, 3, 10, 6, 45), z(2024, 3, 10, 7), z(2024, 3, 10, 7, 15), z(2024, 3, 10, 7, 30)],
    ),
    (
        "0 * * * *",
        NY,
        z(2024, 3, 10, 5),
        z(2024, 3, 10, 9),
        [z(2024, 3, 10, 6), z(2024, 3, 10, 7), z(2024, 3, 10, 8), z(2024, 3, 10, 9)],
    ),
    (
        "30 1 * * *",
        NY,
        z(2024, 11, 2, 12),
        z(2024, 11, 4, 12),
        [z(2024, 11, 3, 5, 30), z(2024, 11, 4, 6, 30)],
    ),
    (
        "*/30 * * * *",
        NY,
        z(2024, 11, 3, 4, 45),
        z(2024, 11, 3, 7),
        [
            z(2024, 11, 3, 5),
            z(2024, 11, 3, 5, 30),
            z(2024, 11, 3, 6),
            z(2024, 11, 3, 6, 30),
            z(2024, 11, 3, 7),
        ],
    ),
    (
        "0 * * * *",
        NY,
        z(2024, 11, 3, 4),
        z(2024, 11, 3, 8),
        [z(2024, 11, 3, 5), z(2024, 11, 3, 6), z(2024, 11, 3, 7), z(2024, 11, 3, 8)],
    ),
    (
        "*/15 * * * *",
        BERLIN,
        z(2024, 3, 31, 0, 30),
        z(2024, 3, 31, 1, 30),
        [z(2024, 3, 31, 0, 45), z(2024, 3, 31, 1), z(2024, 3, 31, 1, 15), z(2024, 3, 31, 1, 30)],
    ),
    (
        "30 2 * * *",
        BERLIN,
        z(2024, 10, 26, 12),
        z(2024, 10, 28, 12),
        [z(2024, 10, 27, 0, 30), z(2024, 10, 28, 1, 30)],
    ),
    (
        "*/30 * * * *",
        BERLIN,
        z(2024, 10, 26, 23, 45),
        z(2024, 10, 27, 2),
        [
            z(2024, 10, 27, 0),
            z(2024, 10, 27, 0, 30),
            z(2024, 10, 27, 1),
            z(2024, 10, 27, 1, 30),
            z(2024, 10, 27, 2),
        ],
    ),
    ("45 1 * * *", LORD_HOWE, z(2024, 4, 6), z(2024, 4, 7), [z(2024, 4, 6, 14, 45)]),
    (
        "*/15 * * * *",
        LORD_HOWE,
        z(2024, 4, 6, 14, 20),
        z(2024, 4, 6, 15, 20),
        [z(2024, 4, 6, 14, 30), z(2024, 4, 6, 14, 45), z(2024, 4, 6, 15), z(2024, 4, 6, 15, 15)],
    ),
    (
        "0,10,20 2 * * *",
        LORD_HOWE,
        z(2024, 10, 5, 12),
        z(2024, 10, 6, 12),
        [z(2024, 10, 5, 15, 30)],
    ),
    (
        "*/15 * * * *",
        LORD_HOWE,
        z(2024, 10, 5, 15),
        z(2024, 10, 5, 16),
        [
            z(2024, 10, 5, 15, 15),
            z(2024, 10, 5, 15, 30),
            z(2024, 10, 5, 15, 45),
            z(2024, 10, 5, 16),
        ],
    ),
    (
        "*/30 * * * *",
        SAO_PAULO,
        z(2018, 11, 4, 2),
        z(2018, 11, 4, 4),
        [z(2018, 11, 4, 2, 30), z(2018, 11, 4, 3), z(2018, 11, 4, 3, 30), z(2018, 11, 4, 4)],
    ),
    (
        "30 23 * * *",
        SAO_PAULO,
        z(2019, 2, 16, 12),
        z(2019, 2, 18, 12),
        [z(2019, 2, 17, 1, 30), z(2019, 2, 18, 2, 30)],
    ),
    (
        "30 * * * *",
        SAO_PAULO,
        z(2019, 2, 17, 1),
        z(2019, 2, 17, 3),
        [z(2019, 2, 17, 1, 30), z(2019, 2, 17, 2, 30)],
    ),
    ("0 23 * * 6", SAO_PAULO, z(2019, 2, 16), z(2019, 2, 18), [z(2019, 2, 17, 1)]),
    (
        "0 9 * * *",
        APIA,
        z(2011, 12, 28),
        z(2012, 1, 1),
        [z(2011, 12, 28, 19), z(2011, 12, 29, 19), z(2011, 12, 30, 19), z(2011, 12, 31, 19)],
    ),
    # Classic cron OR: the 1st of the month, or Mondays.
    (
        "0 12 1 * 1",
        "UTC",
        z(2024, 4, 28),
        z(2024, 5, 14),
        [z(2024, 4, 29, 12), z(2024, 5, 1, 12), z(2024, 5, 6, 12), z(2024, 5, 13, 12)],
    ),
    (
        "0 0 13 * fri",
        "UTC",
        z(2024, 9, 1),
        z(2024, 9, 22),
        [z(2024, 9, 6), z(2024, 9, 13), z(2024, 9, 20)],
    ),
    # Seconds first.
    (
        "*/10 * * * * *",
        "UTC",
        z(2024, 1, 1),
        z(2024, 1, 1, 0, 1),
        [z(2024, 1, 1, 0, 0, s) for s in (10, 20, 30, 40, 50)] + [z(2024, 1, 1, 0, 1)],
    ),
    ("*/20 30 2 * * *", NY, z(2024, 3, 10, 6), z(2024, 3, 10, 8), [z(2024, 3, 10, 7)]),
    ("0 30 1 * * *", NY, z(2024, 11, 3, 4), z(2024, 11, 3, 8), [z(2024, 11, 3, 5, 30)]),
    (
        "0 */30 1 * * *",
        NY,
        z(2024, 11, 3, 4),
        z(2024, 11, 3, 8),
        [z(2024, 11, 3, 5), z(2024, 11, 3, 5, 30), z(2024, 11, 3, 6), z(2024, 11, 3, 6, 30)],
    ),
    ("0 0 0 * * *", "UTC", z(2024, 1, 2), z(2024, 1, 2), []),
    ("0 0 0 * * *", "UTC", z(2024, 1, 2), z(2024, 1, 1), []),
]


@pytest.mark.parametrize(("expression", "tz", "after", "until", "expected"), FIRE_TIMES)
def test_fire_times(
    expression: str, tz: str, after: datetime, until: datetime, expected: list[datetime]
) -> None:
    assert list(parse_cron(expression, tz).fire_times(after, until)) == expected


def test_every_minute_of_a_repeated_hour_fires_twice_for_a_wildcard_cron() -> None:
    fires = list(parse_cron("* 1 * * *", NY).fire_times(z(2024, 11, 3, 4), z(2024, 11, 3, 8)))
    assert len(fires) == 120
    assert (fires[0], fires[59], fires[60], fires[-1]) == (
        z(2024, 11, 3, 5),
        z(2024, 11, 3, 5, 59),
        z(2024, 11, 3, 6),
        z(2024, 11, 3, 6, 59),
    )


# -- previous_at_or_before --------------------------------------------------------------

PREVIOUS = [
    ("30 2 * * *", NY, z(2024, 3, 10, 7), z(2024, 3, 10, 7)),  # the gap fire, inclusive
    ("30 2 * * *", NY, z(2024, 3, 10, 6, 59), z(2024, 3, 9, 7, 30)),
    ("30 2 * * *", NY, z(2024, 3, 11, 6), z(2024, 3, 10, 7)),
    ("*/30 * * * *", NY, z(2024, 3, 10, 7, 10), z(2024, 3, 10, 7)),
    ("* 2 * * *", NY, z(2024, 3, 11, 5), z(2024, 3, 9, 7, 59)),
    ("30 1 * * *", NY, z(2024, 11, 3, 6, 45), z(2024, 11, 3, 5, 30)),  # not the second 01:30
    ("30 1 * * *", NY, z(2024, 11, 3, 5, 45), z(2024, 11, 3, 5, 30)),
    ("*/30 * * * *", NY, z(2024, 11, 3, 6, 15), z(2024, 11, 3, 6)),
    ("0 2 * * *", BERLIN, z(2024, 10, 27, 1, 30), z(2024, 10, 27, 0)),
    ("0 * * * *", BERLIN, z(2024, 10, 27, 1, 30), z(2024, 10, 27, 1)),
    ("15 2 * * *", LORD_HOWE, z(2024, 10, 5, 16), z(2024, 10, 5, 15, 30)),
    ("0 0 * * *", SAO_PAULO, z(2018, 11, 4, 12), z(2018, 11, 4, 3)),
    ("0 9 * * *", APIA, z(2011, 12, 30, 18), z(2011, 12, 29, 19)),
    ("0 0 29 2 *", "UTC", z(2027, 6, 1), z(2024, 2, 29)),
    ("*/10 * * * * *", "UTC", datetime(2024, 1, 1, 0, 0, 9, 999999, tzinfo=UTC), z(2024, 1, 1)),
]


@pytest.mark.parametrize(("expression", "tz", "t", "expected"), PREVIOUS)
def test_previous_at_or_before(expression: str, tz: str, t: datetime, expected: datetime) -> None:
    got = parse_cron(expression, tz).previous_at_or_before(t)
    assert got == expected
    assert got is not None and got.tzinfo is UTC


def test_previous_is_none_beyond_the_lookback() -> None:
    cron = parse_cron("0 0 1 1 *", "UTC")
    assert cron.previous_at_or_before(z(2024, 6, 1), lookback=timedelta(days=100)) is None
    assert cron.previous_at_or_before(z(2024, 6, 1), lookback=timedelta(days=200)) == z(2024, 1, 1)


# -- classification ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "fixed", "seconds"),
    [
        ("30 2 * * *", True, False),
        ("0,30 1-3 * * *", True, False),
        ("0-59/15 1 * * *", True, False),
        ("*/15 * * * *", False, False),
        ("0 * * * *", False, False),
        ("* 2 * * *", False, False),
        ("0 */2 * * *", False, False),
        ("0 30 2 * * *", True, True),
        ("* 30 2 * * *", True, True),  # the seconds field does not count
        ("*/10 * * * * *", False, True),
        ("@daily", True, False),
        ("@hourly", False, False),
    ],
)
def test_fixed_time_and_seconds(expression: str, fixed: bool, seconds: bool) -> None:
    cron = parse_cron(expression)
    assert (cron.is_fixed_time, cron.has_seconds) == (fixed, seconds)


# -- next_fire --------------------------------------------------------------------------

NEXT_FIRE = [
    (("0 9 * * *", "30 8 * * 1-5"), BERLIN, z(2024, 7, 5, 6), z(2024, 7, 5, 6, 30)),
    (("0 9 * * *", "30 8 * * 1-5"), BERLIN, z(2024, 7, 5, 7), z(2024, 7, 6, 7)),
    (("30 2 * * *", "0 * * * *"), NY, z(2024, 3, 10, 6, 30), z(2024, 3, 10, 7)),
    (("45 1 * * *", "0 3 * * *"), NY, z(2024, 11, 3, 5, 50), z(2024, 11, 3, 8)),
    (("0 0 * * *",), "UTC", z(2024, 12, 31, 23, 59), z(2025, 1, 1)),
]


@pytest.mark.parametrize(("expressions", "tz", "after", "expected"), NEXT_FIRE)
def test_next_fire(
    expressions: tuple[str, ...], tz: str, after: datetime, expected: datetime
) -> None:
    assert next_fire(expressions, tz, after) == expected


def test_next_fire_keys_the_cache_by_instant_not_wall_time() -> None:
    first = datetime(2024, 11, 3, 1, 30, tzinfo=ZoneInfo(NY))
    assert next_fire(("0 * * * *",), NY, first) == z(2024, 11, 3, 6)
    assert next_fire(("0 * * * *",), NY, first.replace(fold=1)) == z(2024, 11, 3, 7)


def test_next_fire_computes_once_for_many_identical_schedules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    real = cron_module.parse_cron

    def counting(expression: str, timezone: str = "UTC") -> Cron:
        calls.append(expression)
        return real(expression, timezone)

    monkeypatch.setattr(cron_module, "parse_cron", counting)
    after = z(2031, 5, 17, 8, 3, 21)  # an instant no other test asks about
    results = {next_fire(("*/5 * * * *",), BERLIN, after) for _ in range(10_000)}
    assert results == {z(2031, 5, 17, 8, 5)}
    assert calls == ["*/5 * * * *"]  # each call after the first is a cache hit


# The cached runs of fire instants: a schedule stepping from tick to tick through a change
# of offset, for longer than a run's first few instants, gets exactly the rule's times.
STEPPING = [
    # New York falls back on 2024-11-03: a wildcard cron fires at both 01:00s (05:00Z EDT,
    # 06:00Z EST); 02:00 EST is 07:00Z.
    (
        ("0 * * * *",),
        NY,
        z(2024, 11, 3, 2, 30),
        [
            z(2024, 11, 3, 3),
            z(2024, 11, 3, 4),
            z(2024, 11, 3, 5),
            z(2024, 11, 3, 6),
            z(2024, 11, 3, 7),
            z(2024, 11, 3, 8),
            z(2024, 11, 3, 9),
        ],
    ),
    # ... and a fixed-time cron only at the first 01:30.
    (
        ("30 1 * * *",),
        NY,
        z(2024, 10, 31),
        [
            z(2024, 10, 31, 5, 30),
            z(2024, 11, 1, 5, 30),
            z(2024, 11, 2, 5, 30),
            z(2024, 11, 3, 5, 30),
            z(2024, 11, 4, 6, 30),
            z(2024, 11, 5, 6, 30),
        ],
    ),
    # Berlin springs forward on 2024-03-31 at 01:00Z: 02:30 does not exist, a fixed-time
    # cron fires once at the end of the gap (03:00 CEST = 01:00Z).
    (
        ("30 2 * * *",),
        BERLIN,
        z(2024, 3, 27),
        [
            z(2024, 3, 27, 1, 30),
            z(2024, 3, 28, 1, 30),
            z(2024, 3, 29, 1, 30),
            z(2024, 3, 30, 1, 30),
            z(2024, 3, 31, 1),
            z(2024, 4, 1, 0, 30),
            z(2024, 4, 2, 0, 30),
        ],
    ),
    # ... and a wildcard cron skips the hour that does not exist (01:45 CET = 00:45Z,
    # then 03:00 CEST = 01:00Z).
    (
        ("*/15 * * * *",),
        BERLIN,
        z(2024, 3, 31, 0, 10),
        [
            z(2024, 3, 31, 0, 15),
            z(2024, 3, 31, 0, 30),
            z(2024, 3, 31, 0, 45),
            z(2024, 3, 31, 1),
            z(2024, 3, 31, 1, 15),
            z(2024, 3, 31, 1, 30),
        ],
    ),
    # Berlin falls back on 2024-10-27 at 01:00Z: 02:xx happens at 00:xxZ and at 01:xxZ.
    (
        ("0,30 2 * * *", "0 4 * * *"),
        BERLIN,
        z(2024, 10, 26, 12),
        [
            z(2024, 10, 27, 0),
            z(2024, 10, 27, 0, 30),
            z(2024, 10, 27, 3),
            z(2024, 10, 28, 1),
            z(2024, 10, 28, 1, 30),
            z(2024, 10, 28, 3),
        ],
    ),
    (
        ("*/20 * * * *",),
        BERLIN,
        z(2024, 10, 27, 0, 30),
        [
            z(2024, 10, 27, 0, 40),
            z(2024, 10, 27, 1),
            z(2024, 10, 27, 1, 20),
            z(2024, 10, 27, 1, 40),
            z(2024, 10, 27, 2),
            z(2024, 10, 27, 2, 20),
        ],
    ),
    # Seconds, across midnight and into the next matching day (Mondays only).
    (
        ("*/20 59 23 * * 1",),
        "UTC",
        z(2024, 1, 1, 23, 58),
        [
            z(2024, 1, 1, 23, 59),
            z(2024, 1, 1, 23, 59, 20),
            z(2024, 1, 1, 23, 59, 40),
            z(2024, 1, 8, 23, 59),
            z(2024, 1, 8, 23, 59, 20),
            z(2024, 1, 8, 23, 59, 40),
            z(2024, 1, 15, 23, 59),
        ],
    ),
]


@pytest.mark.parametrize(("expressions", "tz", "start", "expected"), STEPPING)
def test_next_fire_stepping_through_a_change_of_offset(
    expressions: tuple[str, ...], tz: str, start: datetime, expected: list[datetime]
) -> None:
    cron_module.clear_fire_cache()
    got, t = [], start
    for _ in expected:
        t = next_fire(expressions, tz, t)
        got.append(t)
    assert got == expected
    # Asked again, from anywhere inside the run now cached, the answers are the same.
    for before, after in pairwise([start, *expected]):
        assert next_fire(expressions, tz, before) == after
        assert next_fire(expressions, tz, before + (after - before) / 2) == after
        assert next_fire(expressions, tz, after - timedelta(microseconds=1)) == after


def _uncached(expressions: tuple[str, ...], tz: str, after: datetime) -> datetime:
    """The first fire instant after `after`, from fresh Cron objects (no cache at all)."""
    return min(Cron(e, tz).next_after(after) for e in expressions)


@pytest.mark.parametrize(
    ("expressions", "tz", "start", "steps"),
    [
        (("* * * * *",), BERLIN, z(2024, 10, 26, 23), 2 * 24 * 60),  # through a fold
        (("*/7 * * * *",), NY, z(2024, 3, 9, 20), 600),  # through a gap
        (("30 2 * * *",), BERLIN, z(2023, 12, 1), 400),  # a daily fixed-time cron, a year on
        (("15 1 * * 0", "0 12 1 * *"), NY, z(2024, 1, 1), 300),
    ],
)
def test_next_fire_runs_grow_and_forget_without_changing_answers(
    expressions: tuple[str, ...], tz: str, start: datetime, steps: int
) -> None:
    """Far past a run's first instants and past the length where it forgets its older half,
    stepping answers what an uncached Cron answers; so does jumping back and forth."""
    cron_module.clear_fire_cache()
    times, t = [], start
    for _ in range(steps):
        t = next_fire(expressions, tz, t)
        times.append(t)
    assert all(a < b for a, b in pairwise(times))
    for i in [0, 1, 2, 3, 4, steps // 3, steps // 2, steps - 2]:
        assert times[i + 1] == _uncached(expressions, tz, times[i])
    for i in [steps - 2, 0, steps // 2, 1, steps - 3, 3]:  # out of order, old and new runs
        assert next_fire(expressions, tz, times[i]) == times[i + 1]
        between = times[i] + (times[i + 1] - times[i]) / 3
        assert next_fire(expressions, tz, between) == times[i + 1]


WALL_CRONS = [
    "* * * * *",
    "*/7 3-5,22 * * *",
    "0 0 L * *",
    "30 9 15W * *",
    "0 12 * * 5#2",
    "0 6 * * L5",
    "15 10 1,15 * mon",
    "*/10 * * jan,jul sat-sun",
    "*/15 30 2 29 2 *",
    "0 0 1 1 *",
    "5-5 5 * * *",
]


@settings(max_examples=80, deadline=None)
@given(
    expression=st.sampled_from(WALL_CRONS),
    start=st.datetimes(datetime(2000, 1, 1), datetime(2040, 1, 1)),
)
def test_wall_times_of_a_matching_day_agree_with_croniter(expression: str, start: datetime) -> None:
    """Within a day croniter found to match, the next wall times come from the expanded
    time fields: they are croniter's own, step after step."""
    from croniter import croniter

    cron = parse_cron(expression)
    fields = " ".join(cron_module._validate(expression))
    reference = croniter(
        fields,
        start,
        ret_type=datetime,
        day_or=True,
        implement_cron_bug=True,
        second_at_beginning=cron.has_seconds,
    )
    wall = start
    for _ in range(30):
        expected = reference.get_next(datetime)
        wall = cron._wall_after(wall)
        assert wall == expected


def test_next_fire_needs_an_expression() -> None:
    with pytest.raises(ValueError, match="at least one"):
        next_fire((), "UTC", z(2024, 1, 1))


# -- validation -------------------------------------------------------------------------

INVALID = [
    ("65 * * * *", "minute", "65 is out of range 0-59"),
    ("0 24 * * *", "hour", "24 is out of range 0-23"),
    ("0 1-70 * * *", "hour", "70 is out of range 0-23"),
    ("0 0 32 * *", "day-of-month", "32 is out of range 1-31"),
    ("0 0 0 * *", "day-of-month", "0 is out of range 1-31"),
    ("0 0 * 13 *", "month", "13 is out of range 1-12"),
    ("0 0 * 0 *", "month", "0 is out of range 1-12"),
    ("0 0 * * 8", "day-of-week", "8 is out of range 0-7"),
    ("60 0 0 * * *", "second", "60 is out of range 0-59"),
    ("0 60 0 * * *", "minute", "60 is out of range 0-59"),
    ("*/0 * * * *", "minute", "step 0"),
    ("*/x * * * *", "minute", "step 'x'"),
    ("1,,2 * * * *", "minute", "empty list item"),
    ("a b c d e", "minute", "'a' is not valid"),
    ("0 0 * foo *", "month", "'foo' is not valid"),
    ("0 0 * * funday", "day-of-week", "'funday' is not valid"),
    ("0 0 * * 1#3,2", "day-of-week", "'1#3,2' is not valid"),
    ("H * * * *", "minute", "hashed and random"),
    ("0 R * * *", "hour", "hashed and random"),
    ("0 0 31 2 *", "day-of-month", "day 31 never occurs"),
    ("0 0 30,31 2,4 *", None, None),  # April has a 30th
    ("0 0 * *", None, "got 4"),
    ("0 0 * * * * *", None, "got 7"),
    ("", None, "got 0"),
    ("   ", None, "got 0"),
    ("every day at noon", None, "got 4"),
    ("@fortnightly", None, "unknown alias"),
]


@pytest.mark.parametrize(("expression", "field", "problem"), INVALID)
def test_invalid_cron(expression: str, field: str | None, problem: str | None) -> None:
    if problem is None:
        parse_cron(expression)  # valid after all
        return
    with pytest.raises(InvalidCronError) as caught:
        parse_cron(expression, BERLIN)
    error = caught.value
    assert (error.expression, error.field) == (expression, field)
    message = str(error)
    assert repr(expression) in message
    assert problem in message
    if field is not None:
        assert f"{field} field" in message


@pytest.mark.parametrize(
    "expression",
    [
        "0 0 L * *",
        "0 0 15W * *",
        "0 0 * * mon-fri",
        "0 12 * * 7",
        "0 0 ? * ?",
        "0 0 1 jan *",
        "0 0 * * 5#2",
        "@midnight",
        "@annually",
        "@Daily",
        "  0 9 * * *  ",
        "59 23 31 12 *",
    ],
)
def test_valid_cron(expression: str) -> None:
    cron = parse_cron(expression, NY)
    assert cron.expression == expression
    assert cron.next_after(z(2024, 1, 1)) > z(2024, 1, 1)


def test_unknown_timezone() -> None:
    with pytest.raises(UnknownTimezoneError, match="Mars/Olympus_Mons"):
        parse_cron("0 * * * *", "Mars/Olympus_Mons")
    for name in ("", "America", "../etc/passwd", "/etc/localtime", "utc"):
        with pytest.raises(UnknownTimezoneError):
            zone(name)
    assert zone(BERLIN) is zone(BERLIN)
    assert zone(BERLIN) == ZoneInfo(BERLIN)


def test_naive_datetimes_are_rejected() -> None:
    cron = parse_cron("0 * * * *")
    naive = datetime(2024, 1, 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        cron.next_after(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        cron.fire_times(naive, z(2024, 1, 2))  # eagerly, not on first next()
    with pytest.raises(ValueError, match="timezone-aware"):
        cron.fire_times(z(2024, 1, 1), naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        cron.previous_at_or_before(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire(("0 * * * *",), "UTC", naive)


def test_parse_cron_shares_instances() -> None:
    a = parse_cron("*/5 * * * *", BERLIN)
    assert parse_cron("*/5 * * * *", BERLIN) is a
    assert parse_cron("*/5 * * * *", NY) is not a
    assert Cron("*/5 * * * *", BERLIN) == a
    assert hash(Cron("*/5 * * * *", BERLIN)) == hash(a)
    assert pickle.loads(pickle.dumps(a)) is a
    assert repr(a) == (
        "Cron(expression='*/5 * * * *', timezone='Europe/Berlin', "
        "is_fixed_time=False, has_seconds=False)"
    )
    with pytest.raises(AttributeError):
        a.expression = "0 * * * *"  # type: ignore[misc]


# -- the rule against a minute-by-minute oracle -------------------------------------------


def _matches(field: str, value: int) -> bool:
    for item in field.split(","):
        base, _, step = item.partition("/")
        if base == "*":
            lo, hi = 0, 59
        elif "-" in base:
            lo, hi = (int(bound) for bound in base.split("-"))
        else:
            lo = int(base)
            hi = 59 if step else lo
        if lo <= value <= hi and (value - lo) % int(step or 1) == 0:
            return True
    return False


def _oracle(expression: str, tz: str, start: datetime, end: datetime) -> Iterator[datetime]:
    """The rule, stated minute by minute: minute and hour fields only, day fields '*'."""
    minute, hour = expression.split()[:2]
    fixed = "*" not in minute and "*" not in hour
    zi = ZoneInfo(tz)

    def matches(wall: datetime) -> bool:
        return _matches(minute, wall.minute) and _matches(hour, wall.hour)

    before = start.astimezone(zi)
    u = start + timedelta(minutes=1)
    while u <= end:
        local = u.astimezone(zi)
        offset, previous = local.utcoffset(), before.utcoffset()
        assert offset is not None and previous is not None
        jump = offset - previous
        wall = local.replace(tzinfo=None)
        fire = matches(wall) and not (fixed and local.fold == 1)
        if fixed and timedelta(0) < jump <= timedelta(hours=3):
            skipped = before.replace(tzinfo=None) + timedelta(minutes=1)
            while skipped < wall:
                fire = fire or matches(skipped)
                skipped += timedelta(minutes=1)
        if fire:
            yield u
        before, u = local, u + timedelta(minutes=1)


TRANSITIONS = [
    (NY, z(2024, 3, 10, 7)),
    (NY, z(2024, 11, 3, 6)),
    (BERLIN, z(2024, 3, 31, 1)),
    (BERLIN, z(2024, 10, 27, 1)),
    (LORD_HOWE, z(2024, 4, 6, 15)),
    (LORD_HOWE, z(2024, 10, 5, 15, 30)),
    (SAO_PAULO, z(2018, 11, 4, 3)),
    (SAO_PAULO, z(2019, 2, 17, 2)),
    (APIA, z(2011, 12, 30, 10)),
]
ORACLE_CRONS = [
    "30 2 * * *",
    "0,30 1-3 * * *",
    "45 1 * * *",
    "0 0 * * *",
    "10-50/20 23 * * *",
    "*/15 * * * *",
    "* 2 * * *",
    "0 */2 * * *",
]


@pytest.mark.parametrize(("tz", "shift"), TRANSITIONS)
def test_the_rule_matches_a_minute_by_minute_oracle(tz: str, shift: datetime) -> None:
    start, end = shift - timedelta(hours=5), shift + timedelta(hours=5)
    for expression in ORACLE_CRONS:
        expected = list(_oracle(expression, tz, start, end))
        assert list(parse_cron(expression, tz).fire_times(start, end)) == expected, expression


# -- properties -------------------------------------------------------------------------

SIMPLE_CRONS = [
    "*/15 * * * *",
    "0 * * * *",
    "30 2 * * *",
    "0,30 1-3 * * *",
    "* 2 * * *",
    "0 0 * * 0",
    "0 12 1 * 1",
    "15 0 1 1,7 *",
    "*/20 * * * * *",
    "0 30 1 * * *",
]
ZONES = ["UTC", NY, BERLIN, LORD_HOWE, SAO_PAULO, APIA]
near_a_shift = st.builds(
    lambda zs, minutes: (zs[0], zs[1] + timedelta(minutes=minutes)),
    st.sampled_from(TRANSITIONS),
    st.integers(-24 * 60, 24 * 60),
)
anywhere = st.tuples(
    st.sampled_from(ZONES),
    st.datetimes(datetime(1995, 1, 1), datetime(2045, 1, 1), timezones=st.just(UTC)),
)


@settings(max_examples=60, deadline=None)
@given(expression=st.sampled_from(SIMPLE_CRONS), zoned=st.one_of(near_a_shift, anywhere))
def test_next_previous_and_fire_times_agree(expression: str, zoned: tuple[str, datetime]) -> None:
    tz, t = zoned
    cron = parse_cron(expression, tz)
    n = cron.next_after(t)
    assert n > t
    fires = list(islice(cron.fire_times(t, t + timedelta(days=3)), 12))
    assert all(a < b for a, b in pairwise(fires))
    if n <= t + timedelta(days=3):
        assert fires[0] == n
    else:
        assert fires == []
    for a, b in pairwise(fires):
        assert cron.next_after(a) == b
    p = cron.previous_at_or_before(t)
    assert p is not None and p <= t
    assert cron.next_after(p) == n
    assert cron.previous_at_or_before(n) == n
