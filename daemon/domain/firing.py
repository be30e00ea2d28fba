"""Which schedule ticks are due, which of them run, and why the others do not.

One pure function decides catch-up after downtime; one decides overlap with a still
active run; one derives the deterministic jitter of a tick. The loop only executes
these decisions; it never re-implements them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from daemon.domain.runs import Run, RunStatus


class Catchup(StrEnum):
    LATEST = "latest"  # after downtime, run only the newest missed tick
    ALL = "all"  # run every missed tick, up to max_catchup (the newest ones)
    NONE = "none"  # run no missed tick


class Overlap(StrEnum):
    ALLOW = "allow"  # start a new run even if the previous one is still active
    SKIP = "skip"  # skip the tick while the previous run is active
    BUFFER_ONE = "buffer_one"  # keep at most one run queued behind the active one
    CANCEL_PREVIOUS = "cancel_previous"  # cancel the active run, then start the new one


# A tick evaluated within this long of its time is on time, not missed: a loop woken a
# little late (a busy machine, a long evaluation batch) must not count as downtime.
ON_TIME_GRACE = timedelta(seconds=30)


class SkipCode(StrEnum):
    """Why a tick did not run; `tickd why` shows the message."""

    CATCHUP_LATEST = "catchup_latest"
    CATCHUP_NONE = "catchup_none"
    CATCHUP_MAX = "catchup_max"
    CATCHUP_WINDOW = "catchup_window"
    OVERLAP = "overlap"
    STOPPED = "stopped"
    EVALUATION = "evaluation"  # the function returned SkipReason or nothing


@dataclass(frozen=True, slots=True, kw_only=True)
class MissedTick:
    scheduled_for: datetime
    code: SkipCode
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TickPlan:
    """The ticks of one schedule that are due at `now`.

    `run`: evaluate these, oldest first. `missed`: record these as SKIPPED with their
    reason. Together they cover every fire time in (last_tick_at, now], exactly once.
    """

    run: tuple[datetime, ...]
    missed: tuple[MissedTick, ...]

    @property
    def newest(self) -> datetime | None:
        times = [*self.run, *(m.scheduled_for for m in self.missed)]
        return max(times) if times else None


def plan_ticks(
    due: Sequence[datetime],
    *,
    now: datetime,
    catchup: Catchup,
    max_catchup: int,
    catchup_window: timedelta | None,
) -> TickPlan:
    """Split the fire times `due` (ascending, all <= now) into ticks to run and to skip.

    A tick later than ON_TIME_GRACE at `now` was missed (the daemon was down or
    stopped). Missed ticks older than `catchup_window` never run. Of the rest, `all`
    runs the newest `max_catchup`, `latest` the newest one, `none` none of them.
    """
    if not due:
        return TickPlan(run=(), missed=())
    if len(due) == 1 and now - due[0] <= ON_TIME_GRACE:  # the usual tick: on time, alone
        return TickPlan(run=(due[0],), missed=())
    missed: list[MissedTick] = []
    eligible: list[datetime] = []
    for t in due:
        late = now - t
        if late <= ON_TIME_GRACE:
            eligible.append(t)
        elif catchup_window is not None and late > catchup_window:
            missed.append(
                MissedTick(
                    scheduled_for=t,
                    code=SkipCode.CATCHUP_WINDOW,
                    reason=f"missed while the daemon was down; older than the catch-up window "
                    f"({_human(catchup_window)})",
                )
            )
        elif catchup is Catchup.NONE:
            missed.append(
                MissedTick(
                    scheduled_for=t,
                    code=SkipCode.CATCHUP_NONE,
                    reason="missed while the daemon was down; catchup='none' runs no missed tick",
                )
            )
        else:
            eligible.append(t)
    keep = max_catchup if catchup is Catchup.ALL else 1
    if len(eligible) > keep:
        dropped, eligible = eligible[:-keep], eligible[-keep:]
        if catchup is Catchup.ALL:
            code = SkipCode.CATCHUP_MAX
            reason = f"missed while the daemon was down; beyond max_catchup={max_catchup}"
        else:
            code = SkipCode.CATCHUP_LATEST
            reason = "missed while the daemon was down; catchup='latest' ran the newest tick only"
        missed.extend(MissedTick(scheduled_for=t, code=code, reason=reason) for t in dropped)
    missed.sort(key=lambda m: m.scheduled_for)
    return TickPlan(run=tuple(eligible), missed=tuple(missed))


@dataclass(frozen=True, slots=True, kw_only=True)
class OverlapDecision:
    create: bool
    cancel: tuple[str, ...] = ()  # run ids to cancel first
    reason: str | None = None  # why not created


def decide_overlap(policy: Overlap, active: Iterable[Run]) -> OverlapDecision:
    """What a tick does about the schedule's runs that are still active."""
    active = [r for r in active if r.status.is_active]
    if not active or policy is Overlap.ALLOW:
        return OverlapDecision(create=True)
    ids = ", ".join(r.run_id for r in active)
    if policy is Overlap.SKIP:
        return OverlapDecision(
            create=False, reason=f"overlap='skip': previous run {ids} is still active"
        )
    if policy is Overlap.BUFFER_ONE:
        waiting = [r for r in active if r.status is RunStatus.QUEUED]
        if waiting:
            return OverlapDecision(
                create=False,
                reason=f"overlap='buffer_one': run {waiting[0].run_id} is already waiting",
            )
        return OverlapDecision(create=True)
    return OverlapDecision(create=True, cancel=tuple(r.run_id for r in active))


def jitter_offset(name: str, scheduled_for: datetime, jitter: float | None) -> timedelta:
    """A delay in [0, jitter) seconds, the same for one (schedule, tick) on every restart."""
    if not jitter:
        return timedelta(0)
    digest = hashlib.blake2b(
        f"{name}|{scheduled_for.timestamp():.6f}".encode(), digest_size=8
    ).digest()
    fraction = int.from_bytes(digest) / 2**64
    return timedelta(seconds=fraction * jitter)


def _human(d: timedelta) -> str:
    secs = int(d.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size and secs % size == 0:
            return f"{secs // size}{unit}"
    return f"{secs}s"
