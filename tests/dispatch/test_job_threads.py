"""JobThreads: sync jobs on reused daemon threads, abandoned when their caller leaves."""

from __future__ import annotations

import threading

import anyio
import anyio.lowlevel
import pytest

from daemon.adapters.job_threads import JobThreads

pytestmark = pytest.mark.anyio


def ident(_: object) -> int:
    return threading.get_ident()


def fail(message: str) -> None:
    raise ValueError(message)


async def test_calls_one_after_another_reuse_one_daemon_thread() -> None:
    threads = JobThreads(keep=2)
    seen = {await threads.run(ident, None) for _ in range(5)}
    assert len(seen) == 1 and threading.get_ident() not in seen
    with pytest.raises(ValueError, match="boom"):
        await threads.run(fail, "boom")
    assert await threads.run(ident, None) in seen
    threads.close()


async def test_a_cancelled_call_is_abandoned_and_others_go_on() -> None:
    threads = JobThreads(keep=1)
    blocker = threading.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(threads.run, lambda _: blocker.wait(10), None)
        await anyio.lowlevel.checkpoint()  # the call is handed to a thread
        tg.cancel_scope.cancel()
    busy_elsewhere = await threads.run(ident, None)  # served by another thread meanwhile
    blocker.set()
    assert busy_elsewhere != threading.get_ident()
    threads.close()
