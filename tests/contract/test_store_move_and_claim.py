"""move_and_claim: a dispatcher's cycle in one transaction (moves, then a claim that may
start what it claims)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from daemon.domain.limits import ConcurrencyLimits, TagLimit
from daemon.domain.runs import Run, RunStatus
from daemon.errors import IllegalTransitionError, RunNotFoundError
from daemon.ports import RunMove, Store

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=1)
MakeRun = Callable[..., Run]


def finish(run_id: str, status: RunStatus = RunStatus.SUCCESS, **fields: object) -> RunMove:
    return RunMove(run_id=run_id, status=status, now=NOW, **fields)


def start(run: Run) -> RunMove:
    return RunMove(run_id=run.run_id, status=RunStatus.RUNNING, now=NOW, event={"pid": 1})


async def running(store: Store, *runs: Run) -> None:
    await store.create_runs(list(runs))
    for run in runs:
        await store.transition_run(run.run_id, RunStatus.STARTING, now=T0)
        await store.transition_run(run.run_id, RunStatus.RUNNING, now=T0)


async def test_the_claim_counts_what_is_in_flight_after_the_moves(
    store: Store, make_run: MakeRun
) -> None:
    busy = [make_run(priority=9) for _ in range(2)]
    await running(store, *busy)
    queued = [make_run(priority=p) for p in (1, 5, 3)]
    await store.create_runs(queued)
    done = await store.move_and_claim(
        [finish(busy[0].run_id, event={"duration_s": 1.5})],
        node_id="n1",
        limit=10,
        limits=ConcurrencyLimits(max_concurrent_runs=3),
        now=NOW,
    )
    [moved] = done.moved
    assert isinstance(moved, Run)
    assert (moved.status, moved.ended_at) == (RunStatus.SUCCESS, NOW)
    # 3 allowed, 1 still running after the move: the two highest-priority runs
    assert [r.run_id for r in done.claimed] == [queued[1].run_id, queued[2].run_id]
    assert all(r.status is RunStatus.STARTING and r.node_id == "n1" for r in done.claimed)
    events = await store.run_events(busy[0].run_id)
    assert (events[-1].kind, events[-1].data) == ("run.success", {"duration_s": 1.5})


async def test_each_move_reports_its_own_failure(store: Store, make_run: MakeRun) -> None:
    ok, fresh = make_run(), make_run()
    await running(store, ok)
    await store.create_runs([fresh])
    done = await store.move_and_claim(
        [finish(ok.run_id), finish(fresh.run_id), finish("no-such-run")],
        node_id="n1",
        limit=0,
        limits=ConcurrencyLimits(),
        now=NOW,
    )
    assert isinstance(done.moved[0], Run)
    assert isinstance(done.moved[1], IllegalTransitionError)  # QUEUED cannot succeed
    assert isinstance(done.moved[2], RunNotFoundError)
    assert done.claimed == ()
    assert (await store.get_run(fresh.run_id)).status is RunStatus.QUEUED


async def test_start_moves_claimed_runs_on_in_the_same_transaction(
    store: Store, make_run: MakeRun
) -> None:
    runs = [make_run(priority=p) for p in (2, 1)]
    skipped = make_run(job="not-loaded", priority=3)
    await store.create_runs([*runs, skipped])
    done = await store.move_and_claim(
        [],
        node_id="n1",
        limit=5,
        limits=ConcurrencyLimits(),
        now=NOW,
        start=lambda run: None if run.job == "not-loaded" else start(run),
    )
    assert [r.run_id for r in done.claimed] == [skipped.run_id, runs[0].run_id, runs[1].run_id]
    assert done.claimed[0].status is RunStatus.STARTING
    assert done.claimed[0].started_at is None
    for run in done.claimed[1:]:
        assert (run.status, run.started_at, run.node_id) == (RunStatus.RUNNING, NOW, "n1")
        assert await store.get_run(run.run_id) == run
        events = await store.run_events(run.run_id)
        assert [(e.kind, e.data) for e in events[1:]] == [
            ("run.starting", {"node_id": "n1"}),
            ("run.running", {"pid": 1}),
        ]
    assert [e.kind for e in await store.run_events(skipped.run_id)][-1] == "run.starting"


async def test_a_start_move_not_legal_from_starting_is_not_made(
    store: Store, make_run: MakeRun
) -> None:
    run = make_run()
    await store.create_runs([run])
    done = await store.move_and_claim(
        [],
        node_id="n1",
        limit=1,
        limits=ConcurrencyLimits(),
        now=NOW,
        start=lambda r: RunMove(run_id=r.run_id, status=RunStatus.SUCCESS, now=NOW),
    )
    assert [r.status for r in done.claimed] == [RunStatus.STARTING]
    assert (await store.get_run(run.run_id)).status is RunStatus.STARTING


async def test_tag_limits_hold_in_a_cycle(store: Store, make_run: MakeRun) -> None:
    wh = [make_run(priority=9, tags={"db": "warehouse"}) for _ in range(2)]
    plain = make_run(priority=0)
    await running(store, wh[0])
    await store.create_runs([wh[1], plain])
    limits = ConcurrencyLimits(tag_limits=(TagLimit(key="db", value="warehouse", limit=1),))
    done = await store.move_and_claim(
        [], node_id="n1", limit=5, limits=limits, now=NOW, start=start
    )
    assert [r.run_id for r in done.claimed] == [plain.run_id]  # the warehouse run waits
    done = await store.move_and_claim(
        [finish(wh[0].run_id)], node_id="n1", limit=5, limits=limits, now=NOW, start=start
    )
    assert [r.run_id for r in done.claimed] == [wh[1].run_id]  # its slot freed in the cycle


async def test_nothing_to_do_is_a_no_op(store: Store, make_run: MakeRun) -> None:
    await store.create_runs([make_run()])
    done = await store.move_and_claim(
        [], node_id="n1", limit=0, limits=ConcurrencyLimits(), now=NOW
    )
    assert (done.moved, done.claimed) == ((), ())
