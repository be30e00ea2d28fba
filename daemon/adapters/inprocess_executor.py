"""The `thread` and `async` executors: jobs run inside the daemon process.

Cheaper than the process executor, but a sync job cannot be killed: on timeout or
cancel its thread is abandoned (the run is recorded TIMED_OUT / CANCELED at once and
the thread's eventual result is ignored). Only context.log lines are captured; a
job's print() goes to the daemon's own stdout.

A run costs one cancel scope (cancel and timeout) and, for a sync job, a hand-off to a
reused worker thread: no task of its own. Captured lines are flushed by a timer on the
event loop (asyncio's: the daemon runs on anyio's asyncio backend), so a run that ends
before the first flush is due, as most do, never starts a flush task.
"""

from __future__ import annotations

import asyncio
import math
import traceback
from collections.abc import Callable, Mapping
from datetime import datetime

import anyio

from daemon.adapters.job_threads import JobThreads
from daemon.definitions import Job
from daemon.domain.runs import Run, RunStatus
from daemon.job_context import make_job_context
from daemon.ports import Clock, OutputSink, RunOutcome

# Captured log lines are flushed to the store at least this often while a job runs.
FLUSH_EVERY_S = 0.5

Line = tuple[datetime, str, str]


class InProcessExecutor:
    """Runs sync jobs in worker threads and async jobs on the event loop."""

    def __init__(
        self,
        jobs: Callable[[], Mapping[str, Job]],
        *,
        clock: Clock,
        max_threads: int = 8,
    ) -> None:
        self._jobs = jobs
        self._clock = clock
        self._limiter = anyio.Semaphore(max_threads, fast_acquire=True)  # sync jobs at once
        self._threads = JobThreads(keep=max_threads)
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._is_async: dict[str, tuple[Job, bool]] = {}  # by job name

    async def execute(
        self, run: Run, *, time_limit: float | None, output: OutputSink
    ) -> RunOutcome:
        job = self._jobs().get(run.job)
        if job is None:
            return RunOutcome(
                status=RunStatus.FAILURE,
                error=f"job {run.job!r} is not defined in the loaded definitions",
            )
        lines: list[Line] = []

        def sink(stream: str, text: str) -> None:
            lines.append((self._clock.now(), stream, text))

        context = make_job_context(run, job, sink)
        deadline = math.inf if time_limit is None else anyio.current_time() + time_limit
        scope = anyio.CancelScope(deadline=deadline)
        self._scopes[run.run_id] = scope
        flusher = _Flusher(lines, output)
        outcome: RunOutcome | None = None
        try:
            with scope:
                try:
                    if self._async(job):
                        await job.fn(context)
                    else:
                        async with self._limiter:
                            await self._threads.run(job.fn, context)
                    outcome = RunOutcome(status=RunStatus.SUCCESS)
                except Exception as exc:
                    summary = "".join(traceback.format_exception_only(exc)).strip()
                    detail = "".join(traceback.format_exception(exc)).rstrip()
                    outcome = RunOutcome(
                        status=RunStatus.FAILURE,
                        error=f"job {job.name!r} raised {summary}\n{detail}",
                    )
        finally:
            self._scopes.pop(run.run_id, None)
            if flusher.close_now():  # lines or a flush left: write them, even if cancelled
                with anyio.CancelScope(shield=True):
                    await flusher.close()
        if outcome is not None:
            return outcome
        if anyio.current_time() >= deadline:  # the scope's deadline passed
            return RunOutcome(
                status=RunStatus.TIMED_OUT,
                error=f"job {job.name!r} exceeded its timeout of {time_limit:g}s",
            )
        return RunOutcome(status=RunStatus.CANCELED, error="canceled")  # cancel()

    def _async(self, job: Job) -> bool:
        """job.is_async, which inspects the function, once per job."""
        known = self._is_async.get(job.name)
        if known is None or known[0] is not job:
            known = self._is_async[job.name] = (job, job.is_async)
        return known[1]

    async def cancel(self, run_id: str) -> bool:
        scope = self._scopes.get(run_id)
        if scope is None:
            return False
        scope.cancel()
        return True

    async def aclose(self) -> None:
        for scope in self._scopes.values():
            scope.cancel()
        self._threads.close()


class _Flusher:
    """Hands a run's captured lines to `output` every FLUSH_EVERY_S while it runs (when
    there are any), and what is left at `close()`."""

    def __init__(self, lines: list[Line], output: OutputSink) -> None:
        self._lines = lines
        self._output = output
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        self._timer = self._loop.call_later(FLUSH_EVERY_S, self._due)

    def _due(self) -> None:
        if self._lines and (self._task is None or self._task.done()):
            self._task = self._loop.create_task(self._flush())
        self._timer = self._loop.call_later(FLUSH_EVERY_S, self._due)

    async def _flush(self) -> None:
        if self._lines:
            batch = self._lines[:]  # a job thread may append meanwhile
            del self._lines[: len(batch)]
            await self._output(batch)

    def close_now(self) -> bool:
        """Stop the timer; whether `close()` has anything left to do."""
        self._timer.cancel()
        return bool(self._lines) or self._task is not None

    async def close(self) -> None:
        """Wait for a flush under way, then flush what is left."""
        self._timer.cancel()
        if self._task is not None:
            await self._task
        await self._flush()
