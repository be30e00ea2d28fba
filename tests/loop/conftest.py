from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from daemon.adapters.memory_store import MemoryStore
from daemon.definitions import Job, RunStatusSensor, Schedule, Sensor
from daemon.loop import Scheduler
from daemon.testing import FakeClock

START = datetime(2026, 6, 1, 0, 0, 30, tzinfo=UTC)


@dataclass
class Defs:
    jobs: dict[str, Job] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    sensors: dict[str, Sensor] = field(default_factory=dict)
    run_status_sensors: dict[str, RunStatusSensor] = field(default_factory=dict)

    @classmethod
    def of(cls, *objs: Any) -> Defs:
        d = cls()
        for o in objs:
            if isinstance(o, Job):
                d.jobs[o.name] = o
            elif isinstance(o, Schedule):
                d.schedules[o.name] = o
                if isinstance(o.job, Job):
                    d.jobs[o.job.name] = o.job
            elif isinstance(o, RunStatusSensor):
                d.run_status_sensors[o.name] = o
            elif isinstance(o, Sensor):
                d.sensors[o.name] = o
        return d


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


class Running:
    """A scheduler running in a task group; `restart` simulates a daemon restart."""

    def __init__(self, tg: Any, store: Any, clock: FakeClock) -> None:
        self.tg = tg
        self.store = store
        self.clock = clock
        self.scheduler: Scheduler | None = None
        self.scope: anyio.CancelScope | None = None

    async def start(self, defs: Defs, **kw: Any) -> Scheduler:
        sched = Scheduler(store=self.store, clock=self.clock, definitions=defs, **kw)
        scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                await sched.run()

        self.tg.start_soon(run)
        self.scheduler, self.scope = sched, scope
        await self.clock.settle()
        await sched.wait_idle()
        # As `tickd serve` does once its scheduler is idle after start-up: what lives
        # long (here: the test process's heap) is out of the collector's view, so that a
        # full collection walks only what ticks made since. Undone when the test ends.
        gc.freeze()
        return sched

    async def stop(self) -> None:
        assert self.scope is not None
        self.scope.cancel()
        await self.clock.settle()
        self.scheduler = None


@pytest.fixture
async def running(store: Any, clock: FakeClock) -> AsyncIterator[Running]:
    try:
        async with anyio.create_task_group() as tg:
            r = Running(tg, store, clock)
            yield r
            tg.cancel_scope.cancel()
    finally:
        gc.unfreeze()


Factory = Callable[..., Any]


@pytest.fixture(autouse=True)
def _quiet_logs() -> Any:
    """Capture log events as dicts instead of rendering them (fast, and inspectable)."""
    import structlog.testing

    with structlog.testing.capture_logs() as logs:
        yield logs
