"""Random crons x random zones x random instants: the domain against the oracle, and the
rule's invariants on the domain's own output.

Windows are 3 days long and, half the time, start up to 36 hours before a change of offset
of the zone (so that they span it); otherwise anywhere in 2000-2035. Crons are numeric:
values, ranges (equal bounds included), steps and lists in every field, '*/n' in the day
fields too. `TICKD_DST_EXAMPLES` raises the number of examples.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from daemon.domain.cron import Cron, parse_cron
from daemon.errors import InvalidCronError
from tests.dst.oracle import (
    EPOCH,
    MAX_GAP,
    ZONES,
    Transition,
    describe_difference,
    oracle_fire_times,
    parse,
    transitions,
)

EXAMPLES = int(os.environ.get("TICKD_DST_EXAMPLES", "100"))
CAP = 250  # fire times compared per example: dense crons stop early
WINDOW = timedelta(days=3)
FIRST, LAST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2036, 1, 1, tzinfo=UTC)


# -- strategies --------------------------------------------------------------------------


def item(low: int, high: int) -> st.SearchStrategy[str]:
    """One list item of a field: a value, a range or a stepped range."""
    value = st.integers(low, high)
    bounds = st.tuples(value, value).map(sorted)
    return st.one_of(
        value.map(str),
        bounds.map(lambda ab: f"{ab[0]}-{ab[1]}"),
        st.tuples(bounds, st.integers(1, high - low + 1)).map(
            lambda abn: f"{abn[0][0]}-{abn[0][1]}/{abn[1]}"
        ),
    )


def field(low: int, high: int) -> st.SearchStrategy[str]:
    """A whole field: '*', '*/n', or a list of one to three items."""
    return st.one_of(
        st.just("*"),
        st.integers(1, high - low + 1).map(lambda n: f"*/{n}"),
        st.lists(item(low, high), min_size=1, max_size=3).map(",".join),
    )


MINUTES = field(0, 59)
HOURS = field(0, 23)
# Mostly every day and month, so that most crons fire inside a 3-day window.
DAYS = st.one_of(st.just("*"), st.just("*"), field(1, 31))
MONTHS = st.one_of(st.just("*"), st.just("*"), st.just("*"), field(1, 12))
WEEKDAYS = st.one_of(st.just("*"), st.just("*"), field(0, 7))
crons = st.tuples(MINUTES, HOURS, DAYS, MONTHS, WEEKDAYS).map(" ".join)


@cache
def zone_transitions(zone: str) -> tuple[Transition, ...]:
    """Changes of offset to start windows near: daily samples find enough of them."""
    return transitions(zone, FIRST, LAST, 86400)


@st.composite
def windows(draw: st.DrawFn) -> tuple[str, datetime, datetime]:
    """(zone, after, until): 3 days, often spanning a change of offset."""
    zone = draw(st.sampled_from(ZONES))
    found = zone_transitions(zone)
    near = draw(st.booleans())
    if found and near:
        shift = draw(st.sampled_from(found)).instant
        seconds = draw(
            st.one_of(st.integers(0, 36 * 60).map(lambda m: 60 * m), st.integers(0, 36 * 3600))
        )
        after = shift - timedelta(seconds=seconds)
    else:
        after = draw(
            st.datetimes(datetime(2000, 1, 1), datetime(2035, 12, 28), timezones=st.just(UTC))
        )
    return zone, after, after + WINDOW


def domain_or_reject(expression: str, zone: str) -> Cron:
    try:
        return parse_cron(expression, zone)
    except InvalidCronError:
        assume(False)  # e.g. day 31 in month 2 only: never fires, so not valid
        raise


# -- properties ----------------------------------------------------------------------------


@settings(max_examples=EXAMPLES, deadline=None)
@given(expression=crons, window=windows())
def test_the_domain_agrees_with_the_oracle(
    expression: str, window: tuple[str, datetime, datetime]
) -> None:
    zone, after, until = window
    cron = domain_or_reject(expression, zone)
    expected = oracle_fire_times(expression, zone, after, until)[:CAP]
    got = list(islice(cron.fire_times(after, until), CAP))
    problem = describe_difference(zone, expression, expected, got)
    assert problem is None, f"({after.isoformat()}, {until.isoformat()}]: {problem}"
    if expected:
        assert cron.next_after(after) == expected[0]


@settings(max_examples=EXAMPLES, deadline=None)
@given(expression=crons, window=windows())
def test_the_rule_holds_on_the_domain_output(
    expression: str, window: tuple[str, datetime, datetime]
) -> None:
    zone, after, until = window
    cron = domain_or_reject(expression, zone)
    spec = parse(expression)
    tz = ZoneInfo(zone)

    assert cron.next_after(after) > after
    fires = list(islice(cron.fire_times(after, until), CAP))
    assert all(a < b for a, b in pairwise(fires)), "fire times strictly increase"
    assert all(after < f <= until for f in fires)
    for a, b in pairwise(fires[:20]):
        assert cron.next_after(a) == b

    walls: list[datetime] = []
    for f in fires:
        local = f.astimezone(tz)
        wall = local.replace(tzinfo=None)
        walls.append(wall)
        wall_minute = (wall - EPOCH.replace(tzinfo=None)) // timedelta(minutes=1)
        if spec.matches_wall(wall_minute):
            if spec.fixed:
                assert local.fold == 0, f"fixed-time cron fired at a repeated wall time {local}"
            continue
        # Not a matching wall time: only a fixed-time cron at the end of a short gap that
        # holds a matching wall time -- never anything for a wall time inside a gap.
        before = (f - timedelta(minutes=1)).astimezone(tz)
        jump = (local.utcoffset() - before.utcoffset()) // timedelta(minutes=1)  # type: ignore[operator]
        assert spec.fixed, f"wildcard cron fired at non-matching {local}"
        assert 0 < jump <= MAX_GAP, f"fixed-time cron fired at non-matching {local}, not a gap"
        skipped = range(wall_minute - jump, wall_minute)
        assert any(spec.matches_wall(w) for w in skipped), f"nothing matched in the gap at {f}"
    if spec.fixed:
        assert len(set(walls)) == len(walls), "fixed-time cron fired twice for one wall time"
