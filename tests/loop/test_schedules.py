"""The schedule loop on a fake clock: cadence, DST, catch-up, overlap, crash safety."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from daemon import RunRequest, Schedule, SkipReason, job, schedule
from daemon.domain.runs import RunStatus
from daemon.domain.ticks import TickStatus
from daemon.ports import RunQuery, TickQuery
from daemon.testing import drive

from .conftest import START, Defs

pytestmark = pytest.mark.anyio


@job
def noop(context):  # pragma: no cover - never executed here
    pass


async def all_runs(store):
    return await store.list_runs(RunQuery(limit=None))


async def all_ticks(store, name=None):
    return await store.list_ticks(TickQuery(instigator_name=name, limit=None))


async def test_a_week_of_minutely_ticks_runs_once_each(running, store, clock):
    sched = await running.start(Defs.of(Schedule(name="every_minute", cron="* * * * *", job=noop)))
    await drive(clock, START + timedelta(days=7), sched)
    runs = await all_runs(store)
    assert len(runs) == 7 * 24 * 60
    assert len({r.run_key for r in runs}) == len(runs)
    ticks = await all_ticks(store)
    assert Counter(t.status for t in ticks) == {TickStatus.SUCCESS: 7 * 24 * 60}
    # on time: every tick evaluated exactly at its scheduled time on the fake clock
    assert all(t.started_at == t.scheduled_for for t in ticks)


async def test_run_key_is_tick_time_and_tags_priority_flow(running, store, clock):
    @job(tags={"db": "warehouse"}, priority=1)
    def load(context):  # pragma: no cover
        pass

    sched = await running.start(
        Defs.of(
            Schedule(
                name="hourly",
                cron="0 * * * *",
                job=load,
                tags={"team": "data"},
                priority=7,
                run_config={"full": True},
            )
        )
    )
    await drive(clock, datetime(2026, 6, 1, 1, 0, 0, tzinfo=UTC), sched)
    (run,) = await all_runs(store)
    assert run.run_key == "2026-06-01T01:00:00+00:00"
    assert run.priority == 7
    assert run.tags == {"db": "warehouse", "team": "data", "tickd/priority": "7"}
    assert run.run_config == {"full": True}
    assert run.status is RunStatus.QUEUED


@pytest.mark.parametrize(
    ("zone", "cron", "day", "expected_utc"),
    [
        # Berlin spring forward 2026-03-29 02:00 -> 03:00: 02:30 does not exist; the
        # fixed-time cron fires once at the end of the gap (01:00 UTC = 03:00 CEST).
        (
            "Europe/Berlin",
            "30 2 * * *",
            datetime(2026, 3, 29, tzinfo=UTC),
            [
                datetime(2026, 3, 28, 1, 30, tzinfo=UTC),
                datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
                datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
            ],
        ),
        # New York fall back 2026-11-01 02:00 -> 01:00: 01:30 happens twice; fixed-time
        # fires once, at the first (05:30 UTC, EDT).
        (
            "America/New_York",
            "30 1 * * *",
            datetime(2026, 11, 1, tzinfo=UTC),
            [
                datetime(2026, 10, 31, 5, 30, tzinfo=UTC),
                datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
                datetime(2026, 11, 2, 6, 30, tzinfo=UTC),
            ],
        ),
    ],
)
async def test_dst_weeks(running, store, clock, zone, cron, day, expected_utc):
    clock._now = day - timedelta(days=1, hours=12)
    sched = await running.start(Defs.of(Schedule(name="daily", cron=cron, job=noop, timezone=zone)))
    await drive(clock, day + timedelta(days=2), sched)
    ticks = sorted(await all_ticks(store), key=lambda t: t.scheduled_for)
    assert [t.scheduled_for for t in ticks] == expected_utc
    assert len(await all_runs(store)) == 3


async def test_wildcard_cron_fires_both_hours_of_a_fold(running, store, clock):
    clock._now = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
    sched = await running.start(
        Defs.of(Schedule(name="hourly", cron="0 * * * *", job=noop, timezone="America/New_York"))
    )
    await drive(clock, datetime(2026, 11, 2, 4, 0, tzinfo=UTC), sched)
    ticks = await all_ticks(store)
    assert len(ticks) == 25  # midnight to midnight local on a 25-hour day


@pytest.mark.parametrize(
    ("catchup", "extra", "ran", "skipped"),
    [
        ("latest", {}, 1, 23),
        ("all", {"max_catchup": 1000}, 24, 0),
        ("all", {"max_catchup": 5}, 5, 19),
        ("none", {}, 1, 23),  # the newest tick is only 5 s late: on time, so it runs
        ("all", {"catchup_window": 6 * 3600 - 60}, 6, 18),
    ],
)
async def test_downtime_of_a_day(running, store, clock, catchup, extra, ran, skipped):
    defs = Defs.of(Schedule(name="hourly", cron="0 * * * *", job=noop, catchup=catchup, **extra))
    sched = await running.start(defs)
    await drive(clock, datetime(2026, 6, 1, 1, 0, 5, tzinfo=UTC), sched)
    assert len(await all_runs(store)) == 1
    await running.stop()
    await clock.advance(timedelta(days=1))  # down from 01:00:05 to 01:00:05 the next day
    sched = await running.start(defs)
    ticks = await all_ticks(store)
    late = [t for t in ticks if t.scheduled_for > datetime(2026, 6, 1, 1, 0, tzinfo=UTC)]
    assert len(late) == 24  # 02:00 … 01:00 next day, each exactly once
    assert Counter(t.status for t in late) == {
        k: v for k, v in {TickStatus.SUCCESS: ran, TickStatus.SKIPPED: skipped}.items() if v
    }
    assert all("daemon was down" in (t.skip_reason or "") for t in late if t.skip_reason)
    assert len(await all_runs(store)) == 1 + ran


async def test_schedule_function_skip_and_failure_are_recorded(running, store, clock):
    calls = []

    @schedule(cron="* * * * *", job=noop)
    def picky(context):
        calls.append(context.scheduled_for)
        n = len(calls)
        if n == 1:
            return SkipReason("nothing new upstream")
        if n == 2:
            raise RuntimeError("upstream API 503")
        if n == 3:
            return 42
        return [RunRequest(run_key="a"), RunRequest(run_key="a"), RunRequest(run_key="b")]

    sched = await running.start(Defs.of(picky))
    await drive(clock, START + timedelta(minutes=4), sched)
    ticks = sorted(await all_ticks(store), key=lambda t: t.scheduled_for)
    assert [t.status for t in ticks] == [
        TickStatus.SKIPPED,
        TickStatus.FAILURE,
        TickStatus.FAILURE,
        TickStatus.SUCCESS,
    ]
    assert ticks[0].skip_reason == "nothing new upstream"
    assert "RuntimeError: upstream API 503" in ticks[1].error
    assert "Traceback" in ticks[1].error
    assert "returned int" in ticks[2].error
    assert len(ticks[3].run_ids) == 2 and len(ticks[3].deduplicated) == 1
    assert calls[0].tzinfo is not None


@pytest.mark.parametrize(
    ("overlap", "second_status", "first_after"),
    [
        ("allow", TickStatus.SUCCESS, RunStatus.RUNNING),
        ("skip", TickStatus.SKIPPED, RunStatus.RUNNING),
        ("buffer_one", TickStatus.SUCCESS, RunStatus.RUNNING),
        ("cancel_previous", TickStatus.SUCCESS, RunStatus.CANCELING),
    ],
)
async def test_overlap_policies(running, store, clock, overlap, second_status, first_after):
    sched = await running.start(
        Defs.of(Schedule(name="s", cron="* * * * *", job=noop, overlap=overlap))
    )
    await drive(clock, START + timedelta(minutes=1), sched)
    (first,) = await all_runs(store)
    await store.transition_run(first.run_id, RunStatus.STARTING, now=clock.now())
    await store.transition_run(first.run_id, RunStatus.RUNNING, now=clock.now())
    await drive(clock, START + timedelta(minutes=2), sched)
    ticks = sorted(await all_ticks(store), key=lambda t: t.scheduled_for)
    assert ticks[1].status is second_status
    assert (await store.get_run(first.run_id)).status is first_after
    if overlap == "buffer_one":  # one waits; the third tick does not add another
        await drive(clock, START + timedelta(minutes=3), sched)
        ticks = sorted(await all_ticks(store), key=lambda t: t.scheduled_for)
        assert ticks[2].status is TickStatus.SKIPPED
        assert "already waiting" in ticks[2].skip_reason
    if overlap != "allow":
        assert all(r.tags.get("tickd/serial") == "s" for r in await all_runs(store))


async def test_failure_between_evaluation_and_commit_creates_runs_once(running, store, clock):
    defs = Defs.of(Schedule(name="s", cron="* * * * *", job=noop, catchup="all"))
    sched = await running.start(defs)

    def boom(point: str) -> None:
        if point == "commit_ticks.after_runs":
            raise OSError("disk I/O error (injected)")

    store.fault = boom
    await drive(clock, START + timedelta(minutes=1), sched)
    assert await all_runs(store) == []
    assert await all_ticks(store) == []
    # the daemon dies here; a new one starts on the same store with the fault gone
    await running.stop()
    store.fault = None
    await clock.advance(10)
    sched = await running.start(defs)
    await drive(clock, START + timedelta(minutes=3), sched)
    runs = await all_runs(store)
    assert sorted(r.run_key for r in runs) == [
        "2026-06-01T00:01:00+00:00",
        "2026-06-01T00:02:00+00:00",
        "2026-06-01T00:03:00+00:00",
    ]


async def test_commit_failure_is_retried_without_restart(running, store, clock):
    sched = await running.start(Defs.of(Schedule(name="s", cron="* * * * *", job=noop)))
    store.fault = lambda point: (_ for _ in ()).throw(OSError("database or disk is full"))
    await drive(clock, START + timedelta(minutes=1, seconds=1), sched)
    assert await all_runs(store) == []
    store.fault = None
    await drive(clock, START + timedelta(minutes=1, seconds=10), sched)
    (run,) = await all_runs(store)
    assert run.run_key == "2026-06-01T00:01:00+00:00"


async def test_stopped_schedule_does_not_tick_and_start_does_not_catch_up(running, store, clock):
    from daemon.domain.ticks import InstigatorStatus
    from daemon.ticking import schedule_instigator

    sched = await running.start(
        Defs.of(Schedule(name="s", cron="* * * * *", job=noop, default_status="stopped"))
    )
    await drive(clock, START + timedelta(minutes=5), sched)
    assert await all_ticks(store) == []
    await store.set_instigator_status(
        schedule_instigator("s"), InstigatorStatus.RUNNING, now=clock.now()
    )
    await sched.refresh_states()
    await drive(clock, START + timedelta(minutes=7), sched)
    ticks = await all_ticks(store)
    assert len(ticks) == 2 and all(t.status is TickStatus.SUCCESS for t in ticks)
