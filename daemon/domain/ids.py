"""Time-sortable identifiers (UUIDv7 layout), generated from a time the caller gives."""

from __future__ import annotations

import os
import uuid
from datetime import datetime

_COUNTER_BITS = 74  # rand_a (12 bits) and rand_b (62 bits) read as one counter


class IdGenerator:
    """UUIDv7 strings that sort by time and, within one millisecond, by creation order.

    A new millisecond starts the counter at a random value with headroom; each further
    id in the same millisecond (or a clock that stepped back) counts up by one.
    """

    def __init__(self) -> None:
        self._last_ms = -1
        self._counter = 0

    def new(self, at: datetime) -> str:
        ms = int(at.timestamp() * 1000)
        if ms <= self._last_ms:
            ms = self._last_ms
            self._counter += 1
        else:
            self._last_ms = ms
            self._counter = int.from_bytes(os.urandom(10)) >> (80 - _COUNTER_BITS + 1)
        c = self._counter & ((1 << _COUNTER_BITS) - 1)
        value = (
            (ms & ((1 << 48) - 1)) << 80
            | 0x7 << 76
            | (c >> 62) << 64
            | 0b10 << 62
            | (c & ((1 << 62) - 1))
        )
        return str(uuid.UUID(int=value))


_default = IdGenerator()


def new_id(at: datetime) -> str:
    """A fresh time-sortable id for something created at `at`."""
    return _default.new(at)
