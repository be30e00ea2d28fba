"""`tickd why`: what each tick of a schedule or sensor around a time decided, and why.

Pure over what the store holds: the recorded ticks, the runs they touched, the
instigator's state and, for schedules, the fire times the cron says were due. A fire
time with no tick is explained too (stopped, not yet defined, not yet due).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from daemon.definitions import RunStatusSensor, Schedule, Sensor
from daemon.domain.runs import Run
from daemon.domain.ticks import InstigatorState, InstigatorStatus, Outcome, Tick, TickStatus
from daemon.ticking import fire_times

_BY = {
    Outcome.DEDUPLICATED_RUN_KEY: "a run with the same run_key already exists",
    Outcome.DEDUPLICATED_PARTITION: "the partition already has an active run",
    Outcome.DEDUPLICATED_IN_TICK: "the same request appeared twice in this tick",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    """One tick (or one due time without a tick) and its explanation."""

    at: datetime  # scheduled_for for schedules, evaluation time for sensors
    verdict: str  # ran | deduplicated | skipped | failed | no tick
    reason: str
    tick_id: str | None = None
    runs: tuple[dict[str, str | None], ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    name: str
    kind: str
    around: datetime
    status: str  # running / stopped, and whose choice
    lines: tuple[Line, ...]
    notes: tuple[str, ...] = ()


def explain(
    *,
    name: str,
    definition: Schedule | Sensor | RunStatusSensor | None,
    state: InstigatorState | None,
    ticks: Sequence[Tick],
    runs: Mapping[str, Run],
    around: datetime,
    window: timedelta,
) -> Explanation:
    """Explain the ticks of `name` within `window` of `around`."""
    notes: list[str] = []
    if definition is None:
        kind = ticks[0].instigator.kind.value if ticks else "unknown"
        notes.append(
            f"{name!r} is not in the loaded definitions (removed or renamed?); "
            "its history is shown as stored"
        )
        status = "not defined"
    else:
        kind = "schedule" if isinstance(definition, Schedule) else "sensor"
        status = _status(definition, state)
    lines = [_tick_line(t, runs) for t in ticks]
    if isinstance(definition, Schedule):
        lines += _missing(definition, state, ticks, around, window)
        if state is not None and state.status is InstigatorStatus.STOPPED:
            notes.append(
                f"stopped by an operator at {_fmt(state.updated_at)}: stopped schedules do not "
                "tick, and `tickd schedules start` does not catch up the stopped stretch"
            )
    elif isinstance(definition, Sensor):
        notes.append(
            f"a sensor ticks at most every {definition.minimum_interval:g}s "
            f"(minimum_interval) and may take up to {definition.timeout:g}s (timeout)"
        )
    elif isinstance(definition, RunStatusSensor):
        watched = ", ".join(definition.watched_job_names) or "every job"
        statuses = ", ".join(s.value for s in definition.statuses)
        notes.append(f"a run-status sensor ticks when a run of {watched} ends {statuses}")
    lines.sort(key=lambda line: line.at)
    return Explanation(
        name=name, kind=kind, around=around, status=status, lines=tuple(lines), notes=tuple(notes)
    )


def _status(definition: Schedule | Sensor | RunStatusSensor, state: InstigatorState | None) -> str:
    if state is not None and state.status is not None:
        return f"{state.status.value.lower()} (set by an operator)"
    return f"{definition.default_status.value.lower()} (its default_status)"


def _tick_line(tick: Tick, runs: Mapping[str, Run]) -> Line:
    at = tick.scheduled_for or tick.started_at
    touched = []
    for d in tick.decisions:
        run = runs.get(d.run_id)
        touched.append(
            {
                "run_id": d.run_id,
                "outcome": d.outcome.value,
                "status": run.status.value if run is not None else "purged",
                "run_key": d.run_key,
                "partition_key": d.partition_key,
            }
        )
    if tick.status is TickStatus.FAILURE:
        verdict, reason = "failed", (tick.error or "failed").splitlines()[0]
    elif tick.status is TickStatus.SKIPPED:
        verdict, reason = "skipped", tick.skip_reason or "skipped"
    elif tick.run_ids:
        verdict = "ran"
        parts = [
            f"created run {d['run_id']} (now {d['status']})"
            for d in touched
            if d["outcome"] == Outcome.CREATED.value
        ]
        dups = [d for d in tick.decisions if d.outcome is not Outcome.CREATED]
        parts += [f"deduplicated by run {d.run_id}: {_BY[d.outcome]}" for d in dups]
        reason = "; ".join(parts)
    else:
        verdict = "deduplicated"
        reason = (
            "; ".join(f"deduplicated by run {d.run_id}: {_BY[d.outcome]}" for d in tick.decisions)
            or "no run requested"
        )
    return Line(at=at, verdict=verdict, reason=reason, tick_id=tick.tick_id, runs=tuple(touched))


def _missing(
    schedule: Schedule,
    state: InstigatorState | None,
    ticks: Sequence[Tick],
    around: datetime,
    window: timedelta,
) -> list[Line]:
    """Due times in the window that have no tick, each with the likeliest reason."""
    recorded = {t.scheduled_for for t in ticks if t.scheduled_for is not None}
    first_tick = min(recorded) if recorded else None
    last = state.last_tick_at if state is not None else None
    out = []
    for due in fire_times(schedule, around - window, around + window):
        if due in recorded:
            continue
        if last is not None and due > last:
            reason = (
                "not evaluated yet: the daemon has not reached this tick "
                f"(last tick {_fmt(last)}); if that is long ago, is the daemon running? "
                "see `tickd status`"
            )
        elif state is not None and state.status is InstigatorStatus.STOPPED:
            reason = "the schedule was stopped"
        elif first_tick is None or due < first_tick:
            reason = (
                "before the schedule's first tick: a schedule does not catch up on the time "
                "before tickd first loaded it"
            )
        else:
            reason = (
                "no tick recorded: the schedule was stopped then, or its tick was purged "
                "(retention)"
            )
        out.append(Line(at=due, verdict="no tick", reason=reason))
    return out


def _fmt(t: datetime | None) -> str:
    return "never" if t is None else t.isoformat()
