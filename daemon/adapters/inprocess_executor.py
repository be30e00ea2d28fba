"""The `thread` and `async` executors: jobs run inside the daemon process.

Cheaper than the process executor, but a sync job cannot be killed: on timeout or
cancel its thread is abandoned (the run is recorded TIMED_OUT / CANCELED at once and
the thread's eventual result is ignored). Only context.log lines are captured; a
job's print() goes to the daemon's own stdout.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from datetime import datetime

import anyio

from daemon.definitions import Job
from daemon.domain.runs import Run, RunStatus
from daemon.job_context import make_job_context
from daemon.ports import Clock, OutputSink, RunOutcome
from daemon.threads import run_in_daemon_thread

# Captured log lines are flushed to the store at least this often while a job runs.
FLUSH_EVERY_S = 0.5


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
        self._limiter = anyio.CapacityLimiter(max_threads)
        self._scopes: dict[str, anyio.CancelScope] = {}

    async def execute(
        self, run: Run, *, time_limit: float | None, output: OutputSink
    ) -> RunOutcome:
        job = self._jobs().get(run.job)
        if job is None:
            return RunOutcome(
                status=RunStatus.FAILURE,
                error=f"job {run.job!r} is not defined in the loaded definitions",
            )
        lines: list[tuple[datetime, str, str]] = []

        def sink(stream: str, text: str) -> None:
            lines.append((self._clock.now(), stream, text))

        async def flush() -> None:
            if lines:
                batch = lines[:]
                del lines[: len(batch)]
                await output(batch)

        context = make_job_context(run, job, sink)
        scope = anyio.CancelScope()
        self._scopes[run.run_id] = scope
        outcome: RunOutcome | None = None
        try:
            with scope:
                async with anyio.create_task_group() as tg:

                    async def flusher() -> None:
                        while True:
                            await anyio.sleep(FLUSH_EVERY_S)
                            await flush()

                    tg.start_soon(flusher)
                    try:
                        with anyio.fail_after(time_limit):
                            if job.is_async:
                                await job.fn(context)
                            else:
                                await run_in_daemon_thread(job.fn, context, limiter=self._limiter)
                        outcome = RunOutcome(status=RunStatus.SUCCESS)
                    except TimeoutError:
                        outcome = RunOutcome(
                            status=RunStatus.TIMED_OUT,
                            error=f"job {job.name!r} exceeded its timeout of {time_limit:g}s",
                        )
                    except Exception as exc:
                        summary = "".join(traceback.format_exception_only(exc)).strip()
                        detail = "".join(traceback.format_exception(exc)).rstrip()
                        outcome = RunOutcome(
                            status=RunStatus.FAILURE,
                            error=f"job {job.name!r} raised {summary}\n{detail}",
                        )
                    tg.cancel_scope.cancel()
        finally:
            self._scopes.pop(run.run_id, None)
            with anyio.CancelScope(shield=True):
                await flush()
        if outcome is None:  # our scope was cancelled: cancel()
            return RunOutcome(status=RunStatus.CANCELED, error="canceled")
        return outcome

    async def cancel(self, run_id: str) -> bool:
        scope = self._scopes.get(run_id)
        if scope is None:
            return False
        scope.cancel()
        return True

    async def aclose(self) -> None:
        for scope in self._scopes.values():
            scope.cancel()
