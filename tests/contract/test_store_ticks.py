"""commit_ticks: all or nothing, decisions, instigator state, the lease fence; tick reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from daemon.domain.runs import Instigator, InstigatorKind, Run
from daemon.domain.ticks import (
    Decision,
    InstigatorState,
    InstigatorStatus,
    Outcome,
    StateUpdate,
    TickCommit,
    TickStatus,
)
from daemon.errors import DuplicateIdError, LeaseLostError
from daemon.ports import Retention, RunQuery, Store, TickQuery

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
SCHEDULE = Instigator(kind=InstigatorKind.SCHEDULE, name="nightly")
SENSOR = Instigator(kind=InstigatorKind.SENSOR, name="inbox")
MakeRun = Callable[..., Run]
MakeCommit = Callable[..., TickCommit]
FAULT_POINTS = ["commit_ticks.after_runs", "commit_ticks.after_tick", "commit_ticks.after_state"]


class Injected(Exception):
    pass


async def state_of(store: Store, instigator: Instigator) -> InstigatorState | None:
    return (await store.instigator_states()).get((instigator.kind, instigator.name))


async def test_a_committed_tick_reads_back_identical(
    store: Store, make_run: MakeRun, make_commit: MakeCommit
) -> None:
    stored = make_run(run_key="old")
    await store.create_runs([stored])
    a, dup, old = make_run(run_key="a"), make_run(run_key="a"), make_run(run_key="old")
    commit = make_commit(
        a,
        dup,
        old,
        instigator=SCHEDULE,
        scheduled_for=T0 + timedelta(hours=6),
        cursor_before="c1",
        cursor_after="c2",
        error=None,
        skip_reason=None,
        started_at=datetime(2026, 1, 1, 6, 0, 0, 123456, tzinfo=UTC),
    )
    (tick,) = await store.commit_ticks([commit])
    assert tick.decisions == (
        Decision(job="job", outcome=Outcome.CREATED, run_id=a.run_id, run_key="a"),
        Decision(job="job", outcome=Outcome.DEDUPLICATED_IN_TICK, run_id=a.run_id, run_key="a"),
        Decision(
            job="job", outcome=Outcome.DEDUPLICATED_RUN_KEY, run_id=stored.run_id, run_key="old"
        ),
    )
    assert tick.run_ids == (a.run_id,)
    assert tick == dataclasses.replace(commit.tick, decisions=tick.decisions)
    assert await store.get_tick(tick.tick_id) == tick
    assert await store.get_tick("nope") is None
    assert [r.run_id for r in await store.list_runs(RunQuery())] == [a.run_id, stored.run_id]


async def test_skipped_and_failed_ticks_keep_their_reasons(
    store: Store, make_commit: MakeCommit
) -> None:
    skipped = make_commit(skip_reason="no new files")
    failed = make_commit(status=TickStatus.FAILURE, error="Traceback ...\nValueError: x")
    ticks = await store.commit_ticks([skipped, failed])
    assert [t.status for t in ticks] == [TickStatus.SKIPPED, TickStatus.FAILURE]
    assert (await store.get_tick(skipped.tick.tick_id)) == ticks[0]
    assert (await store.get_tick(failed.tick.tick_id)) == ticks[1]
    assert ticks[0].skip_reason == "no new files"
    assert ticks[1].error == "Traceback ...\nValueError: x"


async def test_state_update_semantics(store: Store, make_commit: MakeCommit) -> None:
    await store.commit_ticks(
        [make_commit(instigator=SENSOR, state=StateUpdate(cursor="c1", last_run_key="k1"))]
    )
    state = await state_of(store, SENSOR)
    assert state is not None
    assert (state.cursor, state.last_run_key, state.last_tick_at) == ("c1", "k1", None)
    assert state.status is None
    # Nothing set: nothing changes but updated_at.
    later = make_commit(instigator=SENSOR)
    await store.commit_ticks([later])
    state = await state_of(store, SENSOR)
    assert state is not None
    assert (state.cursor, state.last_run_key) == ("c1", "k1")
    assert state.updated_at == later.tick.ended_at
    # last_tick_at alone.
    await store.commit_ticks([make_commit(instigator=SENSOR, state=StateUpdate(last_tick_at=T0))])
    state = await state_of(store, SENSOR)
    assert state is not None
    assert (state.cursor, state.last_tick_at) == ("c1", T0)
    # set_cursor with None clears it.
    await store.commit_ticks(
        [make_commit(instigator=SENSOR, state=StateUpdate(cursor=None, set_cursor=True))]
    )
    state = await state_of(store, SENSOR)
    assert state is not None
    assert (state.cursor, state.last_tick_at, state.last_run_key) == (None, T0, "k1")


async def test_states_of_one_batch_apply_in_commit_order(
    store: Store, make_commit: MakeCommit
) -> None:
    """A batch mixing commits that write a cursor with commits that do not, for other
    instigators and for the same one, ends as if they were committed one by one."""
    other = Instigator(kind=InstigatorKind.SCHEDULE, name="hourly")
    await store.commit_ticks(
        [
            make_commit(instigator=SCHEDULE, state=StateUpdate(last_tick_at=T0)),
            make_commit(instigator=SENSOR, state=StateUpdate(cursor="c1", last_run_key="k1")),
            make_commit(instigator=other, state=StateUpdate(last_tick_at=T0, last_run_key="h")),
            make_commit(instigator=SCHEDULE, state=StateUpdate(last_tick_at=T0 + HOUR)),
        ]
    )
    states = await store.instigator_states()
    assert states[(SCHEDULE.kind, SCHEDULE.name)].last_tick_at == T0 + HOUR
    assert states[(other.kind, other.name)].last_run_key == "h"
    assert states[(SENSOR.kind, SENSOR.name)].cursor == "c1"
    # One sensor in both kinds: its cursor, then a tick that leaves the cursor, then a clear.
    last = make_commit(instigator=SENSOR, state=StateUpdate(last_tick_at=T0))
    await store.commit_ticks(
        [
            make_commit(instigator=SENSOR, state=StateUpdate(cursor="c2")),
            last,
            make_commit(instigator=SCHEDULE, state=StateUpdate(last_tick_at=T0 + 2 * HOUR)),
        ]
    )
    state = await state_of(store, SENSOR)
    assert state is not None
    assert (state.cursor, state.last_run_key, state.last_tick_at) == ("c2", "k1", T0)
    assert state.updated_at == last.tick.ended_at
    await store.commit_ticks(
        [
            make_commit(instigator=SENSOR, state=StateUpdate(last_run_key="k2")),
            make_commit(instigator=SENSOR, state=StateUpdate(cursor=None, set_cursor=True)),
        ]
    )
    state = await state_of(store, SENSOR)
    assert state is not None
    assert (state.cursor, state.last_run_key) == (None, "k2")


async def test_operator_status_survives_tick_commits(store: Store, make_commit: MakeCommit) -> None:
    state = await store.set_instigator_status(SENSOR, InstigatorStatus.STOPPED, now=T0)
    assert state.status is InstigatorStatus.STOPPED
    assert state.updated_at == T0
    await store.commit_ticks([make_commit(instigator=SENSOR, state=StateUpdate(cursor="c"))])
    state2 = await state_of(store, SENSOR)
    assert state2 is not None
    assert (state2.status, state2.cursor) == (InstigatorStatus.STOPPED, "c")
    state3 = await store.set_cursor(SENSOR, "manual", now=T0 + timedelta(hours=1))
    assert (state3.status, state3.cursor) == (InstigatorStatus.STOPPED, "manual")
    cleared = await store.set_cursor(SENSOR, None, now=T0 + timedelta(hours=2))
    assert cleared.cursor is None
    assert await store.instigator_states() == {(SENSOR.kind, SENSOR.name): cleared}
    fresh = await store.set_cursor(SCHEDULE, "x", now=T0)
    assert fresh == InstigatorState(instigator=SCHEDULE, cursor="x", updated_at=T0)


@pytest.mark.parametrize("point", FAULT_POINTS)
async def test_a_failure_inside_the_commit_leaves_nothing_and_a_retry_creates_once(
    store: Store, make_run: MakeRun, make_commit: MakeCommit, point: str
) -> None:
    await store.commit_ticks([make_commit(instigator=SENSOR, state=StateUpdate(cursor="c0"))])
    runs = (make_run(run_key="f1", instigator=SENSOR), make_run(partition_key="p"))
    commits = [
        make_commit(*runs, instigator=SENSOR, state=StateUpdate(cursor="c1", last_run_key="f1")),
        make_commit(make_run(run_key="s"), instigator=SCHEDULE, state=StateUpdate(cursor="s1")),
    ]
    seen: list[str] = []

    def fault(at: str) -> None:
        seen.append(at)
        if at == point:
            raise Injected(at)

    store.fault = fault  # type: ignore[attr-defined]
    with pytest.raises(Injected):
        await store.commit_ticks(commits)
    store.fault = None  # type: ignore[attr-defined]
    assert point in seen
    assert await store.list_runs(RunQuery()) == []
    assert [t.tick_id for t in await store.list_ticks(TickQuery())] == ["tick-00001"]
    state = await state_of(store, SENSOR)
    assert state is not None and (state.cursor, state.last_run_key) == ("c0", None)
    assert await state_of(store, SCHEDULE) is None
    ticks = await store.commit_ticks(commits)
    assert [len(t.run_ids) for t in ticks] == [2, 1]
    assert len(await store.list_runs(RunQuery())) == 3
    state = await state_of(store, SENSOR)
    assert state is not None and state.cursor == "c1"
    with pytest.raises(DuplicateIdError):  # committed ticks are not redone
        await store.commit_ticks(commits)
    assert len(await store.list_runs(RunQuery())) == 3


async def test_commits_of_one_call_deduplicate_against_each_other(
    store: Store, make_run: MakeRun, make_commit: MakeCommit
) -> None:
    first = make_run(run_key="k", partition_key="p")
    same_key = make_run(run_key="k")
    same_partition = make_run(partition_key="p", instigator=SENSOR)
    ticks = await store.commit_ticks(
        [
            make_commit(first),
            make_commit(same_key),
            make_commit(same_partition, instigator=SENSOR),
        ]
    )
    assert [d.outcome for t in ticks for d in t.decisions] == [
        Outcome.CREATED,
        Outcome.DEDUPLICATED_RUN_KEY,
        Outcome.DEDUPLICATED_PARTITION,
    ]
    assert {d.run_id for t in ticks for d in t.decisions} == {first.run_id}


async def test_the_lease_epoch_fences_deposed_tickers(
    store: Store, make_run: MakeRun, make_commit: MakeCommit
) -> None:
    with pytest.raises(LeaseLostError):  # no lease at all
        await store.commit_ticks([make_commit(make_run())], lease_epoch=1)
    old = await store.acquire_lease(holder="a", pid=1, host="h", now=T0, ttl=timedelta(seconds=30))
    (tick,) = await store.commit_ticks([make_commit(make_run())], lease_epoch=old.epoch)
    assert len(tick.run_ids) == 1
    new = await store.acquire_lease(
        holder="b", pid=2, host="h", now=T0 + timedelta(minutes=1), ttl=timedelta(seconds=30)
    )
    assert new.epoch == old.epoch + 1
    with pytest.raises(LeaseLostError) as caught:
        await store.commit_ticks(
            [make_commit(make_run(), state=StateUpdate(cursor="x"))], lease_epoch=old.epoch
        )
    assert caught.value.epoch == old.epoch
    assert len(await store.list_runs(RunQuery())) == 1
    assert len(await store.list_ticks(TickQuery())) == 1
    assert await state_of(store, SCHEDULE) is not None
    (tick,) = await store.commit_ticks([make_commit(make_run())], lease_epoch=new.epoch)
    assert len(tick.run_ids) == 1


async def test_list_ticks_filters_newest_first(store: Store, make_commit: MakeCommit) -> None:
    commits = [
        make_commit(instigator=SCHEDULE),
        make_commit(instigator=SENSOR),
        make_commit(instigator=SCHEDULE, status=TickStatus.FAILURE, error="boom"),
        make_commit(instigator=SCHEDULE),
    ]
    await store.commit_ticks(commits)
    ids = [c.tick.tick_id for c in commits]
    listed = await store.list_ticks(TickQuery())
    assert [t.tick_id for t in listed] == ids[::-1]
    by_name = await store.list_ticks(TickQuery(instigator_name="nightly"))
    assert [t.tick_id for t in by_name] == [ids[3], ids[2], ids[0]]
    failed = await store.list_ticks(TickQuery(statuses=(TickStatus.FAILURE,)))
    assert [t.tick_id for t in failed] == [ids[2]]
    since = await store.list_ticks(TickQuery(since=commits[2].tick.started_at))
    assert [t.tick_id for t in since] == [ids[3], ids[2]]
    assert [t.tick_id for t in await store.list_ticks(TickQuery(limit=2))] == [ids[3], ids[2]]
    assert len(await store.list_ticks(TickQuery(limit=None))) == 4


async def test_ticks_are_ordered_aged_and_purged_by_the_time_they_are_about(
    store: Store, make_commit: MakeCommit
) -> None:
    """tick_at: the scheduled time, else the start. Ticks caught up together (one start)
    list in the order of their scheduled times; a sensor's start counts."""
    started = T0 + timedelta(days=2)
    caught_up = [
        make_commit(
            tick_id=f"c{h}",
            status=TickStatus.SUCCESS,
            started_at=started,
            ended_at=started,
            scheduled_for=T0 + timedelta(days=1, hours=h),
        )
        for h in (9, 3, 6)  # committed out of order
    ]
    sensor = make_commit(
        tick_id="s",
        instigator=SENSOR,
        status=TickStatus.SUCCESS,
        started_at=T0 + timedelta(days=1, hours=5),
    )
    await store.commit_ticks([*caught_up, sensor])
    listed = await store.list_ticks(TickQuery())
    assert [t.tick_id for t in listed] == ["c9", "c6", "s", "c3"]
    assert [t.tick_at for t in listed][-1] == T0 + timedelta(days=1, hours=3)
    by_name = await store.list_ticks(TickQuery(instigator_name="nightly", limit=2))
    assert [t.tick_id for t in by_name] == ["c9", "c6"]
    recent = await store.list_ticks(TickQuery(since=T0 + timedelta(days=1, hours=5)))
    assert [t.tick_id for t in recent] == ["c9", "c6", "s"]
    counts = await store.purge(
        now=T0 + timedelta(days=31, hours=5, minutes=30),
        retention=Retention(skipped_ticks=None, ticks=timedelta(days=30), runs=None),
    )
    assert counts.ticks == 2  # c3 and s: about more than 30 days ago, though c3 started later
    assert [t.tick_id for t in await store.list_ticks(TickQuery())] == ["c9", "c6"]


async def test_list_ticks_around_a_time_nearest_first(
    store: Store, make_commit: MakeCommit
) -> None:
    hours = [0, 3, 5, 6, 9, 12]
    commits = [
        make_commit(tick_id=f"t{h:02d}", scheduled_for=T0 + timedelta(hours=h)) for h in hours
    ]
    # A sensor tick has no scheduled_for: its started_at counts.
    sensor = make_commit(
        tick_id="s", instigator=SENSOR, started_at=T0 + timedelta(hours=7, minutes=30)
    )
    await store.commit_ticks([*commits, sensor])
    around = T0 + timedelta(hours=6)
    near = await store.list_ticks(TickQuery(around=around, limit=4))
    # distances 0, 1 (t05), 1.5 (s), 3 (t03 and t09: the earlier first)
    assert [t.tick_id for t in near] == ["t06", "t05", "s", "t03"]
    schedules = await store.list_ticks(
        TickQuery(around=around, limit=None, instigator_name="nightly")
    )
    assert [t.tick_id for t in schedules] == ["t06", "t05", "t03", "t09", "t00", "t12"]
