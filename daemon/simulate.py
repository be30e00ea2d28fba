"""`tickd simulate`: the real scheduler loop on a virtual clock and a scratch store.

The daemon is "up" from `start` to `end` except during the given downtimes; after each
downtime a fresh scheduler starts on the same scratch store, exactly as a restarted
daemon would, so catch-up, skipped ticks and DST behave as they will in production.
Jobs are not executed (no run finishes, so run-status sensors do not fire); sensors are
real calls of the sensor functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import anyio

from daemon.adapters.memory_store import MemoryStore
from daemon.domain.runs import Run
from daemon.domain.ticks import Tick
from daemon.loop import Definitions, Scheduler
from daemon.ports import RunQuery, TickQuery
from daemon.testing import FakeClock, drive


@dataclass(frozen=True, slots=True, kw_only=True)
class Downtime:
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Simulation:
    ticks: tuple[Tick, ...]
    runs: tuple[Run, ...]


def up_periods(
    start: datetime, end: datetime, downtimes: Sequence[Downtime]
) -> list[tuple[datetime, datetime]]:
    """The stretches of [start, end] when the daemon runs, in order."""
    periods = []
    cursor = start
    for down in sorted(downtimes, key=lambda d: d.start):
        if down.end <= cursor or down.start >= end:
            continue
        if down.start > cursor:
            periods.append((cursor, down.start))
        cursor = max(cursor, down.end)
    if cursor < end:
        periods.append((cursor, end))
    return periods


async def simulate(
    definitions: Definitions,
    *,
    start: datetime,
    end: datetime,
    downtimes: Sequence[Downtime] = (),
) -> Simulation:
    store = MemoryStore()
    clock = FakeClock(start)
    for up, down in up_periods(start, end, downtimes):
        await clock.advance_to(up)  # the daemon is down until `up`: nothing runs
        scheduler = Scheduler(store=store, clock=clock, definitions=definitions)
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run)
            await clock.settle()
            await drive(clock, down, scheduler)
            tg.cancel_scope.cancel()
    ticks = await store.list_ticks(TickQuery(limit=None))
    runs = await store.list_runs(RunQuery(limit=None))
    ticks.sort(key=lambda t: (t.scheduled_for or t.started_at, t.instigator.name))
    runs.sort(key=lambda r: (r.created_at, r.run_id))
    return Simulation(ticks=tuple(ticks), runs=tuple(runs))
