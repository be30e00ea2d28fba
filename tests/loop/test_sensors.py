"""Sensors on a fake clock: intervals, cursors, failures, timeouts, isolation."""

from __future__ import annotations

import threading
from datetime import timedelta

import anyio
import pytest

from daemon import RunRequest, SensorResult, SkipReason, job, run_status_sensor, sensor
from daemon.domain.runs import RunStatus
from daemon.domain.ticks import TickStatus
from daemon.ports import RunQuery, TickQuery
from daemon.testing import drive

from .conftest import START, Defs

pytestmark = pytest.mark.anyio


@job
def ingest(context):  # pragma: no cover
    pass


async def ticks_of(store, name):
    ticks = await store.list_ticks(TickQuery(instigator_name=name, limit=None))
    return sorted(ticks, key=lambda t: t.started_at)


async def test_interval_cursor_and_run_key_dedup(running, store, clock):
    seen = []

    @sensor(job=ingest, minimum_interval=10)
    def files(context):
        seen.append(context.cursor)
        n = len(seen)
        keys = [f"f{i}" for i in range(n * 2)]  # all known keys plus two new each tick
        return SensorResult(
            run_requests=[RunRequest(run_key=k, run_config={"path": k}) for k in keys],
            cursor=str(n),
        )

    sched = await running.start(Defs.of(ingest, files))
    await drive(clock, START + timedelta(seconds=35), sched)
    ticks = await ticks_of(store, "files")
    assert [t.started_at - START for t in ticks] == [timedelta(seconds=s) for s in (0, 10, 20, 30)]
    assert seen == [None, "1", "2", "3"]
    assert [t.cursor_after for t in ticks] == ["1", "2", "3", "4"]
    assert [len(t.run_ids) for t in ticks] == [2, 2, 2, 2]
    assert [len(t.deduplicated) for t in ticks] == [0, 2, 4, 6]
    runs = await store.list_runs(RunQuery(limit=None))
    assert sorted(r.run_key for r in runs) == sorted(f"f{i}" for i in range(8))
    states = await store.instigator_states()
    (state,) = states.values()
    assert state.cursor == "4"
    assert state.last_run_key == "f7"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("raise", "ValueError: bad bucket"),
        ("garbage", "returned dict"),
        ("bad_item", "containing int"),
        ("bad_cursor", "cursor must be a str"),
    ],
)
async def test_failing_sensor_is_recorded_and_keeps_ticking(running, store, clock, body, error):
    @sensor(job=ingest, minimum_interval=5)
    def flaky(context):
        if body == "raise":
            raise ValueError("bad bucket")
        if body == "garbage":
            return {"run": 1}
        if body == "bad_item":
            return [RunRequest(), 3]
        return SensorResult(run_requests=[RunRequest()], cursor=5)

    sched = await running.start(Defs.of(ingest, flaky))
    await drive(clock, START + timedelta(seconds=11), sched)
    ticks = await ticks_of(store, "flaky")
    assert len(ticks) == 3
    assert all(t.status is TickStatus.FAILURE and error in t.error for t in ticks)
    assert await store.list_runs(RunQuery()) == []


async def test_skip_reason_is_recorded(running, store, clock):
    @sensor(job=ingest)
    def quiet(context):
        return SkipReason("no new files in ./var/inbox")

    sched = await running.start(Defs.of(ingest, quiet))
    await drive(clock, START + timedelta(seconds=1), sched)
    (tick,) = await ticks_of(store, "quiet")
    assert tick.status is TickStatus.SKIPPED
    assert tick.skip_reason == "no new files in ./var/inbox"


async def test_async_sensor_timeout_is_cancelled(running, store, clock):
    @sensor(job=ingest, minimum_interval=5, timeout=0.05)
    async def hangs(context):
        await anyio.sleep_forever()

    sched = await running.start(Defs.of(ingest, hangs))
    await drive(clock, START + timedelta(seconds=6), sched)
    ticks = await ticks_of(store, "hangs")
    assert len(ticks) == 2
    assert all("timed out after 0.05s" in t.error for t in ticks)


async def test_hanging_sync_sensor_does_not_delay_99_others(running, store, clock):
    release = threading.Event()

    @sensor(job=ingest, minimum_interval=10, timeout=0.05)
    def stuck(context):
        release.wait(30)
        return SkipReason("finally")

    def make(i):
        @sensor(job=ingest, minimum_interval=10, name=f"s{i:02}")
        def ok(context):
            return RunRequest(run_key=str(context.evaluated_at))

        return ok

    others = [make(i) for i in range(99)]
    sched = await running.start(Defs.of(ingest, stuck, *others))
    try:
        await drive(clock, START + timedelta(seconds=65), sched)
        for s in others[:3] + others[-3:]:
            ticks = await ticks_of(store, s.name)
            assert [t.started_at - START for t in ticks] == [
                timedelta(seconds=x) for x in range(0, 61, 10)
            ]
        stuck_ticks = await ticks_of(store, "stuck")
        # timed out once; not called again while its thread is still busy
        assert [t.status for t in stuck_ticks] == [TickStatus.FAILURE]
        assert "timed out" in stuck_ticks[0].error
    finally:
        release.set()
    await anyio.sleep(0.05)  # let the abandoned thread return (real time, tiny)
    await drive(clock, START + timedelta(seconds=85), sched)
    stuck_ticks = await ticks_of(store, "stuck")
    assert len(stuck_ticks) >= 2  # evaluated again once its thread returned


async def test_run_status_sensor_chains_on_completion(running, store, clock):
    @job
    def report(context):  # pragma: no cover
        pass

    @job
    def publish(context):  # pragma: no cover
        pass

    @run_status_sensor(watched_jobs=[report], statuses=["SUCCESS"], job=publish)
    def after_report(context):
        return RunRequest(partition_key=None, run_config={"upstream": context.run.run_id})

    sched = await running.start(Defs.of(report, publish, after_report))
    from daemon.domain.runs import Instigator, InstigatorKind, Run

    run = Run(
        run_id="r-1",
        job="report",
        status=RunStatus.QUEUED,
        created_at=clock.now(),
        instigator=Instigator(kind=InstigatorKind.MANUAL, name="report"),
    )
    await store.create_runs([run])
    for status in (RunStatus.STARTING, RunStatus.RUNNING, RunStatus.SUCCESS):
        done = await store.transition_run("r-1", status, now=clock.now())
    await sched.run_finished(done)
    await sched.run_finished(done)  # the same completion twice: one publish run
    runs = [r for r in await store.list_runs(RunQuery(limit=None)) if r.job == "publish"]
    assert len(runs) == 1
    assert runs[0].run_config == {"upstream": "r-1"}
    assert runs[0].run_key == "r-1"
