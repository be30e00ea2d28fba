"""Concurrency limits and queue order, as pure functions over counts and runs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from daemon.domain.runs import Run


@dataclass(frozen=True, slots=True, kw_only=True)
class TagLimit:
    """At most `limit` in-flight runs tagged `key` (= `value` when given).

    With `per_value`, the limit applies to each distinct value of `key` separately.
    """

    key: str
    limit: int
    value: str | None = None
    per_value: bool = False

    def slot(self, tags: Mapping[str, str]) -> tuple[str, str | None] | None:
        """The counter this limit charges for a run with `tags`, or None if it does not apply."""
        if self.key not in tags:
            return None
        if self.value is not None:
            return (self.key, self.value) if tags[self.key] == self.value else None
        if self.per_value:
            return (self.key, tags[self.key])
        return (self.key, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConcurrencyLimits:
    max_concurrent_runs: int | None = None
    tag_limits: tuple[TagLimit, ...] = ()


# Runs of a schedule whose overlap policy is not `allow` carry this tag (value: the
# schedule name); every claim adds a limit of one in-flight run per value, so such a
# schedule never has two runs going at once.
SERIAL_TAG = "tickd/serial"
SERIAL_LIMIT = TagLimit(key=SERIAL_TAG, limit=1, per_value=True)


def with_serial_limit(limits: ConcurrencyLimits) -> ConcurrencyLimits:
    """`limits` plus the one-at-a-time limit for schedules that must not overlap."""
    if SERIAL_LIMIT in limits.tag_limits:
        return limits
    return ConcurrencyLimits(
        max_concurrent_runs=limits.max_concurrent_runs,
        tag_limits=(*limits.tag_limits, SERIAL_LIMIT),
    )


Slot = tuple[int, tuple[str, str | None]]  # (index of the tag limit, counter key)


def slots_of(tags: Mapping[str, str], limits: ConcurrencyLimits) -> list[Slot]:
    out: list[Slot] = []
    for i, lim in enumerate(limits.tag_limits):
        s = lim.slot(tags)
        if s is not None:
            out.append((i, s))
    return out


class LimitCounter:
    """Counts in-flight runs per tag-limit slot and admits runs that fit.

    Feed it the runs already in flight, then offer candidates in queue order:
    `admit` returns True and charges the slots when the run fits. A run that does not
    fit is passed over, so it never blocks lower-priority runs that do.
    """

    def __init__(self, limits: ConcurrencyLimits, in_flight: Iterable[Mapping[str, str]] = ()):
        self.limits = limits
        self.total = 0
        self.counts: Counter[Slot] = Counter()
        for tags in in_flight:
            self.charge(tags)

    def charge(self, tags: Mapping[str, str]) -> None:
        self.total += 1
        for s in slots_of(tags, self.limits):
            self.counts[s] += 1

    def full(self) -> bool:
        cap = self.limits.max_concurrent_runs
        return cap is not None and self.total >= cap

    def fits(self, tags: Mapping[str, str]) -> bool:
        if self.full():
            return False
        return all(
            self.counts[s] < self.limits.tag_limits[s[0]].limit for s in slots_of(tags, self.limits)
        )

    def admit(self, tags: Mapping[str, str]) -> bool:
        if not self.fits(tags):
            return False
        self.charge(tags)
        return True


def queue_order(run: Run) -> tuple[int, str, str]:
    """Sort key of the queue: higher priority first, then older, then run id."""
    return (-run.priority, run.created_at.isoformat(), run.run_id)
