"""transition_run: legal moves only, timestamps, events; active runs of an instigator."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from daemon.domain.runs import Instigator, InstigatorKind, Run, RunStatus
from daemon.errors import IllegalTransitionError, RunNotFoundError
from daemon.ports import Store

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MakeRun = Callable[..., Run]


async def test_a_run_moves_through_its_life(store: Store, make_run: MakeRun) -> None:
    run = make_run()
    await store.create_runs([run])
    at = [T0 + timedelta(minutes=m) for m in range(4)]
    starting = await store.transition_run(run.run_id, RunStatus.STARTING, now=at[1])
    assert (starting.status, starting.started_at, starting.ended_at) == (
        RunStatus.STARTING,
        None,
        None,
    )
    running = await store.transition_run(
        run.run_id, RunStatus.RUNNING, now=at[2], event={"pid": 42}
    )
    assert running.started_at == at[2]
    done = await store.transition_run(
        run.run_id, RunStatus.SUCCESS, now=at[3], event={"duration_s": 60.5}
    )
    assert (done.status, done.started_at, done.ended_at, done.error) == (
        RunStatus.SUCCESS,
        at[2],
        at[3],
        None,
    )
    assert await store.get_run(run.run_id) == done
    events = await store.run_events(run.run_id)
    assert [(e.kind, e.data) for e in events] == [
        ("run.enqueued", {"instigator": "schedule:nightly", "tick_id": None}),
        ("run.starting", {}),
        ("run.running", {"pid": 42}),
        ("run.success", {"duration_s": 60.5}),
    ]
    assert [e.at for e in events[1:]] == at[1:]
    assert [e.seq for e in events] == sorted(e.seq for e in events)


async def test_a_failure_keeps_its_error(store: Store, make_run: MakeRun) -> None:
    run = make_run()
    await store.create_runs([run])
    await store.transition_run(run.run_id, RunStatus.STARTING, now=T0)
    failed = await store.transition_run(
        run.run_id, RunStatus.FAILURE, now=T0, error="ValueError: bad"
    )
    assert (failed.error, failed.ended_at) == ("ValueError: bad", T0)
    assert [e.kind for e in await store.run_events(run.run_id)][-1] == "run.failure"


async def test_illegal_moves_are_refused_and_change_nothing(
    store: Store, make_run: MakeRun
) -> None:
    run = make_run()
    await store.create_runs([run])
    with pytest.raises(IllegalTransitionError):
        await store.transition_run(run.run_id, RunStatus.SUCCESS, now=T0)
    assert await store.get_run(run.run_id) == run
    assert len(await store.run_events(run.run_id)) == 1
    canceled = await store.transition_run(run.run_id, RunStatus.CANCELED, now=T0)
    assert canceled.ended_at == T0
    for status in RunStatus:  # terminal is final
        with pytest.raises(IllegalTransitionError, match="already finished"):
            await store.transition_run(run.run_id, status, now=T0)
    assert await store.get_run(run.run_id) == canceled


async def test_an_unknown_run_cannot_move(store: Store) -> None:
    with pytest.raises(RunNotFoundError):
        await store.transition_run("nope", RunStatus.STARTING, now=T0)


async def test_active_runs_of_an_instigator_oldest_first(store: Store, make_run: MakeRun) -> None:
    other = Instigator(kind=InstigatorKind.SENSOR, name="other")
    runs = [make_run() for _ in range(4)]
    await store.create_runs([*runs, make_run(instigator=other)])
    await store.transition_run(runs[1].run_id, RunStatus.STARTING, now=T0)
    await store.transition_run(runs[1].run_id, RunStatus.RUNNING, now=T0)
    await store.transition_run(runs[2].run_id, RunStatus.CANCELED, now=T0)
    await store.transition_run(runs[3].run_id, RunStatus.STARTING, now=T0)
    await store.transition_run(runs[3].run_id, RunStatus.CANCELING, now=T0)
    active = await store.active_runs_of(runs[0].instigator)
    assert [r.run_id for r in active] == [runs[0].run_id, runs[1].run_id, runs[3].run_id]
    await store.transition_run(runs[3].run_id, RunStatus.CANCELED, now=T0)
    assert len(await store.active_runs_of(runs[0].instigator)) == 2
    assert len(await store.active_runs_of(other)) == 1


async def test_transition_runs_moves_many_and_reports_each_failure(
    store: Store, make_run: MakeRun
) -> None:
    from daemon.ports import RunMove

    a, b = make_run(), make_run()
    await store.create_runs([a, b])
    results = await store.transition_runs(
        [
            RunMove(run_id=a.run_id, status=RunStatus.STARTING, now=T0),
            RunMove(run_id=b.run_id, status=RunStatus.SUCCESS, now=T0),  # illegal from QUEUED
            RunMove(run_id="no-such-run", status=RunStatus.CANCELED, now=T0),
            RunMove(run_id=a.run_id, status=RunStatus.RUNNING, now=T0, event={"pid": 7}),
        ]
    )
    assert isinstance(results[0], Run) and results[0].status is RunStatus.STARTING
    assert isinstance(results[1], IllegalTransitionError)
    assert isinstance(results[2], RunNotFoundError)
    assert isinstance(results[3], Run) and results[3].started_at == T0
    assert (await store.get_run(b.run_id)).status is RunStatus.QUEUED  # untouched
    kinds = [e.kind for e in await store.run_events(a.run_id)]
    assert kinds[-2:] == ["run.starting", "run.running"]
    assert await store.transition_runs([]) == []
