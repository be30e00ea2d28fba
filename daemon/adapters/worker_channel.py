"""The executor's end of one worker's control socket: newline-ended messages, both ways.

The socket is served by an asyncio protocol that stays registered with the event loop for
the worker's life. A run waits for the worker's next line on a future the protocol
resolves, so a wait costs no selector change (a raw-socket stream adds and removes its
reader around every wait, which was a good part of a run's cost in this process).

Backpressure: when HIGH_WATER bytes of lines are waiting to be taken, the protocol stops
reading the socket, so a job that floods its output is slowed down by a slow consumer
(the worker's writes block, then the job's) instead of piling up here.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import Final

HIGH_WATER: Final = 1024 * 1024  # bytes of complete lines waiting: stop reading the socket
LOW_WATER: Final = HIGH_WATER // 4  # … and start again once the waiting lines are below this


class MessageTooLong(Exception):
    """The worker sent a line longer than the channel's limit."""


class WorkerChannel(asyncio.Protocol):
    """Lines from the worker, in order; `send` queues bytes to it (never blocks)."""

    def __init__(self, max_line: int) -> None:
        self._max_line = max_line
        self._transport: asyncio.Transport | None = None
        self._lines: deque[bytes] = deque()
        self._partial = b""
        self._waiting = 0  # bytes in self._lines
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._ended = False
        self._too_long = False

    @classmethod
    async def open(cls, sock: socket.socket, *, max_line: int) -> WorkerChannel:
        """Serve `sock` (connected) on the running loop; the channel then owns it."""
        loop = asyncio.get_running_loop()
        _, channel = await loop.connect_accepted_socket(lambda: cls(max_line), sock)
        return channel

    # ---- the protocol (called by the event loop) ----------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self._partial:
            data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        if len(self._partial) > self._max_line:
            self._too_long = True
            self._partial = b""
        if lines:
            self._lines.extend(lines)
            self._waiting += len(data) - len(self._partial)
            if self._waiting >= HIGH_WATER and not self._paused and self._transport:
                self._paused = True
                self._transport.pause_reading()
        if lines or self._too_long:
            self._wake()

    def eof_received(self) -> bool:
        self._end()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    # ---- for the executor -----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def send(self, data: bytes) -> None:
        """Queue `data` for the worker. Raises BrokenPipeError once the channel is closed."""
        if self.closed:
            raise BrokenPipeError("the worker's control channel is closed")
        assert self._transport is not None
        self._transport.write(data)

    async def receive(self) -> bytes | None:
        """The next line (without its newline); None after the worker's last one.

        Raises MessageTooLong (once) if the worker sent a line over the limit. Safe to
        cancel: a line is only taken once it is returned.
        """
        while not self._lines:
            if self._too_long:
                self._too_long = False
                raise MessageTooLong
            if self._ended:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        line = self._lines.popleft()
        self._waiting -= len(line) + 1
        if self._paused and self._waiting < LOW_WATER and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return line

    def close(self) -> None:
        """Close the socket (what is queued for the worker is still sent first)."""
        if self._transport is not None:
            self._transport.close()
        self._end()

    def _end(self) -> None:
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
