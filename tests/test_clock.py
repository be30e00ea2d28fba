"""The fake clock drives time by hand; the system clock is the only wall-clock reader."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest

from daemon.adapters.system_clock import SystemClock
from daemon.testing import FakeClock

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


async def test_advance_wakes_sleepers_in_deadline_order_at_their_deadline():
    clock = FakeClock(T0)
    woke: list[tuple[str, datetime]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep_until(T0 + timedelta(seconds=seconds))
        woke.append((name, clock.now()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "late", 30)
        tg.start_soon(sleeper, "early", 10)
        tg.start_soon(sleeper, "never", 3600)
        await clock.settle()
        await clock.advance(60)
        assert woke == [
            ("early", T0 + timedelta(seconds=10)),
            ("late", T0 + timedelta(seconds=30)),
        ]
        assert clock.now() == T0 + timedelta(seconds=60)
        assert clock.next_deadline == T0 + timedelta(hours=1)
        tg.cancel_scope.cancel()


async def test_a_sleeper_that_sleeps_again_is_woken_again_within_one_advance():
    clock = FakeClock(T0)
    ticks: list[datetime] = []

    async def every_ten() -> None:
        while True:
            await clock.sleep_until(clock.now() + timedelta(seconds=10))
            ticks.append(clock.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(every_ten)
        await clock.settle()
        await clock.advance(timedelta(minutes=1))
        tg.cancel_scope.cancel()
    assert ticks == [T0 + timedelta(seconds=s) for s in range(10, 61, 10)]


async def test_past_deadline_returns_at_once():
    clock = FakeClock(T0)
    await clock.sleep_until(T0 - timedelta(days=1))
    assert clock.now() == T0


def test_fake_clock_needs_an_aware_start():
    with pytest.raises(ValueError, match="aware"):
        FakeClock(datetime(2026, 1, 1))


async def test_system_clock_is_aware_utc_and_sleeps():
    clock = SystemClock()
    now = clock.now()
    assert now.tzinfo is UTC
    await clock.sleep_until(now + timedelta(milliseconds=5))
    assert clock.now() >= now + timedelta(milliseconds=5)
