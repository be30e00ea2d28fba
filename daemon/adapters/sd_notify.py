"""The systemd notification protocol: one datagram per message to $NOTIFY_SOCKET.

No dependency: a few lines of the standard library, as gunicorn does it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time


class SdNotifier:
    """Sends READY=1, STATUS=…, WATCHDOG=1, RELOADING=1, STOPPING=1 when run by systemd;
    does nothing otherwise."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._address: str | None = None
        self._socket: socket.socket | None = None
        if address:
            if address.startswith("@"):  # abstract namespace
                address = "\0" + address[1:]
            self._address = address
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings systemd expects (half its WATCHDOG_USEC)."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return int(usec) / 1_000_000 / 2
        except ValueError:
            return None

    def send(self, *fields: str) -> None:
        if self._socket is None or self._address is None:
            return
        # systemd gone or its socket full: never fatal for the daemon
        with contextlib.suppress(OSError):
            self._socket.sendto("\n".join(fields).encode(), self._address)

    def ready(self, status: str | None = None) -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        # systemd ≥ 253 wants MONOTONIC_USEC with RELOADING=1 (Type=notify-reload).
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
