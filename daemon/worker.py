"""A process executor worker: `python -m daemon.worker --control-fd N [--log-level L] DIR...`.

The worker is a zygote. It imports the definitions in DIR... once, then serves runs one at
a time: for each it forks a child in a process group of its own that runs the job function
and exits, so a run costs a fork, not an interpreter start-up, and a job that crashes,
exits, hangs or leaks processes takes only its own process group down.

Control protocol, on the socket at fd N (never stdout: a job may write anything there).
One JSON object per line. The parent sends:

    {"op": "run", "run_id", "job", "run_config", "tags", "partition_key", "attempt"}
    {"op": "kill", "run_id"}              SIGKILL the run's process group (ignored if stale)

and the worker answers:

    {"op": "ready", "pid", "jobs", "load_errors"}      once, after importing the definitions
    {"op": "accepted", "run_id"}           before anything happens for the run
    {"op": "started", "run_id", "pid"}     the child is forked; pid is also its group id
    {"op": "output", "run_id", "lines": [[stream, text], ...]}    stdout, stderr or log
    {"op": "exit", "run_id", "result": {"kind": ...}}  success | raised | exited |
                                           signaled | undefined | fork_failed

Output: the child's fd 1 and 2 are pipes that this worker reads and splits into lines; the
job's `context.log` writes JSON lines to a third pipe, which also carries the report of an
exception. When the child has exited, its whole process group is killed (nothing a run
started outlives it), the child and the group's orphans are reaped (the worker is a child
subreaper on Linux), and the pipes are drained.

Lifetime: the worker exits when its control socket reaches EOF (the parent closed it or
died; Linux also sends SIGTERM on the parent's death), killing the run in progress.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import inspect
import io
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

import structlog

from daemon.definitions import Job
from daemon.job_context import job_context_for
from daemon.loading import load_definitions
from daemon.logging import configure_logging

log = structlog.get_logger("tickd.worker")

MAX_LINE: Final = 64 * 1024  # longer output lines are cut into pieces of this size
MAX_BATCH_BYTES: Final = 256 * 1024  # per output message
READ_CHUNK: Final = 64 * 1024
DRAIN_S: Final = 0.5  # after the child exited, wait this long at most for its pipes' EOF
REAP_S: Final = 1.0  # after killing the group, wait this long at most for its members
IDLE_REAP_S: Final = 1.0  # how often an idle worker reaps stray orphans
POLL_S: Final = 0.005  # child-exit polling where pidfd_open is missing (not Linux)
EXIT_CODE_UNHANDLED: Final = 70  # the child's code if even reporting failed

_PR_SET_PDEATHSIG: Final = 1
_PR_SET_CHILD_SUBREAPER: Final = 36  # for the worker only: a fork does not inherit it


# ---- the wire format ---------------------------------------------------------------------


_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), default=str)  # made once, not per message


def encode(message: Mapping[str, Any]) -> bytes:
    """One protocol message: ASCII JSON and a newline (a string never holds a raw one)."""
    return _ENCODER.encode(message).encode("ascii") + b"\n"


class ParentGone(Exception):
    """The control socket reached EOF: the executor closed it or its process died."""


class _Terminated(BaseException):
    """SIGTERM (sent by Linux when the parent dies): clean up and exit."""


class _Control:
    """The worker's end of the control socket: blocking writes, buffered line reads."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()
        self._poll = select.poll()  # no fd of its own, so nothing for a child to close
        self._poll.register(sock, select.POLLIN)

    def send(self, message: Mapping[str, Any]) -> None:
        self.sock.sendall(encode(message))

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self, timeout: float) -> list[dict[str, Any]]:
        """The messages complete after at most one read; [] if none arrived in time."""
        if not self._poll.poll(timeout * 1000):
            return []
        return self.read_available()

    def read_available(self) -> list[dict[str, Any]]:
        """Read once (the socket must be readable) and return the complete messages."""
        try:
            data = self.sock.recv(READ_CHUNK)
        except OSError:
            data = b""
        if not data:
            raise ParentGone
        self._buffer += data
        *lines, rest = self._buffer.split(b"\n")
        self._buffer = bytearray(rest)
        messages = []
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                log.error("worker.bad_message", size=len(line))
                continue
            if isinstance(message, dict):
                messages.append(message)
        return messages


# ---- the worker --------------------------------------------------------------------------


class Worker:
    def __init__(self, control: _Control, jobs: Mapping[str, Job], stdio: _ChildStdio) -> None:
        self.control = control
        self.jobs = jobs
        self.stdio = stdio
        self.child: int | None = None  # the pid (and process group) of the run in progress

    def serve(self) -> None:
        """Serve runs until the parent goes away."""
        while True:
            for message in self.control.receive(IDLE_REAP_S):
                if message.get("op") == "run":
                    self.run(message)
                # A "kill" for a run that already ended is stale: nothing to do.
            _reap_orphans()

    def run(self, message: Mapping[str, Any]) -> None:
        run_id = str(message["run_id"])
        self.control.send({"op": "accepted", "run_id": run_id})
        job = self.jobs.get(str(message["job"]))
        if job is None:
            self._exit(run_id, {"kind": "undefined"})
            return
        _flush_stdio()
        me = os.getpid()
        try:
            pipes = _RunPipes()
        except OSError as exc:  # out of file descriptors
            self._exit(run_id, {"kind": "fork_failed", "error": str(exc)})
            return
        try:
            pid = os.fork()
        except OSError as exc:  # out of memory or processes
            pipes.close_all()
            self._exit(run_id, {"kind": "fork_failed", "error": str(exc)})
            return
        if pid == 0:
            _child_main(job, message, pipes, self.stdio, parent=me, control=self.control.fileno())
        self.child = pid
        with contextlib.suppress(OSError):  # also done by the child; whichever runs first
            os.setpgid(pid, pid)
        pipes.close_write_ends()
        self.control.send({"op": "started", "run_id": run_id, "pid": pid})
        status, error = _Supervision(self, run_id, pid, pipes).watch()
        self._exit(run_id, _result(status, error))

    def kill_child(self) -> None:
        if self.child is not None:
            _kill_group(self.child)

    def _exit(self, run_id: str, result: Mapping[str, Any]) -> None:
        self.control.send({"op": "exit", "run_id": run_id, "result": result})


class _RunPipes:
    """The child's stdout, stderr and event pipes."""

    def __init__(self) -> None:
        self.stdout_r, self.stdout_w = os.pipe()
        self.stderr_r, self.stderr_w = os.pipe()
        self.events_r, self.events_w = os.pipe()

    def read_ends(self) -> dict[int, str]:
        return {self.stdout_r: "stdout", self.stderr_r: "stderr", self.events_r: "events"}

    def close_read_ends(self) -> None:
        os.close(self.stdout_r)
        os.close(self.stderr_r)
        os.close(self.events_r)

    def close_write_ends(self) -> None:
        os.close(self.stdout_w)
        os.close(self.stderr_w)
        os.close(self.events_w)

    def close_all(self) -> None:
        self.close_read_ends()
        self.close_write_ends()


class _Supervision:
    """Watches one child: forwards its output, obeys kills, reaps it and its group.

    One poll(2) set (no selector object or epoll fd to create per run): the control
    socket, the child's pidfd (its exit) and its three pipes.
    """

    def __init__(self, worker: Worker, run_id: str, pid: int, pipes: _RunPipes) -> None:
        self.worker = worker
        self.run_id = run_id
        self.pid = pid
        self.streams = pipes.read_ends()
        self.events_fd = pipes.events_r
        self.splitters = {fd: _LineSplitter() for fd in self.streams}
        self.error: dict[str, Any] | None = None
        self.status: int | None = None
        self.parent_gone = False
        self.outbox: list[list[str]] = []

    def watch(self) -> tuple[int, dict[str, Any] | None]:
        poller = select.poll()
        pidfd = _pidfd_open(self.pid)
        try:
            poller.register(self.worker.control.fileno(), select.POLLIN)
            if pidfd is not None:
                poller.register(pidfd, select.POLLIN)
            for fd in self.streams:
                poller.register(fd, select.POLLIN)
            self._loop(poller, pidfd)
        finally:
            if pidfd is not None:
                os.close(pidfd)
            for fd in self.streams:
                os.close(fd)
        if self.parent_gone:
            raise ParentGone
        assert self.status is not None
        return self.status, self.error

    def _loop(self, poller: select.poll, pidfd: int | None) -> None:
        control = self.worker.control.fileno()
        open_pipes = set(self.streams)
        timeout: float | None = POLL_S * 1000 if pidfd is None else None
        drain_until: float | None = None
        while True:
            if self.status is not None:
                if not open_pipes:
                    return
                if drain_until is None:
                    drain_until = time.monotonic() + DRAIN_S
                timeout = (drain_until - time.monotonic()) * 1000
                if timeout <= 0:  # held open by a process that left the group: stop reading
                    for fd in open_pipes:
                        self._on_data(fd, b"")
                    self._send_output()
                    return
            for fd, _ in poller.poll(timeout):
                if fd in open_pipes:
                    if self._on_pipe(fd):
                        continue
                    poller.unregister(fd)
                    open_pipes.discard(fd)
                elif fd == pidfd:
                    poller.unregister(pidfd)
                    self.status = _reap_child(self.pid)
                    self.worker.child = None
                elif fd == control:
                    self._on_control()
                    if self.parent_gone:
                        poller.unregister(control)
            if pidfd is None and self.status is None:
                self.status = _poll_child(self.pid)
                if self.status is not None:
                    self.worker.child = None
            if self.outbox:
                self._send_output()

    def _on_control(self) -> None:
        try:
            messages = self.worker.control.read_available()
        except ParentGone:
            # Kill the run; its exit is still reaped before the worker leaves.
            self.parent_gone = True
            _kill_group(self.pid)
            return
        for message in messages:
            if message.get("op") == "kill" and message.get("run_id") == self.run_id:
                _kill_group(self.pid)

    def _on_pipe(self, fd: int) -> bool:
        """Read what the pipe holds; False at its end."""
        try:
            data = os.read(fd, READ_CHUNK)
        except OSError:
            data = b""
        self._on_data(fd, data)
        return bool(data)

    def _on_data(self, fd: int, data: bytes) -> None:
        """Lines from a pipe's new bytes; b"" means its end: the last partial line too."""
        splitter = self.splitters[fd]
        lines = splitter.feed(data) if data else splitter.finish()
        if not lines:
            return
        if fd != self.events_fd:
            stream = self.streams[fd]
            self.outbox.extend([stream, line] for line in lines)
            return
        for line in lines:
            self._on_event(line)

    def _on_event(self, line: str) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if isinstance(event, dict) and isinstance(event.get("log"), str):
            self.outbox.append(["log", event["log"]])
        elif isinstance(event, dict) and isinstance(event.get("error"), dict):
            self.error = event["error"]
        else:
            self.outbox.append(["log", line])

    def _send_output(self) -> None:
        while self.outbox:
            size = 0
            count = 0
            for _, text in self.outbox:
                size += len(text) + 16
                count += 1
                if size >= MAX_BATCH_BYTES:
                    break
            batch, self.outbox = self.outbox[:count], self.outbox[count:]
            if not self.parent_gone:
                self.worker.control.send({"op": "output", "run_id": self.run_id, "lines": batch})


class _LineSplitter:
    """Bytes in, complete text lines out (undecodable bytes replaced, long lines cut)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[str]:
        self.buffer += data
        *complete, rest = self.buffer.split(b"\n")
        lines = [_decode(piece) for line in complete for piece in _cut(line)]
        while len(rest) > MAX_LINE:
            lines.append(_decode(rest[:MAX_LINE]))
            rest = rest[MAX_LINE:]
        self.buffer = bytearray(rest)
        return lines

    def finish(self) -> list[str]:
        rest, self.buffer = self.buffer, bytearray()
        return [_decode(rest)] if rest else []


def _cut(line: bytes | bytearray) -> Iterator[bytes | bytearray]:
    for start in range(0, max(len(line), 1), MAX_LINE):
        yield line[start : start + MAX_LINE]


def _decode(line: bytes | bytearray) -> str:
    return bytes(line).decode("utf-8", "replace").removesuffix("\r")


def _result(status: int, error: Mapping[str, Any] | None) -> dict[str, Any]:
    if os.WIFSIGNALED(status):
        return {"kind": "signaled", "signal": os.WTERMSIG(status)}
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return {"kind": "success"}
    if code == 1 and error is not None:
        return {"kind": "raised", **error}
    return {"kind": "exited", "code": code}


# ---- processes ---------------------------------------------------------------------------


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _reap_child(pid: int) -> int:
    """Kill what is left of the run's process group, then reap the child and the group.

    Called once the child has exited but before it is reaped: the zombie keeps the group id
    from being reused, so the kill cannot reach a stranger.
    """
    _kill_group(pid)
    _, status = os.waitpid(pid, 0)
    _reap_group(pid)
    return status


def _poll_child(pid: int) -> int | None:
    """Without pidfd_open: reap the child if it exited (its group is killed after)."""
    done, status = os.waitpid(pid, os.WNOHANG)
    if done == 0:
        return None
    _kill_group(pid)
    _reap_group(pid)
    return status


def _reap_group(pgid: int) -> None:
    """Reap the group's members that were reparented to us (we are a subreaper)."""
    deadline = time.monotonic() + REAP_S
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-pgid, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.001)


def _reap_orphans() -> None:
    """Reap any exited orphan that was reparented to this worker."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _pidfd_open(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL: Final = _load_prctl()  # resolved once: every forked child calls it


def _prctl(option: int, value: int) -> bool:
    return _PRCTL is not None and int(_PRCTL(option, value, 0, 0, 0)) == 0


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()


# ---- the child ---------------------------------------------------------------------------


class _EventWriter:
    """The child's end of the event pipe: log lines and the exception report, as JSON."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()

    def log(self, stream: str, text: str) -> None:
        self._write({"log": text})

    def error(self, exc: BaseException) -> None:
        self._write({"error": _describe_exception(exc)})

    def _write(self, event: Mapping[str, Any]) -> None:
        data = memoryview(json.dumps(event, default=str).encode("ascii") + b"\n")
        with self.lock:
            while data:
                data = data[os.write(self.fd, data) :]


class _ChildStdio:
    """The sys.stdin, sys.stdout and sys.stderr of every child, made once by the worker.

    A child's fd 0 is /dev/null (the worker's own is made so at start-up) and `install`
    puts its run's pipes at fds 1 and 2; these line-buffered streams on fds 0, 1 and 2 are
    then what the job finds in sys. They are made while fds 1 and 2 are a pipe, so what
    they learn of their file when made (not seekable, its block size) is true in a child.
    The worker never writes to them, so they are empty when it forks, and a child pays for
    no open() of its own.
    """

    def __init__(self) -> None:
        devnull = os.open(os.devnull, os.O_RDONLY)
        if devnull != 0:
            os.dup2(devnull, 0)
            os.close(devnull)
        saved = os.dup(1), os.dup(2)
        read_end, write_end = os.pipe()
        try:
            os.dup2(write_end, 1)
            os.dup2(write_end, 2)
            self.stdin = open(0, closefd=False)  # noqa: SIM115 (lives as long as the process)
            self.stdout = _output_stream(1)
            self.stderr = _output_stream(2)
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in (*saved, read_end, write_end):
                os.close(fd)

    def install(self, stdout: int, stderr: int) -> None:
        """In the child: the pipes become fds 1 and 2, and these streams sys's."""
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        os.close(stdout)
        os.close(stderr)
        sys.stdin, sys.stdout, sys.stderr = self.stdin, self.stdout, self.stderr


def _output_stream(fd: int) -> io.TextIOWrapper:
    """Line-buffered, so output reaches the run's log as it comes."""
    stream = open(fd, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
    stream.seekable()  # asked (and the answer kept) now, while fd is a pipe
    return stream


def _child_main(
    job: Job,
    message: Mapping[str, Any],
    pipes: _RunPipes,
    stdio: _ChildStdio,
    *,
    parent: int,
    control: int,
) -> NoReturn:
    """Run the job in this forked child and exit; never returns into the worker's code."""
    code = EXIT_CODE_UNHANDLED
    events: _EventWriter | None = None
    try:
        os.setpgid(0, 0)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the worker died before the line above
            os._exit(EXIT_CODE_UNHANDLED)
        # Being a child subreaper is not inherited across fork: nothing to undo here.
        os.close(control)
        pipes.close_read_ends()
        stdio.install(pipes.stdout_w, pipes.stderr_w)
        events = _EventWriter(pipes.events_w)
        code = _run_job(job, message, events)
    except SystemExit as exc:
        code = _system_exit_code(exc)
    except BaseException as exc:
        code = 1
        with contextlib.suppress(BaseException):
            if events is not None:
                events.error(exc)
            else:  # failed before the job started: say why on whatever stderr is now
                traceback.print_exc()
    finally:
        _flush_stdio()
        os._exit(code)


def _run_job(job: Job, message: Mapping[str, Any], events: _EventWriter) -> int:
    partition_key = message.get("partition_key")
    context = job_context_for(
        job,
        run_id=str(message["run_id"]),
        run_config=dict(message.get("run_config") or {}),
        tags={str(k): str(v) for k, v in (message.get("tags") or {}).items()},
        partition_key=None if partition_key is None else str(partition_key),
        attempt=int(message.get("attempt", 1)),
        log_sink=events.log,
    )
    if job.is_async:
        asyncio.run(job.fn(context))
    else:
        result = job.fn(context)
        if inspect.isawaitable(result):  # a plain function that returned a coroutine
            asyncio.run(_await(result))
    return 0


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _system_exit_code(exc: SystemExit) -> int:
    """What the interpreter would exit with for `exc` (printing a message like it does)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    with contextlib.suppress(BaseException):
        print(exc.code, file=sys.stderr)
    return 1


def _describe_exception(exc: BaseException) -> dict[str, str]:
    """The exception's one-line summary and its traceback from the job's first frame.

    traceback's formatting never renders local variables (they may hold secrets).
    """
    text = _safe_str(exc).strip().splitlines()
    name = type(exc).__qualname__
    summary = f"{name}: {text[0]}" if text else name
    lines = traceback.format_exception(type(exc), exc, _job_frames(exc.__traceback__))
    return {"type": name, "summary": summary, "traceback": "".join(lines).rstrip("\n")}


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return "<the exception's message could not be rendered>"


def _job_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """Skip the leading frames of this module and of asyncio: start at the job's code."""
    asyncio_dir = os.path.dirname(asyncio.__file__)
    while tb is not None and tb.tb_next is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename != __file__ and not filename.startswith(asyncio_dir):
            break
        tb = tb.tb_next
    return tb


# ---- main --------------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m daemon.worker", description=__doc__)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("definitions", nargs="*", type=Path)
    return parser.parse_args(argv)


def _on_sigterm(signum: int, frame: types.FrameType | None) -> None:
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    control = _Control(socket.socket(fileno=args.control_fd))
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides when workers stop
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if args.parent_pid is not None and os.getppid() != args.parent_pid:
        return 0  # the parent died before we asked to be told
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    # Our own events (and jobs' structlog events) go to the daemon's stdout, the journal,
    # through a private copy of fd 1: a child's fd 1 is its run's captured stdout.
    journal = open(os.dup(1), "w", buffering=1, errors="backslashreplace")  # noqa: SIM115
    configure_logging(args.log_level, "auto", stream=journal)
    worker: Worker | None = None
    try:
        result = load_definitions(args.definitions)
        for error in result.errors:  # the daemon reports these itself; keep them quiet here
            log.debug("worker.definitions_failed", file=str(error.file), problem=error.message)
        gc.freeze()  # keep the imported definitions out of the children's copy-on-write
        control.send(
            {
                "op": "ready",
                "pid": os.getpid(),
                "jobs": len(result.registry.jobs),
                "load_errors": len(result.errors),
            }
        )
        worker = Worker(control, result.registry.jobs, _ChildStdio())
        worker.serve()
    except (ParentGone, _Terminated, BrokenPipeError, ConnectionResetError):
        pass
    finally:
        if worker is not None:
            worker.kill_child()
        _reap_orphans()
    return 0


if __name__ == "__main__":
    sys.exit(main())
