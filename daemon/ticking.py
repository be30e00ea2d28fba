"""Build the tick commits of one schedule or sensor evaluation.

Given a definition, what the store remembers of it and the time, these functions call
the user's function and return the TickCommits to hand to the store. They never write;
the loop commits, `tickd simulate` commits to a scratch store, previews print.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio

from daemon.context import RunStatusContext, ScheduleContext, SensorContext
from daemon.definitions import Job, RunStatusSensor, Schedule, Sensor
from daemon.domain.cron import fire_times_between, next_fire, zone
from daemon.domain.firing import Overlap, TickPlan, decide_overlap, plan_ticks
from daemon.domain.ids import IdGenerator
from daemon.domain.requests import RunRequest, default_run_key
from daemon.domain.runs import Instigator, InstigatorKind, Run, RunStatus
from daemon.domain.ticks import KeyedRequests, StateUpdate, Tick, TickCommit, TickStatus
from daemon.evaluation import (
    Answer,
    EvaluationError,
    RunDefaults,
    SyncCall,
    _Base,
    build_runs,
    call_user_fn,
    job_base,
    new_run,
    read_answer,
    requested_runs,
)
from daemon.slotted import keyword_constructor

_ONE_RUN = Answer(requests=(RunRequest(),))
_new_tick = keyword_constructor(Tick)
_new_commit = keyword_constructor(TickCommit)
_new_state = keyword_constructor(StateUpdate)
# instigator, job name, tags, priority, run config
_Template = tuple[Instigator, str, dict[str, str], int, Mapping[str, Any]]


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


def is_plain(schedule: Schedule) -> bool:
    """A schedule without a function and with overlap='allow': its ticks run no user code
    and read nothing (`Evaluator.plain_schedule_ticks`)."""
    return schedule.fn is None and schedule.overlap is Overlap.ALLOW


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluator:
    """What an evaluation needs besides the definition: jobs, time, ids, thread limits."""

    jobs: Mapping[str, Job]
    ids: IdGenerator
    now: Callable[[], datetime]
    thread_limiter: anyio.CapacityLimiter | None = None
    on_abandon: Callable[[str, SyncCall], None] | None = None
    # Many requests that each have a run_key of their own are left for the store to build
    # into runs once it knows which are not made yet (`KeyedRequests`); off, every request
    # is built now (previews show them all).
    keyed: bool = False
    _parts: dict[str, tuple[Schedule, Instigator, RunDefaults, dict[str | None, _Base]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _templates: dict[str, tuple[Schedule, _Template]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

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
        plan = self._plan(schedule, last_tick_at, now)
        if plan is None:
            return []
        commits = self._missed(schedule, plan, now)
        active = list(active_runs)
        for t in plan.run:
            commit = await self.schedule_tick(schedule, t, active_runs=active)
            active.extend(commit.runs)
            commits.append(commit)
        if plan.missed:
            commits.sort(key=lambda c: c.tick.scheduled_for or now)
        return commits

    def plain_schedule_ticks(
        self, schedule: Schedule, *, last_tick_at: datetime, now: datetime | None = None
    ) -> list[TickCommit]:
        """`schedule_ticks` of a schedule without a function and with overlap='allow':
        it runs no user code and reads nothing, so it needs no await."""
        assert is_plain(schedule), schedule.name
        now = now or self.now()
        plan = self._plan(schedule, last_tick_at, now)
        if plan is None:
            return []
        commits = self._missed(schedule, plan, now)
        template = self._plain_template(schedule)
        for t in plan.run:
            if template is None:  # a partitioned or unknown job: the general path
                answer = self._plain_answer(schedule, t)
                commit = self._schedule_commit(schedule, t, answer, (), now, self.ids.new(now))
            else:
                commit = self._plain_commit(template, t, now)
            commits.append(commit)
        if plan.missed:
            commits.sort(key=lambda c: c.tick.scheduled_for or now)
        return commits

    def _plan(self, schedule: Schedule, last_tick_at: datetime, now: datetime) -> TickPlan | None:
        # Schedules due together mostly share crons, zone, policy and last tick: plan
        # once for all of them (remembered for one `now` at a time).
        key = (
            schedule.cron,
            schedule.timezone,
            last_tick_at,
            schedule.jitter,
            schedule.catchup,
            schedule.max_catchup,
            schedule.catchup_window,
        )
        memo = self._memo
        if memo.get("plans_at") != now:
            memo["plans_at"], memo["plans"] = now, {}
        plans: dict[object, TickPlan | None] = memo["plans"]
        if key in plans:
            return plans[key]
        due = fire_times_between(schedule.cron, schedule.timezone, last_tick_at, now)
        plan = None
        if due:
            plan = plan_ticks(
                due,
                now=now - timedelta(seconds=schedule.jitter) if schedule.jitter else now,
                catchup=schedule.catchup,
                max_catchup=schedule.max_catchup,
                catchup_window=None
                if schedule.catchup_window is None
                else timedelta(seconds=schedule.catchup_window),
            )
        if len(plans) < 1024:
            plans[key] = plan
        return plan

    def _missed(self, schedule: Schedule, plan: TickPlan, now: datetime) -> list[TickCommit]:
        if not plan.missed:
            return []
        instigator = schedule_instigator(schedule.name)
        return [
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

    async def schedule_tick(
        self, schedule: Schedule, scheduled_for: datetime, *, active_runs: Sequence[Run] = ()
    ) -> TickCommit:
        """Evaluate one tick of `schedule` (its function, or one run of its job)."""
        started = self.now()
        tick_id = self.ids.new(started)
        try:
            if schedule.fn is None:
                answer = self._plain_answer(schedule, scheduled_for)
            else:
                answer = await self._schedule_answer(schedule, scheduled_for)
        except EvaluationError as exc:
            return self._schedule_commit(
                schedule, scheduled_for, exc, active_runs, started, tick_id
            )
        return self._schedule_commit(schedule, scheduled_for, answer, active_runs, started, tick_id)

    def _schedule_commit(
        self,
        schedule: Schedule,
        scheduled_for: datetime,
        answer: Answer | EvaluationError,
        active_runs: Sequence[Run],
        started: datetime,
        tick_id: str,
    ) -> TickCommit:
        """The commit of one schedule tick, given what its function answered."""
        instigator, defaults, bases = self._schedule_parts(schedule)
        state = StateUpdate(last_tick_at=scheduled_for)
        status = TickStatus.SUCCESS
        skip: str | None = None
        error: str | None = None
        runs: list[Run] = []
        try:
            if isinstance(answer, EvaluationError):
                raise answer
            if not answer.requests:
                status, skip = TickStatus.SKIPPED, answer.skip_reason
            elif (
                active_runs
                and not (overlap := decide_overlap(schedule.overlap, active_runs)).create
            ):
                status, skip = TickStatus.SKIPPED, overlap.reason
            else:
                runs = build_runs(
                    f"schedule {schedule.name!r}",
                    answer.requests,
                    jobs=self.jobs,
                    instigator=instigator,
                    defaults=defaults,
                    now=started,
                    ids=self.ids,
                    tick_id=tick_id,
                    scheduled_for=scheduled_for,
                    bases=bases,
                )
        except EvaluationError as exc:
            status, error = TickStatus.FAILURE, exc.text
        tick = self._tick(
            instigator,
            tick_id=tick_id,
            status=status,
            started_at=started,
            scheduled_for=scheduled_for,
            skip_reason=skip,
            error=error,
        )
        return TickCommit(tick=tick, runs=tuple(runs), state=state)

    def _schedule_parts(
        self, schedule: Schedule
    ) -> tuple[Instigator, RunDefaults, dict[str | None, _Base]]:
        """A schedule's instigator, run defaults and `build_runs` bases, built once."""
        parts = self._parts.get(schedule.name)
        if parts is None or parts[0] is not schedule:
            parts = (
                schedule,
                schedule_instigator(schedule.name),
                RunDefaults(
                    job=schedule.job_name,
                    tags=schedule.tags,
                    priority=schedule.priority,
                    run_config=schedule.run_config,
                    serial=schedule.overlap is not Overlap.ALLOW,
                ),
                {},
            )
            self._parts[schedule.name] = parts
        return parts[1], parts[2], parts[3]

    def _plain_template(self, schedule: Schedule) -> _Template | None:
        """What every tick of a plain schedule of an unpartitioned job creates: one run
        with the job's and the schedule's tags, priority and config, as `build_runs`
        makes them for a `RunRequest()`. None for a partitioned or unknown job."""
        known = self._templates.get(schedule.name)
        if known is not None and known[0] is schedule:
            return known[1]
        instigator, defaults, bases = self._schedule_parts(schedule)
        job_name = schedule.job_name
        base = bases.get(job_name)
        if base is None:
            job = self.jobs.get(job_name)
            if job is None:
                return None
            base = bases[job_name] = job_base(
                f"schedule {schedule.name!r}", job_name, self.jobs, instigator, defaults
            )
        if base[1].partitions is not None:
            return None
        made = (instigator, base[0], base[2], base[3], defaults.run_config or {})
        self._templates[schedule.name] = (schedule, made)
        return made

    def _plain_commit(
        self, template: _Template, scheduled_for: datetime, started: datetime
    ) -> TickCommit:
        """The commit of one tick of a plain schedule (see `_plain_template`)."""
        instigator, job_name, tags, priority, run_config = template
        tick_id, run_id = self.ids.many(started, 2)  # in the order of the general path
        run = new_run(
            run_id=run_id,
            job=job_name,
            status=RunStatus.QUEUED,
            instigator=instigator,
            created_at=started,
            priority=priority,
            tags=dict(tags),
            run_config=dict(run_config),
            run_key=self._run_key(scheduled_for),
            tick_id=tick_id,
        )
        tick = _new_tick(
            tick_id=tick_id,
            instigator=instigator,
            status=TickStatus.SUCCESS,
            started_at=started,
            ended_at=started,  # nothing to wait for: decided as it started
            scheduled_for=scheduled_for,
        )
        return _new_commit(tick=tick, runs=(run,), state=_new_state(last_tick_at=scheduled_for))

    def _run_key(self, scheduled_for: datetime) -> str:
        """`default_run_key`, remembered for the last tick time (a fan-out asks for one
        time thousands of times)."""
        memo = self._memo
        if memo.get("run_key_for") != scheduled_for:
            memo["run_key"] = default_run_key(scheduled_for)
            memo["run_key_for"] = scheduled_for
        key: str = memo["run_key"]
        return key

    def _plain_answer(self, schedule: Schedule, scheduled_for: datetime) -> Answer:
        """What a schedule without a function asks for: one run of its job, keyed by the
        partition the tick closes if the job is partitioned."""
        job = self.jobs.get(schedule.job_name)
        if job is not None and job.partitions is not None:
            key_closed_by = getattr(job.partitions, "key_closed_by", None)
            key = key_closed_by(scheduled_for) if key_closed_by else None
            if key is None:
                return Answer(skip_reason="no partition of the job has closed yet")
            # Keyed by partition: a tick repeated by a DST fold, or a catch-up that
            # lands on the same partition twice, cannot run it twice.
            return Answer(requests=(RunRequest.for_partition(key, run_key=key),))
        return _ONE_RUN

    async def _schedule_answer(self, schedule: Schedule, scheduled_for: datetime) -> Answer:
        assert schedule.fn is not None
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
            made = requested_runs(
                what,
                requests,
                jobs=self.jobs,
                instigator=instigator,
                defaults=RunDefaults(job=default_job),
                now=started,
                ids=self.ids,
                tick_id=tick_id,
                keyed=self.keyed,
            )
            runs, keyed = ([], made) if isinstance(made, KeyedRequests) else (made, None)
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
            status=TickStatus.SUCCESS if runs or keyed else TickStatus.SKIPPED,
            started_at=started,
            skip_reason=None if runs or keyed else answer.skip_reason,
            cursor_before=cursor,
            cursor_after=new_cursor,
        )
        run_keys = keyed.run_keys if keyed else [r.run_key for r in runs if r.run_key is not None]
        return TickCommit(
            tick=tick,
            runs=tuple(runs),
            state=StateUpdate(
                cursor=answer.cursor,
                set_cursor=answer.set_cursor,
                last_tick_at=started,
                last_run_key=run_keys[-1] if run_keys else None,
            ),
            keyed=keyed,
        )
