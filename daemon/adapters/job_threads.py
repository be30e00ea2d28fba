"""Worker threads for sync jobs, kept for reuse.

A run of a sync job then costs a hand-off to an idle thread rather than a new thread,
and the thread hands its result back to the event loop without waiting for the loop.
The threads are daemon threads, as in daemon.threads: one stuck in a user's function
never holds up the process's exit. A call whose caller is cancelled is abandoned: its
thread runs on, its result is dropped, and other threads serve the next calls.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextlib import suppress
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")

_Done = Callable[[bool, Any], None]  # (succeeded, value or exception)
_Call = tuple[Callable[[Any], Any], Any, _Done]


class JobThreads:
    """Runs `fn(arg)` in a daemon thread; keeps up to `keep` idle threads for reuse."""

    def __init__(self, *, keep: int, name: str = "tickd-user-code") -> None:
        self._keep = keep
        self._name = name
        self._idle: list[SimpleQueue[_Call | None]] = []
        self._lock = threading.Lock()

    async def run(self, fn: Callable[[Any], T], arg: Any) -> T:
        """`fn(arg)` in a worker thread; its exception is raised here."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(ok: bool, value: Any) -> None:
            if not future.done():  # done: the caller was cancelled and left
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

        def done(ok: bool, value: Any) -> None:
            with suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(settle, ok, value)

        self._submit((fn, arg, done))
        return await future

    def close(self) -> None:
        """Let the idle threads end (busy ones end after their call)."""
        with self._lock:
            idle, self._idle, self._keep = self._idle, [], 0
        for inbox in idle:
            inbox.put(None)

    def _submit(self, call: _Call) -> None:
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = SimpleQueue()
            threading.Thread(target=self._work, args=(inbox,), name=self._name, daemon=True).start()
        inbox.put(call)

    def _work(self, inbox: SimpleQueue[_Call | None]) -> None:
        while (call := inbox.get()) is not None:
            fn, arg, done = call
            try:
                value, ok = fn(arg), True
            except BaseException as exc:  # handed back to the caller
                value, ok = exc, False
            del call, fn, arg  # hold nothing of a finished run while idle
            with self._lock:  # idle again before the caller hears back: it may call at once
                stay = len(self._idle) < self._keep
                if stay:
                    self._idle.append(inbox)
            done(ok, value)
            del value, done
            if not stay:
                return
