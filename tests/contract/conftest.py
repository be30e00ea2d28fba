"""One store fixture over every backend; the tests in this folder are the Store contract."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.adapters.memory_store import MemoryStore
from daemon.adapters.sqlite_store import SqliteStore
from daemon.domain.runs import Instigator, InstigatorKind, Run, RunStatus
from daemon.domain.ticks import StateUpdate, Tick, TickCommit, TickStatus
from daemon.ports import Store

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SCHEDULE = Instigator(kind=InstigatorKind.SCHEDULE, name="nightly")


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened: MemoryStore | SqliteStore
    if request.param == "memory":
        opened = MemoryStore()
    else:
        opened = await SqliteStore.open(tmp_path / "tickd.db")
    yield opened
    await opened.close()


MakeRun = Callable[..., Run]
MakeCommit = Callable[..., TickCommit]


@pytest.fixture
def make_run() -> MakeRun:
    """A QUEUED run with a fresh id, created one second after the previous one."""
    counter = itertools.count(1)

    def make(job: str = "job", **fields: Any) -> Run:
        n = next(counter)
        fields.setdefault("run_id", f"run-{n:05d}")
        fields.setdefault("instigator", SCHEDULE)
        fields.setdefault("created_at", T0 + timedelta(seconds=n))
        return Run(job=job, status=RunStatus.QUEUED, **fields)

    return make


@pytest.fixture
def make_commit() -> MakeCommit:
    """A finished tick of `instigator` with `runs`, one minute after the previous one."""
    counter = itertools.count(1)

    def make(
        *runs: Run,
        instigator: Instigator = SCHEDULE,
        state: StateUpdate | None = None,
        **fields: Any,
    ) -> TickCommit:
        n = next(counter)
        at = T0 + timedelta(minutes=n)
        fields.setdefault("tick_id", f"tick-{n:05d}")
        fields.setdefault("status", TickStatus.SUCCESS if runs else TickStatus.SKIPPED)
        fields.setdefault("started_at", at)
        fields.setdefault("ended_at", at + timedelta(seconds=1))
        tick = Tick(instigator=instigator, **fields)
        return TickCommit(tick=tick, runs=runs, state=state or StateUpdate())

    return make
