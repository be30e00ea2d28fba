"""Run statuses and transitions, dedup keys, queue order and concurrency limits."""

import os
import random
from datetime import UTC, datetime, timedelta

import pytest

from daemon.domain.ids import IdGenerator
from daemon.domain.limits import ConcurrencyLimits, LimitCounter, TagLimit, queue_order
from daemon.domain.requests import RunRequest, collapse, default_run_key
from daemon.domain.runs import (
    Instigator,
    InstigatorKind,
    Run,
    RunStatus,
    can_transition,
    priority_of,
)
from daemon.errors import IllegalTransitionError

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
S = Instigator(kind=InstigatorKind.SCHEDULE, name="nightly")
Q, ST, RU, CI, OK, KO, CA, TO = (
    RunStatus.QUEUED,
    RunStatus.STARTING,
    RunStatus.RUNNING,
    RunStatus.CANCELING,
    RunStatus.SUCCESS,
    RunStatus.FAILURE,
    RunStatus.CANCELED,
    RunStatus.TIMED_OUT,
)


@pytest.mark.parametrize(
    ("a", "b", "legal"),
    [
        (Q, ST, True),
        (Q, CA, True),
        (Q, RU, False),
        (Q, OK, False),
        (ST, RU, True),
        (ST, KO, True),
        (ST, CI, True),
        (RU, OK, True),
        (RU, KO, True),
        (RU, TO, True),
        (RU, CI, True),
        (RU, Q, False),
        (CI, CA, True),
        (CI, OK, True),
        (CI, RU, False),
        (OK, KO, False),
        (KO, Q, False),
        (CA, RU, False),
        (TO, OK, False),
    ],
)
def test_transitions(a, b, legal):
    assert can_transition(a, b) is legal


def run(n: int, **kw) -> Run:
    base = {"run_id": f"r{n}", "job": "j", "status": Q, "instigator": S, "created_at": T0}
    base.update(kw)
    return Run(**base)


def test_moved_to_sets_times_and_refuses_after_terminal():
    r = run(1).moved_to(ST, now=T0).moved_to(RU, now=T0 + timedelta(seconds=1))
    assert r.started_at == T0 + timedelta(seconds=1)
    done = r.moved_to(KO, now=T0 + timedelta(seconds=3), error="boom")
    assert done.ended_at == T0 + timedelta(seconds=3) and done.error == "boom"
    with pytest.raises(IllegalTransitionError, match="already finished"):
        done.moved_to(RU, now=T0)


def test_default_run_key_is_the_tick_time_in_utc():
    from zoneinfo import ZoneInfo

    t = datetime(2026, 3, 29, 3, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert default_run_key(t) == "2026-03-29T01:30:00+00:00"


def test_collapse_first_wins_by_run_key_and_partition():
    a = run(1, run_key="k1")
    b = run(2, run_key="k1")
    c = run(3, partition_key="2026-05-01")
    d = run(4, partition_key="2026-05-01")
    e = run(5, partition_key="2026-05-01", job="other")
    kept, dropped = collapse([a, b, c, d, e])
    assert kept == [a, c, e]
    assert dropped == [(b, a), (d, c)]


def test_run_request_accepts_job_objects_and_stringifies_tags():
    class J:
        name = "report"

    r = RunRequest(job=J(), run_key=7, tags={"n": 1})  # type: ignore[arg-type]
    assert r.job == "report" and r.run_key == "7" and r.tags == {"n": "1"}
    assert RunRequest.for_partition("2026-01-01").partition_key == "2026-01-01"


@pytest.mark.parametrize(
    ("tags", "explicit", "expected"),
    [
        ({}, None, 0),
        ({"tickd/priority": "5"}, None, 5),
        ({"tickd/priority": "5"}, 9, 9),
        ({"tickd/priority": "x"}, None, 0),
        ({}, -3, -3),
    ],
)
def test_priority_of(tags, explicit, expected):
    assert priority_of(tags, explicit) == expected


def test_queue_order_priority_then_age():
    runs = [
        run(1, priority=0, created_at=T0),
        run(2, priority=5, created_at=T0 + timedelta(seconds=2)),
        run(3, priority=5, created_at=T0 + timedelta(seconds=1)),
        run(4, priority=-1, created_at=T0 - timedelta(days=1)),
    ]
    assert [r.run_id for r in sorted(runs, key=queue_order)] == ["r3", "r2", "r1", "r4"]


def test_limits_pass_over_blocked_runs():
    limits = ConcurrencyLimits(
        max_concurrent_runs=5,
        tag_limits=(
            TagLimit(key="db", value="warehouse", limit=1),
            TagLimit(key="team", per_value=True, limit=2),
            TagLimit(key="api", limit=1),
        ),
    )
    counter = LimitCounter(limits, in_flight=[{"db": "warehouse"}])
    assert not counter.admit({"db": "warehouse"})  # value limit full
    assert counter.admit({"db": "other"})  # the limit names warehouse only
    assert counter.admit({"team": "a"}) and counter.admit({"team": "a"})
    assert not counter.admit({"team": "a"})  # per value: a is full …
    assert counter.admit({"team": "b"})  # … b is not; and now the global max (5) is reached
    assert not counter.admit({})


def test_ids_sort_by_time_and_by_creation_within_a_millisecond():
    gen = IdGenerator()
    ids = [gen.new(T0) for _ in range(1000)] + [gen.new(T0 + timedelta(milliseconds=1))]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    later = IdGenerator().new(T0 + timedelta(seconds=1))
    assert later > ids[-1]


def test_ids_of_one_millisecond_differ_across_a_fork_and_a_seeded_random():
    """A millisecond's counter starts at random, from the module's own generator: a
    forked child (a worker) draws other starts than its parent, and seeding the global
    `random` (as tests do) does not repeat them."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, IdGenerator().new(T0).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    random.seed(7)
    first = IdGenerator().new(T0)
    random.seed(7)
    second = IdGenerator().new(T0)
    assert len({IdGenerator().new(T0), child, first, second}) == 4


@pytest.mark.parametrize("start", [0, (5 << 48) - 3, (1 << 74) - 200])
def test_many_ids_equal_one_at_a_time(start):
    """`many` formats a shared prefix once; where the counter carries into it (or wraps),
    it still equals `new` called in a loop."""
    one, bulk = IdGenerator(), IdGenerator()
    for gen in (one, bulk):
        gen.new(T0)
        gen._counter = start  # as if the millisecond had started here
    singles = [one.new(T0) for _ in range(300)]
    assert bulk.many(T0, 300) == singles
    assert len(set(singles)) == 300
