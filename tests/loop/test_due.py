"""Taking what is due off the heap: popped one by one, or split off in one pass when a
boundary is shared by many; either way every due entry once, in heap order."""

from __future__ import annotations

import heapq
import random
from datetime import UTC, datetime, timedelta

import pytest

from daemon.adapters.memory_store import MemoryStore
from daemon.domain.runs import InstigatorKind
from daemon.loop import BULK_POP, Scheduler
from daemon.testing import FakeClock

from .conftest import Defs

T0 = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize("due_count", [0, 1, BULK_POP - 1, BULK_POP, BULK_POP + 1, 3 * BULK_POP])
def test_pop_due_takes_every_due_entry_in_heap_order(due_count):
    rng = random.Random(due_count)
    sched = Scheduler(store=MemoryStore(), clock=FakeClock(T0), definitions=Defs())
    now = T0 + timedelta(minutes=1)
    entries = [
        (now - timedelta(seconds=rng.randrange(0, 3)), i, (InstigatorKind.SCHEDULE, f"d{i}"), 1)
        for i in range(due_count)
    ] + [
        (
            now + timedelta(seconds=rng.randrange(1, 90)),
            due_count + i,
            (InstigatorKind.SENSOR, f"l{i}"),
            1,
        )
        for i in range(2 * BULK_POP)
    ]
    rng.shuffle(entries)
    for entry in entries:
        heapq.heappush(sched._heap, entry)
    expected = sorted(e for e in entries if e[0] <= now)

    assert sched._pop_due(now) == expected
    assert sorted(sched._heap) == sorted(e for e in entries if e[0] > now)
    assert [heapq.heappop(sched._heap) for _ in range(len(sched._heap))] == sorted(
        e for e in entries if e[0] > now
    )  # still a heap
