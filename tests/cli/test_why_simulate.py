"""`tickd why` and `tickd simulate` against real stores and definitions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from daemon import Schedule, job
from daemon.adapters.sqlite_store import SqliteStore
from daemon.cli import main
from daemon.domain.ticks import TickStatus
from daemon.explain import explain
from daemon.loading import Registry
from daemon.simulate import Downtime, simulate, up_periods

T0 = datetime(2026, 3, 28, 20, 0, tzinfo=UTC)

HOURLY = """
from daemon import Schedule, job

@job(executor="thread")
def report(context):
    pass

hourly = Schedule(name="hourly", cron="0 * * * *", job=report, catchup="latest")
"""


@job
def noop(context):  # pragma: no cover
    pass


def test_up_periods_subtract_downtimes():
    d = [
        Downtime(start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=2)),
        Downtime(start=T0 + timedelta(hours=5), end=T0 + timedelta(hours=9)),
    ]
    assert up_periods(T0, T0 + timedelta(hours=6), d) == [
        (T0, T0 + timedelta(hours=1)),
        (T0 + timedelta(hours=2), T0 + timedelta(hours=5)),
    ]


@pytest.mark.anyio
async def test_simulate_catches_up_after_downtime_across_dst():
    registry = Registry(
        jobs={"noop": noop},
        schedules={
            "berlin": Schedule(
                name="berlin", cron="30 2 * * *", job=noop, timezone="Europe/Berlin", catchup="all"
            )
        },
    )
    sim = await simulate(
        registry,
        start=T0,
        end=T0 + timedelta(days=2),
        downtimes=[Downtime(start=T0 + timedelta(hours=4), end=T0 + timedelta(hours=30))],
    )
    # 02:30 does not exist on 2026-03-29 in Berlin: the fixed-time cron fires at 03:00 CEST
    # (01:00 UTC), missed while down and caught up; the next day at 00:30 UTC.
    assert [t.scheduled_for for t in sim.ticks] == [
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]
    assert all(t.status is TickStatus.SUCCESS for t in sim.ticks)
    assert len(sim.runs) == 2


def test_explain_names_the_reason_for_each_tick():
    from daemon.domain.runs import Instigator, InstigatorKind
    from daemon.domain.ticks import Tick

    sched = Schedule(name="hourly", cron="0 * * * *", job=noop)
    inst = Instigator(kind=InstigatorKind.SCHEDULE, name="hourly")
    ticks = [
        Tick(
            tick_id="t1",
            instigator=inst,
            status=TickStatus.SKIPPED,
            started_at=T0 + timedelta(hours=2),
            scheduled_for=T0,
            skip_reason="missed while the daemon was down; catchup='latest' ran the newest",
        ),
        Tick(
            tick_id="t2",
            instigator=inst,
            status=TickStatus.FAILURE,
            started_at=T0 + timedelta(hours=2),
            scheduled_for=T0 + timedelta(hours=1),
            error="schedule 'hourly' raised ValueError: nope\nTraceback ...",
        ),
    ]
    e = explain(
        name="hourly",
        definition=sched,
        state=None,
        ticks=ticks,
        runs={},
        around=T0 + timedelta(hours=1),
        window=timedelta(hours=2),
    )
    verdicts = [(line.at, line.verdict) for line in e.lines]
    assert (T0, "skipped") in verdicts
    assert (T0 + timedelta(hours=1), "failed") in verdicts
    # due times without ticks are listed with a reason
    missing = [line for line in e.lines if line.verdict == "no tick"]
    assert missing and all(line.reason for line in missing)
    assert e.status == "running (its default_status)"


def test_why_cli_explains_a_skipped_tick(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "hourly.py").write_text(HOURLY)
    store_path = tmp_path / "tickd.db"

    async def seed() -> None:
        from daemon.domain.ids import IdGenerator
        from daemon.ticking import Evaluator

        store = await SqliteStore.open(store_path)
        registry = Registry(
            jobs={"report": noop},
            schedules={"hourly": Schedule(name="hourly", cron="0 * * * *", job="report")},
        )
        ev = Evaluator(jobs=registry.jobs, ids=IdGenerator(), now=lambda: T0 + timedelta(hours=3))
        commits = await ev.schedule_ticks(registry.schedules["hourly"], last_tick_at=T0)
        await store.commit_ticks(commits)
        await store.close()

    anyio.run(seed, backend="asyncio")
    args = [
        "why",
        "hourly",
        "--at",
        (T0 + timedelta(hours=1)).isoformat(),
        "--store",
        str(store_path),
        "--definitions",
        str(defs),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "skipped" in out and "daemon was down" in out and "latest" in out
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {t["verdict"] for t in data["ticks"]} >= {"skipped", "ran"}
    assert main(["why", "nope", "--store", str(store_path), "--definitions", str(defs)]) == 1


def test_simulate_cli_prints_ticks(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "hourly.py").write_text(HOURLY)
    code = main(
        [
            "simulate",
            "--definitions",
            str(defs),
            "--from",
            "2026-03-28T20:00Z",
            "--to",
            "2026-03-29T02:00Z",
            "--down",
            "2026-03-28T21:30Z/2026-03-29T00:30Z",
            "--json",
            "--store",
            str(tmp_path / "untouched.db"),
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    statuses = [(t["scheduled_for"], t["status"]) for t in data["ticks"]]
    assert ("2026-03-28T22:00:00+00:00", "SKIPPED") in statuses
    assert ("2026-03-29T00:00:00+00:00", "SUCCESS") in statuses
    assert not (tmp_path / "untouched.db").exists()  # nothing touches the real store
    assert main(["simulate", "--definitions", str(defs), "--down", "garbage"]) == 2
