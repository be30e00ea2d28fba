"""Helpers for testing tickd and the definitions written for it.

For your definitions: `evaluate_schedule(schedule, at)`, `evaluate_sensor(sensor,
cursor=...)` and `run_job(job, run_config=..., partition_key=...)` run them as the daemon
would, in this process, without a store.

For the daemon's own tests: `FakeClock` drives time by hand; `await clock.advance(s)`
moves it and wakes every sleeper whose deadline has come, in deadline order, so a test
runs a week of schedules in milliseconds. `drive(clock, until, *loops)` steps one
deadline at a time and lets the loops settle in between.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import anyio
import anyio.lowlevel

from daemon.definitions import Job, Schedule, Sensor
from daemon.domain.ids import IdGenerator
from daemon.domain.runs import Run
from daemon.domain.ticks import TickCommit
from daemon.ticking import Evaluator


class FakeClock:
    """A Clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware start time, e.g. tzinfo=UTC")
        self._now = start.astimezone(UTC)
        # Sleepers wait on plain asyncio futures (tickd runs on anyio's asyncio backend):
        # a week of minutely ticks wakes ten thousand of them. A sleeper cancelled by its
        # cancel scope cancels its future, and is no deadline any more.
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, deadline: datetime) -> None:
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._seq), woken))
        await woken

    @property
    def next_deadline(self) -> datetime | None:
        """The earliest deadline someone sleeps until, if any."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def settle(self, rounds: int = 20) -> None:
        """Let woken tasks run until they block again (a few scheduler passes)."""
        for _ in range(rounds):
            await anyio.lowlevel.checkpoint()

    async def advance(self, seconds: float | timedelta = 0) -> None:
        """Move time forward, waking sleepers one deadline at a time, in order.

        Each sleeper sees `now()` equal to its own deadline when it wakes, and gets to
        run (and possibly sleep again) before time moves past it.
        """
        delta = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        target = self._now + delta
        while True:
            await self.settle()
            nxt = self.next_deadline
            if nxt is None or nxt > target:
                break
            self._now = max(self._now, nxt)
            self._wake_due()
        self._now = target
        await self.settle()

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, woken = heapq.heappop(self._sleepers)
            if not woken.done():
                woken.set_result(None)

    async def advance_to(self, when: datetime) -> None:
        await self.advance(max(timedelta(0), when - self._now))

    async def jump_to(self, when: datetime) -> None:
        """Move time to `when` at once: every sleeper due by then wakes late, seeing
        `when` (a busy host, a suspended VM)."""
        self._now = max(self._now, when)
        self._wake_due()
        await self.settle()


class _Idles(Protocol):
    async def wait_idle(self) -> None: ...


async def drive(clock: FakeClock, until: datetime, *loops: _Idles) -> None:
    """Move `clock` to `until` one sleeper's deadline at a time, letting `loops` finish
    what each deadline started (store I/O included) before time moves on."""
    while True:
        for loop in loops:
            await loop.wait_idle()
        nxt = clock.next_deadline
        if nxt is None or nxt > until:
            break
        clock._now = max(clock._now, nxt)
        clock._wake_due()
        await asyncio.sleep(0)  # the woken run (anyio's checkpoint, minus its look-up)
    await clock.advance_to(until)
    for loop in loops:
        await loop.wait_idle()


# ---- helpers for testing your own definitions ------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    """What one evaluation of a schedule or sensor decided, without touching a store."""

    status: str  # SUCCESS, SKIPPED or FAILURE
    runs: tuple[Run, ...]  # the runs it would create, with tags, priority, run_key filled in
    skip_reason: str | None
    error: str | None
    cursor: str | None  # a sensor's cursor after the evaluation


def _evaluation(commit: TickCommit) -> Evaluation:
    tick = commit.tick
    return Evaluation(
        status=tick.status.value,
        runs=commit.runs,
        skip_reason=tick.skip_reason,
        error=tick.error,
        cursor=tick.cursor_after,
    )


def _jobs_of(*jobs: Job | str | None) -> dict[str, Job]:
    return {j.name: j for j in jobs if isinstance(j, Job)}


def evaluate_schedule(
    schedule: Schedule, at: datetime, *, jobs: Mapping[str, Job] | None = None
) -> Evaluation:
    """Evaluate `schedule` for its tick at `at` (aware), as the daemon would: its function
    is called with `context.scheduled_for == at`; `runs` holds what it would enqueue."""
    if at.tzinfo is None:
        raise ValueError("evaluate_schedule needs an aware time, e.g. tzinfo=UTC")
    registry = dict(jobs or _jobs_of(schedule.job))
    evaluator = Evaluator(jobs=registry, ids=IdGenerator(), now=lambda: at)
    commit = anyio.run(_schedule_tick, evaluator, schedule, at, backend="asyncio")
    return _evaluation(commit)


async def _schedule_tick(evaluator: Evaluator, schedule: Schedule, at: datetime) -> TickCommit:
    return await evaluator.schedule_tick(schedule, at.astimezone(UTC))


def evaluate_sensor(
    sensor: Sensor,
    *,
    cursor: str | None = None,
    at: datetime | None = None,
    jobs: Mapping[str, Job] | None = None,
) -> Evaluation:
    """Evaluate `sensor` once with `cursor`, as the daemon would; nothing is stored."""
    when = at or datetime(2026, 1, 1, tzinfo=UTC)
    registry = dict(jobs or _jobs_of(*sensor.jobs))
    evaluator = Evaluator(jobs=registry, ids=IdGenerator(), now=lambda: when)
    commit = anyio.run(_sensor_tick, evaluator, sensor, cursor, backend="asyncio")
    return _evaluation(commit)


async def _sensor_tick(evaluator: Evaluator, sensor: Sensor, cursor: str | None) -> TickCommit:
    return await evaluator.sensor_tick(sensor, cursor=cursor)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobResult:
    """How an in-process run of a job went, and what it logged."""

    success: bool
    value: Any
    error: BaseException | None
    logs: tuple[str, ...]


def run_job(
    job: Job,
    *,
    run_config: Mapping[str, Any] | None = None,
    partition_key: str | None = None,
    tags: Mapping[str, str] | None = None,
    attempt: int = 1,
    raise_on_error: bool = True,
) -> JobResult:
    """Run `job` in this process (sync or async) with a real JobContext: `context.log`
    lines are collected in `JobResult.logs`, the partition window is filled in."""
    from daemon.job_context import job_context_for

    logs: list[str] = []
    if partition_key is not None and job.partitions is not None:
        job.partitions.validate_key(partition_key)
    context = job_context_for(
        job,
        run_id="test-run",
        run_config=dict(run_config or {}),
        tags=dict(tags or {}),
        partition_key=partition_key,
        attempt=attempt,
        log_sink=lambda stream, text: logs.append(text),
    )
    try:
        if job.is_async:
            value = anyio.run(_call_async, job, context, backend="asyncio")
        else:
            value = job.fn(context)
    except Exception as exc:
        if raise_on_error:
            raise
        return JobResult(success=False, value=None, error=exc, logs=tuple(logs))
    return JobResult(success=True, value=value, error=None, logs=tuple(logs))


async def _call_async(job: Job, context: Any) -> Any:
    return await job.fn(context)
