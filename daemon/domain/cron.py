"""Cron expressions in a time zone, fired by ISC cron's daylight-saving rule.

croniter matches an expression against *wall* times (naive local datetimes); this module
maps those wall times to real instants itself, with zoneinfo, by this rule:

* A cron is *fixed-time* when neither its minute nor its hour field contains ``*``
  (``30 2 * * *``, ``0,30 1-3 * * *``); every other cron (``*/15 * * * *``,
  ``0 * * * *``, ``* 2 * * *``) is a *wildcard* cron. A leading seconds field does not
  count.
* When clocks fall back and a wall time occurs twice, a fixed-time cron fires once, at
  the first occurrence; a wildcard cron fires at both, in instant order.
* When clocks spring forward and wall times do not exist, a fixed-time cron that matches
  any of them fires once, at the first instant after the gap (the transition itself) --
  unless the gap is longer than 3 hours (a skipped day, as Pacific/Apia at the end of
  2011), when it does not fire at all. A wildcard cron fires at nothing inside a gap.
* When both day-of-month and day-of-week are restricted, a day matching either fires.

Expressions have 5 fields (minute hour day-of-month month day-of-week) or 6, the first
being seconds; croniter's ``@hourly`` ... ``@yearly`` aliases are accepted. Everything
here is pure: no I/O beyond loading a zone, no clock, no logging.

Internally instants are naive UTC datetimes and wall times naive local ones; the time is
cut into segments of constant UTC offset, whose boundaries (``_Shift``) are found by
sampling the zone hourly and bisecting to the second, and cached per 8-day block.

Two caches keep a tick cheap. croniter is asked once per matching *day*: every second,
minute and hour its fields allow is a match on a day that matches, so the rest of that
day's wall times come from the expanded fields (`_TimesOfDay`). And `next_fire` keeps,
per (crons, zone), runs of consecutive fire instants (`_FireRun`): a schedule stepping
from one tick to the next, and every schedule sharing its crons, finds its next time by
bisection; a run grows (doubling) when asked about its last instant.
"""

from __future__ import annotations

import itertools
import re
import threading
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from daemon.errors import InvalidCronError, UnknownTimezoneError

__all__ = [
    "DEFAULT_LOOKBACK",
    "MAX_GAP",
    "Cron",
    "clear_fire_cache",
    "fire_times_between",
    "next_fire",
    "parse_cron",
    "zone",
]

MAX_GAP = timedelta(hours=3)
"""A fixed-time cron whose wall time falls in a gap longer than this does not fire."""

DEFAULT_LOOKBACK = timedelta(days=8 * 366)
"""How far `Cron.previous_at_or_before` looks back: enough for a 29 February cron."""

# Zones that keep one UTC offset forever (with every "Etc/..." zone).
_FIXED_ZONES = frozenset(
    {"UTC", "UCT", "GMT", "GMT0", "GMT+0", "GMT-0", "Greenwich", "Universal", "Zulu"}
)
_SECOND = timedelta(seconds=1)
_MICROSECOND = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1)
_BLOCK = timedelta(days=8)
_SAMPLE = timedelta(hours=1)
_FOLD_REACH = timedelta(days=2)  # longer than any fold in tzdata (24 h, Pacific/Apia 1892)

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
_RANGES = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day-of-month": (1, 31),
    "month": (1, 12),
    "day-of-week": (0, 7),
}
_SYNTAX = {
    "second": "0-59",
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31, L (last day) or nW (nearest weekday)",
    "month": "1-12 or jan-dec",
    "day-of-week": "0-7 (0 and 7 are Sunday), sun-sat, d#n (n-th d) or Ld (last d)",
}
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_DIGITS = re.compile(r"[0-9]+")
_HASHED = re.compile(r"[hr](\(.*\))?", re.IGNORECASE)


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; UnknownTimezoneError when there is no such zone."""
    return _zone(name)


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UnknownTimezoneError(name) from None


@dataclass(frozen=True, slots=True)
class Cron:
    """A valid cron expression in an IANA time zone; see the module docstring for the rule.

    Every method takes aware datetimes (ValueError for naive ones) and returns aware UTC
    datetimes. Build one with `parse_cron`, which shares equal instances.
    """

    expression: str
    timezone: str = "UTC"
    is_fixed_time: bool = field(init=False)
    has_seconds: bool = field(init=False)
    _tz: ZoneInfo = field(init=False, repr=False, compare=False)
    _iter: croniter[datetime] = field(init=False, repr=False, compare=False)
    _lock: threading.Lock = field(init=False, repr=False, compare=False)
    _times: _TimesOfDay | None = field(init=False, repr=False, compare=False)
    _days: dict[date, None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = _validate(self.expression)
        tz = zone(self.timezone)
        has_seconds = len(fields) == 6
        minute, hour = fields[-5], fields[-4]
        setattr_ = object.__setattr__
        setattr_(self, "is_fixed_time", "*" not in minute and "*" not in hour)
        setattr_(self, "has_seconds", has_seconds)
        setattr_(self, "_tz", tz)
        setattr_(
            self,
            "_iter",
            croniter(
                " ".join(fields),
                _EPOCH,
                ret_type=datetime,
                day_or=True,
                # ISC cron: a day field that starts with "*" (even "*/2") does not count as
                # restricted, so day-of-month and day-of-week must then both match.
                implement_cron_bug=True,
                second_at_beginning=has_seconds,
            ),
        )
        setattr_(self, "_lock", threading.Lock())
        setattr_(self, "_times", _TimesOfDay.of(self._iter.expanded, has_seconds))
        setattr_(self, "_days", {})  # days known to match, oldest first

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (parse_cron, (self.expression, self.timezone))

    def next_after(self, t: datetime) -> datetime:
        """The first fire instant strictly after `t`."""
        return self._after(_utc(t)).replace(tzinfo=UTC)

    def fire_times(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """Every fire instant `f` with `after < f <= until`, ascending, each once."""
        return self._between(_utc(after), _utc(until))

    def previous_at_or_before(
        self, t: datetime, lookback: timedelta = DEFAULT_LOOKBACK
    ) -> datetime | None:
        """The latest fire instant at or before `t`, or None if none is within `lookback`."""
        u = _utc(t)
        found = self._at_or_before(u, u - lookback)
        return None if found is None else found.replace(tzinfo=UTC)

    # -- instants (naive UTC) ------------------------------------------------------------

    def _between(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """A generator, so that `fire_times` checks its arguments before the first next()."""
        t = after
        while True:
            t = self._after(t)
            if t > until:
                return
            yield t.replace(tzinfo=UTC)

    def _after(self, u: datetime) -> datetime:
        """The first fire instant after `u`, walking segments of constant offset forward."""
        tz = self._tz
        offset = _offset(tz, u)
        if tz.key in _FIXED_ZONES or tz.key.startswith("Etc/"):  # one offset, no shifts
            return self._wall_after(u + offset) - offset
        seen = u  # shifts at or before this instant are accounted for
        wall = u + offset  # the next fire's wall time is after this one
        while True:
            w = self._wall_after(wall)
            candidate = w - offset
            shift = _first_shift(tz, seen, candidate)
            if shift is None:
                if self.is_fixed_time and _is_second_pass(tz, candidate):
                    fold = _last_shift(tz, candidate - _FOLD_REACH, candidate)
                    if fold is not None and fold.before > fold.after:
                        wall = fold.at + fold.before - _SECOND  # past the repeated walls
                        continue
                return candidate
            # The candidate lies past a change of offset: go on in the next segment.
            if self.is_fixed_time and self._fires_in_gap(shift):
                return shift.at
            offset, seen = shift.after, shift.at
            if self.is_fixed_time and shift.before > shift.after:
                wall = shift.at + shift.before - _SECOND  # skip the second pass of a fold
            else:
                wall = shift.at + shift.after - _SECOND

    def _at_or_before(self, u: datetime, limit: datetime) -> datetime | None:
        """The last fire instant in [limit, u], walking segments of constant offset back."""
        tz = self._tz
        offset = _offset(tz, u)
        top = u  # shifts after this instant are accounted for
        wall = u + offset  # the fire's wall time is at or before this one
        while True:
            w = self._wall_at_or_before(wall)
            if w is None:
                return None
            candidate = w - offset
            shift = _last_shift(tz, max(candidate, limit - _MICROSECOND), top)
            if shift is None:
                if not (self.is_fixed_time and _is_second_pass(tz, candidate)):
                    return candidate if candidate >= limit else None
                shift = _last_shift(tz, candidate - _FOLD_REACH, candidate)
                if shift is None or shift.at < limit:
                    return None
            # The segment from shift.at to top has no fire: go on in the one before it.
            if self.is_fixed_time and self._fires_in_gap(shift):
                return shift.at
            offset, top = shift.before, shift.at - _SECOND
            wall = shift.at + shift.before - _SECOND

    def _fires_in_gap(self, shift: _Shift) -> bool:
        """Whether a fixed-time cron fires at `shift`.

        It does when `shift` opens a gap of at most MAX_GAP that holds a matching wall time.
        """
        gap = shift.after - shift.before
        if gap <= timedelta(0) or gap > MAX_GAP:
            return False
        return self._wall_after(shift.at + shift.before - _SECOND) < shift.at + shift.after

    # -- wall times (naive local), by croniter -------------------------------------------

    def _wall_after(self, wall: datetime) -> datetime:
        """The first matching wall time strictly after `wall`."""
        # Matches fall on whole seconds, so dropping microseconds changes nothing and
        # keeps croniter's float timestamps exact.
        start = wall.replace(microsecond=0) if wall.microsecond else wall
        times = self._times
        if times is not None and start.date() in self._days:
            # A day that matches matches at every time of day the fields allow.
            later = times.after(start.hour, start.minute, start.second)
            if later is not None:
                return datetime(start.year, start.month, start.day, *later)
        try:
            with self._lock:
                found = self._iter.get_next(datetime, start_time=start)
                if times is not None:
                    days = self._days
                    days[found.date()] = None
                    if len(days) > _KNOWN_DAYS:
                        del days[next(iter(days))]
                return found
        except (CroniterBadDateError, OverflowError):
            raise ValueError(f"cron {self.expression!r} has no fire time after {wall}") from None

    def _wall_at_or_before(self, wall: datetime) -> datetime | None:
        """The last matching wall time at or before `wall`, or None."""
        start = wall.replace(microsecond=0) + _SECOND  # croniter looks strictly before
        try:
            with self._lock:
                return self._iter.get_prev(datetime, start_time=start)
        except (CroniterBadDateError, OverflowError):
            return None


def parse_cron(expression: str, timezone: str = "UTC") -> Cron:
    """The Cron for `expression` in `timezone`; equal arguments share one instance.

    InvalidCronError names the field at fault and the problem; UnknownTimezoneError the zone.
    """
    return _parse_cron(expression, timezone)


@lru_cache(maxsize=4096)
def _parse_cron(expression: str, timezone: str) -> Cron:
    return Cron(expression, timezone)


def next_fire(expressions: tuple[str, ...], timezone: str, after: datetime) -> datetime:
    """The earliest fire instant after `after` over the crons of one schedule.

    Cached per (expressions, timezone) as runs of consecutive fire instants: a schedule
    that steps from tick to tick, and many schedules with the same crons and zone, cost
    a bisection each, not a cron computation.
    """
    u = _aware_utc(after)
    with _fire_lock:
        return _runs_of(expressions, timezone).next_after(u)


def fire_times_between(
    expressions: tuple[str, ...], timezone: str, after: datetime, until: datetime
) -> list[datetime]:
    """Every fire instant `f` with `after < f <= until` over the crons of one schedule,
    ascending, each once; from the same cache as `next_fire`."""
    t, end = _aware_utc(after), _aware_utc(until)
    times: list[datetime] = []
    with _fire_lock:
        runs = _runs_of(expressions, timezone)
        while (t := runs.next_after(t)) <= end:
            times.append(t)
    return times


def clear_fire_cache() -> None:
    """Forget every cached run of fire instants (benchmarks measure a cold start)."""
    with _fire_lock:
        _fire_runs.clear()


def _aware_utc(t: datetime) -> datetime:
    """Aware `t` in UTC. Cached instants are UTC: aware datetimes of one zone compare by
    wall time, so the two instants of a repeated hour would look equal."""
    if t.tzinfo is UTC:
        return t
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {t.isoformat()}")
    return t.astimezone(UTC)


def _runs_of(expressions: tuple[str, ...], timezone: str) -> _FireRuns:
    """The cached runs of a (crons, zone) pair; hold `_fire_lock`."""
    key = (expressions, timezone)
    runs = _fire_runs.get(key)
    if runs is None:
        if not expressions:
            raise ValueError("next_fire needs at least one cron expression")
        runs = _fire_runs[key] = _FireRuns(tuple(parse_cron(e, timezone) for e in expressions))
        if len(_fire_runs) > _MAX_FIRE_KEYS:  # forget the pair used least recently
            del _fire_runs[min(_fire_runs, key=lambda k: _fire_runs[k].used)]
    runs.used = next(_uses)
    return runs


_KNOWN_DAYS = 64  # matching days a Cron remembers
_MAX_FIRE_KEYS = 512  # (crons, zone) pairs next_fire keeps runs for
_RUNS_PER_KEY = 3  # runs kept per pair: schedules of one cron at different points in time
_FIRST_RUN = 4  # fire instants a new run computes
_MAX_GROWTH = 64  # fire instants a run adds at most at once
_MAX_RUN = 256  # a run longer than this forgets its older half
_fire_lock = threading.Lock()
_fire_runs: dict[tuple[tuple[str, ...], str], _FireRuns] = {}
_uses = itertools.count()


class _FireRun:
    """Consecutive fire instants (aware UTC): `times[0]` is the first after `lo`, and
    each next one is the first after the one before. So the first fire after any `u`
    in [lo, times[-1]) is the first of `times` past `u`."""

    __slots__ = ("lo", "times")

    def __init__(self, lo: datetime, times: list[datetime]) -> None:
        self.lo = lo
        self.times = times


class _FireRuns:
    """The runs of fire instants of one (crons, zone) pair, most recently used first."""

    __slots__ = ("crons", "runs", "used")

    def __init__(self, crons: Sequence[Cron]) -> None:
        self.crons = crons
        self.runs: list[_FireRun] = []
        self.used = 0

    def next_after(self, u: datetime) -> datetime:
        runs = self.runs
        for i, run in enumerate(runs):
            times = run.times
            if run.lo <= u < times[-1]:
                if i:  # most recently used first
                    runs.insert(0, runs.pop(i))
                return times[bisect_right(times, u)]
            if u == times[-1]:  # the next tick of a schedule stepping along this run
                self._grow(run, min(len(times), _MAX_GROWTH))
                if i:
                    runs.insert(0, runs.pop(i))
                times = run.times  # the run may have forgotten its older half
                return times[bisect_right(times, u)]
        run = _FireRun(u, [])
        self._grow(run, _FIRST_RUN)
        runs.insert(0, run)
        del runs[_RUNS_PER_KEY:]
        return run.times[0]

    def _grow(self, run: _FireRun, count: int) -> None:
        times = run.times
        t = _utc(times[-1] if times else run.lo)
        crons = self.crons
        for k in range(count):
            try:
                t = min(c._after(t) for c in crons) if len(crons) > 1 else crons[0]._after(t)
            except ValueError:  # no fire time after t (a date past the year 9999)
                if k == 0:
                    raise
                break
            times.append(t.replace(tzinfo=UTC))
        if len(times) > _MAX_RUN:
            half = len(times) // 2
            run.lo = times[half - 1]
            del times[:half]


def _utc(t: datetime) -> datetime:
    """Aware `t` as a naive UTC datetime."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {t.isoformat()}")
    return t.astimezone(UTC).replace(tzinfo=None)


class _TimesOfDay:
    """The times of day a cron's second, minute and hour fields allow, as sorted values.

    On a day that matches, exactly these wall times match: the day fields decide days,
    these fields decide the time within one.
    """

    __slots__ = ("hour_set", "hours", "minute_set", "minutes", "seconds")

    def __init__(self, seconds: list[int], minutes: list[int], hours: list[int]) -> None:
        self.seconds, self.minutes, self.hours = seconds, minutes, hours
        self.minute_set, self.hour_set = frozenset(minutes), frozenset(hours)

    @classmethod
    def of(cls, expanded: Sequence[Sequence[object]], has_seconds: bool) -> _TimesOfDay | None:
        """From croniter's expanded fields ([minute, hour, ..., second?]); None for
        anything but plain values and `*`."""
        fields = [(expanded[5] if has_seconds else [0], 60), (expanded[0], 60), (expanded[1], 24)]
        values: list[list[int]] = []
        for items, size in fields:
            if list(items) == ["*"]:
                values.append(list(range(size)))
            else:
                ints = [v for v in items if type(v) is int and 0 <= v < size]
                if not ints or len(ints) != len(items):
                    return None
                values.append(sorted(set(ints)))
        return cls(*values)

    def after(self, hour: int, minute: int, second: int) -> tuple[int, int, int] | None:
        """The first allowed time of day strictly after the one given, or None."""
        seconds, minutes, hours = self.seconds, self.minutes, self.hours
        if hour in self.hour_set:
            if minute in self.minute_set:
                i = bisect_right(seconds, second)
                if i < len(seconds):
                    return hour, minute, seconds[i]
            i = bisect_right(minutes, minute)
            if i < len(minutes):
                return hour, minutes[i], seconds[0]
        i = bisect_right(hours, hour)
        if i < len(hours):
            return hours[i], minutes[0], seconds[0]
        return None


# -- validation ------------------------------------------------------------------------


def _validate(expression: str) -> tuple[str, ...]:
    """The fields of `expression` (an alias expanded), or InvalidCronError."""
    text = expression.strip()
    if text.startswith("@"):
        alias = _ALIASES.get(text.lower())
        if alias is None:
            known = ", ".join(sorted(_ALIASES))
            raise InvalidCronError(expression, None, f"unknown alias {text!r}; use one of {known}")
        text = alias
    fields = tuple(text.split())
    if len(fields) not in (5, 6):
        raise InvalidCronError(
            expression,
            None,
            f"expected 5 fields (minute hour day-of-month month day-of-week) or 6 "
            f"(second first), got {len(fields)}",
        )
    names = ("second", *_NAMES) if len(fields) == 6 else _NAMES
    for i, (name, value) in enumerate(zip(names, fields, strict=True)):
        problem = _field_problem(name, value)
        if problem is None:
            probe = ["*"] * len(fields)
            probe[i] = value
            if _croniter_problem(" ".join(probe), len(fields) == 6) is not None:
                problem = f"{value!r} is not valid; use {_SYNTAX[name]}, ranges, lists and steps"
        if problem is not None:
            raise InvalidCronError(expression, name, problem)
    problem = _croniter_problem(text, len(fields) == 6)
    if problem is not None:
        raise InvalidCronError(expression, None, problem)
    _check_dates(expression, fields[-5:])
    month, dow = len(fields) - 2, len(fields) - 1
    named = {month: _MONTH_NAMES, dow: _DAY_NAMES}
    return tuple(_one_value_ranges(f, named.get(i)) for i, f in enumerate(fields))


_RANGE_ITEM = re.compile(r"^([0-9a-z]+)-([0-9a-z]+)(/\d+)?$", re.IGNORECASE)
_MONTH_NAMES = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
        start=1,
    )
}
_DAY_NAMES = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


def _one_value_ranges(field_text: str, names: dict[str, int] | None = None) -> str:
    """A range whose bounds are equal (`5-5`, `05-5/2`, `mon-mon`) is that single value;
    croniter 7 reads it as the whole field."""
    items = []
    for item in field_text.split(","):
        m = _RANGE_ITEM.match(item)
        if m is not None:
            low, high = (_bound(b, names) for b in (m.group(1), m.group(2)))
            if low is not None and low == high:
                item = m.group(1)
        items.append(item)
    return ",".join(items)


def _bound(text: str, names: dict[str, int] | None) -> int | None:
    if text.isdigit():
        return int(text)
    return None if names is None else names.get(text.lower())


def _field_problem(name: str, value: str) -> str | None:
    """What is wrong with one field, for the common mistakes; None if nothing obvious."""
    low, high = _RANGES[name]
    for item in value.split(","):
        if not item:
            return f"{value!r} has an empty list item"
        base, slash, step = item.partition("/")
        if _HASHED.fullmatch(base):
            return f"hashed and random values ({base!r}) are not supported"
        if slash and not _DIGITS.fullmatch(step):
            return f"step {step!r} in {item!r} is not a whole number"
        if slash and int(step) == 0:
            return f"step 0 in {item!r} must be at least 1"
        for bound in base.split("-"):
            if _DIGITS.fullmatch(bound) and not low <= int(bound) <= high:
                return f"{int(bound)} is out of range {low}-{high}"
    return None


def _croniter_problem(text: str, has_seconds: bool) -> str | None:
    """croniter's complaint about `text`, or None when it accepts it."""
    try:
        croniter.expand(text, second_at_beginning=has_seconds)
    except (ValueError, TypeError, LookupError) as exc:  # croniter's errors are ValueErrors
        return str(exc) or type(exc).__name__
    return None


def _check_dates(expression: str, fields: tuple[str, ...]) -> None:
    """Reject a day-of-month that no month of the month field has (31 in February)."""
    expanded, _ = croniter.expand(" ".join(fields))
    days, months, weekdays = expanded[2], expanded[3], expanded[4]
    if weekdays != ["*"] or "w" in fields[2].lower():
        return  # the day-of-week side fires, or W moves the day into the month
    if "*" in days or "l" in days or "*" in months:
        return
    first = min(int(d) for d in days)
    longest = max(_DAYS_IN_MONTH[int(m)] for m in months)
    if first > longest:
        raise InvalidCronError(
            expression, "day-of-month", f"day {first} never occurs in month(s) {fields[3]}"
        )


# -- offsets and their changes ---------------------------------------------------------


class _Shift(NamedTuple):
    """A change of UTC offset: instants from `at` (naive UTC) on are `after` from UTC."""

    at: datetime
    before: timedelta
    after: timedelta


def _offset(tz: ZoneInfo, u: datetime) -> timedelta:
    offset = tz.fromutc(u.replace(tzinfo=tz)).utcoffset()
    if offset is None:  # pragma: no cover - a ZoneInfo always has an offset
        raise AssertionError(f"{tz} has no UTC offset at {u}")
    return offset


def _is_second_pass(tz: ZoneInfo, u: datetime) -> bool:
    """Whether the wall time of instant `u` already occurred (clocks fell back)."""
    return tz.fromutc(u.replace(tzinfo=tz)).fold == 1


def _block(u: datetime) -> int:
    return (u - _EPOCH) // _BLOCK


def _first_shift(tz: ZoneInfo, lo: datetime, hi: datetime) -> _Shift | None:
    """The first shift with lo < at <= hi."""
    for block in range(_block(lo), _block(hi) + 1):
        for shift in _shifts(tz, block):
            if lo < shift.at <= hi:
                return shift
            if shift.at > hi:
                return None
    return None


def _last_shift(tz: ZoneInfo, lo: datetime, hi: datetime) -> _Shift | None:
    """The last shift with lo < at <= hi."""
    for block in range(_block(hi), _block(lo) - 1, -1):
        for shift in reversed(_shifts(tz, block)):
            if lo < shift.at <= hi:
                return shift
            if shift.at <= lo:
                return None
    return None


@lru_cache(maxsize=8192)
def _shifts(tz: ZoneInfo, block: int) -> tuple[_Shift, ...]:
    """The shifts of `tz` in one 8-day block, ascending.

    The offset is sampled hourly and bisected to the second where it differs; tzdata has
    no offset that lasts less than an hour.
    """
    start = _EPOCH + block * _BLOCK - _SECOND
    samples = [start + k * _SAMPLE for k in range(_BLOCK // _SAMPLE + 1)]
    offsets = [_offset(tz, s) for s in samples]
    found: list[_Shift] = []
    for k in range(1, len(samples)):
        if offsets[k] != offsets[k - 1]:
            _bisect(tz, samples[k - 1], offsets[k - 1], samples[k], offsets[k], found)
    return tuple(found)


def _bisect(
    tz: ZoneInfo,
    lo: datetime,
    lo_offset: timedelta,
    hi: datetime,
    hi_offset: timedelta,
    found: list[_Shift],
) -> None:
    if lo_offset == hi_offset:
        return
    seconds = (hi - lo) // _SECOND
    if seconds == 1:
        found.append(_Shift(hi, lo_offset, hi_offset))
        return
    mid = lo + (seconds // 2) * _SECOND
    mid_offset = _offset(tz, mid)
    _bisect(tz, lo, lo_offset, mid, mid_offset, found)
    _bisect(tz, mid, mid_offset, hi, hi_offset, found)
