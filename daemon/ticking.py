"""Build the tick commits of one schedule or sensor evaluation.

Given a definition, what the store remembers of it and the time, these functions call
the user's function and return the TickCommits to hand to the store. They never write;
the loop commits, `tickd simulate` commits to a scratch store, previews print.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio

from daemon.context import RunStatusContext, ScheduleContext, SensorContext
from daemon.definitions import Job, RunStatusSensor, Schedule, Sensor
from daemon.domain.cron import next_fire, zone
from daemon.domain.firing import (
    Overlap,
    decide_overlap,
    plan_ticks,
)
from daemon.domain.ids import IdGenerator
from daemon.domain.requests import RunRequest
from daemon.domain.runs import Instigator, InstigatorKind, Run
from daemon.domain.ticks import StateUpdate, Tick, TickCommit, TickStatus
from daemon.evaluation import (
    Answer,
    EvaluationError,
    RunDefaults,
    SyncCall,
    build_runs,
    call_user_fn,
    read_answer,
)


def schedule_instigator(name: str) -> Instigator:
    return Instigator(kind=InstigatorKind.SCHEDULE, name=name)


def sensor_instigator(name: str) -> Instigator:
    return Instigator(kind=InstigatorKind.SENSOR, name=name)


def fire_times(schedule: Schedule, after: datetime, until: datetime) -> Iterator[datetime]:
    """Every fire time of the schedule in (after, until], ascending, without repeats.

    Goes through the shared `next_fire` cache: the loop asks for the same next times
    when it plans the heap and when it evaluates, and so do identical schedules.
    """
    t = after
    while True:
        t = next_fire(schedule.cron, schedule.timezone, t)
        if t > until:
            return
        yield t


def next_fire_time(schedule: Schedule, after: datetime) -> datetime:
    return next_fire(schedule.cron, schedule.timezone, after)


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluator:
    """What an evaluation needs besides the definition: jobs, time, ids, thread limits."""

    jobs: Mapping[str, Job]
    ids: IdGenerator
    now: Callable[[], datetime]
    thread_limiter: anyio.CapacityLimiter | None = None
    on_abandon: Callable[[str, SyncCall], None] | None = None

    def _tick(
        self,
        instigator: Instigator,
        *,
        tick_id: str | None = None,
        status: TickStatus,
        started_at: datetime,
        scheduled_for: datetime | None = None,
        skip_reason: str | None = None,
        error: str | None = None,
        cursor_before: str | None = None,
        cursor_after: str | None = None,
    ) -> Tick:
        return Tick(
            tick_id=tick_id or self.ids.new(started_at),
            instigator=instigator,
            status=status,
            started_at=started_at,
            ended_at=self.now(),
            scheduled_for=scheduled_for,
            skip_reason=skip_reason,
            error=error,
            cursor_before=cursor_before,
            cursor_after=cursor_after,
        )

    # ---- schedules -----------------------------------------------------------------

    async def schedule_ticks(
        self,
        schedule: Schedule,
        *,
        last_tick_at: datetime,
        active_runs: Sequence[Run] = (),
        now: datetime | None = None,
    ) -> list[TickCommit]:
        """Every tick of `schedule` due in (last_tick_at, now]: the missed ones as SKIPPED
        with their reason, the others evaluated. Ascending; the last carries the newest
        last_tick_at."""
        now = now or self.now()
        due = list(fire_times(schedule, last_tick_at, now))
        if not due:
            return []
        jitter = timedelta(seconds=schedule.jitter or 0)
        plan = plan_ticks(
            due,
            now=now - jitter,
            catchup=schedule.catchup,
            max_catchup=schedule.max_catchup,
            catchup_window=None
            if schedule.catchup_window is None
            else timedelta(seconds=schedule.catchup_window),
        )
        instigator = schedule_instigator(schedule.name)
        commits: list[TickCommit] = [
            TickCommit(
                tick=self._tick(
                    instigator,
                    status=TickStatus.SKIPPED,
                    started_at=now,
                    scheduled_for=m.scheduled_for,
                    skip_reason=m.reason,
                ),
                state=StateUpdate(last_tick_at=m.scheduled_for),
            )
            for m in plan.missed
        ]
        active = list(active_runs)
        for t in plan.run:
            commit = await self.schedule_tick(schedule, t, active_runs=active)
            active.extend(commit.runs)
            commits.append(commit)
        commits.sort(key=lambda c: c.tick.scheduled_for or now)
        return commits

    async def schedule_tick(
        self, schedule: Schedule, scheduled_for: datetime, *, active_runs: Sequence[Run] = ()
    ) -> TickCommit:
        """Evaluate one tick of `schedule` (its function, or one run of its job)."""
        started = self.now()
        tick_id = self.ids.new(started)
        instigator = schedule_instigator(schedule.name)
        state = StateUpdate(last_tick_at=scheduled_for)
        what = f"schedule {schedule.name!r}"

        def done(status: TickStatus, *, skip: str | None = None, error: str | None = None) -> Tick:
            return self._tick(
                instigator,
                tick_id=tick_id,
                status=status,
                started_at=started,
                scheduled_for=scheduled_for,
                skip_reason=skip,
                error=error,
            )

        try:
            answer = await self._schedule_answer(schedule, scheduled_for)
            if not answer.requests:
                return TickCommit(
                    tick=done(TickStatus.SKIPPED, skip=answer.skip_reason), state=state
                )
            overlap = decide_overlap(schedule.overlap, active_runs)
            if not overlap.create:
                return TickCommit(tick=done(TickStatus.SKIPPED, skip=overlap.reason), state=state)
            runs = build_runs(
                what,
                answer.requests,
                jobs=self.jobs,
                instigator=instigator,
                defaults=RunDefaults(
                    job=schedule.job_name,
                    tags=schedule.tags,
                    priority=schedule.priority,
                    run_config=schedule.run_config,
                    serial=schedule.overlap is not Overlap.ALLOW,
                ),
                now=started,
                ids=self.ids,
                tick_id=tick_id,
                scheduled_for=scheduled_for,
            )
        except EvaluationError as exc:
            return TickCommit(tick=done(TickStatus.FAILURE, error=exc.text), state=state)
        return TickCommit(tick=done(TickStatus.SUCCESS), runs=tuple(runs), state=state)

    async def _schedule_answer(self, schedule: Schedule, scheduled_for: datetime) -> Answer:
        if schedule.fn is None:
            job = self.jobs.get(schedule.job_name)
            if job is not None and job.partitions is not None:
                key_closed_by = getattr(job.partitions, "key_closed_by", None)
                key = key_closed_by(scheduled_for) if key_closed_by else None
                if key is None:
                    return Answer(skip_reason="no partition of the job has closed yet")
                # Keyed by partition: a tick repeated by a DST fold, or a catch-up that
                # lands on the same partition twice, cannot run it twice.
                return Answer(requests=(RunRequest.for_partition(key, run_key=key),))
            return Answer(requests=(RunRequest(),))
        context = ScheduleContext(
            schedule_name=schedule.name,
            scheduled_for=scheduled_for.astimezone(zone(schedule.timezone)),
        )
        what = f"schedule {schedule.name!r}"
        value = await call_user_fn(
            what, schedule.fn, context, time_limit=None, limiter=self.thread_limiter
        )
        return read_answer(what, value)

    # ---- sensors ---------------------------------------------------------------------

    async def sensor_tick(
        self,
        sensor: Sensor | RunStatusSensor,
        *,
        cursor: str | None,
        last_run_key: str | None = None,
        last_tick_at: datetime | None = None,
        finished_run: Run | None = None,
    ) -> TickCommit:
        """Evaluate a sensor once (a run-status sensor for `finished_run`)."""
        started = self.now()
        tick_id = self.ids.new(started)
        instigator = sensor_instigator(sensor.name)
        what = f"sensor {sensor.name!r}"
        context: SensorContext | RunStatusContext
        if isinstance(sensor, RunStatusSensor):
            assert finished_run is not None, "a run-status sensor evaluates for a finished run"
            context = RunStatusContext(sensor_name=sensor.name, run=finished_run)
        else:
            context = SensorContext(
                sensor_name=sensor.name,
                cursor=cursor,
                last_run_key=last_run_key,
                last_tick_at=last_tick_at,
                evaluated_at=started,
            )

        def abandon(call: SyncCall) -> None:
            if self.on_abandon is not None:
                self.on_abandon(sensor.name, call)

        try:
            value = await call_user_fn(
                what,
                sensor.fn,
                context,
                time_limit=sensor.timeout,
                limiter=self.thread_limiter,
                on_abandon=abandon,
            )
            answer = read_answer(what, value)
            default_job = sensor.job_names[0] if len(sensor.job_names) == 1 else None
            requests = answer.requests
            if finished_run is not None:
                # One run-status evaluation per finished run: key requests by that run.
                requests = tuple(
                    r
                    if r.run_key is not None
                    else RunRequest(
                        job=r.job,
                        run_key=f"{finished_run.run_id}#{i}" if i else finished_run.run_id,
                        partition_key=r.partition_key,
                        run_config=r.run_config,
                        tags=r.tags,
                        priority=r.priority,
                    )
                    for i, r in enumerate(requests)
                )
            runs = build_runs(
                what,
                requests,
                jobs=self.jobs,
                instigator=instigator,
                defaults=RunDefaults(job=default_job),
                now=started,
                ids=self.ids,
                tick_id=tick_id,
            )
        except EvaluationError as exc:
            tick = self._tick(
                instigator,
                tick_id=tick_id,
                status=TickStatus.FAILURE,
                started_at=started,
                error=exc.text,
                cursor_before=cursor,
                cursor_after=cursor,
            )
            return TickCommit(tick=tick, state=StateUpdate(last_tick_at=started))
        new_cursor = answer.cursor if answer.set_cursor else cursor
        tick = self._tick(
            instigator,
            tick_id=tick_id,
            status=TickStatus.SUCCESS if runs else TickStatus.SKIPPED,
            started_at=started,
            skip_reason=None if runs else answer.skip_reason,
            cursor_before=cursor,
            cursor_after=new_cursor,
        )
        keyed = [r.run_key for r in runs if r.run_key is not None]
        return TickCommit(
            tick=tick,
            runs=tuple(runs),
            state=StateUpdate(
                cursor=answer.cursor,
                set_cursor=answer.set_cursor,
                last_tick_at=started,
                last_run_key=keyed[-1] if keyed else None,
            ),
        )
