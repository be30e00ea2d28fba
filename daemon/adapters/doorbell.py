"""A doorbell beside a SQLite store: SQLite's stand-in for PostgreSQL's LISTEN/NOTIFY.

The daemon binds a Unix datagram socket at `<store>.bell`; any process that commits a
change to runs (the CLI, the Python client, another daemon) sends it one byte. The
daemon wakes at once instead of polling the queue. A missed ring costs only latency:
the listener still re-checks the store's change counter every few seconds.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import anyio

# Unix socket paths longer than this do not fit sockaddr_un; such stores fall back to
# polling their change counter.
_MAX_PATH = 100


def bell_path(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + ".bell")


def ring(path: Path) -> None:
    """Tell the listener (if any) that runs changed. Never blocks, never fails."""
    if len(str(path)) > _MAX_PATH:
        return
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        s.sendto(b"!", str(path))


class Doorbell:
    """The listening side; one per daemon."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock: socket.socket | None = None

    def listen(self) -> bool:
        """Bind the socket (replacing a stale one). False when the path cannot be used."""
        if len(str(self.path)) > _MAX_PATH:
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        try:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
        except OSError:
            sock.close()
            return False
        self._sock = sock
        return True

    async def wait(self, max_wait: float) -> bool:
        """True when rung within `max_wait` seconds (all pending rings are consumed)."""
        if self._sock is None:
            await anyio.sleep(max_wait)
            return False
        rung = self._drain()
        if not rung:
            with anyio.move_on_after(max_wait):
                await anyio.wait_readable(self._sock)
            rung = self._drain()
        return rung

    def _drain(self) -> bool:
        assert self._sock is not None
        rung = False
        while True:
            try:
                self._sock.recv(64)
            except (BlockingIOError, InterruptedError):
                return rung
            except OSError:
                return rung
            rung = True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(OSError):
                self.path.unlink()
