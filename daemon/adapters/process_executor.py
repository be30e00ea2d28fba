"""The `process` executor, tickd's default: a warm pool of zygote worker processes.

`size` workers (`python -m daemon.worker`, see that module for the protocol) each import
the definitions once. A run is handed to a free worker, which forks a child in its own
process group to run the job, forwards the child's stdout, stderr and `context.log` lines,
and reports how the child ended. So a run costs a fork and a few messages (a few ms), and
a job that raises, exits, segfaults, hangs or is killed by the OOM killer fails only its run.

* Control channel: one socketpair per worker (the worker's end passed with `pass_fds`),
  JSON lines, served here by a `WorkerChannel` (worker_channel.py). A job cannot reach it:
  its fd 1 and 2 are pipes the worker reads.
* A run is one task: the one that called `execute` sends the run, reads the worker's
  messages until the exit, and on a timeout or a stop request has the run killed. No
  helper task is started per run.
* Output: the worker relays the child's lines; here they are stamped with `clock.now()` and
  handed to the run's OutputSink in batches (FLUSH_S after the first line waiting, or at
  BATCH_LINES).
* Timeout and cancel: the worker is told to SIGKILL the run's process group, so processes
  the job started die too. A worker that does not confirm within KILL_GRACE_S is itself
  killed, and so is the group, from here.
* A worker that dies fails the run it was running (or, if it had not yet accepted the run,
  the run is handed to another worker) and is replaced at once: the replacement process is
  spawned immediately and the next run on its slot waits for it to be ready. The pool never
  shrinks, and needs no background task.
* Workers exit when their control socket closes (`aclose`, or this process dying).
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import os
import signal
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.abc
import structlog

import daemon
from daemon.adapters.worker_channel import MessageTooLong, WorkerChannel
from daemon.domain.runs import Run, RunStatus
from daemon.errors import TickdError
from daemon.ports import Clock, OutputSink, RunOutcome
from daemon.worker import encode

log = structlog.get_logger("tickd.executor.process")

FLUSH_S: Final = 0.05  # output reaches the sink at most this long after it was printed …
BATCH_LINES: Final = 100  # … or as soon as this many lines are waiting
KILL_GRACE_S: Final = 5.0  # a worker told to kill a run must confirm within this
CLOSE_GRACE_S: Final = 5.0  # aclose: for runs to stop, then for workers to exit
HANDOFF_ATTEMPTS: Final = 3  # workers tried for one run before giving up
MAX_MESSAGE: Final = 16 * 1024 * 1024


class WorkerStartError(TickdError):
    """A worker process did not start or import the definitions."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(
            f"process executor: a worker process failed to start: {problem}; "
            "see the daemon log, or run `python -m daemon.worker --help`"
        )


class _Stop(enum.Enum):
    TIMEOUT = "timeout"
    CANCEL = "cancel"
    CLOSE = "close"


class _WorkerDied(Exception):
    def __init__(self, reason: str, *, accepted: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.accepted = accepted  # whether the worker had taken the run on


class _NotStarted(Exception):
    """The run never reached a worker; another may take it."""


class _Timeout(enum.Enum):
    TIMEOUT = "timeout"


_TIMEOUT: Final = _Timeout.TIMEOUT  # "no message in time", as opposed to None, "no worker"


# ---- one worker --------------------------------------------------------------------------


class _Worker:
    """The parent's handle on one worker process and its control channel."""

    def __init__(
        self, process: anyio.abc.Process, channel: WorkerChannel, *, generation: int
    ) -> None:
        self.process = process
        self.generation = generation  # of the definitions: ProcessExecutor.reload() bumps it
        self.pid = process.pid
        self._channel = channel
        self.ready = False
        self._stream_closed = False

    @property
    def exited(self) -> bool:
        return self.process.returncode is not None

    def send(self, message: Mapping[str, Any]) -> None:
        """Queue a message for the worker; BrokenPipeError if its channel is closed."""
        self._channel.send(encode(message))

    async def receive(self) -> dict[str, Any] | None:
        """The next message; None once the worker is gone. Safe to cancel."""
        try:
            line = await self._channel.receive()
        except MessageTooLong:
            log.error("worker.protocol_error", worker_pid=self.pid, problem="message too long")
            self.kill()
            return None
        if line is None:
            return None
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            log.error("worker.protocol_error", worker_pid=self.pid, problem="not a JSON object")
            self.kill()
            return None
        return message

    async def wait_ready(self) -> None:
        """Wait for the worker's "ready" (it has imported the definitions)."""
        message = await self.receive()
        if message is None:
            raise _WorkerDied(await self.death(), accepted=False)
        if message.get("op") != "ready":
            self.kill()
            raise _WorkerDied(f"sent {message.get('op')!r} before 'ready'", accepted=False)
        self.ready = True
        log.info(
            "worker.started",
            worker_pid=self.pid,
            jobs=message.get("jobs"),
            load_errors=message.get("load_errors"),
        )

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    async def death(self) -> str:
        """Reap the worker (killing it if it lingers) and describe how it ended."""
        if self.process.returncode is not None and self._stream_closed:
            return _describe_returncode(self.process.returncode)
        self._stream_closed = True
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(KILL_GRACE_S):
                await self.process.wait()
            if self.process.returncode is None:
                self.kill()
                await self.process.wait()
            self._channel.close()
        return _describe_returncode(self.process.returncode)

    async def close(self) -> None:
        """Close the control channel (the worker then exits) and reap it."""
        self._stream_closed = True
        with anyio.CancelScope(shield=True):
            self._channel.close()
            with anyio.move_on_after(CLOSE_GRACE_S):
                await self.process.wait()
            if self.process.returncode is None:
                log.warning("worker.kill", worker_pid=self.pid, reason="did not exit when closed")
                self.kill()
                await self.process.wait()


def _describe_returncode(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by signal {_signal_name(-code)}"
    return f"exit code {code}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# ---- runs in flight ----------------------------------------------------------------------


@dataclass(eq=False)
class _Slot:
    index: int
    worker: _Worker | None = None


@dataclass(eq=False)
class _Flight:
    run: Run
    stop: _Stop | None = None
    waiting: anyio.CancelScope | None = None  # while waiting for a free worker, or the run
    accepted: bool = False  # the worker took the run on (it is not handed to another)
    child_pid: int | None = None  # the job's process (and group) once forked

    def request_stop(self, reason: _Stop) -> None:
        if self.stop is None:
            self.stop = reason
        if self.waiting is not None:
            self.waiting.cancel()


class _OutputBatcher:
    """Collects a run's output lines for its sink: flushed when BATCH_LINES are waiting or
    FLUSH_S after the first of them arrived (by the task reading the run's messages)."""

    def __init__(self, sink: OutputSink, run_id: str) -> None:
        self._sink = sink
        self._run_id = run_id
        self._lines: list[tuple[datetime, str, str]] = []
        self.due = math.inf  # when the waiting lines must be flushed (anyio time)

    @property
    def pending(self) -> int:
        return len(self._lines)

    def add(self, at: datetime, lines: Sequence[Sequence[str]]) -> None:
        if not self._lines:
            self.due = anyio.current_time() + FLUSH_S
        self._lines.extend((at, str(stream), str(text)) for stream, text in lines)

    async def flush(self) -> None:
        """Hand the waiting lines to the sink (shielded: lines taken are never dropped)."""
        batch, self._lines = self._lines, []
        self.due = math.inf
        if not batch:
            return
        with anyio.CancelScope(shield=True):
            try:
                await self._sink(batch)
            except Exception:
                log.exception("run.output_lost", run_id=self._run_id, lines=len(batch))


# ---- the executor ------------------------------------------------------------------------


class ProcessExecutor:
    """Runs each job in a forked child of a warm worker process. See the module docstring.

    `await start()` before the first `execute`, `await aclose()` at the end (or use
    `async with`). At most `size` runs execute at once; more wait for a free worker.
    """

    def __init__(
        self,
        definitions: Sequence[Path],
        *,
        size: int,
        clock: Clock,
        log_level: str = "info",
        start_timeout: float = 60.0,
    ) -> None:
        if size < 1:
            raise ValueError(f"process executor size={size} must be at least 1")
        self._definitions = tuple(Path(d) for d in definitions)
        self._size = size
        self._clock = clock
        self._log_level = log_level
        self._start_timeout = start_timeout
        self._slots = [_Slot(i) for i in range(size)]
        self._idle: deque[_Slot] = deque()
        self._free = anyio.Semaphore(0)
        self._flights: dict[str, _Flight] = {}
        self._landed = anyio.Event()  # set whenever no run is executing
        self._generation = 0
        self._started = False
        self._closed = False

    async def __aenter__(self) -> ProcessExecutor:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def worker_pids(self) -> tuple[int, ...]:
        """The pids of the worker processes currently alive (for tests and `status`)."""
        return tuple(s.worker.pid for s in self._slots if s.worker and not s.worker.exited)

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Spawn the workers and wait until each has imported the definitions.

        Raises WorkerStartError (after stopping the others) if one cannot start.
        """
        if self._started:
            return
        self._started = True
        problems: list[str] = []

        async def start_one(slot: _Slot) -> None:
            try:
                slot.worker = await self._spawn()
                await self._wait_ready(slot.worker)
            except (OSError, _WorkerDied) as exc:
                problems.append(str(exc))

        async with anyio.create_task_group() as tg:
            for slot in self._slots:
                tg.start_soon(start_one, slot)
        if problems:
            await self.aclose()
            raise WorkerStartError(problems[0])
        for slot in self._slots:
            self._release(slot)

    async def aclose(self) -> None:
        """Kill the runs still executing (they return CANCELED) and stop the workers."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            for flight in list(self._flights.values()):
                flight.request_stop(_Stop.CLOSE)
            if self._flights:
                with anyio.move_on_after(CLOSE_GRACE_S):
                    await self._landed.wait()
            async with anyio.create_task_group() as tg:
                for slot in self._slots:
                    if slot.worker is not None:
                        tg.start_soon(slot.worker.close)
                        slot.worker = None
        log.info("executor.closed", executor="process")

    async def reload(self) -> None:
        """Have every worker import the definitions afresh (after SIGHUP).

        Idle workers are replaced now; busy ones finish their run on the code they have and
        are replaced before their next one.
        """
        if not self._started or self._closed:
            return
        self._generation += 1
        taken: list[_Slot] = []
        with contextlib.suppress(anyio.WouldBlock):
            while True:
                self._free.acquire_nowait()
                taken.append(self._idle.popleft())
        try:
            async with anyio.create_task_group() as tg:
                for slot in taken:
                    tg.start_soon(self._refresh, slot)
        finally:
            for slot in taken:
                self._release(slot)
        log.info("executor.reloaded", executor="process", generation=self._generation)

    async def _refresh(self, slot: _Slot) -> None:
        with contextlib.suppress(_NotStarted):  # logged; the next run on the slot retries
            await self._ready_worker(slot)

    # ---- Executor ----------------------------------------------------------------------

    async def execute(
        self, run: Run, *, time_limit: float | None, output: OutputSink
    ) -> RunOutcome:
        if not self._started or self._closed:
            return RunOutcome(
                status=RunStatus.FAILURE,
                error=f"job {run.job!r} not run: the process executor is not running",
            )
        if run.run_id in self._flights:
            return RunOutcome(
                status=RunStatus.FAILURE,
                error=f"run {run.run_id} of job {run.job!r} is already executing here",
            )
        flight = _Flight(run)
        if not self._flights:
            self._landed = anyio.Event()
        self._flights[run.run_id] = flight
        batcher = _OutputBatcher(output, run.run_id)
        try:
            return await self._execute(flight, time_limit, batcher)
        finally:
            del self._flights[run.run_id]
            if not self._flights:
                self._landed.set()
            await batcher.flush()

    async def cancel(self, run_id: str) -> bool:
        flight = self._flights.get(run_id)
        if flight is None:
            return False
        flight.request_stop(_Stop.CANCEL)
        return True

    # ---- running -----------------------------------------------------------------------

    async def _execute(
        self, flight: _Flight, time_limit: float | None, batcher: _OutputBatcher
    ) -> RunOutcome:
        problem = "no worker"
        for _ in range(HANDOFF_ATTEMPTS):
            slot = await self._acquire(flight)
            if slot is None:
                return _stopped(flight, time_limit)
            try:
                return await self._run_in(slot, flight, time_limit, batcher)
            except _NotStarted as exc:
                problem = str(exc)
                log.warning("run.handoff_failed", run_id=flight.run.run_id, problem=problem)
            finally:
                self._release(slot)
        return RunOutcome(
            status=RunStatus.FAILURE,
            error=f"job {flight.run.job!r} not run: no worker process could take it ({problem})",
        )

    async def _acquire(self, flight: _Flight) -> _Slot | None:
        with anyio.CancelScope() as scope:
            flight.waiting = scope
            if flight.stop is None:
                await self._free.acquire()
                flight.waiting = None
                return self._idle.popleft()
        flight.waiting = None
        return None

    def _release(self, slot: _Slot) -> None:
        self._idle.append(slot)
        self._free.release()

    async def _run_in(
        self, slot: _Slot, flight: _Flight, time_limit: float | None, batcher: _OutputBatcher
    ) -> RunOutcome:
        worker = await self._ready_worker(slot)
        if flight.stop is not None:  # stopped while its worker was starting: never sent
            return _stopped(flight, time_limit)
        try:
            result = await self._converse(worker, flight, time_limit, batcher)
        except _WorkerDied as died:
            await self._replace(slot, worker, flight, died.reason)
            if not died.accepted:
                raise _NotStarted(f"worker {worker.pid} died: {died.reason}") from None
            return _worker_died(flight, died.reason, worker.process.returncode, time_limit)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._abandon(slot, worker, flight)
            raise
        return _outcome(flight, result, time_limit)

    async def _ready_worker(self, slot: _Slot) -> _Worker:
        worker = slot.worker
        if worker is not None and worker.exited:
            await self._replace(slot, worker, None, await worker.death())
            worker = slot.worker
        if worker is not None and worker.generation != self._generation:
            await worker.close()  # idle, with definitions older than the last reload
            log.info("worker.retired", worker_pid=worker.pid, reason="definitions reloaded")
            worker = slot.worker = None
        if worker is None:
            try:
                worker = slot.worker = await self._spawn()
            except OSError as exc:
                raise _NotStarted(f"could not spawn a worker: {exc}") from None
        if not worker.ready:
            try:
                await self._wait_ready(worker)
            except _WorkerDied as died:
                await worker.death()
                slot.worker = None
                log.error("worker.start_failed", worker_pid=worker.pid, problem=died.reason)
                raise _NotStarted(f"worker {worker.pid} did not start: {died.reason}") from None
        return worker

    async def _wait_ready(self, worker: _Worker) -> None:
        with anyio.move_on_after(self._start_timeout):
            await worker.wait_ready()
            return
        worker.kill()
        raise _WorkerDied(f"not ready after {self._start_timeout:g}s", accepted=False)

    async def _converse(
        self, worker: _Worker, flight: _Flight, time_limit: float | None, batcher: _OutputBatcher
    ) -> dict[str, Any]:
        run = flight.run
        try:
            worker.send(
                {
                    "op": "run",
                    "run_id": run.run_id,
                    "job": run.job,
                    "run_config": dict(run.run_config),
                    "tags": dict(run.tags),
                    "partition_key": run.partition_key,
                    "attempt": run.attempt,
                }
            )
        except OSError:
            raise _WorkerDied(await worker.death(), accepted=False) from None
        with anyio.CancelScope() as reading:
            flight.waiting = reading  # a stop request cancels this
            if flight.stop is None:
                if time_limit is not None:
                    reading.deadline = anyio.current_time() + time_limit
                try:
                    return await self._read_until_exit(worker, flight, batcher)
                finally:
                    flight.waiting = None
        flight.waiting = None
        # Timed out or told to stop: have the run killed, then the worker if it hangs.
        if flight.stop is None:
            flight.stop = _Stop.TIMEOUT
        with contextlib.suppress(OSError):
            worker.send({"op": "kill", "run_id": flight.run.run_id})
        with anyio.move_on_after(KILL_GRACE_S):
            return await self._read_until_exit(worker, flight, batcher)
        log.error(
            "worker.unresponsive", worker_pid=worker.pid, run_id=flight.run.run_id, action="kill"
        )
        worker.kill()
        return await self._read_until_exit(worker, flight, batcher)  # raises _WorkerDied

    async def _read_until_exit(
        self, worker: _Worker, flight: _Flight, batcher: _OutputBatcher
    ) -> dict[str, Any]:
        run_id = flight.run.run_id
        while True:
            if batcher.pending:
                message: dict[str, Any] | _Timeout | None = _TIMEOUT
                with anyio.move_on_after(batcher.due - anyio.current_time()):
                    message = await worker.receive()
                if message is _TIMEOUT:
                    await batcher.flush()
                    continue
            else:
                message = await worker.receive()
            if message is None:
                raise _WorkerDied(await worker.death(), accepted=flight.accepted)
            assert not isinstance(message, _Timeout)
            if message.get("run_id") != run_id:
                log.warning("worker.stray_message", worker_pid=worker.pid, op=message.get("op"))
                continue
            op = message.get("op")
            if op == "output":
                batcher.add(self._clock.now(), message.get("lines") or [])
                if batcher.pending >= BATCH_LINES:
                    await batcher.flush()
            elif op == "accepted":
                flight.accepted = True
            elif op == "started":
                flight.child_pid = int(message["pid"])
            elif op == "exit":
                result = message.get("result")
                return result if isinstance(result, dict) else {"kind": "invalid"}

    async def _abandon(self, slot: _Slot, worker: _Worker, flight: _Flight) -> None:
        """Our caller was cancelled mid-run: kill the run and leave the worker clean."""
        with contextlib.suppress(OSError):
            worker.send({"op": "kill", "run_id": flight.run.run_id})
            with anyio.move_on_after(KILL_GRACE_S):
                while (message := await worker.receive()) is not None:
                    if message.get("op") == "exit" and message.get("run_id") == flight.run.run_id:
                        return
        await self._replace(slot, worker, flight, "abandoned mid-run")

    async def _replace(
        self, slot: _Slot, worker: _Worker, flight: _Flight | None, reason: str
    ) -> None:
        """Bury a dead (or doomed) worker and spawn its replacement in its slot."""
        with anyio.CancelScope(shield=True):
            worker.kill()
            await worker.death()
            if flight is not None and flight.child_pid is not None:
                # The job's child dies with the worker (PDEATHSIG); what it started does not.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(flight.child_pid, signal.SIGKILL)
            log.warning(
                "worker.died",
                worker_pid=worker.pid,
                reason=reason,
                run_id=flight.run.run_id if flight else None,
                job=flight.run.job if flight else None,
            )
            slot.worker = None
            if self._closed:
                return
            try:
                slot.worker = await self._spawn()
            except OSError as exc:  # the next run on this slot tries again
                log.error("worker.spawn_failed", error=str(exc))
                return
            log.info("worker.replaced", old_worker_pid=worker.pid, worker_pid=slot.worker.pid)

    async def _spawn(self) -> _Worker:
        """Start a worker process (without waiting for it to be ready)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            command = [
                sys.executable,
                "-m",
                "daemon.worker",
                "--control-fd",
                str(theirs.fileno()),
                "--parent-pid",
                str(os.getpid()),
                "--log-level",
                self._log_level,
                "--",
                *(str(d) for d in self._definitions),
            ]
            process = await anyio.open_process(
                command,
                stdin=subprocess.DEVNULL,
                stdout=None,
                stderr=None,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # a terminal's ^C reaches the daemon, not its workers
                env=_worker_environment(),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        channel = await WorkerChannel.open(ours, max_line=MAX_MESSAGE)
        return _Worker(process, channel, generation=self._generation)


def _worker_environment() -> dict[str, str]:
    """This environment, with tickd's own package importable however it was started."""
    env = dict(os.environ)
    root = str(Path(daemon.__file__).resolve().parent.parent)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([root, *paths])
    return env


# ---- outcomes ----------------------------------------------------------------------------


def _outcome(flight: _Flight, result: Mapping[str, Any], time_limit: float | None) -> RunOutcome:
    job = flight.run.job
    kind = result.get("kind")
    if kind == "signaled" and result.get("signal") == signal.SIGKILL and flight.stop:
        return _stopped(flight, time_limit)
    if kind == "success":
        return RunOutcome(status=RunStatus.SUCCESS)
    if kind == "raised":
        summary = result.get("summary") or result.get("type") or "an exception"
        detail = result.get("traceback") or ""
        return RunOutcome(
            status=RunStatus.FAILURE,
            error=f"job {job!r} raised {summary}\n{detail}".rstrip(),
            exit_code=1,
        )
    if kind == "exited":
        code = int(result.get("code", -1))
        return RunOutcome(
            status=RunStatus.FAILURE, error=f"job {job!r} exited with code {code}", exit_code=code
        )
    if kind == "signaled":
        number = int(result.get("signal", 0))
        hint = " (out of memory?)" if number == signal.SIGKILL else ""
        return RunOutcome(
            status=RunStatus.FAILURE,
            error=f"job {job!r} killed by signal {_signal_name(number)}{hint}",
            signal=number,
        )
    if kind == "undefined":
        return RunOutcome(
            status=RunStatus.FAILURE,
            error=(
                f"job {job!r} is not defined in the worker's definitions "
                "(was its module renamed, removed or broken? see `tickd check`)"
            ),
        )
    if kind == "fork_failed":
        return RunOutcome(
            status=RunStatus.FAILURE,
            error=f"job {job!r} not run: the worker could not fork: {result.get('error')}",
        )
    return RunOutcome(
        status=RunStatus.FAILURE, error=f"job {job!r}: the worker reported {dict(result)!r}"
    )


def _stopped(flight: _Flight, time_limit: float | None) -> RunOutcome:
    job = flight.run.job
    if flight.stop is _Stop.TIMEOUT:
        limit = f"{time_limit:g}s" if time_limit is not None else "its time limit"
        return RunOutcome(
            status=RunStatus.TIMED_OUT,
            error=f"job {job!r} exceeded its timeout of {limit}",
            signal=signal.SIGKILL,
        )
    if flight.stop is _Stop.CLOSE:
        return RunOutcome(
            status=RunStatus.CANCELED,
            error=f"job {job!r} was stopped: the process executor was closed",
        )
    return RunOutcome(status=RunStatus.CANCELED, error=f"job {job!r} was canceled")


def _worker_died(
    flight: _Flight, reason: str, returncode: int | None, time_limit: float | None
) -> RunOutcome:
    if flight.stop is not None:
        return _stopped(flight, time_limit)
    return RunOutcome(
        status=RunStatus.FAILURE,
        error=(
            f"job {flight.run.job!r} failed: its worker process died ({reason}); "
            "the run's processes were killed and a new worker replaces it"
        ),
        exit_code=returncode if returncode is not None and returncode >= 0 else None,
        signal=-returncode if returncode is not None and returncode < 0 else None,
    )
