"""Time-sortable identifiers (UUIDv7 layout), generated from a time the caller gives."""

from __future__ import annotations

import os
import random
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
            self._counter = _start()
        return _format(ms, self._counter)

    def many(self, at: datetime, count: int) -> list[str]:
        """`count` ids for things created at `at`, in creation order (as `new` in a loop)."""
        ms = int(at.timestamp() * 1000)
        if ms <= self._last_ms:
            ms = self._last_ms
            first = self._counter + 1
        else:
            self._last_ms = ms
            first = _start()
        last = self._counter = first + count - 1
        if count < 4 or first >> 48 != last >> 48:
            return [_format(ms, c) for c in range(first, first + count)]
        # All but the last 12 hex digits are the same: format those once.
        prefix = _format(ms, first)[:-12]
        low = first & _LOW_48
        return [f"{prefix}{c:012x}" for c in range(low, low + count)]


# Where a millisecond's counter starts: random, with headroom (the top bit clear). Drawn
# from a generator of this module's own, seeded from the OS and again in a forked child,
# rather than from os.urandom: a system call for every new millisecond was a twentieth
# of a tick. Nobody else's seeding (a test's) touches it.
_random = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))


def _start() -> int:
    return _random.getrandbits(_COUNTER_BITS - 1)


def _format(ms: int, counter: int) -> str:
    """The UUIDv7 text of a millisecond and a counter (as str(uuid.UUID(int=...)))."""
    c = counter & _COUNTER_MASK
    h = "%032x" % ((ms & _MS_MASK) << 80 | 0x7 << 76 | (c >> 62) << 64 | 0b10 << 62 | c & _LOW_MASK)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_MS_MASK = (1 << 48) - 1
_COUNTER_MASK = (1 << _COUNTER_BITS) - 1
_LOW_MASK = (1 << 62) - 1
_LOW_48 = (1 << 48) - 1
_default = IdGenerator()


def new_id(at: datetime) -> str:
    """A fresh time-sortable id for something created at `at`."""
    return _default.new(at)
