"""Jobs for the process executor's tests: each behaves well or badly in one way."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

from daemon.definitions import job


@job
def noop(context: Any) -> None:
    pass


@job
def hello(context: Any) -> None:
    print(f"hello from {context.run_id}")
    print(f"warning from {context.run_id}", file=sys.stderr)
    context.log.info("greeted", run_id=context.run_id, who=context.run_config.get("who"))


@job
def chatty(context: Any) -> None:
    """Prints its run id a few times, slowly, so concurrent runs interleave."""
    for i in range(5):
        print(f"{context.run_id} line {i}", flush=True)
        time.sleep(0.02)


@job
def raises(context: Any) -> None:
    password = "hunter2"  # a local that must not appear in the error
    raise ValueError(f"bad input {len(password)}")


@job
def exits_3(context: Any) -> None:
    os._exit(3)


@job
def sys_exit_4(context: Any) -> None:
    sys.exit(4)


@job
def segfaults(context: Any) -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


@job
def hangs(context: Any) -> None:
    print("hanging", flush=True)
    time.sleep(300)


@job
def spawns_and_hangs(context: Any) -> None:
    child = subprocess.Popen(["sleep", "300"])
    print(f"grandchild {child.pid}", flush=True)
    time.sleep(300)


@job
def leaves_a_grandchild(context: Any) -> None:
    child = subprocess.Popen(["sleep", "300"])
    print(f"grandchild {child.pid}", flush=True)


@job
def garbage(context: Any) -> None:
    sys.stdout.buffer.write(bytes(range(256)) * 3 + b'\n{"op": "exit", "run_id": "x"}\n')
    sys.stdout.flush()
    os.write(1, b"\xff\xfe no newline at the end")
    sys.stderr.write("after the garbage\n")


@job
async def async_job(context: Any) -> None:
    await asyncio.sleep(0.01)
    print("async done")
    context.log.warning("async.logged", attempt=context.attempt)


@job
def kills_its_worker(context: Any) -> None:
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(300)


@job
def logs_exception(context: Any) -> None:
    known: dict[str, int] = {}
    try:
        known["missing"]
    except KeyError:
        context.log.exception("lookup.failed", key="missing")


@job
def echoes_context(context: Any) -> None:
    print(
        repr(
            (
                context.job_name,
                dict(context.run_config),
                dict(context.tags),
                context.partition_key,
                context.attempt,
            )
        )
    )


@job
def prints_many(context: Any) -> None:
    for i in range(500):
        print(f"line {i}")


@job
def escapes_its_group(context: Any) -> None:
    """Starts a process in a new session (out of the run's group) that keeps stdout open."""
    child = subprocess.Popen(["sleep", "300"], start_new_session=True)
    print(f"escapee {child.pid}", flush=True)
    sys.stdout.write("partial")


@job
def reads_stdin_then_closes_stdout(context: Any) -> None:
    """Reads stdin (empty), then changes and closes its stdio: later runs must not care."""
    print(f"stdin gave {sys.stdin.read()!r}")
    sys.stdout.write("no newline yet")
    sys.stderr.reconfigure(errors="strict")
    sys.stdout.close()
