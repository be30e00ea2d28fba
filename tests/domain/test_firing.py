"""Catch-up, overlap and jitter rules, as tables of literal aware datetimes."""

from datetime import UTC, datetime, timedelta

import pytest

from daemon.domain.firing import (
    Catchup,
    Overlap,
    SkipCode,
    decide_overlap,
    jitter_offset,
    plan_ticks,
)
from daemon.domain.runs import Instigator, InstigatorKind, Run, RunStatus

T = [datetime(2026, 3, 1, 10, m, tzinfo=UTC) for m in range(6)]  # 10:00 … 10:05
NOW = datetime(2026, 3, 1, 10, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("catchup", "max_catchup", "window", "run", "missed"),
    [
        # on time: the one due tick runs whatever the policy
        (Catchup.LATEST, 100, None, [T[5]], []),
        (Catchup.NONE, 100, None, [T[5]], []),
        (Catchup.ALL, 100, None, [T[5]], []),
    ],
)
def test_on_time_tick_runs(catchup, max_catchup, window, run, missed):
    plan = plan_ticks(
        [T[5]], now=NOW, catchup=catchup, max_catchup=max_catchup, catchup_window=window
    )
    assert list(plan.run) == run
    assert [m.scheduled_for for m in plan.missed] == missed


@pytest.mark.parametrize(
    ("catchup", "max_catchup", "window", "run", "missed_codes"),
    [
        (
            Catchup.LATEST,
            100,
            None,
            [T[5]],
            {
                T[0]: SkipCode.CATCHUP_LATEST,
                T[1]: SkipCode.CATCHUP_LATEST,
                T[2]: SkipCode.CATCHUP_LATEST,
                T[3]: SkipCode.CATCHUP_LATEST,
                T[4]: SkipCode.CATCHUP_LATEST,
            },
        ),
        (Catchup.ALL, 100, None, T, {}),
        (
            Catchup.ALL,
            2,
            None,
            [T[4], T[5]],
            {
                T[0]: SkipCode.CATCHUP_MAX,
                T[1]: SkipCode.CATCHUP_MAX,
                T[2]: SkipCode.CATCHUP_MAX,
                T[3]: SkipCode.CATCHUP_MAX,
            },
        ),
        (
            Catchup.NONE,
            100,
            None,
            [T[5]],
            {
                T[0]: SkipCode.CATCHUP_NONE,
                T[1]: SkipCode.CATCHUP_NONE,
                T[2]: SkipCode.CATCHUP_NONE,
                T[3]: SkipCode.CATCHUP_NONE,
                T[4]: SkipCode.CATCHUP_NONE,
            },
        ),
        # a window of 150 s: 10:00, 10:01 and 10:02 are older than now - 150 s = 10:02:31
        (
            Catchup.ALL,
            100,
            timedelta(seconds=150),
            [T[3], T[4], T[5]],
            {
                T[0]: SkipCode.CATCHUP_WINDOW,
                T[1]: SkipCode.CATCHUP_WINDOW,
                T[2]: SkipCode.CATCHUP_WINDOW,
            },
        ),
    ],
)
def test_catchup_after_downtime(catchup, max_catchup, window, run, missed_codes):
    plan = plan_ticks(T, now=NOW, catchup=catchup, max_catchup=max_catchup, catchup_window=window)
    assert list(plan.run) == run
    assert {m.scheduled_for: m.code for m in plan.missed} == missed_codes
    # every due tick is accounted for exactly once
    covered = sorted([*plan.run, *(m.scheduled_for for m in plan.missed)])
    assert covered == T


def test_missed_reasons_read_well():
    plan = plan_ticks(T, now=NOW, catchup=Catchup.LATEST, max_catchup=100, catchup_window=None)
    assert "daemon was down" in plan.missed[0].reason
    assert "latest" in plan.missed[0].reason


def test_nothing_due():
    plan = plan_ticks([], now=NOW, catchup=Catchup.ALL, max_catchup=5, catchup_window=None)
    assert plan.run == () and plan.missed == ()


def _run(status: RunStatus, n: int = 1) -> Run:
    return Run(
        run_id=f"r{n}",
        job="j",
        status=status,
        instigator=Instigator(kind=InstigatorKind.SCHEDULE, name="s"),
        created_at=T[0],
    )


@pytest.mark.parametrize(
    ("policy", "active", "create", "cancel"),
    [
        (Overlap.ALLOW, [RunStatus.RUNNING], True, ()),
        (Overlap.SKIP, [], True, ()),
        (Overlap.SKIP, [RunStatus.RUNNING], False, ()),
        (Overlap.SKIP, [RunStatus.QUEUED], False, ()),
        (Overlap.SKIP, [RunStatus.SUCCESS], True, ()),
        (Overlap.BUFFER_ONE, [RunStatus.RUNNING], True, ()),
        (Overlap.BUFFER_ONE, [RunStatus.RUNNING, RunStatus.QUEUED], False, ()),
        (Overlap.CANCEL_PREVIOUS, [RunStatus.RUNNING], True, ("r0",)),
        (Overlap.CANCEL_PREVIOUS, [], True, ()),
    ],
)
def test_overlap(policy, active, create, cancel):
    runs = [_run(s, i) for i, s in enumerate(active)]
    decision = decide_overlap(policy, runs)
    assert decision.create is create
    assert decision.cancel == cancel
    if not create:
        assert decision.reason and policy.value in decision.reason


def test_jitter_is_deterministic_and_bounded():
    a = jitter_offset("nightly", T[0], 60)
    assert a == jitter_offset("nightly", T[0], 60)
    assert timedelta(0) <= a < timedelta(seconds=60)
    assert jitter_offset("nightly", T[0], None) == timedelta(0)
    spread = {jitter_offset("nightly", t, 60) for t in T}
    assert len(spread) == len(T)
