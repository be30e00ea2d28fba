"""Partitions: a fixed set of keys, or consecutive time windows (daily, hourly, weekly, monthly).

Pure: nothing here reads a clock, performs I/O or logs. Every time is an argument.

Time-window rules
-----------------
* Windows are half-open, ``[start, end)``, and defined in WALL time of the partitions'
  own timezone: a daily partition in Europe/Berlin runs from local midnight to the next
  local midnight, 23 or 25 real hours on DST days.
* Each kind has boundaries, the wall times at which one window ends and the next starts:
  daily at ``hour_offset:minute_offset`` every day, hourly at ``:minute_offset`` every
  hour, weekly on ``day_offset`` (0 = Sunday, as in cron) at ``hour_offset:minute_offset``,
  monthly on day ``day_offset`` of each month at ``hour_offset:minute_offset``.
* A key names the wall time its window starts at, without a UTC offset: daily, weekly and
  monthly keys are the start date ``YYYY-MM-DD``, hourly keys ``YYYY-MM-DD-HH:MM``.
* A boundary wall time that occurs twice (fall back) means its FIRST occurrence, so the
  window of a repeated wall hour covers both occurrences (two real hours in a 1-hour fold).
* A boundary wall time that does not occur (clocks spring forward over it):
  - daily, weekly, monthly: the boundary is the instant the clocks jump, the first instant
    after the gap (where a fixed-time cron such as ``30 2 * * *`` fires). A window whose
    start and end fall in the same gap is empty and has no key: Pacific/Apia has no daily
    key ``2011-12-30``.
  - hourly: the boundary is dropped. A wall hour whose start does not exist has no key,
    and the window before it runs on to the next boundary that exists (where the wildcard
    cron ``0 * * * *`` fires next): Europe/Berlin has no ``...-02:00`` on the last Sunday
    of March, and on Australia/Lord_Howe's 30-minute spring-forward day there is no
    ``...-02:00`` and ``...-01:00`` lasts 90 minutes.
* The first partition is the first non-empty window that starts at or after ``start``.
  ``start`` is a string in the key format (hourly also takes a bare date), a date (its
  midnight), a naive datetime (a wall time in the partitions' timezone) or an aware one.
  ``start`` need not be on a boundary; the stored ``start`` is the first window's start.
* A window is closed at instant t when its end <= t: at exactly local midnight the
  previous day is closed. ``end_offset`` moves the newest requested partition that many
  partitions later (1 = also the partition in progress) or, when negative, earlier.
* ``cron`` is the schedule that ticks when each window closes, in the partitions' timezone.
  Under daemon.domain.cron's DST rule its ticks land on every boundary, so a schedule that
  asks for ``key_closed_by(tick)`` requests every key in order; the hourly cron fires twice
  in a repeated wall hour, and both ticks ask for the same key.
* Returned datetimes are aware, in the partitions' timezone. Arithmetic on them is wall
  arithmetic and comparing two of them ignores ``fold``: convert to UTC first.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from daemon.errors import InvalidPartitionError, UnknownTimezoneError

__all__ = [
    "DailyPartitions",
    "HourlyPartitions",
    "MonthlyPartitions",
    "PartitionsDefinition",
    "StaticPartitions",
    "TimeWindow",
    "TimeWindowPartitions",
    "WeeklyPartitions",
]

_DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_HOUR_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})-(\d{2}):(\d{2})", re.ASCII)
_EPOCH = datetime(1, 1, 1)
_HOUR = timedelta(hours=1)
_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_SHOWN_KEYS = 5  # how many static keys a message lists before "... N more"


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """The half-open span ``[start, end)``; both ends aware, start strictly before end.

    Compare ends with ``in`` or after ``astimezone(UTC)``: Python compares two datetimes
    that share a tzinfo by wall time, ignoring ``fold``.
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if not (_is_aware(self.start) and _is_aware(self.end)):
            raise ValueError(f"time window needs aware datetimes, got {self.start!r}, {self.end!r}")
        if self.end.astimezone(UTC) <= self.start.astimezone(UTC):
            raise ValueError(f"time window ends ({self.end}) at or before it starts ({self.start})")

    def __contains__(self, t: object) -> bool:
        """Whether the aware instant `t` lies in the window (compared as instants)."""
        if not isinstance(t, datetime) or not _is_aware(t):
            return False
        u = t.astimezone(UTC)
        return self.start.astimezone(UTC) <= u < self.end.astimezone(UTC)


class PartitionsDefinition(ABC):
    """The set of partition keys a job can run for. ``str()`` is ``describe()``."""

    __slots__ = ()

    @abstractmethod
    def validate_key(self, key: str) -> None:
        """Raise InvalidPartitionError unless `key` is one of this definition's keys."""

    @abstractmethod
    def describe(self) -> str:
        """A short human description, used in error messages."""

    def __str__(self) -> str:
        return self.describe()


@dataclass(frozen=True, slots=True, init=False)
class StaticPartitions(PartitionsDefinition):
    """A fixed, ordered set of keys.

    Keys are non-empty printable strings, unique, at least one. The constructor takes any
    sequence (not a bare string) and stores a tuple in ``partition_keys``.
    """

    partition_keys: tuple[str, ...]
    _lookup: frozenset[str] = field(init=False, repr=False, compare=False)

    def __init__(self, keys: Sequence[str]) -> None:
        if isinstance(keys, str) or not isinstance(keys, Sequence):
            raise TypeError(
                f"static partitions take a sequence of keys (a list or tuple), got {keys!r}"
            )
        stored = tuple(keys)
        if not stored:
            raise ValueError("static partitions need at least one key, got none")
        for key in stored:
            if not isinstance(key, str):
                raise TypeError(f"static partition keys must be strings, got {key!r}")
            if not key or not key.isprintable():
                raise ValueError(
                    f"static partition key {key!r} is invalid; keys are non-empty and printable"
                )
        seen: set[str] = set()
        duplicates: list[str] = []
        for key in stored:
            if key in seen and key not in duplicates:
                duplicates.append(key)
            seen.add(key)
        if duplicates:
            raise ValueError(f"static partitions have duplicate keys: {_list_keys(duplicates)}")
        object.__setattr__(self, "partition_keys", stored)
        object.__setattr__(self, "_lookup", frozenset(stored))

    def keys(self) -> tuple[str, ...]:
        """All keys, in the order given."""
        return self.partition_keys

    def validate_key(self, key: str) -> None:
        if key not in self._lookup:
            raise InvalidPartitionError(key, str(self), f"one of {_list_keys(self.partition_keys)}")

    def describe(self) -> str:
        return f"static partitions ({_list_keys(self.partition_keys)})"


@dataclass(frozen=True, slots=True, init=False)
class TimeWindowPartitions(PartitionsDefinition):
    """Base of the time-window partitions: the rules are in this module's docstring.

    Windows are numbered by an index (consecutive boundaries, consecutive indexes); a
    subclass maps wall times to indexes and back, everything else is shared here.
    """

    start: datetime  # aware, in `timezone`: the start of the first partition
    timezone: str
    end_offset: int
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _first: int = field(init=False, repr=False, compare=False)  # index of the first partition

    _kind: ClassVar[str]  # "daily", ...
    _hourly_keys: ClassVar[bool] = False  # keys carry "-HH:MM" after the date
    _drop_gap_boundaries: ClassVar[bool] = False  # else a boundary in a gap moves to the jump

    # -- what a subclass provides ---------------------------------------------------

    @abstractmethod
    def _index_of(self, wall: datetime) -> int:
        """Index of the latest boundary at or before the naive wall time `wall`."""

    @abstractmethod
    def _wall_of(self, index: int) -> datetime:
        """The naive wall time of boundary `index`."""

    @abstractmethod
    def _cadence(self) -> str:
        """Where the boundaries are, in words: "each day from 00:00"."""

    @abstractmethod
    def _key_format(self) -> str:
        """The expected key format, in words."""

    @property
    @abstractmethod
    def cron(self) -> str:
        """The cron (in `timezone`) that ticks at each boundary, when a window closes."""

    # -- construction ---------------------------------------------------------------

    def _set_offset(self, name: str, value: int, low: int, high: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(
                f"{self._kind} partitions: {name} must be an integer from {low} to {high}, "
                f"got {value!r}"
            )
        object.__setattr__(self, name, value)

    def _setup(self, start: str | date | datetime, timezone: str, end_offset: int) -> None:
        """Set the shared fields; call after the subclass has set its offsets."""
        if isinstance(end_offset, bool) or not isinstance(end_offset, int):
            raise ValueError(
                f"{self._kind} partitions: end_offset must be an integer, got {end_offset!r}"
            )
        object.__setattr__(self, "timezone", timezone)
        object.__setattr__(self, "end_offset", end_offset)
        object.__setattr__(self, "_zone", _load_zone(timezone, f"{self._kind} partitions"))
        begin = self._start_instant(start)
        first = self._index_at(begin)
        if self._start_of(first) < begin:
            first = self._next(first)
        object.__setattr__(self, "_first", first)
        object.__setattr__(self, "start", self._start_of(first).astimezone(self._zone))

    def _start_instant(self, start: str | date | datetime) -> datetime:
        if isinstance(start, str):
            wall = _parse_wall(start, with_time=self._hourly_keys)
            if wall is None:
                formats = (
                    "'YYYY-MM-DD-HH:MM' or 'YYYY-MM-DD'" if self._hourly_keys else "'YYYY-MM-DD'"
                )
                raise ValueError(
                    f"{self._kind} partitions: invalid start {start!r}; expected {formats}, "
                    "a date or a datetime"
                )
        elif isinstance(start, datetime):
            if _is_aware(start):
                return start.astimezone(UTC)
            wall = start
        elif isinstance(start, date):
            wall = datetime.combine(start, time())
        else:
            raise ValueError(
                f"{self._kind} partitions: invalid start {start!r}; expected a string, "
                "a date or a datetime"
            )
        instant = _instant(wall, self._zone)
        return _jump(wall, self._zone) if instant is None else instant

    # -- index arithmetic -----------------------------------------------------------

    def _start_of(self, index: int) -> datetime:
        """The UTC instant window `index` starts at (see the DST rules)."""
        while True:
            wall = self._wall_of(index)
            instant = _instant(wall, self._zone)
            if instant is not None:
                return instant
            if not self._drop_gap_boundaries:
                return _jump(wall, self._zone)
            index += 1  # a dropped boundary: the window is empty, the one before runs on

    def _is_empty(self, index: int) -> bool:
        return self._start_of(index) == self._start_of(index + 1)

    def _next(self, index: int) -> int:
        index += 1
        while self._is_empty(index):
            index += 1
        return index

    def _prev(self, index: int) -> int:
        index -= 1
        while self._is_empty(index):
            index -= 1
        return index

    def _index_at(self, u: datetime) -> int:
        """Index of the (non-empty) window containing UTC instant `u`, ignoring `start`."""
        index = self._index_of(u.astimezone(self._zone).replace(tzinfo=None))
        # The wall-time guess is off around folds (wall time runs backwards) and gaps.
        while self._start_of(index) > u:
            index -= 1
        while self._start_of(index + 1) <= u:
            index += 1
        return index

    def _key_of(self, index: int) -> str:
        wall = self._wall_of(index)
        day = wall.date().isoformat()
        return f"{day}-{wall.hour:02d}:{wall.minute:02d}" if self._hourly_keys else day

    def _index_of_key(self, key: str) -> int:
        """The index `key` names; InvalidPartitionError unless it is one of the keys."""
        expected = self._key_format()
        wall = _parse_wall(key, with_time=self._hourly_keys) if isinstance(key, str) else None
        if wall is None:
            raise InvalidPartitionError(key, str(self), expected)
        if not self._hourly_keys:
            wall = datetime.combine(wall.date(), time.max)  # the boundary on that date
        try:
            index = self._index_of(wall)
            canonical = self._key_of(index) == key
            empty = canonical and self._is_empty(index)
        except (OverflowError, ValueError):
            raise InvalidPartitionError(
                key, str(self), f"{expected}, with a window within years 1 to 9999"
            ) from None
        if not canonical:
            raise InvalidPartitionError(key, str(self), expected)
        if index < self._first:
            raise InvalidPartitionError(
                key, str(self), f"a key at or after {self._key_of(self._first)!r}, the first one"
            )
        if empty:
            raise InvalidPartitionError(
                key,
                str(self),
                f"a key whose wall time exists in {self.timezone}; the clocks skip over this one",
            )
        return index

    def _closed_index(self, t: datetime) -> int | None:
        index = self._prev(self._index_at(_to_utc(t, self._kind)))
        for _ in range(self.end_offset):
            index = self._next(index)
        for _ in range(-self.end_offset):
            index = self._prev(index)
        return index if index >= self._first else None

    def _keys_from(self, low: int, high: int) -> list[str]:
        """The keys of the non-empty windows with index in [low, high], in order."""
        starts = [self._start_of(i) for i in range(low, high + 2)]
        return [self._key_of(low + n) for n in range(high - low + 1) if starts[n] < starts[n + 1]]

    # -- public ---------------------------------------------------------------------

    def validate_key(self, key: str) -> None:
        """InvalidPartitionError for a malformed key, one before the first or one in a gap."""
        self._index_of_key(key)

    def describe(self) -> str:
        extra = f", end_offset {self.end_offset}" if self.end_offset else ""
        return (
            f"{self._kind} partitions from {self._key_of(self._first)!r} "
            f"({self._cadence()} in {self.timezone}{extra})"
        )

    def window(self, key: str) -> TimeWindow:
        """The window `key` names, its ends in `timezone`."""
        index = self._index_of_key(key)
        return TimeWindow(
            self._start_of(index).astimezone(self._zone),
            self._start_of(index + 1).astimezone(self._zone),
        )

    def key_for(self, t: datetime) -> str | None:
        """The key of the window containing aware instant `t`; None if before the first."""
        index = self._index_at(_to_utc(t, self._kind))
        return self._key_of(index) if index >= self._first else None

    def key_closed_by(self, t: datetime) -> str | None:
        """The key a schedule ticking at `t` asks for: the newest window with end <= t,
        moved by `end_offset` partitions; None if that is before the first partition."""
        index = self._closed_index(t)
        return None if index is None else self._key_of(index)

    def keys_between(self, first: str, last: str) -> list[str]:
        """Every key from `first` to `last`, both included, in order (for a backfill)."""
        low = self._index_of_key(first)
        high = self._index_of_key(last)
        if low > high:
            raise InvalidPartitionError(
                last, str(self), f"a key at or after {first!r}, the first key of the range"
            )
        return self._keys_from(low, high)

    def keys_until(self, t: datetime, limit: int | None = None) -> list[str]:
        """Every key from the first up to ``key_closed_by(t)``, in order; with `limit`,
        only the newest `limit` of them."""
        if limit is not None and (isinstance(limit, bool) or limit < 0):
            raise ValueError(f"limit must be None or a non-negative integer, got {limit!r}")
        high = self._closed_index(t)
        if high is None or limit == 0:
            return []
        low = self._first
        if limit is not None:
            low = high
            for _ in range(limit - 1):
                earlier = self._prev(low)
                if earlier < self._first:
                    break
                low = earlier
        return self._keys_from(low, high)


@dataclass(frozen=True, slots=True, init=False)
class DailyPartitions(TimeWindowPartitions):
    """One partition per day, from hour_offset:minute_offset local time; key "YYYY-MM-DD"."""

    hour_offset: int
    minute_offset: int

    _kind: ClassVar[str] = "daily"

    def __init__(
        self,
        start: str | date | datetime,
        timezone: str = "UTC",
        end_offset: int = 0,
        hour_offset: int = 0,
        minute_offset: int = 0,
    ) -> None:
        self._set_offset("hour_offset", hour_offset, 0, 23)
        self._set_offset("minute_offset", minute_offset, 0, 59)
        self._setup(start, timezone, end_offset)

    def _index_of(self, wall: datetime) -> int:
        return (wall - timedelta(hours=self.hour_offset, minutes=self.minute_offset)).toordinal()

    def _wall_of(self, index: int) -> datetime:
        return datetime.combine(date.fromordinal(index), time(self.hour_offset, self.minute_offset))

    def _cadence(self) -> str:
        return f"each day from {self.hour_offset:02d}:{self.minute_offset:02d}"

    def _key_format(self) -> str:
        return "a date 'YYYY-MM-DD'"

    @property
    def cron(self) -> str:
        return f"{self.minute_offset} {self.hour_offset} * * *"


@dataclass(frozen=True, slots=True, init=False)
class HourlyPartitions(TimeWindowPartitions):
    """One partition per wall-clock hour, from minute minute_offset; key "YYYY-MM-DD-HH:MM"."""

    minute_offset: int

    _kind: ClassVar[str] = "hourly"
    _hourly_keys: ClassVar[bool] = True
    _drop_gap_boundaries: ClassVar[bool] = True

    def __init__(
        self,
        start: str | datetime,
        timezone: str = "UTC",
        end_offset: int = 0,
        minute_offset: int = 0,
    ) -> None:
        self._set_offset("minute_offset", minute_offset, 0, 59)
        self._setup(start, timezone, end_offset)

    def _index_of(self, wall: datetime) -> int:
        return (wall - _EPOCH - timedelta(minutes=self.minute_offset)) // _HOUR

    def _wall_of(self, index: int) -> datetime:
        return _EPOCH + timedelta(hours=index, minutes=self.minute_offset)

    def _cadence(self) -> str:
        return f"each hour from :{self.minute_offset:02d}"

    def _key_format(self) -> str:
        return f"'YYYY-MM-DD-HH:MM' with minutes {self.minute_offset:02d}"

    @property
    def cron(self) -> str:
        return f"{self.minute_offset} * * * *"


@dataclass(frozen=True, slots=True, init=False)
class WeeklyPartitions(TimeWindowPartitions):
    """One partition per week, from weekday day_offset (0 = Sunday) at hour:minute;
    key "YYYY-MM-DD", the date the window starts on."""

    day_offset: int
    hour_offset: int
    minute_offset: int

    _kind: ClassVar[str] = "weekly"

    def __init__(
        self,
        start: str | date | datetime,
        timezone: str = "UTC",
        end_offset: int = 0,
        day_offset: int = 0,
        hour_offset: int = 0,
        minute_offset: int = 0,
    ) -> None:
        self._set_offset("day_offset", day_offset, 0, 6)
        self._set_offset("hour_offset", hour_offset, 0, 23)
        self._set_offset("minute_offset", minute_offset, 0, 59)
        self._setup(start, timezone, end_offset)

    # date.toordinal() % 7 is the cron weekday: ordinal 1, 0001-01-01, was a Monday.
    def _index_of(self, wall: datetime) -> int:
        shifted = wall - timedelta(hours=self.hour_offset, minutes=self.minute_offset)
        return (shifted.toordinal() - self.day_offset) // 7

    def _wall_of(self, index: int) -> datetime:
        day = date.fromordinal(7 * index + self.day_offset)
        return datetime.combine(day, time(self.hour_offset, self.minute_offset))

    def _cadence(self) -> str:
        return (
            f"each week from {_WEEKDAYS[self.day_offset]} "
            f"{self.hour_offset:02d}:{self.minute_offset:02d}"
        )

    def _key_format(self) -> str:
        return f"'YYYY-MM-DD' naming a {_WEEKDAYS[self.day_offset]}"

    @property
    def cron(self) -> str:
        return f"{self.minute_offset} {self.hour_offset} * * {self.day_offset}"


@dataclass(frozen=True, slots=True, init=False)
class MonthlyPartitions(TimeWindowPartitions):
    """One partition per month, from day day_offset (1 to 28, so every month has one) at
    hour:minute; key "YYYY-MM-DD", the date the window starts on."""

    day_offset: int
    hour_offset: int
    minute_offset: int

    _kind: ClassVar[str] = "monthly"

    def __init__(
        self,
        start: str | date | datetime,
        timezone: str = "UTC",
        end_offset: int = 0,
        day_offset: int = 1,
        hour_offset: int = 0,
        minute_offset: int = 0,
    ) -> None:
        self._set_offset("day_offset", day_offset, 1, 28)
        self._set_offset("hour_offset", hour_offset, 0, 23)
        self._set_offset("minute_offset", minute_offset, 0, 59)
        self._setup(start, timezone, end_offset)

    def _index_of(self, wall: datetime) -> int:
        # Shifting by the boundary's distance from the 1st keeps order, so the month of
        # the shifted wall time is the month of the latest boundary.
        shifted = wall - timedelta(
            days=self.day_offset - 1, hours=self.hour_offset, minutes=self.minute_offset
        )
        return shifted.year * 12 + shifted.month - 1

    def _wall_of(self, index: int) -> datetime:
        year, month = divmod(index, 12)
        return datetime(year, month + 1, self.day_offset, self.hour_offset, self.minute_offset)

    def _cadence(self) -> str:
        return (
            f"each month from day {self.day_offset} {self.hour_offset:02d}:{self.minute_offset:02d}"
        )

    def _key_format(self) -> str:
        return f"'YYYY-MM-DD' naming day {self.day_offset:02d} of a month"

    @property
    def cron(self) -> str:
        return f"{self.minute_offset} {self.hour_offset} {self.day_offset} * *"


# -- helpers -----------------------------------------------------------------------------


def _is_aware(t: datetime) -> bool:
    return t.tzinfo is not None and t.utcoffset() is not None


def _to_utc(t: datetime, kind: str) -> datetime:
    if not isinstance(t, datetime) or not _is_aware(t):
        raise ValueError(f"{kind} partitions need an aware datetime, got {t!r}")
    return t.astimezone(UTC)


def _load_zone(name: str, obj: str) -> ZoneInfo:
    if not isinstance(name, str):
        raise UnknownTimezoneError(repr(name), obj)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UnknownTimezoneError(name, obj) from None


def _parse_wall(text: str, *, with_time: bool) -> datetime | None:
    """A naive datetime from "YYYY-MM-DD" or (with_time) "YYYY-MM-DD-HH:MM"; None if neither."""
    match = (_HOUR_RE.fullmatch(text) if with_time else None) or _DATE_RE.fullmatch(text)
    if match is None:
        return None
    try:
        parts = [int(part) for part in match.groups()] + [0, 0]
        return datetime(parts[0], parts[1], parts[2], parts[3], parts[4])
    except ValueError:
        return None


def _instant(wall: datetime, zone: ZoneInfo) -> datetime | None:
    """The UTC instant of naive wall time `wall` in `zone`: the first occurrence of a
    repeated wall time; None for one that does not exist (in a gap)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    return first if first.astimezone(zone).replace(tzinfo=None) == wall else None


def _jump(wall: datetime, zone: ZoneInfo) -> datetime:
    """For a wall time in a gap, the UTC instant the clocks jump: the first one after it."""
    # In a gap fold=0 reads the wall time with the offset from before the jump, giving an
    # instant after it, and fold=1 with the offset from after, giving one before it.
    before = int(wall.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp())
    after = int(wall.replace(tzinfo=zone, fold=0).astimezone(UTC).timestamp())
    offset_before = datetime.fromtimestamp(before, zone).utcoffset()
    while after - before > 1:  # tz transitions fall on whole seconds
        middle = (before + after) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == offset_before:
            before = middle
        else:
            after = middle
    return datetime.fromtimestamp(after, UTC)


def _list_keys(keys: Sequence[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:_SHOWN_KEYS])
    more = len(keys) - _SHOWN_KEYS
    return f"{shown}, ... {more} more" if more > 0 else shown
