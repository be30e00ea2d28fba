"""`tickd schedules preview` and `tickd sensors preview`: what a schedule or sensor would
do, evaluated into nothing. `schedules preview` computes fire times only (with what DST
does to them); `sensors preview` calls the sensor once and prints what it would ask for.

JSON shapes (`--json`):
* `schedules preview`: {schedule, cron, timezone, job, from, until, truncated, fires: [{utc,
  local, utc_offset, partition_key, flags, note}]}; flags are offset_changed (the UTC
  offset differs from the previous fire's), moved_from_gap (a fixed-time cron whose wall
  time does not exist fires at the end of the gap), fold_first / fold_second (the wall time
  happens twice; a fixed-time cron fires only at the first).
* `sensors preview`: {sensor, kind, outcome, cursor_before, cursor_source, cursor_after,
  skip_reason, error, requests: [{job, run_key, partition_key, run_config, tags,
  priority}]}; outcome is SUCCESS, SKIPPED or FAILURE (exit 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final

from daemon.adapters.system_clock import SystemClock
from daemon.cli.args import parse_time
from daemon.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    error,
    format_table,
    note,
    print_json,
    run_async,
)
from daemon.cli.history import existing_store
from daemon.cli.instigators import (
    NotFound,
    find_instigator,
    load_quietly,
    store_exists,
)
from daemon.cli.shapes import iso
from daemon.config import Config
from daemon.definitions import RunStatusSensor, Schedule, Sensor
from daemon.domain.cron import parse_cron, zone
from daemon.domain.ids import IdGenerator
from daemon.domain.partitions import TimeWindowPartitions
from daemon.domain.runs import InstigatorKind, Run
from daemon.domain.ticks import InstigatorState, TickStatus
from daemon.errors import RunNotFoundError
from daemon.loading import Registry
from daemon.ports import Store
from daemon.ticking import Evaluator, fire_times, next_fire_time

DEFAULT_PREVIEW: Final = 10
MAX_PREVIEW: Final = 1000
_MICROSECOND: Final = timedelta(microseconds=1)


# ---- schedules preview ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Fire:
    """One upcoming fire time of a schedule, with what DST did to it."""

    at: datetime  # UTC
    local: datetime  # in the schedule's zone
    partition_key: str | None = None
    flags: tuple[str, ...] = ()
    note: str | None = None


def run_schedules_preview(args: argparse.Namespace, config: Config) -> int:
    try:
        definition = find_instigator(load_quietly(config).registry, args)
    except NotFound as exc:
        error(str(exc))
        return EXIT_FAILURE
    assert isinstance(definition, Schedule)
    schedule = definition
    tz = zone(schedule.timezone)
    now = SystemClock().now()
    try:
        start = _time_arg("--from", args.start, now=now, tz=tz)
        until = _time_arg("--until", args.until, now=now, tz=tz) if args.until else None
    except ValueError as exc:
        error(str(exc))
        return EXIT_USAGE
    if until is not None and until <= start:
        error(f"--until {args.until} is not after --from {args.start}; give a later --until")
        return EXIT_USAGE
    count = args.count or (None if until is not None else DEFAULT_PREVIEW)
    if count is not None and count > MAX_PREVIEW:
        error(f"--count {count} is more than {MAX_PREVIEW}; ask for fewer, or use --until")
        return EXIT_USAGE
    limit = count or MAX_PREVIEW
    times = _fire_times(schedule, start - _MICROSECOND, until)
    fires = list(preview_fires(schedule, times, start=start, limit=limit + 1))
    truncated = until is not None and len(fires) > limit
    fires = fires[:limit]
    if truncated:
        note(f"only the first {MAX_PREVIEW} fire times are shown; narrow --from/--until")
    if args.json:
        print_json(
            {
                "schedule": schedule.name,
                "cron": list(schedule.cron),
                "timezone": schedule.timezone,
                "job": schedule.job_name,
                "from": iso(start),
                "until": iso(until),
                "truncated": truncated,
                "fires": [
                    {
                        "utc": iso(f.at),
                        "local": f.local.isoformat(),
                        "utc_offset": _offset_text(f.local.utcoffset()),
                        "partition_key": f.partition_key,
                        "flags": list(f.flags),
                        "note": f.note,
                    }
                    for f in fires
                ],
            }
        )
        return EXIT_OK
    crons = "; ".join(schedule.cron)
    print(f"{schedule.name}: {crons} in {schedule.timezone}, job {schedule.job_name}")
    with_partitions = any(f.partition_key for f in fires)
    rows = [
        (f.local, f.at, *((f.partition_key,) if with_partitions else ()), f.note) for f in fires
    ]
    headers = (f"LOCAL ({schedule.timezone})", "UTC", *(("PARTITION",) * with_partitions), "DST")
    print(format_table(headers, rows))
    return EXIT_OK


def _time_arg(flag: str, value: str, *, now: datetime, tz: tzinfo) -> datetime:
    try:
        return parse_time(value, now=now, zone=tz)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"{flag}: {exc}") from None


def _fire_times(schedule: Schedule, after: datetime, until: datetime | None) -> Iterator[datetime]:
    if until is not None:
        yield from fire_times(schedule, after, until)
        return
    t = after
    while True:
        t = next_fire_time(schedule, t)
        yield t


def preview_fires(
    schedule: Schedule, times: Iterator[datetime], *, start: datetime, limit: int
) -> Iterator[Fire]:
    """Up to `limit` of `times`, each with its local time and its DST flags.

    offset_changed: the UTC offset differs from the previous fire's (for the first fire,
    from the offset at `start`). moved_from_gap: a fixed-time cron whose wall time does not
    exist that day fires at the end of the gap. fold_first / fold_second: the wall time
    happens twice; a fixed-time cron fires only at the first.
    """
    tz = zone(schedule.timezone)
    crons = [parse_cron(expression, schedule.timezone) for expression in schedule.cron]
    closes = _partition_of(schedule)
    previous = start.astimezone(tz).utcoffset()
    for n, at in enumerate(times):
        if n >= limit:
            return
        local = at.astimezone(tz)
        offset = local.utcoffset()
        flags: list[str] = []
        notes: list[str] = []
        if offset != previous:
            flags.append("offset_changed")
            notes.append(f"UTC offset {_offset_text(previous)} -> {_offset_text(offset)}")
        firing = [c for c in crons if c.next_after(at - _MICROSECOND) == at]
        fixed = any(c.is_fixed_time for c in firing)
        wall = local.strftime("%H:%M")
        if (
            fixed
            and _ends_gap(at, tz)
            and not any(_matches_wall(c.expression, local) for c in firing)
        ):
            flags.append("moved_from_gap")
            notes.append("its wall time was skipped (clocks sprang forward): fires as the gap ends")
        if _is_repeated(local):
            if fixed or local.fold == 0:
                flags.append("fold_first")
                notes.append(
                    f"{wall} happens twice (clocks fall back): "
                    + ("fires once, at the first" if fixed else "the first of the two")
                )
            else:
                flags.append("fold_second")
                notes.append(f"{wall} again, the second time (clocks fell back)")
        previous = offset
        yield Fire(
            at=at,
            local=local,
            partition_key=closes(at) if closes else None,
            flags=tuple(flags),
            note="; ".join(notes) or None,
        )


def _partition_of(schedule: Schedule) -> Callable[[datetime], str | None] | None:
    """For a function-less schedule of a time-partitioned job: the key each tick asks for."""
    job = schedule.job
    parts = getattr(job, "partitions", None)
    if schedule.fn is None and isinstance(parts, TimeWindowPartitions):
        return parts.key_closed_by
    return None


def _ends_gap(at: datetime, tz: tzinfo) -> bool:
    """Whether `at` is the instant clocks spring forward (the offset grows at `at`)."""
    before = (at - _MICROSECOND).astimezone(tz).utcoffset()
    after = at.astimezone(tz).utcoffset()
    return before is not None and after is not None and after > before


def _matches_wall(expression: str, local: datetime) -> bool:
    """Whether the cron matches `local`'s wall time itself (in UTC nothing is skipped)."""
    wall = local.replace(tzinfo=UTC, fold=0)
    return parse_cron(expression, "UTC").next_after(wall - _MICROSECOND) == wall


def _is_repeated(local: datetime) -> bool:
    """Whether `local`'s wall time happens twice (a fold when clocks fall back)."""
    other = local.replace(fold=1 - local.fold)
    return other.utcoffset() != local.utcoffset() and (
        other.astimezone(UTC).astimezone(local.tzinfo).replace(tzinfo=None)
        == local.replace(tzinfo=None)
    )


def _offset_text(offset: timedelta | None) -> str:
    if offset is None:
        return "?"
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}"


# ---- sensors preview ------------------------------------------------------------------------


def run_sensors_preview(args: argparse.Namespace, config: Config) -> int:
    registry = load_quietly(config).registry
    try:
        definition = find_instigator(registry, args)
    except NotFound as exc:
        error(str(exc))
        return EXIT_FAILURE
    assert not isinstance(definition, Schedule)
    if isinstance(definition, RunStatusSensor):
        if args.run is None:
            error(
                f"{definition.name!r} is a run-status sensor: name the finished run to "
                "evaluate it for with --run RUN_ID"
            )
            return EXIT_USAGE
        if args.cursor is not None:
            error("run-status sensors have no cursor; leave out --cursor")
            return EXIT_USAGE
    elif args.run is not None:
        error(f"--run is for run-status sensors; {definition.name!r} is a plain sensor")
        return EXIT_USAGE
    return run_async(_sensor_preview, args, config, definition, registry)


async def _sensor_preview(
    args: argparse.Namespace,
    config: Config,
    sensor: Sensor | RunStatusSensor,
    registry: Registry,
) -> int:
    state: InstigatorState | None = None
    finished: Run | None = None
    needs_store = args.cursor is None or args.run is not None
    if needs_store and (args.run is not None or store_exists(config.store)):
        store: Store = await existing_store(config)  # only read from, never written
        try:
            state = (await store.instigator_states()).get((InstigatorKind.SENSOR, sensor.name))
            if args.run is not None:
                finished = await store.get_run(args.run)
                if finished is None:
                    raise RunNotFoundError(args.run)
        finally:
            await store.close()
    if args.cursor is not None:
        cursor, cursor_source = args.cursor, "--cursor"
    elif state is not None and state.cursor is not None:
        cursor, cursor_source = state.cursor, "stored"
    else:
        cursor, cursor_source = None, "none"
    clock = SystemClock()
    evaluator = Evaluator(jobs=registry.jobs, ids=IdGenerator(), now=clock.now)
    with contextlib.redirect_stdout(sys.stderr):  # a sensor that prints keeps stdout clean
        commit = await evaluator.sensor_tick(
            sensor,
            cursor=cursor,
            last_run_key=state.last_run_key if state else None,
            last_tick_at=state.last_tick_at if state else None,
            finished_run=finished,
        )
    tick = commit.tick
    requests = [
        {
            "job": r.job,
            "run_key": r.run_key,
            "partition_key": r.partition_key,
            "run_config": dict(r.run_config),
            "tags": dict(r.tags),
            "priority": r.priority,
        }
        for r in commit.runs
    ]
    if args.json:
        print_json(
            {
                "sensor": sensor.name,
                "kind": "sensor" if isinstance(sensor, Sensor) else "run_status_sensor",
                "outcome": tick.status.value,
                "cursor_before": tick.cursor_before,
                "cursor_source": cursor_source,
                "cursor_after": tick.cursor_after,
                "skip_reason": tick.skip_reason,
                "error": tick.error,
                "requests": requests,
            }
        )
    else:
        print(_sensor_preview_text(sensor.name, tick.status, cursor_source, commit.runs, tick))
    note("preview only: nothing was stored")
    return EXIT_FAILURE if tick.status is TickStatus.FAILURE else EXIT_OK


def _sensor_preview_text(
    name: str, outcome: TickStatus, cursor_source: str, runs: Sequence[Run], tick: Any
) -> str:
    lines = [f"{name}: evaluated with cursor {tick.cursor_before!r} ({cursor_source})"]
    if outcome is TickStatus.FAILURE:
        lines.append(f"failed: {tick.error}")
        return "\n".join(lines)
    if outcome is TickStatus.SKIPPED:
        lines.append(f"skipped: {tick.skip_reason}")
    else:
        lines.append(f"would request {len(runs)} run{'s' if len(runs) != 1 else ''}:")
        rows = [
            (
                r.job,
                r.run_key,
                r.partition_key,
                r.priority or None,
                json.dumps(dict(r.run_config)) if r.run_config else None,
            )
            for r in runs
        ]
        lines.append(format_table(("JOB", "RUN KEY", "PARTITION", "PRIO", "RUN CONFIG"), rows))
    if tick.cursor_after != tick.cursor_before:
        lines.append(f"new cursor: {tick.cursor_after!r}")
    else:
        lines.append("cursor unchanged")
    return "\n".join(lines)
