"""create_runs: dedup by run_key and active partition, in-batch collapse, round trips."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.adapters.memory_store import MemoryStore
from daemon.adapters.sqlite_store import SqliteStore
from daemon.domain.runs import Instigator, InstigatorKind, Run, RunStatus
from daemon.domain.ticks import Outcome
from daemon.errors import DuplicateIdError
from daemon.ports import RunQuery, Store

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MakeRun = Callable[..., Run]
SENSOR = Instigator(kind=InstigatorKind.SENSOR, name="inbox")


async def finish(store: Store, run_id: str) -> None:
    for status in (RunStatus.STARTING, RunStatus.RUNNING, RunStatus.SUCCESS):
        await store.transition_run(run_id, status, now=T0 + timedelta(hours=1))


async def test_a_run_reads_back_exactly(store: Store, make_run: MakeRun) -> None:
    run = make_run(
        priority=7,
        tags={"db": "warehouse", "tickd/priority": "7"},
        run_config={"day": "2026-01-01", "n": [1, 2], "nested": {"x": None}},
        partition_key="2026-01-01",
        run_key="k1",
        tick_id="tick-1",
        attempt=2,
        parent_run_id="run-00000",
        not_before=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2))),
    )
    result = await store.create_runs([run])
    assert result.created == (run,)
    stored = await store.get_run(run.run_id)
    assert stored == run
    assert stored is not None and stored.not_before is not None
    assert stored.not_before.utcoffset() == timedelta(0)
    assert stored.created_at.tzinfo is not None
    assert await store.get_run("nope") is None


async def test_run_key_deduplicates_across_calls_and_forever(
    store: Store, make_run: MakeRun
) -> None:
    first = make_run(run_key="2026-01-01")
    assert (await store.create_runs([first])).created == (first,)
    again = make_run(run_key="2026-01-01")
    result = await store.create_runs([again])
    assert result.created == ()
    ((run, decision),) = result.deduplicated
    assert run == again
    assert decision.outcome is Outcome.DEDUPLICATED_RUN_KEY
    assert decision.run_id == first.run_id
    assert decision.run_key == "2026-01-01"
    await finish(store, first.run_id)  # even a finished run keeps its run_key
    result = await store.create_runs([make_run(run_key="2026-01-01")])
    assert result.created == ()
    assert result.deduplicated[0][1].run_id == first.run_id


async def test_run_key_is_per_instigator(store: Store, make_run: MakeRun) -> None:
    a = make_run(run_key="same")
    b = make_run(run_key="same", instigator=SENSOR)
    c = make_run(run_key="same", instigator=Instigator(kind=InstigatorKind.SENSOR, name="x"))
    assert (await store.create_runs([a, b, c])).created == (a, b, c)


async def test_active_partition_deduplicates_until_the_run_finishes(
    store: Store, make_run: MakeRun
) -> None:
    first = make_run(partition_key="2026-01-01")
    await store.create_runs([first])
    blocked = make_run(partition_key="2026-01-01", run_key="other", instigator=SENSOR)
    result = await store.create_runs([blocked])
    assert result.created == ()
    ((_, decision),) = result.deduplicated
    assert decision.outcome is Outcome.DEDUPLICATED_PARTITION
    assert decision.run_id == first.run_id
    assert decision.partition_key == "2026-01-01"
    other_job = make_run("other_job", partition_key="2026-01-01")
    assert (await store.create_runs([other_job])).created == (other_job,)
    await finish(store, first.run_id)
    later = make_run(partition_key="2026-01-01")
    assert (await store.create_runs([later])).created == (later,)


async def test_run_key_wins_over_partition_when_both_block(store: Store, make_run: MakeRun) -> None:
    first = make_run(run_key="k", partition_key="p")
    await store.create_runs([first])
    result = await store.create_runs([make_run(run_key="k", partition_key="p")])
    assert result.deduplicated[0][1].outcome is Outcome.DEDUPLICATED_RUN_KEY


async def test_a_batch_collapses_in_order_and_reports_against_stored_runs(
    store: Store, make_run: MakeRun
) -> None:
    stored = make_run(run_key="old")
    await store.create_runs([stored])
    a = make_run(run_key="a")
    a_again = make_run(run_key="a")
    old_again = make_run(run_key="old")
    old_thrice = make_run(run_key="old")
    p1 = make_run(partition_key="p")
    p1_again = make_run(partition_key="p", run_key="b")
    plain = make_run()
    batch = [a, a_again, old_again, old_thrice, p1, p1_again, plain]
    result = await store.create_runs(batch)
    assert result.created == (a, p1, plain)
    got = [(run.run_id, d.outcome, d.run_id) for run, d in result.deduplicated]
    assert got == [
        (a_again.run_id, Outcome.DEDUPLICATED_IN_TICK, a.run_id),
        (old_again.run_id, Outcome.DEDUPLICATED_RUN_KEY, stored.run_id),
        # its winner was itself deduplicated: reported against the stored run
        (old_thrice.run_id, Outcome.DEDUPLICATED_IN_TICK, stored.run_id),
        (p1_again.run_id, Outcome.DEDUPLICATED_IN_TICK, p1.run_id),
    ]
    assert await store.get_run(a_again.run_id) is None


async def test_order_of_created_runs_is_the_batch_order(store: Store, make_run: MakeRun) -> None:
    runs = [make_run(run_key=f"k{i}") for i in range(50)]
    mixed = list(reversed(runs))
    assert (await store.create_runs(mixed)).created == tuple(mixed)


async def test_empty_batch(store: Store) -> None:
    result = await store.create_runs([])
    assert result.created == () and result.deduplicated == ()


async def test_reused_run_id_is_refused_and_nothing_is_kept(
    store: Store, make_run: MakeRun
) -> None:
    first = make_run()
    await store.create_runs([first])
    fresh = make_run(run_key="fresh")
    with pytest.raises(DuplicateIdError):
        await store.create_runs([fresh, dataclasses.replace(first, run_key="new")])
    assert await store.get_run(fresh.run_id) is None
    again = make_run()
    with pytest.raises(DuplicateIdError):
        await store.create_runs([again, again])


async def test_only_queued_runs_can_be_created(store: Store, make_run: MakeRun) -> None:
    with pytest.raises(ValueError, match="QUEUED"):
        await store.create_runs([dataclasses.replace(make_run(), status=RunStatus.RUNNING)])


async def test_naive_datetimes_are_refused(store: Store, make_run: MakeRun) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.create_runs([make_run(created_at=datetime(2026, 1, 1))])


async def test_creation_records_an_enqueued_event(store: Store, make_run: MakeRun) -> None:
    run = make_run(tick_id="tick-9")
    await store.create_runs([run])
    (event,) = await store.run_events(run.run_id)
    assert event.kind == "run.enqueued"
    assert event.at == run.created_at
    assert event.data == {"instigator": "schedule:nightly", "tick_id": "tick-9"}


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_both_stores_decide_alike(tmp_path: Path, seed: int) -> None:
    """Random batches over small key spaces (many collisions, finished runs freeing their
    partitions): the memory store and SQLite must decide every request the same way."""
    rng = random.Random(seed)
    stores: list[Store] = [MemoryStore(), await SqliteStore.open(tmp_path / "tickd.db")]
    instigators = [Instigator(kind=InstigatorKind.SENSOR, name=n) for n in ("a", "b")]
    n = 0
    for _ in range(25):
        batch = []
        for _ in range(rng.randint(0, 12)):
            n += 1
            batch.append(
                Run(
                    run_id=f"r{n:04d}",
                    job=rng.choice(["etl", "report"]),
                    status=RunStatus.QUEUED,
                    instigator=rng.choice(instigators),
                    created_at=T0 + timedelta(seconds=n),
                    run_key=rng.choice([None, *(f"k{i}" for i in range(8))]),
                    partition_key=rng.choice([None, *(f"p{i}" for i in range(4))]),
                )
            )
        results = [await store.create_runs(batch) for store in stores]
        assert results[0] == results[1]
        for run in results[0].created:
            if rng.random() < 0.3:
                for store in stores:
                    await store.transition_run(run.run_id, RunStatus.CANCELED, now=T0)
    listed = [await store.list_runs(RunQuery(limit=None)) for store in stores]
    assert listed[0] == listed[1]
    for store in stores:
        await store.close()
