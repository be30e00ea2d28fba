"""SQLite store benchmark: the two operations a busy daemon repeats.

Run: .venv/bin/python -m bench.store_bench [--repeats N]

1. commit one tick of 10,000 requests (distinct run keys, 100 of them new) against a
   store holding 100,000 runs;
2. claim the next 1,000 runs in priority order with 100,000 queued, with no limits and
   with one tag limit.

Each figure is the median of N timed repeats on a temp file (WAL, synchronous=FULL); the
garbage collector runs between repeats (untimed) so each starts from the same state.
"""

from __future__ import annotations

import argparse
import gc
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

from bench.common import Figure
from daemon.adapters.sqlite_store import SqliteStore
from daemon.domain.limits import ConcurrencyLimits, TagLimit
from daemon.domain.runs import Instigator, InstigatorKind, Run, RunStatus
from daemon.domain.ticks import StateUpdate, Tick, TickCommit, TickStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SENSOR = Instigator(kind=InstigatorKind.SENSOR, name="inbox")
EXISTING = 100_000
REQUESTS = 10_000
NEW = 100
CLAIM = 1_000


def run(n: int, *, key: str | None, tags: dict[str, str] | None = None) -> Run:
    return Run(
        run_id=f"{n:012d}-{key or 'run'}",
        job="ingest",
        status=RunStatus.QUEUED,
        instigator=SENSOR,
        created_at=T0 + timedelta(milliseconds=n),
        priority=n % 3,
        tags=tags or {},
        run_config={"file": f"/spool/{n}.csv"},
        run_key=key,
    )


async def seed(store: SqliteStore, count: int, *, tagged_every: int = 0) -> None:
    """`count` QUEUED runs in one create_runs call (one json_each insert)."""
    runs = [
        run(
            i,
            key=f"file-{i}",
            tags={"db": "warehouse"} if tagged_every and i % tagged_every == 0 else {"db": "lake"},
        )
        for i in range(count)
    ]
    result = await store.create_runs(runs)
    assert len(result.created) == count


async def timed(
    repeats: int,
    body: Callable[[int], Awaitable[None]],
    prepare: Callable[[int], Awaitable[None]],
) -> float:
    """Median milliseconds of `body(i)` over `repeats` runs; `prepare(i)` is not timed."""
    times: list[float] = []
    for i in range(repeats):
        await prepare(i)
        gc.collect()
        start = time.perf_counter()
        await body(i)
        times.append((time.perf_counter() - start) * 1000)
    print(f"    runs (ms): {' '.join(f'{t:.1f}' for t in times)}", flush=True)
    return statistics.median(times)


async def bench_commit(folder: Path, repeats: int) -> float:
    store = await SqliteStore.open(folder / "commit.db")
    try:
        return await _bench_commit(store, repeats)
    finally:
        await store.close()


async def _bench_commit(store: SqliteStore, repeats: int) -> float:
    await seed(store, EXISTING)
    commits: list[TickCommit] = []
    created: list[int] = []

    async def prepare(i: int) -> None:
        """The tick the loop hands over: 9,900 requests for stored keys, 100 new ones."""
        first = EXISTING + i * REQUESTS
        old = [run(first + j, key=f"file-{j * 10}") for j in range(REQUESTS - NEW)]
        new = [run(first + j, key=f"new-{i}-{j}") for j in range(REQUESTS - NEW, REQUESTS)]
        tick = Tick(
            tick_id=f"tick-{i}",
            instigator=SENSOR,
            status=TickStatus.SUCCESS,
            started_at=T0 + timedelta(minutes=i),
            ended_at=T0 + timedelta(minutes=i, seconds=1),
        )
        commits[:] = [TickCommit(tick=tick, runs=(*old, *new), state=StateUpdate(cursor=f"c{i}"))]

    async def commit(i: int) -> None:
        (stored,) = await store.commit_ticks(commits)
        created.append(len(stored.run_ids))

    ms = await timed(repeats, commit, prepare)
    assert created == [NEW] * repeats, created
    return ms


async def bench_claim(folder: Path, repeats: int, limits: ConcurrencyLimits) -> float:
    """Claim the next 1,000. Between repeats (untimed) the claimed runs are canceled through
    the store, as a daemon finishes its runs, so each claim starts with nothing in flight."""
    store = await SqliteStore.open(folder / f"claim-{len(limits.tag_limits)}.db")
    try:
        return await _bench_claim(store, repeats, limits)
    finally:
        await store.close()


async def _bench_claim(store: SqliteStore, repeats: int, limits: ConcurrencyLimits) -> float:
    await seed(store, EXISTING, tagged_every=10)
    now = T0 + timedelta(days=1)
    claimed: list[list[str]] = []

    async def cancel_claimed(i: int) -> None:
        for run_id in claimed[-1] if claimed else []:
            await store.transition_run(run_id, RunStatus.CANCELED, now=now)

    async def claim(i: int) -> None:
        runs = await store.claim_runs(node_id="bench", limit=CLAIM, limits=limits, now=now)
        claimed.append([r.run_id for r in runs])

    ms = await timed(repeats, claim, cancel_claimed)
    assert [len(ids) for ids in claimed] == [CLAIM] * repeats
    return ms


async def figures(repeats: int = 5) -> list[Figure]:
    """The store figures, as bench/__main__.py collects them."""
    return [
        Figure(name, ms, "ms", f"≤ {target:.0f} ms") for name, ms, target in await _rows(repeats)
    ]


async def _rows(repeats: int) -> list[tuple[str, float, float]]:
    with tempfile.TemporaryDirectory(prefix="tickd-bench-") as tmp:
        folder = Path(tmp)
        rows = [
            (
                f"commit a tick of {REQUESTS:,} requests ({NEW} new) vs {EXISTING:,} runs",
                await bench_commit(folder, repeats),
                50.0,
            ),
            (
                f"claim {CLAIM:,} of {EXISTING:,} queued, no limits",
                await bench_claim(folder, repeats, ConcurrencyLimits()),
                20.0,
            ),
            (
                f"claim {CLAIM:,} of {EXISTING:,} queued, tag limit db=warehouse:2",
                await bench_claim(
                    folder,
                    repeats,
                    ConcurrencyLimits(tag_limits=(TagLimit(key="db", value="warehouse", limit=2),)),
                ),
                20.0,
            ),
        ]
    return rows


async def main(repeats: int) -> None:
    rows = await _rows(repeats)
    width = max(len(name) for name, _, _ in rows)
    print(f"SQLite {sqlite3.sqlite_version}, median of {repeats} repeats")
    print(f"{'scenario':<{width}}  {'median':>9}  {'target':>9}")
    for name, ms, target in rows:
        verdict = "ok" if ms <= target else "MISSED"
        print(f"{name:<{width}}  {ms:>6.1f} ms  ≤{target:>5.0f} ms  {verdict}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    anyio.run(main, parser.parse_args().repeats)
