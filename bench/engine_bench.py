"""Scheduling engine benchmarks on a real SQLite file.

W1 fan-out: N schedules with `* * * * *` due at one minute boundary; the lag from the
   boundary to the commit of each schedule's run (p50, p99). Targets: 1,000 → p99 ≤ 50 ms;
   10,000 → p99 ≤ 250 ms. The clock is the real one shifted so that a boundary comes
   three seconds after start (nothing waits a minute), as for a daemon that has been
   running: it decides the schedules due at a boundary up to a second ahead.
W2 sensor dedup: a sensor returning every key it returned before plus 100 new, up to 2,000
   keys; each tick's evaluation and commit. Target ≤ 20 ms a tick, one run per key.
Also: the Python cost of evaluating one due plain schedule, without the store.

Run: .venv/bin/python -m bench.engine_bench [--quick]
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import structlog

from bench.common import Figure, percentile, print_table, summarise
from daemon import RunRequest, Schedule, SensorResult, job, sensor
from daemon.adapters.sqlite_store import SqliteStore
from daemon.domain.ids import IdGenerator
from daemon.domain.ticks import Tick, TickCommit
from daemon.loading import Registry
from daemon.loop import Scheduler
from daemon.ports import PreparedTicks, RunQuery
from daemon.ticking import Evaluator


class ShiftedClock:
    """The system clock moved so that a chosen instant comes `lead` seconds from now."""

    def __init__(self, target: datetime, lead: float) -> None:
        self.offset = target - datetime.now(UTC) - timedelta(seconds=lead)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    async def sleep_until(self, deadline: datetime) -> None:
        while (remaining := (deadline - self.now()).total_seconds()) > 0:  # noqa: ASYNC110
            await anyio.sleep(remaining)


class CommitTimer:
    """Wraps a store; records when each tick's commit returned."""

    def __init__(self, store: SqliteStore, clock: ShiftedClock) -> None:
        self._store = store
        self._clock = clock
        self.committed: list[tuple[datetime, datetime]] = []  # (scheduled_for, committed_at)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def commit_ticks(self, commits: Sequence[TickCommit], **kw: Any) -> Any:
        return self._record(await self._store.commit_ticks(commits, **kw))

    async def commit_prepared(self, prepared: PreparedTicks, **kw: Any) -> Any:
        return self._record(await self._store.commit_prepared(prepared, **kw))

    def _record(self, ticks: list[Tick]) -> list[Tick]:
        done = self._clock.now()
        self.committed.extend((t.scheduled_for, done) for t in ticks if t.scheduled_for)
        return ticks


@job(executor="async")
async def noop(context: Any) -> None:
    pass


@contextmanager
def daemon_heap() -> Iterator[None]:
    """The heap as `tickd serve` keeps it once started (`daemon.heap_frozen`): what lives
    long is frozen, so a full collection does not walk it, nor what earlier workloads of
    this process left behind."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


LEAD = 3.0


async def fan_out(n: int, directory: Path, lead: float = LEAD) -> list[float]:
    """Lags in seconds from the boundary to each run's commit."""
    store = await SqliteStore.open(directory / f"w1-{n}.db")
    boundary = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    # One second of lead left a busy machine too little after start-up (registering and
    # reading 10,000 schedules) to decide the boundary ahead, as a running daemon does.
    clock = ShiftedClock(boundary, lead=lead)
    timed = CommitTimer(store, clock)
    schedules = {
        f"s{i:05}": Schedule(name=f"s{i:05}", cron="* * * * *", job=noop) for i in range(n)
    }
    registry = Registry(jobs={"noop": noop}, schedules=schedules)
    scheduler = Scheduler(store=timed, clock=clock, definitions=registry)  # type: ignore[arg-type]
    with daemon_heap():
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run)
            with anyio.fail_after(60):
                while len(timed.committed) < n:  # noqa: ASYNC110 - watching a count
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    runs = await store.list_runs(RunQuery(limit=None))
    assert len(runs) == n, f"expected {n} runs, found {len(runs)}"
    await store.close()
    return [(done - due).total_seconds() for due, done in timed.committed if due == boundary]


async def sensor_dedup(directory: Path) -> tuple[list[float], int, int]:
    """Per-tick seconds; runs created; distinct keys."""
    store = await SqliteStore.open(directory / "w2.db")
    keys: list[str] = []

    @sensor(job=noop, minimum_interval=1)
    def growing(context: Any) -> SensorResult:
        start = len(keys)
        keys.extend(f"file-{i:05}" for i in range(start, start + 100))
        return SensorResult(run_requests=[RunRequest(run_key=k) for k in keys], cursor=keys[-1])

    now = datetime(2026, 3, 2, tzinfo=UTC)
    # As the scheduler's: many keyed requests are built into runs only once the store
    # has found which are not made yet.
    evaluator = Evaluator(jobs={"noop": noop}, ids=IdGenerator(), now=lambda: now, keyed=True)
    cursor: str | None = None
    durations = []
    with daemon_heap():
        for _ in range(20):
            t0 = time.perf_counter()
            commit = await evaluator.sensor_tick(growing, cursor=cursor)
            [tick] = await store.commit_ticks([commit])
            durations.append(time.perf_counter() - t0)
            cursor = tick.cursor_after
            now += timedelta(seconds=1)
    runs = await store.list_runs(RunQuery(limit=None))
    await store.close()
    return durations, len(runs), len({r.run_key for r in runs})


def evaluation_us(n: int = 10_000) -> float:
    """Python cost of evaluating one due plain schedule (W1's part before the store):
    n `* * * * *` schedules due at one boundary, each evaluated once, fresh evaluator."""
    boundary = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    schedules = [Schedule(name=f"e{i:05}", cron="* * * * *", job=noop) for i in range(n)]
    evaluator = Evaluator(jobs={"noop": noop}, ids=IdGenerator(), now=lambda: boundary)
    last = boundary - timedelta(seconds=30)
    t0 = time.perf_counter()
    for s in schedules:
        evaluator.plain_schedule_ticks(s, last_tick_at=last)
    return 1e6 * (time.perf_counter() - t0) / n


def next_time_ms(n: int = 10_000) -> float:
    """Next fire time for n schedules sharing one (cron, zone), from a cold cache."""
    from daemon.domain import cron

    cron.clear_fire_cache()
    after = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)
    t0 = time.perf_counter()
    for _ in range(n):
        cron.next_fire(("*/5 * * * *",), "Europe/Berlin", after)
    return 1000 * (time.perf_counter() - t0)


async def main(quick: bool) -> list[Figure]:
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        logger_factory=structlog.ReturnLoggerFactory(),
    )
    figures = [
        Figure("next fire time, 10,000 identical schedules", next_time_ms(), "ms", "≤ 50 ms"),
        Figure("W1 evaluation of one due schedule (Python)", evaluation_us(), "us", ""),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for n, target in ((1_000, "p99 ≤ 50 ms"), (10_000, "p99 ≤ 250 ms")):
            if quick and n > 1_000:
                continue
            lags = await fan_out(n, directory)
            figures.append(
                Figure(f"W1 fan-out {n:,}: lag p50", 1000 * percentile(lags, 50), "ms", "")
            )
            figures.append(
                Figure(f"W1 fan-out {n:,}: lag p99", 1000 * percentile(lags, 99), "ms", target)
            )
        durations, created, distinct = await sensor_dedup(directory)
        assert created == distinct == 2_000, (created, distinct)
        figures.append(
            summarise(
                "W2 sensor dedup: tick (2,000 keys)", [1000 * d for d in durations], "ms", "≤ 20 ms"
            )
        )
        figures.append(
            Figure("W2 sensor dedup: slowest tick", 1000 * max(durations), "ms", "≤ 20 ms")
        )
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="skip the 10,000 fan-out")
    args = parser.parse_args()
    print_table("scheduling engine", anyio.run(main, args.quick, backend="asyncio"))
