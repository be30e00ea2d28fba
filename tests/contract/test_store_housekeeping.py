"""Listings, purge, the change token, the lease, run events and logs, closing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from daemon.domain.limits import ConcurrencyLimits
from daemon.domain.runs import Instigator, InstigatorKind, Run, RunStatus
from daemon.domain.ticks import TickCommit, TickStatus
from daemon.errors import LeaseHeldError, LeaseLostError, RunNotFoundError, StoreClosedError
from daemon.ports import Retention, RunQuery, Store, TickQuery

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SENSOR = Instigator(kind=InstigatorKind.SENSOR, name="inbox")
TTL = timedelta(seconds=30)
MakeRun = Callable[..., Run]
MakeCommit = Callable[..., TickCommit]


async def finish(store: Store, run_id: str, at: datetime) -> None:
    for status in (RunStatus.STARTING, RunStatus.RUNNING, RunStatus.SUCCESS):
        await store.transition_run(run_id, status, now=at)


async def ids(store: Store, **query: object) -> list[str]:
    return [r.run_id for r in await store.list_runs(RunQuery(**query))]  # type: ignore[arg-type]


async def test_list_runs_filters_newest_first(store: Store, make_run: MakeRun) -> None:
    a = make_run("etl", tags={"db": "warehouse", "team": "red"}, partition_key="2026-01-01")
    b = make_run("etl", tags={"db": "warehouse", "team": "blue"}, instigator=SENSOR)
    c = make_run("report", tags={"db": "lake"})
    d = make_run("etl", partition_key="2026-01-02")
    await store.create_runs([a, b, c, d])
    await finish(store, b.run_id, T0)
    assert await ids(store) == [d.run_id, c.run_id, b.run_id, a.run_id]
    assert await ids(store, job="etl") == [d.run_id, b.run_id, a.run_id]
    assert await ids(store, statuses=(RunStatus.SUCCESS,)) == [b.run_id]
    queued_or_done = (RunStatus.QUEUED, RunStatus.SUCCESS)
    assert await ids(store, statuses=queued_or_done, job="report") == [c.run_id]
    assert await ids(store, instigator=SENSOR) == [b.run_id]
    assert await ids(store, tags={"db": "warehouse"}) == [b.run_id, a.run_id]
    assert await ids(store, tags={"db": "warehouse", "team": "red"}) == [a.run_id]
    assert await ids(store, tags={"db": "nope"}) == []
    assert await ids(store, partition_key="2026-01-02") == [d.run_id]
    assert await ids(store, since=c.created_at) == [d.run_id, c.run_id]
    assert await ids(store, limit=2) == [d.run_id, c.run_id]
    assert len(await ids(store, limit=None)) == 4


async def test_purge_keeps_what_retention_asks_and_every_active_run(
    store: Store, make_run: MakeRun, make_commit: MakeCommit
) -> None:
    now = T0 + timedelta(days=100)
    old_done, old_active, new_done = make_run(), make_run(), make_run()
    await store.create_runs([old_done, old_active, new_done])
    await finish(store, old_done.run_id, T0 + timedelta(days=1))
    await finish(store, new_done.run_id, now - timedelta(days=1))
    await store.append_logs(old_done.run_id, [(T0, "stdout", "hello")])
    at = [now - timedelta(days=d) for d in (40, 20, 8, 2)]
    commits = [
        make_commit(status=TickStatus.SKIPPED, started_at=at[2], tick_id="skip-old"),
        make_commit(status=TickStatus.SKIPPED, started_at=at[3], tick_id="skip-new"),
        make_commit(make_run(), started_at=at[0], tick_id="run-old"),
        make_commit(make_run(run_key="x"), started_at=at[1], tick_id="run-new"),
    ]
    await store.commit_ticks(commits)
    counts = await store.purge(now=now, retention=Retention())
    assert (counts.ticks, counts.runs) == (2, 1)
    remaining = {t.tick_id for t in await store.list_ticks(TickQuery())}
    assert remaining == {"skip-new", "run-new"}
    assert await store.get_run(old_done.run_id) is None
    assert await store.run_events(old_done.run_id) == []
    assert await store.read_logs(old_done.run_id) == []
    assert await store.get_run(old_active.run_id) is not None  # queued for 100 days: kept
    assert await store.get_run(new_done.run_id) is not None
    keep_all = Retention(skipped_ticks=None, ticks=None, runs=None)
    counts = await store.purge(now=now + timedelta(days=1000), retention=keep_all)
    assert (counts.ticks, counts.runs) == (0, 0)


async def test_the_change_token_moves_when_runs_change(store: Store, make_run: MakeRun) -> None:
    token = await store.change_token()
    assert await store.change_token() == token  # reads change nothing
    run = make_run()
    await store.create_runs([run])
    after_create = await store.change_token()
    assert after_create != token
    await store.list_runs(RunQuery())
    assert await store.change_token() == after_create
    await store.claim_runs(node_id="n", limit=1, limits=ConcurrencyLimits(), now=T0)
    after_claim = await store.change_token()
    assert after_claim != after_create
    await store.transition_run(run.run_id, RunStatus.RUNNING, now=T0)
    assert await store.change_token() != after_claim


async def test_the_lease_is_held_lapses_and_moves_with_a_new_epoch(store: Store) -> None:
    assert await store.current_lease() is None
    a = await store.acquire_lease(holder="a", pid=11, host="h1", now=T0, ttl=TTL)
    assert (a.holder, a.epoch, a.since, a.expires_at) == ("a", 1, T0, T0 + TTL)
    assert await store.current_lease() == a
    again = await store.acquire_lease(
        holder="a", pid=11, host="h1", now=T0 + timedelta(seconds=5), ttl=TTL
    )
    assert (again.epoch, again.since) == (1, T0)
    with pytest.raises(LeaseHeldError, match="pid 11 on h1") as held:
        await store.acquire_lease(
            holder="b", pid=22, host="h2", now=T0 + timedelta(seconds=10), ttl=TTL
        )
    assert held.value.holder == "pid 11 on h1"
    renewed = await store.renew_lease(again, now=T0 + timedelta(seconds=20), ttl=TTL)
    assert renewed.expires_at == T0 + timedelta(seconds=50)
    assert renewed.heartbeat_at == T0 + timedelta(seconds=20)
    lapsed_at = renewed.expires_at  # expires_at <= now: free
    b = await store.acquire_lease(holder="b", pid=22, host="h2", now=lapsed_at, ttl=TTL)
    assert (b.epoch, b.since) == (2, lapsed_at)
    with pytest.raises(LeaseLostError):
        await store.renew_lease(renewed, now=lapsed_at, ttl=TTL)
    await store.release_lease(renewed)  # not ours any more: nothing happens
    assert await store.current_lease() == b
    await store.release_lease(b)
    released = await store.current_lease()
    assert released is not None and released.expires_at <= lapsed_at
    c = await store.acquire_lease(holder="c", pid=33, host="h3", now=lapsed_at, ttl=TTL)
    assert c.epoch == 3


async def test_events_and_logs_append_and_read_back(store: Store, make_run: MakeRun) -> None:
    run, other = make_run(), make_run()
    await store.create_runs([run, other])
    await store.add_run_event(run.run_id, "run.retry_scheduled", at=T0, data={"attempt": 2})
    await store.add_run_event(other.run_id, "note", at=T0)
    events = await store.run_events(run.run_id)
    assert [(e.kind, e.data, e.at) for e in events[1:]] == [
        ("run.retry_scheduled", {"attempt": 2}, T0)
    ]
    assert await store.run_events("nope") == []
    with pytest.raises(RunNotFoundError):
        await store.add_run_event("nope", "x", at=T0)
    lines = [
        (T0 + timedelta(seconds=i), "stdout" if i % 2 else "stderr", f"line {i}") for i in range(5)
    ]
    await store.append_logs(run.run_id, lines[:3])
    await store.append_logs(other.run_id, [(T0, "log", "elsewhere")])
    await store.append_logs(run.run_id, lines[3:])
    await store.append_logs(run.run_id, [])
    read = await store.read_logs(run.run_id)
    assert [(line.at, line.stream, line.text) for line in read] == lines
    assert all(line.run_id == run.run_id for line in read)
    tail = await store.read_logs(run.run_id, after_seq=read[2].seq)
    assert [line.text for line in tail] == ["line 3", "line 4"]
    assert await store.read_logs(run.run_id, after_seq=read[-1].seq) == []
    with pytest.raises(RunNotFoundError):
        await store.append_logs("nope", lines)


async def test_a_closed_store_refuses_work(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreClosedError):
        await store.list_runs(RunQuery())
    with pytest.raises(StoreClosedError):
        await store.create_runs([])


async def test_a_write_cancelled_at_any_point_keeps_all_or_nothing(
    store: Store, make_run: MakeRun, make_commit: MakeCommit
) -> None:
    outcomes = set()
    for step in range(40):
        runs = [make_run(run_key=f"s{step}-{i}") for i in range(50)]
        with anyio.move_on_after(step * 0.0002):
            await store.commit_ticks([make_commit(*runs)])
        stored = await store.list_runs(RunQuery(limit=None))
        count = sum(
            1 for r in stored if r.run_key is not None and r.run_key.startswith(f"s{step}-")
        )
        assert count in (0, 50)
        outcomes.add(count)
    assert 50 in outcomes  # later steps had time to commit
    (tick,) = await store.commit_ticks([make_commit(make_run(run_key="after"))])
    assert len(tick.run_ids) == 1
