"""The process executor against real worker processes (a pool starts in ~0.3 s).

Jobs live in tests/execution/jobs/: basic.py (one behaviour per job), other.py (a good
module) and broken.py (a module that fails to import).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from daemon.adapters.process_executor import ProcessExecutor
from daemon.domain.runs import Instigator, InstigatorKind, Run, RunStatus
from daemon.ports import RunOutcome
from daemon.testing import FakeClock

pytestmark = pytest.mark.anyio

JOBS = Path(__file__).parent / "jobs"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def make_run(job: str, run_id: str | None = None, **fields: Any) -> Run:
    return Run(
        run_id=run_id or f"run-{job}",
        job=job,
        status=RunStatus.STARTING,
        instigator=Instigator(kind=InstigatorKind.MANUAL, name="test"),
        created_at=NOW,
        **fields,
    )


class Output:
    """An OutputSink that keeps every batch and can wait for a line."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[datetime, str, str]]] = []
        self._arrived = anyio.Event()

    async def __call__(self, batch: Sequence[tuple[datetime, str, str]]) -> None:
        self.batches.append(list(batch))
        self._arrived.set()
        self._arrived = anyio.Event()

    @property
    def lines(self) -> list[tuple[str, str]]:
        return [(stream, text) for batch in self.batches for _, stream, text in batch]

    def texts(self, stream: str) -> list[str]:
        return [text for s, text in self.lines if s == stream]

    async def wait_for(self, predicate: Callable[[str], bool]) -> str:
        with anyio.fail_after(2):
            while True:
                for _, text in self.lines:
                    if predicate(text):
                        return text
                await self._arrived.wait()


@pytest.fixture
async def executor() -> AsyncIterator[ProcessExecutor]:
    async with ProcessExecutor([JOBS], size=2, clock=FakeClock(NOW)) as pool:
        yield pool


async def run_job(
    pool: ProcessExecutor, job: str, *, time_limit: float | None = 2.0, **fields: Any
) -> tuple[RunOutcome, Output]:
    output = Output()
    outcome = await pool.execute(make_run(job, **fields), time_limit=time_limit, output=output)
    return outcome, output


def assert_gone(pid: int, timeout: float = 1.0) -> None:
    """The process is dead and reaped (not even a zombie)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, f"process {pid} is still there"
        time.sleep(0.01)


# ---- outcomes ------------------------------------------------------------------------------


async def test_success_captures_stdout_stderr_and_log_lines(executor: ProcessExecutor) -> None:
    outcome, output = await run_job(executor, "hello", run_config={"who": "world"})

    assert outcome == RunOutcome(status=RunStatus.SUCCESS)
    assert output.texts("stdout") == ["hello from run-hello"]
    assert output.texts("stderr") == ["warning from run-hello"]
    [log_line] = output.texts("log")
    assert '"event": "greeted"' in log_line
    assert '"who": "world"' in log_line
    assert all(at == NOW for batch in output.batches for at, _, _ in batch)


async def test_exception_fails_the_run_with_a_summary_and_a_traceback(
    executor: ProcessExecutor,
) -> None:
    outcome, _ = await run_job(executor, "raises")

    assert outcome.status is RunStatus.FAILURE
    assert outcome.error is not None
    summary, _, traceback = outcome.error.partition("\n")
    assert summary == "job 'raises' raised ValueError: bad input 7"
    assert traceback.startswith("Traceback (most recent call last):")
    assert "basic.py" in traceback
    assert "daemon/worker.py" not in traceback  # starts at the job's own frame
    assert "hunter2" not in traceback  # no locals


@pytest.mark.parametrize(("job", "code"), [("exits_3", 3), ("sys_exit_4", 4)])
async def test_exit_code_fails_the_run(executor: ProcessExecutor, job: str, code: int) -> None:
    outcome, _ = await run_job(executor, job)

    assert outcome.status is RunStatus.FAILURE
    assert outcome.error == f"job {job!r} exited with code {code}"
    assert outcome.exit_code == code


async def test_segfault_fails_the_run_naming_the_signal(executor: ProcessExecutor) -> None:
    outcome, _ = await run_job(executor, "segfaults")

    assert outcome.status is RunStatus.FAILURE
    assert outcome.error == "job 'segfaults' killed by signal SIGSEGV"
    assert outcome.signal == signal.SIGSEGV


async def test_async_job_runs_in_its_own_event_loop(executor: ProcessExecutor) -> None:
    outcome, output = await run_job(executor, "async_job", attempt=3)

    assert outcome.status is RunStatus.SUCCESS
    assert output.texts("stdout") == ["async done"]
    [log_line] = output.texts("log")
    assert '"event": "async.logged"' in log_line
    assert '"attempt": 3' in log_line


async def test_logged_exception_is_kept_as_traceback_text(executor: ProcessExecutor) -> None:
    outcome, output = await run_job(executor, "logs_exception")

    assert outcome.status is RunStatus.SUCCESS
    [log_line] = output.texts("log")
    assert '"event": "lookup.failed"' in log_line
    assert "KeyError" in log_line


async def test_context_carries_the_run(executor: ProcessExecutor) -> None:
    outcome, output = await run_job(
        executor,
        "echoes_context",
        run_config={"n": 1},
        tags={"team": "data"},
        partition_key="2026-06-01",
        attempt=2,
    )

    assert outcome.status is RunStatus.SUCCESS
    assert output.texts("stdout") == [
        "('echoes_context', {'n': 1}, {'team': 'data'}, '2026-06-01', 2)"
    ]


async def test_garbage_on_stdout_does_not_touch_the_protocol(executor: ProcessExecutor) -> None:
    outcome, output = await run_job(executor, "garbage")

    assert outcome.status is RunStatus.SUCCESS
    stdout = output.texts("stdout")
    assert '{"op": "exit", "run_id": "x"}' in stdout  # just text
    assert stdout[-1] == "\ufffd\ufffd no newline at the end"  # a last partial line is kept
    assert output.texts("stderr") == ["after the garbage"]
    # and the worker still serves runs
    assert (await run_job(executor, "noop"))[0].status is RunStatus.SUCCESS


async def test_output_reaches_the_sink_in_batches(executor: ProcessExecutor) -> None:
    outcome, output = await run_job(executor, "prints_many")

    assert outcome.status is RunStatus.SUCCESS
    assert output.texts("stdout") == [f"line {i}" for i in range(500)]
    assert len(output.batches) <= 10


# ---- definitions ---------------------------------------------------------------------------


async def test_stdin_is_empty_and_a_run_cannot_spoil_the_next_ones_stdio() -> None:
    async with ProcessExecutor([JOBS], size=1, clock=FakeClock(NOW)) as pool:
        for n in range(2):
            outcome, output = await run_job(pool, "reads_stdin_then_closes_stdout")
            assert outcome.status is RunStatus.SUCCESS, (n, outcome)
            assert output.texts("stdout") == ["stdin gave ''", "no newline yet"]
        outcome, output = await run_job(pool, "hello")
        assert outcome.status is RunStatus.SUCCESS
        assert output.texts("stdout") == ["hello from run-hello"]
        assert output.texts("stderr") == ["warning from run-hello"]


async def test_unknown_job_fails_naming_it(executor: ProcessExecutor) -> None:
    outcome, _ = await run_job(executor, "nope")

    assert outcome.status is RunStatus.FAILURE
    assert outcome.error is not None
    assert outcome.error.startswith("job 'nope' is not defined in the worker's definitions")


async def test_a_broken_module_does_not_stop_its_neighbours(executor: ProcessExecutor) -> None:
    good, output = await run_job(executor, "from_other_module")
    broken, _ = await run_job(executor, "in_broken_module")

    assert good.status is RunStatus.SUCCESS
    assert output.texts("stdout") == ["other module ok"]
    assert broken.status is RunStatus.FAILURE
    assert "'in_broken_module' is not defined" in (broken.error or "")


# ---- timeouts, cancellation, process groups ------------------------------------------------


async def test_timeout_kills_the_job_and_the_worker_serves_again() -> None:
    async with ProcessExecutor([JOBS], size=1, clock=FakeClock(NOW)) as pool:
        [worker] = pool.worker_pids
        started = time.monotonic()
        outcome, output = await run_job(pool, "hangs", time_limit=0.5)
        elapsed = time.monotonic() - started

        assert outcome.status is RunStatus.TIMED_OUT
        assert outcome.error == "job 'hangs' exceeded its timeout of 0.5s"
        assert output.texts("stdout") == ["hanging"]
        assert elapsed >= 0.5  # it ran until its time limit, not less
        assert (await run_job(pool, "noop"))[0].status is RunStatus.SUCCESS
        assert pool.worker_pids == (worker,)  # the same warm worker


async def test_cancel_kills_the_whole_process_group(executor: ProcessExecutor) -> None:
    output = Output()
    outcomes: list[RunOutcome] = []
    run = make_run("spawns_and_hangs")

    async def execute() -> None:
        outcomes.append(await executor.execute(run, time_limit=None, output=output))

    async with anyio.create_task_group() as tg:
        tg.start_soon(execute)
        line = await output.wait_for(lambda text: text.startswith("grandchild "))
        grandchild = int(line.split()[1])
        os.kill(grandchild, 0)  # alive
        assert await executor.cancel(run.run_id) is True

    assert outcomes == [
        RunOutcome(status=RunStatus.CANCELED, error="job 'spawns_and_hangs' was canceled")
    ]
    assert_gone(grandchild)
    assert await executor.cancel(run.run_id) is False  # no longer executing


async def test_processes_a_job_leaves_behind_die_with_its_run(executor: ProcessExecutor) -> None:
    outcome, output = await run_job(executor, "leaves_a_grandchild")

    assert outcome.status is RunStatus.SUCCESS
    [line] = output.texts("stdout")
    assert_gone(int(line.split()[1]))


async def test_cancel_while_waiting_for_a_worker() -> None:
    async with ProcessExecutor([JOBS], size=1, clock=FakeClock(NOW)) as pool:
        busy = Output()
        outcomes: dict[str, RunOutcome] = {}

        async def execute(job: str, output: Output) -> None:
            outcomes[job] = await pool.execute(make_run(job), time_limit=None, output=output)

        async with anyio.create_task_group() as tg:
            tg.start_soon(execute, "hangs", busy)
            await busy.wait_for(lambda text: text == "hanging")
            tg.start_soon(execute, "noop", Output())
            await anyio.sleep(0.05)
            assert await pool.cancel("run-noop") is True
            await anyio.sleep(0.05)
            assert outcomes["noop"].status is RunStatus.CANCELED
            assert await pool.cancel("run-hangs") is True

        assert outcomes["hangs"].status is RunStatus.CANCELED


async def test_cancel_of_an_unknown_run_is_false(executor: ProcessExecutor) -> None:
    assert await executor.cancel("no-such-run") is False


# ---- concurrency and the pool ----------------------------------------------------------------


async def test_eight_runs_on_four_workers_keep_their_output_apart() -> None:
    async with ProcessExecutor([JOBS], size=4, clock=FakeClock(NOW)) as pool:
        results: dict[str, tuple[RunOutcome, Output]] = {}

        async def execute(run_id: str) -> None:
            output = Output()
            run = make_run("chatty", run_id=run_id)
            results[run_id] = (await pool.execute(run, time_limit=5, output=output), output)

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(execute, f"r{i}")

    assert len(results) == 8
    for run_id, (outcome, output) in results.items():
        assert outcome.status is RunStatus.SUCCESS
        assert output.texts("stdout") == [f"{run_id} line {i}" for i in range(5)]


async def test_a_dead_worker_fails_its_run_and_is_replaced(executor: ProcessExecutor) -> None:
    before = set(executor.worker_pids)
    outcome, _ = await run_job(executor, "kills_its_worker")

    assert outcome.status is RunStatus.FAILURE
    assert "its worker process died (killed by signal SIGKILL)" in (outcome.error or "")
    assert outcome.signal == signal.SIGKILL
    after = set(executor.worker_pids)
    assert len(after) == 2
    assert len(before & after) == 1
    for _ in range(4):
        assert (await run_job(executor, "noop"))[0].status is RunStatus.SUCCESS


async def test_a_worker_that_died_while_idle_is_replaced_before_the_next_run() -> None:
    async with ProcessExecutor([JOBS], size=1, clock=FakeClock(NOW)) as pool:
        [worker] = pool.worker_pids
        os.kill(worker, signal.SIGKILL)
        outcome, _ = await run_job(pool, "noop")

        assert outcome.status is RunStatus.SUCCESS
        assert pool.worker_pids != (worker,)
        assert len(pool.worker_pids) == 1


async def test_aclose_cancels_running_runs_and_stops_the_workers() -> None:
    pool = ProcessExecutor([JOBS], size=1, clock=FakeClock(NOW))
    await pool.start()
    [worker] = pool.worker_pids
    output = Output()
    outcomes: list[RunOutcome] = []

    async def execute() -> None:
        outcomes.append(await pool.execute(make_run("hangs"), time_limit=None, output=output))

    async with anyio.create_task_group() as tg:
        tg.start_soon(execute)
        await output.wait_for(lambda text: text == "hanging")
        await pool.aclose()

    assert [o.status for o in outcomes] == [RunStatus.CANCELED]
    assert "the process executor was closed" in (outcomes[0].error or "")
    assert_gone(worker)
    late, _ = await run_job(pool, "noop")
    assert late.status is RunStatus.FAILURE


async def test_no_file_descriptors_leak() -> None:
    before = len(os.listdir("/proc/self/fd"))
    async with ProcessExecutor([JOBS], size=2, clock=FakeClock(NOW)) as pool:
        for job in ("hello", "raises", "kills_its_worker", "noop"):
            await run_job(pool, job)
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_worker_exits_when_its_control_channel_closes() -> None:
    ours, theirs = socket.socketpair()
    worker = subprocess.Popen(
        [sys.executable, "-m", "daemon.worker", "--control-fd", str(theirs.fileno()), str(JOBS)],
        pass_fds=(theirs.fileno(),),
        stdout=subprocess.DEVNULL,
    )
    theirs.close()
    try:
        ready = ours.makefile("rb").readline()
        assert b'"op":"ready"' in ready
        ours.close()
        assert worker.wait(timeout=2) == 0
    finally:
        worker.kill()
        worker.wait()


async def test_a_caller_cancelled_mid_run_leaves_no_process_and_a_clean_worker() -> None:
    async with ProcessExecutor([JOBS], size=1, clock=FakeClock(NOW)) as pool:
        [worker] = pool.worker_pids
        output = Output()

        async def execute() -> None:
            await pool.execute(make_run("spawns_and_hangs"), time_limit=None, output=output)

        async with anyio.create_task_group() as tg:
            tg.start_soon(execute)
            line = await output.wait_for(lambda text: text.startswith("grandchild "))
            tg.cancel_scope.cancel()

        assert_gone(int(line.split()[1]))
        outcome, noop_output = await run_job(pool, "hello")
        assert outcome.status is RunStatus.SUCCESS
        assert noop_output.texts("stdout") == ["hello from run-hello"]
        assert pool.worker_pids == (worker,)


async def test_reload_makes_workers_import_the_definitions_again(tmp_path: Path) -> None:
    module = tmp_path / "versioned.py"
    source = "from daemon.definitions import job\n\n@job\ndef version(context):\n    print({!r})\n"
    module.write_text(source.format("v1"))
    async with ProcessExecutor([tmp_path], size=2, clock=FakeClock(NOW)) as pool:
        assert (await run_job(pool, "version"))[1].texts("stdout") == ["v1"]
        old = set(pool.worker_pids)

        module.write_text(source.format("v2"))
        await pool.reload()

        assert not old & set(pool.worker_pids)
        assert len(pool.worker_pids) == 2
        for _ in range(2):
            assert (await run_job(pool, "version"))[1].texts("stdout") == ["v2"]


async def test_a_process_that_left_the_group_does_not_hold_the_run(
    executor: ProcessExecutor,
) -> None:
    # Without the drain limit the run would wait for the escapee's stdout forever.
    with anyio.fail_after(30):
        outcome, output = await run_job(executor, "escapes_its_group")

    assert outcome.status is RunStatus.SUCCESS
    line, partial = output.texts("stdout")
    assert partial == "partial"
    escapee = int(line.split()[1])
    os.kill(escapee, signal.SIGKILL)
    assert_gone(escapee, timeout=2.0)  # reaped by its worker, now its subreaper
