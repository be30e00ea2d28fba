"""A brute-force oracle for cron fire times under ISC cron's daylight-saving rule.

Independent of croniter and of `daemon.domain.cron`: it parses 5-field crons into sets of
allowed values itself, walks every UTC minute of a span, converts it to wall time with
segments of constant UTC offset, matches the wall time's fields and applies the rule:

* A cron is *fixed-time* when neither its minute nor its hour field contains ``*``.
* A fixed-time cron fires once at a wall time that occurs twice (fall back): at its first
  occurrence, never at a wall time that already happened.
* A fixed-time cron matching any wall minute skipped by a gap (spring forward) fires once,
  at the gap's end (the first real instant after it), when the gap is at most 3 hours.
* Any other cron fires at every real instant whose wall time matches: both occurrences of
  a repeated hour, nothing inside a gap.
* Day-of-month and day-of-week: when both are *restricted* a day matching either fires,
  otherwise both must match. "Restricted" is ISC cron's definition: the field does not
  start with ``*`` (its entry.c sets DOM_STAR / DOW_STAR on the first character), so
  ``*/2`` is not restricted.
* A range is inclusive, ``5-5`` being the single value 5.

Everything is integers: instants are UTC minutes since 1970-01-01, offsets minutes, and a
wall time is ``instant + offset``. Offsets come from `zoneinfo`, sampled every 15 minutes
and bisected to the second at every change (no offset in tzdata since 1970 lasts less
than 15 minutes); offsets and changes must fall on whole minutes in the span.

`literal_fire_times` states the same rule the slow way -- zoneinfo called for every
minute, folds from ``datetime.fold``, gaps from the offset jumping between two
consecutive minutes -- and exists to check the fast walk.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import compress, pairwise
from zoneinfo import ZoneInfo

__all__ = [
    "CRONS",
    "EPOCH",
    "FIXED_CRONS",
    "WILDCARD_CRONS",
    "ZONES",
    "CronSpec",
    "Segment",
    "Transition",
    "clip",
    "describe_difference",
    "literal_fire_times",
    "oracle_fire_times",
    "oracle_minutes",
    "parse",
    "segments",
    "to_minute",
    "transitions",
]

DAY = 1440  # minutes
MAX_GAP = 180  # minutes: a fixed-time cron in a longer gap does not fire
SAMPLE = 900  # seconds between offset samples when looking for changes
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_MICROS_PER_MINUTE = 60_000_000

_MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_DAY_NAMES = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}


# -- parsing ---------------------------------------------------------------------------


def _value(text: str, names: dict[str, int]) -> int:
    lowered = text.lower()
    if lowered in names:
        return names[lowered]
    if not text.isdigit():
        raise ValueError(f"not a number: {text!r}")
    return int(text)


def parse_field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int]:
    """The values one field allows: ``*``, ``a``, ``a-b``, ``*/n``, ``a-b/n``, ``a/n``, lists."""
    names = names or {}
    allowed: set[int] = set()
    for item in text.split(","):
        base, slash, step_text = item.partition("/")
        step = int(step_text) if slash else 1
        if step < 1:
            raise ValueError(f"step must be at least 1 in {item!r}")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, b = base.split("-", 1)
            first, last = _value(a, names), _value(b, names)
        else:
            first = _value(base, names)
            last = high if slash else first
        if not low <= first <= last <= high:
            raise ValueError(f"{item!r} is outside {low}-{high} or reversed")
        allowed.update(range(first, last + 1, step))
    return allowed


@dataclass(frozen=True, slots=True)
class CronSpec:
    """A 5-field cron as sets of allowed values."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_or: bool  # both day fields restricted: a day matching either one fires
    fixed: bool  # fixed-time: no '*' in the minute or hour field
    time_mask: bytes  # by minute of the day (0..1439): 1 when hour and minute match

    def day_matches(self, day: int) -> bool:
        """Whether wall day `day` (days since 1970-01-01) matches the day fields."""
        d = date.fromordinal(_EPOCH_ORDINAL + day)
        if d.month not in self.months:
            return False
        dom = d.day in self.days
        dow = (day + 4) % 7 in self.weekdays  # 1970-01-01 was a Thursday
        return (dom or dow) if self.day_or else (dom and dow)

    def matches_wall(self, wall: int) -> bool:
        """Whether wall minute `wall` (minutes since 1970-01-01 00:00, wall clock) matches."""
        day, minute = divmod(wall, DAY)
        return bool(self.time_mask[minute]) and self.day_matches(day)


@lru_cache(maxsize=1024)
def parse(expression: str) -> CronSpec:
    """The CronSpec of a 5-field `expression` (minute hour day-of-month month day-of-week)."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields, got {len(fields)} in {expression!r}")
    minute, hour, dom, month, dow = fields
    minutes = parse_field(minute, 0, 59)
    hours = parse_field(hour, 0, 23)
    days = parse_field(dom, 1, 31)
    months = parse_field(month, 1, 12, _MONTH_NAMES)
    weekdays = {d % 7 for d in parse_field(dow, 0, 7, _DAY_NAMES)}  # 7 is Sunday too

    mask = bytes(1 if (m // 60 in hours and m % 60 in minutes) else 0 for m in range(DAY))
    return CronSpec(
        expression=expression,
        minutes=frozenset(minutes),
        hours=frozenset(hours),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=frozenset(weekdays),
        day_or=not dom.startswith("*") and not dow.startswith("*"),
        fixed="*" not in minute and "*" not in hour,
        time_mask=mask,
    )


# -- offsets ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """UTC minutes [start, end) during which the zone is `offset` minutes from UTC."""

    start: int
    end: int
    offset: int


def _offset_seconds(tz: ZoneInfo, second: int) -> int:
    offset = datetime.fromtimestamp(second, tz).utcoffset()
    assert offset is not None
    return offset // timedelta(seconds=1)


def _changes(
    tz: ZoneInfo, lo: int, lo_offset: int, hi: int, hi_offset: int, found: list[tuple[int, int]]
) -> None:
    """Append (second, new offset) for each change in (lo, hi], by bisection."""
    if lo_offset == hi_offset:
        return
    if hi - lo == 1:
        found.append((hi, hi_offset))
        return
    mid = (lo + hi) // 2
    mid_offset = _offset_seconds(tz, mid)
    _changes(tz, lo, lo_offset, mid, mid_offset, found)
    _changes(tz, mid, mid_offset, hi, hi_offset, found)


@lru_cache(maxsize=4096)
def segments(zone: str, lo: int, hi: int, sample: int = SAMPLE) -> tuple[Segment, ...]:
    """The segments of constant offset covering UTC minutes [lo, hi), clipped to it.

    `sample` is the spacing of offset samples in seconds: an offset lasting less than
    that between two samples is missed.
    """
    tz = ZoneInfo(zone)
    first, last = lo * 60, hi * 60
    points = [*range(first, last, sample), last]
    offsets = [_offset_seconds(tz, s) for s in points]
    changes: list[tuple[int, int]] = []
    for (a, oa), (b, ob) in pairwise(zip(points, offsets, strict=True)):
        _changes(tz, a, oa, b, ob, changes)
    result: list[Segment] = []
    start, offset = lo, offsets[0]
    for second, new_offset in changes:
        if second % 60 or new_offset % 60 or offset % 60:
            raise ValueError(f"{zone}: offset change at {second}s is not on whole minutes")
        at = second // 60
        if at >= hi:
            break
        result.append(Segment(start, at, offset // 60))
        start, offset = at, new_offset
    if offset % 60:
        raise ValueError(f"{zone}: offset {offset}s is not whole minutes")
    result.append(Segment(start, hi, offset // 60))
    return tuple(result)


def clip(segs: Sequence[Segment], lo: int, hi: int) -> tuple[Segment, ...]:
    """The parts of `segs` inside UTC minutes [lo, hi); they must cover that span."""
    if not segs or segs[0].start > lo or segs[-1].end < hi:
        raise ValueError(f"segments do not cover minutes [{lo}, {hi})")
    return tuple(
        Segment(max(s.start, lo), min(s.end, hi), s.offset)
        for s in segs
        if s.start < hi and s.end > lo
    )


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of offset at UTC minute `at`: `before` minutes from UTC to `after`."""

    at: int
    before: int
    after: int

    @property
    def instant(self) -> datetime:
        return EPOCH + timedelta(minutes=self.at)


@lru_cache(maxsize=256)
def transitions(
    zone: str, start: datetime, end: datetime, sample: int = SAMPLE
) -> tuple[Transition, ...]:
    """Every change of offset of `zone` between two instants (found with `sample` spacing)."""
    segs = segments(zone, to_minute(start), to_minute(end), sample)
    return tuple(Transition(b.start, a.offset, b.offset) for a, b in pairwise(segs))


# -- the walk --------------------------------------------------------------------------


def to_minute(t: datetime) -> int:
    """The UTC minute holding aware `t` (floor)."""
    if t.tzinfo is None:
        raise ValueError("expected an aware datetime")
    return (t - EPOCH) // timedelta(microseconds=1) // _MICROS_PER_MINUTE


def _matching_walls(spec: CronSpec, w0: int, w1: int, days: dict[int, bool]) -> Iterable[int]:
    """Every wall minute in [w0, w1) that matches `spec`, walking them one by one."""
    mask = spec.time_mask
    for day in range(w0 // DAY, (w1 - 1) // DAY + 1):
        ok = days.get(day)
        if ok is None:
            ok = days[day] = spec.day_matches(day)
        if not ok:
            continue  # no minute of a day that does not match can match
        base = day * DAY
        a, b = max(w0, base), min(w1, base + DAY)
        yield from compress(range(a, b), mask[a - base : b - base])


def oracle_minutes(spec: CronSpec, segs: Sequence[Segment], lo: int, hi: int) -> list[int]:
    """The UTC minutes in [lo, hi] at which `spec` fires, given segments covering the span.

    `segs` must start early enough before `lo` that a wall time repeated inside the span
    has its first occurrence in `segs` (two days is plenty).
    """
    fires: set[int] = set()
    days: dict[int, bool] = {}
    for i, seg in enumerate(segs):
        o = seg.offset
        if spec.fixed and i > 0 and lo <= seg.start <= hi:
            before = segs[i - 1].offset
            gap = o - before
            if 0 < gap <= MAX_GAP:
                # Wall minutes [start + before, start + after) never happen.
                skipped = _matching_walls(spec, seg.start + before, seg.start + o, days)
                if next(iter(skipped), None) is not None:
                    fires.add(seg.start)
        a, b = max(seg.start, lo), min(seg.end, hi + 1)
        if a >= b:
            continue
        repeated: list[tuple[int, int]] = []
        if spec.fixed:
            w0, w1 = seg.start + o, seg.end + o
            for earlier in segs[:i]:
                r0, r1 = (
                    max(w0, earlier.start + earlier.offset),
                    min(w1, earlier.end + earlier.offset),
                )
                if r0 < r1:
                    repeated.append((r0, r1))
        for wall in _matching_walls(spec, a + o, b + o, days):
            if any(r0 <= wall < r1 for r0, r1 in repeated):
                continue  # a fixed-time cron fired at this wall time's first occurrence
            fires.add(wall - o)
    return sorted(fires)


def _span(after: datetime, until: datetime) -> tuple[int, int]:
    """The UTC minutes [lo, hi] with after < minute <= until."""
    return to_minute(after) + 1, to_minute(until)


def oracle_fire_times(
    expression: str,
    zone: str,
    after: datetime,
    until: datetime,
    *,
    sample: int = SAMPLE,
    known: Sequence[Segment] | None = None,
) -> list[datetime]:
    """Every fire instant f with after < f <= until, ascending, as aware UTC datetimes.

    The zone's offsets are sampled every `sample` seconds around the span, unless `known`
    gives its segments already (over a longer span: they are clipped to this one).
    """
    spec = parse(expression)
    lo, hi = _span(after, until)
    if hi < lo:
        return []
    if known is None:
        segs = segments(zone, lo - 2 * DAY, hi + 1, sample)
    else:
        segs = clip(known, lo - 2 * DAY, hi + 1)
    return [EPOCH + timedelta(minutes=m) for m in oracle_minutes(spec, segs, lo, hi)]


def literal_fire_times(
    expression: str,
    zone: str,
    after: datetime,
    until: datetime,
) -> list[datetime]:
    """The rule stated the slow way: zoneinfo for every minute, ``fold`` for repeats."""
    spec = parse(expression)
    lo, hi = _span(after, until)
    fires: list[datetime] = []
    if hi < lo:
        return fires
    local = _local_minutes(zone, lo - 1, hi)
    for minute, ((previous_wall, _, previous_offset), (wall, fold, offset)) in enumerate(
        pairwise(local), start=lo
    ):
        fire = spec.matches_wall(wall) and not (spec.fixed and fold)
        if spec.fixed and 0 < offset - previous_offset <= MAX_GAP:
            # Consecutive minutes whose walls are more than a minute apart: a gap.
            fire = fire or any(spec.matches_wall(w) for w in range(previous_wall + 1, wall))
        if fire:
            fires.append(EPOCH + timedelta(minutes=minute))
    return fires


@lru_cache(maxsize=64)
def _local_minutes(zone: str, lo: int, hi: int) -> tuple[tuple[int, int, int], ...]:
    """(wall minute, fold, offset in minutes) of every UTC minute in [lo, hi], by zoneinfo."""
    tz = ZoneInfo(zone)
    result = []
    for minute in range(lo, hi + 1):
        local = datetime.fromtimestamp(minute * 60, tz)
        wall = (local.replace(tzinfo=UTC) - EPOCH) // timedelta(minutes=1)
        offset = local.utcoffset()
        assert offset is not None
        result.append((wall, local.fold, offset // timedelta(minutes=1)))
    return tuple(result)


# -- reporting -------------------------------------------------------------------------


def _show(t: datetime, tz: ZoneInfo) -> str:
    local = t.astimezone(tz)
    fold = " fold=1" if local.fold else ""
    return f"{t:%Y-%m-%d %H:%M}Z = {local:%Y-%m-%d %H:%M%z} ({local:%a}{fold})"


def describe_difference(
    zone: str, expression: str, expected: Sequence[datetime], got: Sequence[datetime]
) -> str | None:
    """None when equal, else the first differing instants (UTC and wall) and counts."""
    if list(expected) == list(got):
        return None
    tz = ZoneInfo(zone)
    i = next(
        (k for k, (e, g) in enumerate(zip(expected, got, strict=False)) if e != g),
        min(len(expected), len(got)),
    )
    oracle = _show(expected[i], tz) if i < len(expected) else "(no more fires)"
    domain = _show(got[i], tz) if i < len(got) else "(no more fires)"
    missing = len(set(expected) - set(got))
    extra = len(set(got) - set(expected))
    return (
        f"{zone} {expression!r}: first difference at fire #{i}: oracle {oracle}, "
        f"domain {domain}; {missing} oracle fires missing from the domain, {extra} extra"
    )


# -- what the suites cover -------------------------------------------------------------

ZONES: tuple[str, ...] = (
    "America/New_York",
    "America/Los_Angeles",
    "America/Sao_Paulo",  # southern; DST until 2019, at midnight
    "America/Santiago",  # southern; 24:00 -> 01:00 and back to 23:00
    "America/Havana",  # 00:00 -> 01:00
    "America/St_Johns",  # -03:30; shifted at 00:01 until 2011
    "America/Nuuk",  # -03 -> -02 standard time in 2023, DST again from 2024
    "Europe/Berlin",
    "Europe/London",
    "Europe/Dublin",  # negative DST in tzdata
    "Europe/Moscow",  # permanent +04 in 2011, +03 in 2014
    "Africa/Casablanca",  # +01 with a -1 h "DST" for Ramadan since 2018
    "Asia/Tehran",  # +03:30, DST ended 2022
    "Asia/Jerusalem",
    "Australia/Sydney",
    "Australia/Lord_Howe",  # 30-minute shift
    "Australia/Adelaide",  # +09:30
    "Pacific/Auckland",
    "Pacific/Chatham",  # +12:45 / +13:45, at 02:45
    "Pacific/Apia",  # skipped 2011-12-30 (24 h gap); DST until 2021
    "Antarctica/Troll",  # 2-hour shift
    "UTC",
)
FIXED_CRONS: tuple[str, ...] = (
    "30 2 * * *",
    "0 1 * * *",
    "15 0 * * *",
    "0 2 * * 0",
    "45 23 * * *",
    "0,30 1-3 * * *",
    "0 2 1 * 1",  # day-of-month or day-of-week
)
WILDCARD_CRONS: tuple[str, ...] = (
    "* 2 * * *",
    "0 * * * *",
    "*/15 * * * *",
    "*/7 1-3 * * *",
    "5 */2 * * *",
)
CRONS: tuple[str, ...] = FIXED_CRONS + WILDCARD_CRONS
