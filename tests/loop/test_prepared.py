"""Plain schedules due together at a boundary are decided ahead of it and only stamped
and committed when it comes; a decision that no longer holds is made again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon import Schedule, job
from daemon.domain.ticks import InstigatorStatus, StateUpdate, Tick, TickCommit, TickStatus
from daemon.loop import PREPARE_AHEAD, PREPARE_COUNT
from daemon.ports import RunQuery, TickQuery
from daemon.testing import drive
from daemon.ticking import schedule_instigator

from .conftest import Defs

pytestmark = pytest.mark.anyio

BOUNDARY = datetime(2026, 6, 1, 0, 1, tzinfo=UTC)  # START is 00:00:30
N = PREPARE_COUNT + 8


@job
def noop(context):  # pragma: no cover - never executed here
    pass


@job
def other(context):  # pragma: no cover
    pass


def fan_out(**kw):
    return Defs.of(*[Schedule(name=f"s{i:02}", cron="* * * * *", job=noop, **kw) for i in range(N)])


async def prepared_before_boundary(running, clock, defs):
    sched = await running.start(defs)
    await drive(clock, BOUNDARY - PREPARE_AHEAD / 2, sched)
    assert len(sched._prepared) == N  # decided, not committed
    return sched


async def test_decided_ahead_stamped_and_committed_at_the_late_boundary(running, store, clock):
    sched = await prepared_before_boundary(running, clock, fan_out())
    assert await store.list_runs(RunQuery(limit=None)) == []
    late = BOUNDARY + timedelta(milliseconds=3)
    await clock.jump_to(late)
    await sched.wait_idle()
    runs = await store.list_runs(RunQuery(limit=None))
    ticks = await store.list_ticks(TickQuery(limit=None))
    assert len(runs) == len(ticks) == N
    assert len({r.run_id for r in runs}) == len({t.tick_id for t in ticks}) == N
    assert {r.created_at for r in runs} == {late}
    assert {(t.status, t.scheduled_for, t.started_at, t.ended_at) for t in ticks} == {
        (TickStatus.SUCCESS, BOUNDARY, late, late)
    }
    assert {r.run_key for r in runs} == {"2026-06-01T00:01:00+00:00"}
    assert {r.tick_id for r in runs} == {t.tick_id for t in ticks}
    # and the next boundary works the same way
    await drive(clock, BOUNDARY + timedelta(minutes=1), sched)
    assert len(await store.list_runs(RunQuery(limit=None))) == 2 * N


def spy_on_prepared_commits(store, monkeypatch):
    """The number of commits in each `commit_prepared` call."""
    calls = []
    real = store.commit_prepared

    async def spy(prepared, **kw):
        calls.append(len(prepared.commits))
        return await real(prepared, **kw)

    monkeypatch.setattr(store, "commit_prepared", spy)
    return calls


async def test_a_boundary_decided_whole_is_committed_as_the_store_prepared_it(
    running, store, clock, monkeypatch
):
    calls = spy_on_prepared_commits(store, monkeypatch)
    sched = await prepared_before_boundary(running, clock, fan_out())
    await drive(clock, BOUNDARY, sched)
    assert calls == [N]
    assert len(await store.list_runs(RunQuery(limit=None))) == N
    await drive(clock, BOUNDARY + timedelta(minutes=1), sched)
    assert calls == [N, N]


async def test_a_schedule_stopped_after_it_was_decided_does_not_run(
    running, store, clock, monkeypatch
):
    calls = spy_on_prepared_commits(store, monkeypatch)
    sched = await prepared_before_boundary(running, clock, fan_out())
    await store.set_instigator_status(
        schedule_instigator("s00"), InstigatorStatus.STOPPED, now=clock.now()
    )
    await sched.refresh_states()
    await drive(clock, BOUNDARY, sched)
    runs = await store.list_runs(RunQuery(limit=None))
    assert len(runs) == N - 1
    assert "s00" not in {r.instigator.name for r in runs}
    assert calls == []  # decided again, one by one


@pytest.mark.parametrize("when", ["after preparing", "while preparing"])
async def test_a_last_tick_another_writer_moved_drops_the_prepared_commit(
    running, store, clock, monkeypatch, when
):
    """s00's 00:01 tick recorded by someone else once the loop decided it (and seen by a
    refresh after, or while, the store prepared the commit): the commit prepared whole is
    dropped, s00 is decided again (nothing left to do), the rest commit one by one."""
    calls = spy_on_prepared_commits(store, monkeypatch)
    elsewhere = Tick(
        tick_id="elsewhere",
        instigator=schedule_instigator("s00"),
        status=TickStatus.SKIPPED,
        started_at=BOUNDARY - PREPARE_AHEAD,
        scheduled_for=BOUNDARY,
        skip_reason="recorded elsewhere",
    )

    async def record_elsewhere(sched):
        await store.commit_ticks(
            [TickCommit(tick=elsewhere, state=StateUpdate(last_tick_at=BOUNDARY))]
        )
        await sched.refresh_states()

    if when == "while preparing":
        prepare = store.prepare_ticks

        async def prepare_meanwhile(commits):
            await record_elsewhere(running.scheduler)
            return await prepare(commits)

        monkeypatch.setattr(store, "prepare_ticks", prepare_meanwhile)
    sched = await prepared_before_boundary(running, clock, fan_out())
    if when == "after preparing":
        await record_elsewhere(sched)
    assert sched._boundary is None
    await drive(clock, BOUNDARY, sched)
    assert calls == []
    runs = await store.list_runs(RunQuery(limit=None))
    assert len(runs) == N - 1
    assert "s00" not in {r.instigator.name for r in runs}


async def test_a_reload_after_deciding_uses_the_new_definitions(running, store, clock):
    sched = await prepared_before_boundary(running, clock, fan_out())
    changed = fan_out()
    changed.schedules["s01"] = Schedule(name="s01", cron="* * * * *", job=other)
    changed.jobs["other"] = other
    del changed.schedules["s02"]
    await sched.replace_definitions(changed)
    await drive(clock, BOUNDARY, sched)
    jobs = {r.instigator.name: r.job for r in await store.list_runs(RunQuery(limit=None))}
    assert len(jobs) == N - 1 and "s02" not in jobs
    assert jobs["s01"] == "other" and jobs["s00"] == "noop"


async def test_a_boundary_reached_after_the_next_fire_time_is_caught_up(running, store, clock):
    """Decided for 00:01, but the loop only wakes at 00:03:30: the catch-up policy decides
    (latest: 00:03 runs, 00:01 and 00:02 are skipped), not the stale decision."""
    sched = await prepared_before_boundary(running, clock, fan_out())
    await clock.jump_to(BOUNDARY + timedelta(minutes=2, seconds=30))
    await sched.wait_idle()
    runs = await store.list_runs(RunQuery(limit=None))
    assert {r.run_key for r in runs} == {"2026-06-01T00:03:00+00:00"}
    assert len(runs) == N
    ticks = await store.list_ticks(TickQuery(instigator_name="s00", limit=None))
    assert sorted((t.scheduled_for.minute, t.status) for t in ticks) == [
        (1, TickStatus.SKIPPED),
        (2, TickStatus.SKIPPED),
        (3, TickStatus.SUCCESS),
    ]


async def test_few_schedules_at_a_boundary_are_decided_when_it_comes(running, store, clock):
    defs = Defs.of(*[Schedule(name=f"s{i}", cron="* * * * *", job=noop) for i in range(3)])
    sched = await running.start(defs)
    await drive(clock, BOUNDARY - PREPARE_AHEAD / 2, sched)
    assert sched._prepared == {}
    await drive(clock, BOUNDARY, sched)
    assert len(await store.list_runs(RunQuery(limit=None))) == 3
