"""claim_runs: queue order, global and tag limits that pass over, delays; orphans."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from daemon.domain.limits import ConcurrencyLimits, TagLimit
from daemon.domain.runs import Run, RunStatus
from daemon.ports import Store

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=1)
NONE = ConcurrencyLimits()
MakeRun = Callable[..., Run]


async def claim(
    store: Store, limit: int = 100, limits: ConcurrencyLimits = NONE, node: str = "n1"
) -> list[str]:
    claimed = await store.claim_runs(node_id=node, limit=limit, limits=limits, now=NOW)
    return [r.run_id for r in claimed]


async def test_claims_follow_priority_then_age_one_by_one(store: Store, make_run: MakeRun) -> None:
    low_old = make_run(priority=0)
    high_new = make_run(priority=5)
    low_new = make_run(priority=0)
    mid = make_run(priority=2)
    negative = make_run(priority=-1)
    same_time = [
        make_run(priority=2, created_at=mid.created_at, run_id=f"{mid.run_id}-{i}") for i in "ba"
    ]
    await store.create_runs([low_old, high_new, low_new, mid, negative, *same_time])
    order = [await claim(store, limit=1) for _ in range(8)]
    assert order == [
        [high_new.run_id],
        [mid.run_id],  # then created_at, then run_id
        [f"{mid.run_id}-a"],
        [f"{mid.run_id}-b"],
        [low_old.run_id],
        [low_new.run_id],
        [negative.run_id],
        [],
    ]


async def test_a_claimed_run_is_starting_on_its_node(store: Store, make_run: MakeRun) -> None:
    runs = [make_run(priority=p) for p in (1, 3, 2)]
    await store.create_runs(runs)
    claimed = await store.claim_runs(node_id="n7", limit=2, limits=NONE, now=NOW)
    assert [r.run_id for r in claimed] == [runs[1].run_id, runs[2].run_id]
    for run in claimed:
        assert (run.status, run.node_id) == (RunStatus.STARTING, "n7")
        assert await store.get_run(run.run_id) == run
        events = await store.run_events(run.run_id)
        assert [e.kind for e in events] == ["run.enqueued", "run.starting"]
        assert events[-1].data == {"node_id": "n7"}
    assert await claim(store, limit=0) == []
    assert await claim(store) == [runs[0].run_id]
    assert await claim(store) == []


async def test_the_global_maximum_counts_runs_in_flight_on_every_node(
    store: Store, make_run: MakeRun
) -> None:
    await store.create_runs([make_run() for _ in range(5)])
    limits = ConcurrencyLimits(max_concurrent_runs=3)
    (on_a,) = await claim(store, limit=1, limits=limits, node="a")
    assert len(await claim(store, limit=10, limits=limits, node="b")) == 2
    assert await claim(store, limits=limits) == []
    (unlimited,) = await claim(store, limit=1)  # without limits nothing holds the queue
    for run_id in (on_a, unlimited):  # 4 in flight -> 2
        await store.transition_run(run_id, RunStatus.CANCELED, now=NOW)
    assert len(await claim(store, limits=limits)) == 1


async def test_a_tag_limit_with_a_value_passes_over_blocked_runs(
    store: Store, make_run: MakeRun
) -> None:
    wh = [make_run(priority=9, tags={"db": "warehouse"}) for _ in range(3)]
    lake = make_run(priority=5, tags={"db": "lake"})
    plain = make_run(priority=0)
    await store.create_runs([*wh, lake, plain])
    limits = ConcurrencyLimits(tag_limits=(TagLimit(key="db", value="warehouse", limit=2),))
    assert await claim(store, limits=limits) == [
        wh[0].run_id,
        wh[1].run_id,
        lake.run_id,
        plain.run_id,
    ]
    assert await claim(store, limits=limits) == []  # two warehouse runs still in flight
    await store.transition_run(wh[0].run_id, RunStatus.FAILURE, now=NOW, error="x")
    assert await claim(store, limits=limits) == [wh[2].run_id]


async def test_a_tag_limit_without_a_value_counts_every_value(
    store: Store, make_run: MakeRun
) -> None:
    a = make_run(tags={"db": "a"})
    b = make_run(tags={"db": "b"})
    untagged = make_run()
    await store.create_runs([a, b, untagged])
    limits = ConcurrencyLimits(tag_limits=(TagLimit(key="db", limit=1),))
    assert await claim(store, limits=limits) == [a.run_id, untagged.run_id]
    assert await claim(store, limits=limits) == []


async def test_a_per_value_tag_limit_counts_each_value(store: Store, make_run: MakeRun) -> None:
    runs = [make_run(tags={"team": team}) for team in ("red", "red", "blue", "blue", "red")]
    await store.create_runs(runs)
    limits = ConcurrencyLimits(tag_limits=(TagLimit(key="team", limit=2, per_value=True),))
    assert await claim(store, limit=1, limits=limits) == [runs[0].run_id]
    assert await claim(store, limits=limits) == [r.run_id for r in runs[1:4]]
    assert await claim(store, limits=limits) == []


async def test_tag_and_global_limits_combine(store: Store, make_run: MakeRun) -> None:
    runs = [make_run(tags={"db": "warehouse"}), make_run(), make_run(), make_run()]
    await store.create_runs(runs)
    limits = ConcurrencyLimits(
        max_concurrent_runs=3, tag_limits=(TagLimit(key="db", value="warehouse", limit=1),)
    )
    assert await claim(store, limits=limits) == [r.run_id for r in runs[:3]]


async def test_delayed_runs_wait_for_not_before(store: Store, make_run: MakeRun) -> None:
    later = make_run(not_before=NOW + timedelta(minutes=5), priority=9)
    soon = make_run(not_before=NOW + timedelta(minutes=1))
    due = make_run(not_before=NOW - timedelta(minutes=1))
    plain = make_run()
    assert await store.next_due_at() is None
    await store.create_runs([later, soon, due, plain])
    assert await store.next_due_at() == NOW - timedelta(minutes=1)
    assert await claim(store) == [due.run_id, plain.run_id]
    assert await store.next_due_at() == NOW + timedelta(minutes=1)
    claimed = await store.claim_runs(
        node_id="n", limit=10, limits=NONE, now=NOW + timedelta(minutes=5)
    )
    assert [r.run_id for r in claimed] == [later.run_id, soon.run_id]
    assert await store.next_due_at() is None


async def test_orphaned_runs_are_those_of_nodes_no_longer_alive(
    store: Store, make_run: MakeRun
) -> None:
    runs = [make_run() for _ in range(4)]
    await store.create_runs(runs)
    await claim(store, limit=2, node="dead")
    await claim(store, limit=1, node="alive")
    await store.transition_run(runs[0].run_id, RunStatus.RUNNING, now=NOW)
    orphans = await store.orphaned_runs(live_nodes=["alive"])
    assert [r.run_id for r in orphans] == [runs[0].run_id, runs[1].run_id]
    assert [r.run_id for r in await store.orphaned_runs(live_nodes=[])] == [
        r.run_id for r in runs[:3]
    ]
    assert await store.orphaned_runs(live_nodes=["alive", "dead"]) == []
