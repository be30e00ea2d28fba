"""`parse_cron(...).fire_times` against the brute-force oracle in `tests.dst.oracle`.

Short form, for CI: for every zone x cron, windows around every change of offset in
2010-2030 (where all the daylight-saving behaviour is) plus one ordinary week. Fixed-time
crons get +-2 days around each change (the fires of the days before and after too);
wildcard crons, which fire many times a day and whose behaviour is local to the change,
+-4 hours. The long form, every minute of ten years, is `bench/dst_long.py`.

The oracle itself is checked first: against hand-computed tables of literal instants, and
against `literal_fire_times`, the rule stated with zoneinfo called for every minute.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import pairwise

import pytest

from daemon.domain.cron import parse_cron
from tests.dst.oracle import (
    CRONS,
    EPOCH,
    FIXED_CRONS,
    ZONES,
    Segment,
    describe_difference,
    literal_fire_times,
    oracle_fire_times,
    parse,
    segments,
    to_minute,
    transitions,
)

FIRST, LAST = datetime(2010, 1, 1, tzinfo=UTC), datetime(2031, 1, 1, tzinfo=UTC)
DISCOVERY_SAMPLE = 6 * 3600  # seconds; finds every change of 2010-2030 in these zones
ORDINARY_WEEK = (datetime(2023, 1, 16, tzinfo=UTC), datetime(2023, 1, 23, tzinfo=UTC))
ORDINARY_DAY = (datetime(2023, 1, 16, tzinfo=UTC), datetime(2023, 1, 17, tzinfo=UTC))
FIXED_REACH = timedelta(days=2)
WILDCARD_REACH = timedelta(hours=4)
MARGIN = 4 * 1440  # minutes of offsets known beyond 2010-2030


def z(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def minute_instant(minute: int) -> datetime:
    return EPOCH + timedelta(minutes=minute)


@cache
def zone_segments(zone: str) -> tuple[Segment, ...]:
    """The offsets of `zone` over 2010-2030 and a margin, from 6-hourly samples."""
    return segments(zone, to_minute(FIRST) - MARGIN, to_minute(LAST) + MARGIN, DISCOVERY_SAMPLE)


@cache
def windows(zone: str, fixed: bool) -> tuple[tuple[datetime, datetime], ...]:
    """(after, until] windows: one around each change of offset, and an ordinary stretch."""
    reach, ordinary = (FIXED_REACH, ORDINARY_WEEK) if fixed else (WILDCARD_REACH, ORDINARY_DAY)
    segs = zone_segments(zone)
    found = [b.start for a, b in pairwise(segs) if FIRST <= minute_instant(b.start) < LAST]
    return (*((minute_instant(m) - reach, minute_instant(m) + reach) for m in found), ordinary)


def compare(zone: str, expression: str) -> tuple[int, list[str]]:
    """Fire times compared and the differences, over every window of `zone`."""
    cron = parse_cron(expression, zone)
    segs = zone_segments(zone)
    compared, problems = 0, []
    for after, until in windows(zone, parse(expression).fixed):
        expected = oracle_fire_times(expression, zone, after, until, known=segs)
        got = list(cron.fire_times(after, until))
        compared += len(expected)
        problem = describe_difference(zone, expression, expected, got)
        if problem is not None:
            problems.append(f"window ({after:%Y-%m-%d %H:%M}Z, {until:%Y-%m-%d %H:%M}Z]: {problem}")
    return compared, problems


# -- the oracle, by hand -----------------------------------------------------------------

NY, BERLIN, LORD_HOWE, APIA = (
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Pacific/Apia",
)
ORACLE_TABLE = [
    # New York 2024-03-10: 02:00 EST -> 03:00 EDT at 07:00Z.
    (
        "30 2 * * *",
        NY,
        z(2024, 3, 9, 12),
        z(2024, 3, 11, 12),
        [z(2024, 3, 10, 7), z(2024, 3, 11, 6, 30)],
    ),
    (
        "0,30 1-3 * * *",
        NY,
        z(2024, 3, 10, 5),
        z(2024, 3, 10, 8),
        [z(2024, 3, 10, 6), z(2024, 3, 10, 6, 30), z(2024, 3, 10, 7), z(2024, 3, 10, 7, 30)],
    ),
    ("* 2 * * *", NY, z(2024, 3, 10), z(2024, 3, 11), []),
    ("59 1 * * *", NY, z(2024, 3, 10), z(2024, 3, 11), [z(2024, 3, 10, 6, 59)]),
    # New York 2024-11-03: 02:00 EDT -> 01:00 EST at 06:00Z.
    ("0 1 * * *", NY, z(2024, 11, 3), z(2024, 11, 3, 12), [z(2024, 11, 3, 5)]),
    ("0 1 * * *", NY, z(2024, 11, 3, 5, 30), z(2024, 11, 3, 12), []),  # starts between them
    (
        "0 * * * *",
        NY,
        z(2024, 11, 3, 4, 30),
        z(2024, 11, 3, 7, 30),
        [z(2024, 11, 3, 5), z(2024, 11, 3, 6), z(2024, 11, 3, 7)],
    ),
    (
        "*/30 1 * * *",
        NY,
        z(2024, 11, 3),
        z(2024, 11, 3, 12),
        [z(2024, 11, 3, 5), z(2024, 11, 3, 5, 30), z(2024, 11, 3, 6), z(2024, 11, 3, 6, 30)],
    ),
    # Berlin 2024-10-27: 03:00 CEST -> 02:00 CET at 01:00Z.
    (
        "30 2 * * *",
        BERLIN,
        z(2024, 10, 26, 12),
        z(2024, 10, 28, 12),
        [z(2024, 10, 27, 0, 30), z(2024, 10, 28, 1, 30)],
    ),
    # Lord Howe 2024-10-06: 02:00 -> 02:30 at 2024-10-05 15:30Z; 2024-04-07 02:00 -> 01:30.
    ("15 2 * * *", LORD_HOWE, z(2024, 10, 5, 12), z(2024, 10, 5, 18), [z(2024, 10, 5, 15, 30)]),
    ("45 1 * * *", LORD_HOWE, z(2024, 4, 6, 12), z(2024, 4, 6, 18), [z(2024, 4, 6, 14, 45)]),
    (
        "45 * * * *",
        LORD_HOWE,
        z(2024, 4, 6, 14),
        z(2024, 4, 6, 16),
        [z(2024, 4, 6, 14, 45), z(2024, 4, 6, 15, 15)],
    ),  # 01:45 twice; 02:45 is 16:15Z
    # Apia skipped 2011-12-30 (a 24-hour gap): fixed-time crons do not fire for it.
    (
        "0 9 * * *",
        APIA,
        z(2011, 12, 29),
        z(2011, 12, 31),
        [z(2011, 12, 29, 19), z(2011, 12, 30, 19)],
    ),
    ("0 9 30 12 *", APIA, z(2011, 12, 20), z(2012, 1, 5), []),
    # Troll: +00 -> +02 at 2024-03-31 01:00Z, a 2-hour gap (01:00-02:59 wall).
    ("30 2 * * *", "Antarctica/Troll", z(2024, 3, 30, 12), z(2024, 3, 31, 12), [z(2024, 3, 31, 1)]),
    # Day of month or day of week when both are restricted; 2024-01-01 was a Monday.
    (
        "0 0 3 * 1",
        "UTC",
        z(2023, 12, 31),
        z(2024, 1, 10),
        [z(2024, 1, 1), z(2024, 1, 3), z(2024, 1, 8)],
    ),
    ("0 0 * * 7", "UTC", z(2024, 1, 1), z(2024, 1, 15), [z(2024, 1, 7), z(2024, 1, 14)]),
    ("0 0 */10 * 1", "UTC", z(2024, 1, 1), z(2024, 1, 20), []),  # ISC: */10 is not restricted
]


@pytest.mark.parametrize(("expression", "zone", "after", "until", "expected"), ORACLE_TABLE)
def test_the_oracle_by_hand(
    expression: str, zone: str, after: datetime, until: datetime, expected: list[datetime]
) -> None:
    assert oracle_fire_times(expression, zone, after, until) == expected
    assert literal_fire_times(expression, zone, after, until) == expected


LITERAL_ZONES = [
    "America/St_Johns",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Pacific/Apia",
    "Antarctica/Troll",
    "Africa/Casablanca",
]


@pytest.mark.parametrize("zone", LITERAL_ZONES)
def test_the_oracle_agrees_with_the_minute_by_minute_statement(zone: str) -> None:
    """The fast walk (segments) against zoneinfo per minute, around a few changes."""
    found = transitions(zone, z(2010, 1, 1), z(2013, 1, 1), DISCOVERY_SAMPLE)
    assert found
    for t in found[:3]:
        after, until = t.instant - timedelta(hours=14), t.instant + timedelta(hours=14)
        for expression in (*CRONS, "*/10 * * * *", "0 0 13 * 5"):
            fast = oracle_fire_times(expression, zone, after, until)
            slow = literal_fire_times(expression, zone, after, until)
            assert fast == slow, (zone, expression, t)


# -- the domain against the oracle ---------------------------------------------------------


@pytest.mark.parametrize("expression", CRONS)
@pytest.mark.parametrize("zone", ZONES)
def test_fire_times_match_the_oracle(zone: str, expression: str) -> None:
    compared, problems = compare(zone, expression)
    assert compared > 0
    assert not problems, "\n".join(problems[:5])


def test_every_zone_and_cron_is_covered() -> None:
    assert len(ZONES) >= 20
    assert set(FIXED_CRONS) <= set(CRONS)
    for zone in ZONES:
        if zone != "UTC":
            assert len(windows(zone, True)) > 2, zone


# -- day fields and ranges: ISC's reading, where croniter's default differs ------------------

# ISC cron treats a day field that starts with '*' ('*/2') as unrestricted, so
# '0 0 */2 * 1' fires on odd days that are Mondays (croniter by default counts '*/2' as
# restricted and fires on every odd day and every Monday).
DAY_OR_TABLE = [
    ("0 0 */2 * 1", z(2024, 1, 1), z(2024, 1, 16), [z(2024, 1, 15)]),
    ("0 0 */1 * 1", z(2024, 1, 1), z(2024, 1, 16), [z(2024, 1, 8), z(2024, 1, 15)]),
    ("0 0 1 * */3", z(2024, 1, 1), z(2024, 1, 16), []),  # Sun, Wed, Sat but not on the 1st
    (
        "0 0 1,*/10 * 1",
        z(2024, 1, 1),
        z(2024, 1, 16),
        [z(2024, 1, 8), z(2024, 1, 11), z(2024, 1, 15)],
    ),
]


@pytest.mark.parametrize(("expression", "after", "until", "expected"), DAY_OR_TABLE)
def test_star_step_in_a_day_field_is_not_a_restriction(
    expression: str, after: datetime, until: datetime, expected: list[datetime]
) -> None:
    assert oracle_fire_times(expression, "UTC", after, until) == expected
    assert literal_fire_times(expression, "UTC", after, until) == expected
    assert list(parse_cron(expression, "UTC").fire_times(after, until)) == expected


# croniter reads a range written with equal bounds ('5-5', 'Sun-Sun') as the whole field,
# even inside a list ('1,5-5'); crontab(5) ranges are inclusive, so '5-5' is just 5.
EQUAL_RANGE_TABLE = [
    (
        "5-5 * * * *",
        "UTC",
        z(2024, 1, 1),
        z(2024, 1, 1, 2),
        [z(2024, 1, 1, 0, 5), z(2024, 1, 1, 1, 5)],
    ),
    (
        "5-5/2 * * * *",
        "UTC",
        z(2024, 1, 1),
        z(2024, 1, 1, 2),
        [z(2024, 1, 1, 0, 5), z(2024, 1, 1, 1, 5)],
    ),
    (
        "1,5-5 * * * *",
        "UTC",
        z(2024, 1, 1),
        z(2024, 1, 1, 1),
        [z(2024, 1, 1, 0, 1), z(2024, 1, 1, 0, 5)],
    ),
    ("30 2-2 * * *", NY, z(2024, 1, 10), z(2024, 1, 11), [z(2024, 1, 10, 7, 30)]),
    ("0 0 * * 3-3", "UTC", z(2024, 1, 1), z(2024, 1, 15), [z(2024, 1, 3), z(2024, 1, 10)]),
]
# The same ranges spelt differently: the domain rewrites '5-5' only when both bounds are
# the same digits, so a leading zero or names still reach croniter as "the whole field".
EQUAL_RANGE_SPELLINGS = [
    ("05-5 0 * * *", "UTC", z(2024, 1, 1), z(2024, 1, 2), [z(2024, 1, 1, 0, 5)]),
    (
        "5-05 * * * *",
        "UTC",
        z(2024, 1, 1),
        z(2024, 1, 1, 2),
        [z(2024, 1, 1, 0, 5), z(2024, 1, 1, 1, 5)],
    ),
    ("0 0 * * mon-mon", "UTC", z(2024, 1, 1), z(2024, 1, 16), [z(2024, 1, 8), z(2024, 1, 15)]),
    ("0 0 1 feb-feb *", "UTC", z(2024, 1, 1), z(2024, 3, 2), [z(2024, 2, 1)]),
]


@pytest.mark.parametrize(
    ("expression", "zone", "after", "until", "expected"), EQUAL_RANGE_TABLE + EQUAL_RANGE_SPELLINGS
)
def test_the_oracle_reads_an_equal_range_as_one_value(
    expression: str, zone: str, after: datetime, until: datetime, expected: list[datetime]
) -> None:
    assert oracle_fire_times(expression, zone, after, until) == expected
    assert literal_fire_times(expression, zone, after, until) == expected


@pytest.mark.parametrize(("expression", "zone", "after", "until", "expected"), EQUAL_RANGE_TABLE)
def test_an_equal_range_is_one_value(
    expression: str, zone: str, after: datetime, until: datetime, expected: list[datetime]
) -> None:
    assert list(parse_cron(expression, zone).fire_times(after, until)) == expected


@pytest.mark.parametrize(
    ("expression", "zone", "after", "until", "expected"), EQUAL_RANGE_SPELLINGS
)
def test_an_equal_range_is_one_value_however_spelt(
    expression: str, zone: str, after: datetime, until: datetime, expected: list[datetime]
) -> None:
    assert list(parse_cron(expression, zone).fire_times(after, until)) == expected
