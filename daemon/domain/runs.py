"""Runs: their statuses, the legal moves between them, and the run value itself."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from daemon.errors import IllegalTransitionError

PRIORITY_TAG = "tickd/priority"
TIMEOUT_TAG = "tickd/timeout"


class RunStatus(StrEnum):
    QUEUED = "QUEUED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    CANCELING = "CANCELING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELED = "CANCELED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_STATUSES


TERMINAL_STATUSES = frozenset(
    {RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.CANCELED, RunStatus.TIMED_OUT}
)
# A run that holds a slot or blocks its partition: everything not finished.
ACTIVE_STATUSES = frozenset(
    {RunStatus.QUEUED, RunStatus.STARTING, RunStatus.RUNNING, RunStatus.CANCELING}
)
# Runs that count against concurrency limits: claimed and not finished.
IN_FLIGHT_STATUSES = frozenset({RunStatus.STARTING, RunStatus.RUNNING, RunStatus.CANCELING})

_LEGAL: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.STARTING, RunStatus.CANCELED}),
    RunStatus.STARTING: frozenset(
        {
            RunStatus.RUNNING,
            RunStatus.CANCELING,
            RunStatus.CANCELED,
            RunStatus.FAILURE,
            RunStatus.TIMED_OUT,
        }
    ),
    RunStatus.RUNNING: frozenset(
        {
            RunStatus.SUCCESS,
            RunStatus.FAILURE,
            RunStatus.CANCELING,
            RunStatus.CANCELED,
            RunStatus.TIMED_OUT,
        }
    ),
    RunStatus.CANCELING: frozenset(
        {RunStatus.CANCELED, RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.TIMED_OUT}
    ),
}


def legal_sources(target: RunStatus) -> frozenset[RunStatus]:
    """Every status a run may move to `target` from."""
    return frozenset(src for src, targets in _LEGAL.items() if target in targets)


def can_transition(current: RunStatus, target: RunStatus) -> bool:
    """Whether a run may move from `current` to `target`. Terminal states are final."""
    return target in _LEGAL.get(current, frozenset())


def check_transition(run_id: str, current: RunStatus, target: RunStatus) -> None:
    if not can_transition(current, target):
        raise IllegalTransitionError(run_id, current.value, target.value)


class InstigatorKind(StrEnum):
    SCHEDULE = "schedule"
    SENSOR = "sensor"
    MANUAL = "manual"
    BACKFILL = "backfill"
    RETRY = "retry"


@dataclass(frozen=True, slots=True, kw_only=True)
class Instigator:
    """What asked for a run: a schedule or sensor by name, or a person (manual, backfill)."""

    kind: InstigatorKind
    name: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    run_id: str
    job: str
    status: RunStatus
    instigator: Instigator
    created_at: datetime
    priority: int = 0
    tags: Mapping[str, str] = field(default_factory=dict)
    run_config: Mapping[str, Any] = field(default_factory=dict)
    partition_key: str | None = None
    run_key: str | None = None
    tick_id: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    attempt: int = 1
    parent_run_id: str | None = None
    error: str | None = None
    not_before: datetime | None = None
    node_id: str | None = None

    def moved_to(self, status: RunStatus, *, now: datetime, error: str | None = None) -> Run:
        """The run after a legal move to `status` at `now`; raises IllegalTransitionError."""
        check_transition(self.run_id, self.status, status)
        started_at = self.started_at
        if status is RunStatus.RUNNING and started_at is None:
            started_at = now
        ended_at = now if status.is_terminal else self.ended_at
        return dataclasses.replace(
            self,
            status=status,
            started_at=started_at,
            ended_at=ended_at,
            error=error if error is not None else self.error,
        )


def priority_of(tags: Mapping[str, str], explicit: int | None = None, default: int = 0) -> int:
    """A run's priority: `explicit` if given, else the `tickd/priority` tag, else `default`."""
    if explicit is not None:
        return explicit
    raw = tags.get(PRIORITY_TAG)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        return default
