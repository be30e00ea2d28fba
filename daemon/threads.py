"""Running users' sync code in threads that can be abandoned.

anyio's worker threads are not daemon threads: one stuck in a user's function (a sensor
that hung past its timeout, a thread job that ignored its timeout) would keep the
process from exiting after a clean stop. Here each call gets a daemon thread, bridged
back to the event loop, so an abandoned call never holds up shutdown.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

T = TypeVar("T")


async def run_in_daemon_thread(
    fn: Callable[..., T],
    *args: Any,
    limiter: anyio.CapacityLimiter | None = None,
    name: str = "tickd-user-code",
) -> T:
    """Call `fn(*args)` in a new daemon thread and wait for it. If the caller is cancelled
    the thread is abandoned (it runs on; its result is dropped) and the limiter's token
    is returned at once."""
    async with limiter if limiter is not None else _NoLimit():
        token = anyio.lowlevel.current_token()
        done = anyio.Event()
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["value"] = fn(*args)
            except BaseException as exc:  # handed back to the caller below
                outcome["error"] = exc
            # RuntimeError: the event loop is gone, nobody is waiting any more
            with contextlib.suppress(RuntimeError):
                anyio.from_thread.run_sync(done.set, token=token)

        threading.Thread(target=target, name=name, daemon=True).start()
        await done.wait()
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


class _NoLimit:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None
