"""The real clock: the one place in tickd that reads the system time."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio

# A sleeper re-reads the wall clock at least this often, so a clock step (NTP, suspend)
# costs at most this much lateness.
_MAX_NAP_S = 30.0


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, deadline: datetime) -> None:
        while True:
            remaining = (deadline - self.now()).total_seconds()
            if remaining <= 0:
                return
            await anyio.sleep(min(remaining, _MAX_NAP_S))
