"""The loop's own evaluation of schedules without a function builds exactly what the
general evaluation builds: same runs, tags, priority, config, run keys, ticks and state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon import DailyPartitions, Schedule, job
from daemon.domain.ids import IdGenerator
from daemon.domain.ticks import TickCommit
from daemon.ticking import Evaluator

pytestmark = pytest.mark.anyio

T = datetime(2026, 6, 1, 0, 1, tzinfo=UTC)


@job
def plain(context):  # pragma: no cover - never executed here
    pass


@job(tags={"db": "warehouse", "tickd/priority": "3"}, priority=2)
def tagged(context):  # pragma: no cover
    pass


@job(partitions=DailyPartitions(start="2026-01-01"))
def daily(context):  # pragma: no cover
    pass


SCHEDULES = [
    Schedule(name="a", cron="* * * * *", job=plain),
    Schedule(name="b", cron="* * * * *", job=tagged),
    Schedule(name="c", cron="* * * * *", job=tagged, tags={"team": "x"}, priority=0),
    Schedule(
        name="d",
        cron="*/15 * * * *",
        job=tagged,
        tags={"tickd/priority": "9"},
        run_config={"full": True},
        timezone="Europe/Berlin",
    ),
    Schedule(name="e", cron="0 0 * * *", job=daily),  # partitioned: the general path
    Schedule(name="f", cron="* * * * *", job=plain, catchup="all", max_catchup=3),
]
JOBS = {j.name: j for j in (plain, tagged, daily)}


def _comparable(commit: TickCommit) -> object:
    """A commit without its ids (each evaluation draws fresh ones)."""
    tick = commit.tick
    return (
        tick.status,
        tick.scheduled_for,
        tick.started_at,
        tick.ended_at,
        tick.skip_reason,
        tick.error,
        commit.state,
        [
            (
                r.job,
                r.status,
                r.instigator,
                r.created_at,
                r.priority,
                r.tags,
                r.run_config,
                r.partition_key,
                r.run_key,
                r.tick_id == tick.tick_id,
            )
            for r in commit.runs
        ],
    )


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: s.name)
@pytest.mark.parametrize("down", [timedelta(0), timedelta(hours=2)])
async def test_plain_evaluation_matches_the_general_one(schedule, down):
    now = T + timedelta(days=2) + down
    last = T + timedelta(days=2) - timedelta(minutes=1 if not down else 0)
    evaluator = Evaluator(jobs=JOBS, ids=IdGenerator(), now=lambda: now)
    general = await evaluator.schedule_ticks(schedule, last_tick_at=last - timedelta(days=1))
    plain_commits = evaluator.plain_schedule_ticks(schedule, last_tick_at=last - timedelta(days=1))
    assert general, "the table should have due ticks"
    assert [_comparable(c) for c in plain_commits] == [_comparable(c) for c in general]
    # and again, with what the first call cached
    again = evaluator.plain_schedule_ticks(schedule, last_tick_at=last - timedelta(days=1))
    assert [_comparable(c) for c in again] == [_comparable(c) for c in general]


def test_keyword_constructor_builds_what_the_dataclass_builds():
    from daemon.domain.runs import Instigator, InstigatorKind, Run, RunStatus
    from daemon.domain.ticks import StateUpdate, Tick, TickStatus
    from daemon.evaluation import keyword_constructor

    who = Instigator(kind=InstigatorKind.SCHEDULE, name="s")
    assert keyword_constructor(StateUpdate)(cursor="c", set_cursor=True) == StateUpdate(
        cursor="c", set_cursor=True
    )
    tick = dict(tick_id="t", instigator=who, status=TickStatus.SUCCESS, started_at=T)
    assert keyword_constructor(Tick)(**tick) == Tick(**tick)
    run = dict(
        run_id="r", job="j", status=RunStatus.QUEUED, instigator=who, created_at=T,
        tags={"a": "b"}, run_config={},
    )  # fmt: skip
    made = keyword_constructor(Run)(**run)
    assert made == Run(**run) and made.attempt == 1
    with pytest.raises(TypeError):
        keyword_constructor(Run)(run_id="r")  # required fields stay required
