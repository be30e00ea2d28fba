"""Ticks: one evaluation of a schedule or sensor, and what it decided for each request."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from daemon.domain.runs import Instigator, Run
from daemon.slotted import slot_setter


class TickStatus(StrEnum):
    STARTED = "STARTED"
    SUCCESS = "SUCCESS"
    SKIPPED = "SKIPPED"
    FAILURE = "FAILURE"


class Outcome(StrEnum):
    """What became of one run request of a tick."""

    CREATED = "created"
    DEDUPLICATED_RUN_KEY = "deduplicated_run_key"  # a run with this run_key already exists
    DEDUPLICATED_PARTITION = "deduplicated_partition"  # the partition has an active run
    DEDUPLICATED_IN_TICK = "deduplicated_in_tick"  # the same request twice in one evaluation


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    job: str
    outcome: Outcome
    run_id: str  # the run created, or the existing run that deduplicated this request
    run_key: str | None = None
    partition_key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    tick_id: str
    instigator: Instigator
    status: TickStatus
    started_at: datetime
    ended_at: datetime | None = None
    scheduled_for: datetime | None = None
    decisions: tuple[Decision, ...] = ()
    skip_reason: str | None = None
    error: str | None = None
    cursor_before: str | None = None
    cursor_after: str | None = None

    @property
    def tick_at(self) -> datetime:
        """The time the tick is about: its scheduled time, else its start (a sensor's).
        History is ordered, filtered by age and purged by it."""
        return self.scheduled_for or self.started_at

    @property
    def run_ids(self) -> tuple[str, ...]:
        return tuple(d.run_id for d in self.decisions if d.outcome is Outcome.CREATED)

    @property
    def deduplicated(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.outcome is not Outcome.CREATED)


class InstigatorStatus(StrEnum):
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"


@dataclass(frozen=True, slots=True, kw_only=True)
class InstigatorState:
    """What the store remembers of a schedule or sensor across restarts and reloads.

    `status` is None until an operator starts or stops it; then the definition's
    `default_status` no longer applies.
    """

    instigator: Instigator
    status: InstigatorStatus | None = None
    cursor: str | None = None
    last_tick_at: datetime | None = None  # schedules: last scheduled_for; sensors: last eval
    last_run_key: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StateUpdate:
    """The instigator state a tick commit writes (None leaves a field unchanged)."""

    cursor: str | None = None
    set_cursor: bool = False  # True: write `cursor` even when it is None (clear it)
    last_tick_at: datetime | None = None
    last_run_key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class KeyedRequests:
    """A tick's requests not yet built into runs: each has a run_key no other has, none a
    partition, tags or a priority of its own. A sensor mostly asks again for what it
    asked for before, so the store first finds which keys a stored run holds and builds
    runs only for the others: `build(indices)` gives the runs of those requests, in
    order. It changes nothing shared (the run ids were made with the requests), so a
    store may call it on any thread."""

    jobs: tuple[str, ...]  # per request
    run_keys: tuple[str, ...]
    build: Callable[[Sequence[int]], list[Run]]


@dataclass(frozen=True, slots=True, kw_only=True)
class TickCommit:
    """One instigator's tick as the loop hands it to the store: all or nothing.

    `tick.decisions` is ignored: the store decides, from its unique indexes, which of
    `runs` (or of the `keyed` requests, which a commit has instead) it created and which
    were deduplicated, and returns the tick with them, in request order.
    """

    tick: Tick
    runs: tuple[Run, ...] = ()
    state: StateUpdate = field(default_factory=StateUpdate)
    keyed: KeyedRequests | None = None


_set_started = slot_setter(Tick, "started_at")
_set_ended = slot_setter(Tick, "ended_at")
_set_created = slot_setter(Run, "created_at")


def stamp(commits: Iterable[TickCommit], at: datetime) -> None:
    """Commits decided ahead of their boundary, as decided at `at`: each tick starts and
    ends then, its runs are created then (ids and all else unchanged). In place: only for
    commits that nothing else holds yet (the loop's own, until the store has them);
    building three objects anew per schedule was a fifth of a 10,000-schedule boundary."""
    for commit in commits:
        tick = commit.tick
        _set_started(tick, at)
        _set_ended(tick, at)
        for run in commit.runs:
            _set_created(run, at)


def stamp_ticks(ticks: Iterable[Tick], at: datetime) -> None:
    """`stamp` for ticks alone (ticks a store made ahead from stamped commits)."""
    for tick in ticks:
        _set_started(tick, at)
        _set_ended(tick, at)
