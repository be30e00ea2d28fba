"""Helpers for testing tickd and the definitions written for it.

`FakeClock` drives time by hand: `await clock.advance(seconds)` moves it and wakes every
sleeper whose deadline has come, in deadline order, so a test runs a week of schedules
in milliseconds.
"""

from __future__ import annotations

import heapq
import itertools
from datetime import UTC, datetime, timedelta
from typing import Protocol

import anyio
import anyio.lowlevel


class FakeClock:
    """A Clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware start time, e.g. tzinfo=UTC")
        self._now = start.astimezone(UTC)
        self._sleepers: list[tuple[datetime, int, anyio.Event]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, deadline: datetime) -> None:
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(self._sleepers, (deadline, next(self._seq), event))
        await event.wait()

    @property
    def next_deadline(self) -> datetime | None:
        """The earliest deadline someone sleeps until, if any."""
        while self._sleepers and self._sleepers[0][2].is_set():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def settle(self, rounds: int = 20) -> None:
        """Let woken tasks run until they block again (a few scheduler passes)."""
        for _ in range(rounds):
            await anyio.lowlevel.checkpoint()

    async def advance(self, seconds: float | timedelta = 0) -> None:
        """Move time forward, waking sleepers one deadline at a time, in order.

        Each sleeper sees `now()` equal to its own deadline when it wakes, and gets to
        run (and possibly sleep again) before time moves past it.
        """
        delta = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        target = self._now + delta
        while True:
            await self.settle()
            nxt = self.next_deadline
            if nxt is None or nxt > target:
                break
            self._now = max(self._now, nxt)
            self._wake_due()
        self._now = target
        await self.settle()

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, event = heapq.heappop(self._sleepers)
            event.set()

    async def advance_to(self, when: datetime) -> None:
        await self.advance(max(timedelta(0), when - self._now))


class _Idles(Protocol):
    async def wait_idle(self) -> None: ...


async def drive(clock: FakeClock, until: datetime, *loops: _Idles) -> None:
    """Move `clock` to `until` one sleeper's deadline at a time, letting `loops` finish
    what each deadline started (store I/O included) before time moves on."""
    while True:
        for loop in loops:
            await loop.wait_idle()
        nxt = clock.next_deadline
        if nxt is None or nxt > until:
            break
        clock._now = max(clock._now, nxt)
        clock._wake_due()
        await anyio.lowlevel.checkpoint()
    await clock.advance_to(until)
    for loop in loops:
        await loop.wait_idle()
