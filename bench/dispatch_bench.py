"""W3 queue drain through the real dispatcher and a SQLite store.

2,000 no-op runs queued, 8 slots: runs per second with the async, thread and process
executors (targets ≥ 2,000/s, ≥ 2,000/s, ≥ 200/s), the median queue wait and the median
per-run overhead (a run's ended_at - started_at for a job that does nothing); and with one
slot, how many runs started out of priority order (target 0 inversions).

Run: .venv/bin/python -m bench.dispatch_bench [--runs 2000]
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import structlog

from bench.common import Figure, print_table
from daemon import job
from daemon.adapters.inprocess_executor import InProcessExecutor
from daemon.adapters.process_executor import ProcessExecutor
from daemon.adapters.sqlite_store import SqliteStore
from daemon.adapters.system_clock import SystemClock
from daemon.definitions import ExecutorKind, Job
from daemon.dispatch import Dispatcher
from daemon.domain.ids import IdGenerator
from daemon.domain.limits import ConcurrencyLimits
from daemon.domain.runs import Instigator, InstigatorKind, Run, RunStatus
from daemon.ports import Executor, RunQuery

MANUAL = Instigator(kind=InstigatorKind.MANUAL, name="bench")


@job(executor="async")
async def async_noop(context: Any) -> None:
    pass


@job(executor="thread")
def thread_noop(context: Any) -> None:
    pass


def queued(job_name: str, n: int, *, priority: int = 0) -> list[Run]:
    ids, clock = IdGenerator(), SystemClock()
    return [
        Run(
            run_id=ids.new(clock.now()),
            job=job_name,
            status=RunStatus.QUEUED,
            instigator=MANUAL,
            created_at=clock.now(),
            priority=priority if priority >= 0 else random.Random(i).randint(-5, 5),
        )
        for i in range(n)
    ]


async def drain(
    folder: Path, job_obj: Job, executor: Executor, n: int, slots: int, priority: int = 0
) -> tuple[float, list[Run]]:
    store = await SqliteStore.open(folder / f"{job_obj.name}-{slots}.db")
    clock = SystemClock()
    dispatcher = Dispatcher(
        store=store,
        clock=clock,
        executors={
            ExecutorKind.ASYNC: executor,
            ExecutorKind.THREAD: executor,
            ExecutorKind.PROCESS: executor,
        },
        jobs={job_obj.name: job_obj},
        node_id="bench",
        limits=ConcurrencyLimits(max_concurrent_runs=slots),
        default_executor=ExecutorKind.PROCESS,
    )
    await store.create_runs(queued(job_obj.name, n, priority=priority))
    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(dispatcher.run)
        while True:
            await anyio.sleep(0.05)
            left = await store.list_runs(
                RunQuery(
                    statuses=(RunStatus.QUEUED, RunStatus.STARTING, RunStatus.RUNNING), limit=1
                )
            )
            if not left:
                break
        elapsed = time.perf_counter() - t0
        tg.cancel_scope.cancel()
    runs = await store.list_runs(RunQuery(limit=None))
    await store.close()
    assert all(r.status is RunStatus.SUCCESS for r in runs), "a no-op run failed"
    return elapsed, runs


def inversions(runs: list[Run]) -> int:
    """With every run queued before the dispatcher starts and one slot, start order must
    never go up in priority; count the times it does."""
    started = sorted(runs, key=lambda r: (r.started_at, r.run_id))
    return sum(1 for a, b in itertools.pairwise(started) if b.priority > a.priority)


async def main(n: int) -> list[Figure]:
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        logger_factory=structlog.ReturnLoggerFactory(),
    )
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clock = SystemClock()
        jobs = {"async_noop": async_noop, "thread_noop": thread_noop}
        inproc = InProcessExecutor(lambda: jobs, clock=clock, max_threads=8)
        for job_obj, target in ((async_noop, "≥ 2,000/s"), (thread_noop, "≥ 2,000/s")):
            elapsed, runs = await drain(folder, job_obj, inproc, n, 8)
            figures.append(
                Figure(
                    f"W3 drain {n:,}, 8 slots, {job_obj.executor}", n / elapsed, "runs/s", target
                )
            )
            waits = [(r.started_at - r.created_at).total_seconds() for r in runs]
            figures.append(
                Figure(
                    f"W3 {job_obj.executor}: median queue_wait", statistics.median(waits), "s", ""
                )
            )
        defs = folder / "defs"
        defs.mkdir()
        (defs / "noop.py").write_text(
            "from daemon import job\n\n@job\ndef process_noop(context):\n    pass\n"
        )
        from daemon.loading import load_definitions

        process_job = load_definitions([defs]).registry.jobs["process_noop"]
        pool = ProcessExecutor([defs], size=8, clock=clock)
        await pool.start()
        try:
            elapsed, runs = await drain(folder, process_job, pool, n, 8)
        finally:
            await pool.aclose()
        overhead = [(r.ended_at - r.started_at).total_seconds() for r in runs]
        figures.append(
            Figure(f"W3 drain {n:,}, 8 slots, process", n / elapsed, "runs/s", "≥ 200/s")
        )
        figures.append(
            Figure(
                "W3 process: median per-run overhead",
                1000 * statistics.median(overhead),
                "ms",
                "≤ 40 ms",
            )
        )
        _, runs = await drain(folder, async_noop, inproc, 300, 1, priority=-1)
        figures.append(Figure("W3 priority order, 1 slot: inversions", inversions(runs), "", "0"))
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    print_table("dispatch (W3)", anyio.run(main, args.runs, backend="asyncio"))
