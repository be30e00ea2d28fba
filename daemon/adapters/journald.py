"""Native journald fields, when stdout is the journal.

systemd sets `$JOURNAL_STREAM` to the device and inode of the stream it connected to the
service's stdout. When that is our stdout, each event is sent to journald over its native
socket instead, with its values as journal fields (`INSTIGATOR=daily_report`,
`RUN_ID=…`), so `journalctl -u tickd INSTIGATOR=daily_report` filters tick history.
MESSAGE is the same JSON line tickd prints elsewhere. Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
from collections.abc import Mapping
from typing import Any, TextIO

import structlog

SOCKET = "/run/systemd/journal/socket"
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2, "exception": 3}
_SKIP = frozenset({"event", "level", "timestamp"})
_BAD = re.compile(r"[^A-Z0-9_]")


def stdout_is_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether `stream` is the journal stream systemd handed us ($JOURNAL_STREAM)."""
    value = (environ if environ is not None else os.environ).get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError, AttributeError):
        return False


def field_name(key: str) -> str | None:
    """A journal field name for an event key: upper case, A-Z 0-9 _, not leading _ or digit."""
    name = _BAD.sub("_", key.upper()).lstrip("_")
    if not name or name[0].isdigit():
        return None
    return name[:64]


def encode(fields: Mapping[str, str]) -> bytes:
    """journald's native format: KEY=value lines, or KEY\\n<le64 length>value for values
    with a newline."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


class JournalProcessor:
    """A structlog processor: sends the event to journald and drops it from stdout. If
    journald cannot be reached, the event goes on to the stdout renderer as before."""

    def __init__(self, address: str = SOCKET) -> None:
        self.address = address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def close(self) -> None:
        self._sock.close()

    def fields(self, event_dict: Mapping[str, Any]) -> dict[str, str]:
        level = str(event_dict.get("level", "info"))
        out = {
            "MESSAGE": json.dumps(event_dict, default=str),
            "PRIORITY": str(_PRIORITY.get(level, 6)),
            "SYSLOG_IDENTIFIER": "tickd",
            "TICKD_EVENT": str(event_dict.get("event", "")),
        }
        for key, value in event_dict.items():
            if key in _SKIP or not isinstance(value, str | int | float | bool):
                continue
            name = field_name(key)
            if name is not None and name not in out:
                out[name] = str(value)
        return out

    def __call__(self, _: Any, __: str, event_dict: Any) -> Any:
        try:
            self._sock.sendto(encode(self.fields(event_dict)), self.address)
        except OSError:
            return event_dict  # journald unreachable or the entry too big: print it
        raise structlog.DropEvent
