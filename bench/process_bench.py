"""Per-run overhead of the process executor: drain N no-op runs through a warm pool.

    .venv/bin/python bench/process_bench.py [--runs 2000] [--workers 8]

Prints the pool's start-up time, the throughput (runs/s) and the median and 95th
percentile of one run's `execute` call, which for a no-op job is all overhead: the
hand-off, the fork, the child's exit and the report. The issue's target: >= 200 runs/s
with 8 workers, per-run overhead <= 40 ms.

On Linux it also prints the CPU time one run costs (user + system, from /proc), split
between this process (the executor), the workers and the job children they fork: on a
busy host that, not the wall time, is the figure to compare.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import anyio

from daemon.adapters.process_executor import ProcessExecutor
from daemon.adapters.system_clock import SystemClock
from daemon.domain.runs import Instigator, InstigatorKind, Run, RunStatus
from daemon.logging import configure_logging

JOBS = """
from daemon.definitions import job


@job
def noop(context):
    pass
"""


async def discard(lines: Sequence[tuple[datetime, str, str]]) -> None:
    pass


async def bench(runs: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bench_jobs.py").write_text(JOBS)
        started = time.perf_counter()
        async with ProcessExecutor([Path(tmp)], size=workers, clock=SystemClock()) as pool:
            startup = time.perf_counter() - started
            queue = list(range(runs))
            latencies: list[float] = []
            failures = 0

            async def drain() -> None:
                nonlocal failures
                while queue:
                    i = queue.pop()
                    run = Run(
                        run_id=f"bench-{i}",
                        job="noop",
                        status=RunStatus.STARTING,
                        instigator=Instigator(kind=InstigatorKind.MANUAL, name="bench"),
                        created_at=datetime.now(UTC),
                    )
                    t0 = time.perf_counter()
                    outcome = await pool.execute(run, time_limit=30, output=discard)
                    latencies.append(time.perf_counter() - t0)
                    failures += outcome.status is not RunStatus.SUCCESS

            cpu0 = _cpu(pool.worker_pids)
            t0 = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(workers):
                    tg.start_soon(drain)
            elapsed = time.perf_counter() - t0
            cpu1 = _cpu(pool.worker_pids)

    ms = sorted(x * 1000 for x in latencies)
    print(f"workers:        {workers}")
    print(f"pool start-up:  {startup * 1000:.0f} ms (paid once)")
    print(f"runs:           {runs} in {elapsed:.2f} s, {failures} failed")
    print(f"throughput:     {runs / elapsed:.0f} runs/s")
    print(f"per-run median: {statistics.median(ms):.1f} ms")
    print(f"per-run p95:    {ms[int(len(ms) * 0.95) - 1]:.1f} ms")
    if cpu0 is not None and cpu1 is not None:
        executor, worker, child = ((b - a) * 1000 / runs for a, b in zip(cpu0, cpu1, strict=True))
        print(
            f"CPU per run:    {executor + worker + child:.2f} ms = executor {executor:.2f}"
            f" + workers {worker:.2f} + job children {child:.2f}"
        )


def _cpu(worker_pids: Sequence[int]) -> tuple[float, float, float] | None:
    """Seconds of CPU used so far by this process, by the workers and by their children."""
    tick = os.sysconf("SC_CLK_TCK")

    def fields(pid: int | str) -> list[int]:
        with open(f"/proc/{pid}/stat") as stat:
            after_name = stat.read().rsplit(")", 1)[1].split()
        return [int(x) for x in after_name[11:15]]  # utime stime cutime cstime

    try:
        me = fields("self")
        workers = [fields(pid) for pid in worker_pids]
    except OSError:  # not Linux
        return None
    return (
        (me[0] + me[1]) / tick,
        sum(w[0] + w[1] for w in workers) / tick,
        sum(w[2] + w[3] for w in workers) / tick,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    configure_logging("warning", "console")
    anyio.run(bench, args.runs, args.workers)


if __name__ == "__main__":
    main()
