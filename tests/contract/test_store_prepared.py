"""prepare_ticks and commit_prepared: a commit made ahead is `commit_ticks` of the same
commits decided at the time given when it commits, with the same dedup and atomicity.
And keyed requests: a commit whose runs the store builds once it knows which it needs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from daemon.domain.runs import Instigator, InstigatorKind, Run
from daemon.domain.ticks import KeyedRequests, Outcome, StateUpdate, TickCommit, TickStatus
from daemon.errors import LeaseLostError
from daemon.ports import RunQuery, Store, TickQuery

pytestmark = pytest.mark.anyio

AT = datetime(2026, 1, 1, 12, 0, 0, 4321, tzinfo=UTC)
DUE = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
KEY = DUE.isoformat()
SENSOR = Instigator(kind=InstigatorKind.SENSOR, name="inbox")
MakeRun = Callable[..., Run]
MakeCommit = Callable[..., TickCommit]
FAULT_POINTS = ["commit_ticks.after_runs", "commit_ticks.after_tick", "commit_ticks.after_state"]


class Injected(Exception):
    pass


def schedule(i: int) -> Instigator:
    return Instigator(kind=InstigatorKind.SCHEDULE, name=f"s{i:03}")


def fan_out(
    make_run: MakeRun, make_commit: MakeCommit, n: int = 5, **run: object
) -> list[TickCommit]:
    """`n` schedules' ticks due at DUE, one run each, as the loop decides them ahead."""
    return [
        make_commit(
            make_run(run_key=KEY, instigator=schedule(i), **run),
            instigator=schedule(i),
            scheduled_for=DUE,
            state=StateUpdate(last_tick_at=DUE, last_run_key=KEY),
        )
        for i in range(n)
    ]


async def test_a_prepared_commit_is_stored_as_decided_at_its_time(
    store: Store, make_run: MakeRun, make_commit: MakeCommit
) -> None:
    commits = [*fan_out(make_run, make_commit), make_commit(instigator=schedule(9))]
    prepared = await store.prepare_ticks(commits)
    assert await store.list_ticks(TickQuery()) == []  # nothing written ahead
    ticks = await store.commit_prepared(prepared, at=AT)
    assert [t.tick_id for t in ticks] == [c.tick.tick_id for c in commits]
    assert {(t.started_at, t.ended_at) for t in ticks} == {(AT, AT)}
    assert [d.outcome for t in ticks for d in t.decisions] == [Outcome.CREATED] * 5
    assert [t.status for t in ticks] == [TickStatus.SUCCESS] * 5 + [TickStatus.SKIPPED]
    assert [d.run_id for t in ticks for d in t.decisions] == [c.runs[0].run_id for c in commits[:5]]
    assert sorted(await store.list_ticks(TickQuery()), key=lambda t: t.tick_id) == ticks
    runs = await store.list_runs(RunQuery())
    assert len(runs) == 5 and {r.created_at for r in runs} == {AT}
    states = await store.instigator_states()
    assert {(s.last_tick_at, s.last_run_key, s.updated_at) for s in states.values()} >= {
        (DUE, KEY, AT)
    }


async def test_a_run_a_stored_run_blocks_is_deduplicated_and_the_rest_created(
    store: Store, make_run: MakeRun, make_commit: MakeCommit
) -> None:
    commits = fan_out(make_run, make_commit)
    stored = make_run(run_key=KEY, instigator=schedule(2))
    await store.create_runs([stored])  # a backfill, say, got there first
    ticks = await store.commit_prepared(await store.prepare_ticks(commits), at=AT)
    outcomes = [(d.outcome, d.run_id) for t in ticks for d in t.decisions]
    assert outcomes[2] == (Outcome.DEDUPLICATED_RUN_KEY, stored.run_id)
    assert [o for o, _ in outcomes[:2] + outcomes[3:]] == [Outcome.CREATED] * 4
    assert {(t.started_at, t.ended_at) for t in ticks} == {(AT, AT)}
    runs = await store.list_runs(RunQuery())
    assert len(runs) == 5
    assert {r.created_at for r in runs if r.run_id != stored.run_id} == {AT}


async def test_commits_that_need_the_stores_answers_are_committed_prepared_too(
    store: Store, make_run: MakeRun, make_commit: MakeCommit
) -> None:
    """A sensor's keyed runs and cursor: nothing is made ahead, the outcome is the same."""
    await store.create_runs([old := make_run(run_key="f0", instigator=SENSOR)])
    commit = make_commit(
        make_run(run_key="f0", instigator=SENSOR),
        make_run(run_key="f1", instigator=SENSOR),
        make_run(run_key="f1", instigator=SENSOR),
        instigator=SENSOR,
        state=StateUpdate(cursor="c1"),
    )
    (tick,) = await store.commit_prepared(await store.prepare_ticks([commit]), at=AT)
    assert [d.outcome for d in tick.decisions] == [
        Outcome.DEDUPLICATED_RUN_KEY,
        Outcome.CREATED,
        Outcome.DEDUPLICATED_IN_TICK,
    ]
    assert tick.decisions[0].run_id == old.run_id
    assert (tick.started_at, tick.ended_at) == (AT, AT)
    state = (await store.instigator_states())[(SENSOR.kind, SENSOR.name)]
    assert state.cursor == "c1"


@pytest.mark.parametrize("point", FAULT_POINTS)
async def test_a_failure_inside_a_prepared_commit_leaves_nothing(
    store: Store, make_run: MakeRun, make_commit: MakeCommit, point: str
) -> None:
    commits = fan_out(make_run, make_commit)

    def fault(at: str) -> None:
        if at == point:
            raise Injected(at)

    store.fault = fault  # type: ignore[attr-defined]
    with pytest.raises(Injected):
        await store.commit_prepared(await store.prepare_ticks(commits), at=AT)
    store.fault = None  # type: ignore[attr-defined]
    assert await store.list_runs(RunQuery()) == []
    assert await store.list_ticks(TickQuery()) == []
    assert await store.instigator_states() == {}
    ticks = await store.commit_prepared(await store.prepare_ticks(commits), at=AT)
    assert sum(len(t.run_ids) for t in ticks) == 5
    assert len(await store.list_runs(RunQuery())) == 5


async def test_a_prepared_commit_is_fenced_by_the_lease(
    store: Store, make_run: MakeRun, make_commit: MakeCommit
) -> None:
    lease = await store.acquire_lease(holder="a", pid=1, host="h", now=AT, ttl=timedelta(30))
    prepared = await store.prepare_ticks(fan_out(make_run, make_commit))
    with pytest.raises(LeaseLostError):
        await store.commit_prepared(prepared, at=AT, lease_epoch=lease.epoch + 1)
    assert await store.list_runs(RunQuery()) == []
    ticks = await store.commit_prepared(prepared, at=AT, lease_epoch=lease.epoch)
    assert sum(len(t.run_ids) for t in ticks) == 5


async def test_tags_are_stored_for_the_runs_created_whichever_way(
    store: Store, make_run: MakeRun, make_commit: MakeCommit
) -> None:
    """Created directly, by a tick, by a prepared tick all created or one turned away:
    a tag filter finds exactly the runs created, never a duplicate turned away."""
    tags = {"team": "data"}
    await store.create_runs([direct := make_run(tags=tags)])
    first, again = make_run(run_key="k", tags=tags), make_run(run_key="k", tags=tags)
    await store.commit_ticks([make_commit(first, again)])
    await store.create_runs([blocker := make_run(run_key=KEY, instigator=schedule(3))])
    prepared = fan_out(make_run, make_commit, tags=tags)
    await store.commit_prepared(await store.prepare_ticks(prepared), at=AT)
    later = [make_commit(make_run(tags=tags, instigator=schedule(7)), instigator=schedule(7))]
    await store.commit_prepared(await store.prepare_ticks(later), at=AT)
    expected = {direct.run_id, first.run_id, later[0].runs[0].run_id} | {
        c.runs[0].run_id for i, c in enumerate(prepared) if i != 3
    }
    found = await store.list_runs(RunQuery(tags=tags, limit=None))
    assert {r.run_id for r in found} == expected
    assert blocker.run_id not in expected and again.run_id not in expected
    assert all(r.tags == tags for r in found)


def keyed(make_run: MakeRun, keys: list[str], built: list[list[int]]) -> KeyedRequests:
    """SENSOR's requests for `keys` (job "job"); each build call's indices go to `built`."""
    runs = [make_run(run_key=k, instigator=SENSOR) for k in keys]

    def build(indices: Sequence[int]) -> list[Run]:
        built.append(list(indices))
        return [runs[i] for i in indices]

    return KeyedRequests(jobs=("job",) * len(keys), run_keys=tuple(keys), build=build)


async def test_keyed_requests_become_runs_only_where_no_stored_run_holds_the_key(
    store: Store, make_run: MakeRun, make_commit: MakeCommit
) -> None:
    held = [make_run(run_key=k, instigator=SENSOR) for k in ("k1", "k3")]
    await store.create_runs(held)
    built: list[list[int]] = []
    requests = keyed(make_run, ["k0", "k1", "k2", "k3", "k4"], built)
    commit = make_commit(instigator=SENSOR, status=TickStatus.SUCCESS)
    commit = TickCommit(tick=commit.tick, keyed=requests, state=StateUpdate(cursor="c"))
    (tick,) = await store.commit_ticks([commit])
    assert built == [[0, 2, 4]]
    assert [(d.outcome, d.run_key) for d in tick.decisions] == [
        (Outcome.CREATED, "k0"),
        (Outcome.DEDUPLICATED_RUN_KEY, "k1"),
        (Outcome.CREATED, "k2"),
        (Outcome.DEDUPLICATED_RUN_KEY, "k3"),
        (Outcome.CREATED, "k4"),
    ]
    assert [tick.decisions[i].run_id for i in (1, 3)] == [r.run_id for r in held]
    runs = await store.list_runs(RunQuery(limit=None))
    assert sorted(r.run_key for r in runs) == ["k0", "k1", "k2", "k3", "k4"]
    assert await store.get_tick(tick.tick_id) == tick
    state = (await store.instigator_states())[(SENSOR.kind, SENSOR.name)]
    assert state.cursor == "c"


async def test_keyed_requests_of_one_call_block_each_other_and_all_held_build_nothing(
    store: Store, make_run: MakeRun, make_commit: MakeCommit
) -> None:
    built: list[list[int]] = []
    first = keyed(make_run, ["a", "b"], built)
    second = keyed(make_run, ["b", "c"], built)
    commits = [
        TickCommit(tick=make_commit(instigator=SENSOR, status=TickStatus.SUCCESS).tick, keyed=k)
        for k in (first, second)
    ]
    one, two = await store.commit_ticks(commits)
    assert [d.outcome for d in one.decisions] == [Outcome.CREATED] * 2
    assert [d.outcome for d in two.decisions] == [Outcome.DEDUPLICATED_RUN_KEY, Outcome.CREATED]
    assert two.decisions[0].run_id == one.decisions[1].run_id
    assert len(await store.list_runs(RunQuery(limit=None))) == 3
    again = keyed(make_run, ["a", "b", "c"], built := [])
    tick = make_commit(instigator=SENSOR, status=TickStatus.SUCCESS).tick
    (three,) = await store.commit_ticks([TickCommit(tick=tick, keyed=again)])
    assert built == [[]]
    assert [d.outcome for d in three.decisions] == [Outcome.DEDUPLICATED_RUN_KEY] * 3
    assert len(await store.list_runs(RunQuery(limit=None))) == 3


@pytest.mark.parametrize("point", FAULT_POINTS)
async def test_a_failure_inside_a_keyed_commit_leaves_nothing(
    store: Store, make_run: MakeRun, make_commit: MakeCommit, point: str
) -> None:
    requests = keyed(make_run, ["x", "y"], [])
    commit = TickCommit(
        tick=make_commit(instigator=SENSOR, status=TickStatus.SUCCESS).tick,
        keyed=requests,
        state=StateUpdate(cursor="c1"),
    )

    def fault(at: str) -> None:
        if at == point:
            raise Injected(at)

    store.fault = fault  # type: ignore[attr-defined]
    with pytest.raises(Injected):
        await store.commit_ticks([commit])
    store.fault = None  # type: ignore[attr-defined]
    assert await store.list_runs(RunQuery()) == []
    assert await store.list_ticks(TickQuery()) == []
    (tick,) = await store.commit_ticks([commit])
    assert [d.outcome for d in tick.decisions] == [Outcome.CREATED] * 2
