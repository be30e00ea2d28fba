"""The scheduler's group commit: evaluated ticks handed over join whatever batch the
committer takes next, each batch is one store transaction, and whoever handed a tick
over hears how its commit went. Nothing waits for a batch to fill: a slow sensor never
holds up the others' commits.

Imports ports, never adapters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
import anyio.lowlevel
import structlog
from anyio.abc import TaskGroup

from daemon.definitions import Schedule
from daemon.domain.runs import InstigatorKind
from daemon.domain.ticks import Outcome, Tick, TickCommit, TickStatus
from daemon.errors import LeaseLostError
from daemon.ports import PreparedTicks, Store

log = structlog.get_logger("tickd.loop")

Key = tuple[InstigatorKind, str]
_CREATED = Outcome.CREATED

# After a failed commit (store unavailable, disk full) an instigator is retried after this.
COMMIT_RETRY = timedelta(seconds=5)

# A batch of more ticks than this is logged by a task of its own, after the committer
# has taken the next batch.
LOG_INLINE = 32


@dataclass(slots=True, eq=False)
class Pending:
    """Evaluated ticks of one instigator waiting for the committer (they commit in one
    transaction), and who hears the outcome: `on_done`, called by the committer, or
    whoever waits for `done`."""

    key: Key
    commits: list[TickCommit]
    done: anyio.Event | None = None
    on_done: Callable[[Pending], None] | None = None
    schedule: Schedule | None = None  # the definition evaluated, for `on_done`
    result: list[Tick] | None = None
    error: BaseException | None = None


class Committer:
    """Commits what the scheduler evaluated, one batch at a time (`run`), or a batch its
    caller commits itself (`commit`). `work(n)` adds `n` to the work under way in the
    scheduler's books (0: none added or done, but it may be idle now)."""

    def __init__(
        self,
        store: Store,
        *,
        tg: TaskGroup,
        work: Callable[[int], None],
        logger: structlog.typing.FilteringBoundLogger,
        lease_epoch: int | None = None,
        on_enqueued: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.lease_epoch = lease_epoch
        self.on_enqueued = on_enqueued
        self._tg = tg
        self._work = work
        self._log = logger
        self._send, self._recv = anyio.create_memory_object_stream[Pending](math.inf)
        self._handed = 0  # pendings handed over that the committer has not taken yet
        self._committing = False

    @property
    def idle(self) -> bool:
        """Nothing handed over waits, nothing is being committed."""
        return self._handed == 0 and not self._committing

    def hand_over(self, pendings: Sequence[Pending]) -> None:
        """Queue `pendings` for the next batch."""
        self._handed += len(pendings)
        for pending in pendings:
            self._send.send_nowait(pending)

    async def run(self) -> None:
        """Take whatever was handed over as one batch and commit it, until cancelled."""
        with self._send:
            async with self._recv:
                async for first in self._recv:
                    batch = [first]
                    while True:
                        try:
                            batch.append(self._recv.receive_nowait())
                        except anyio.WouldBlock:
                            break
                    self._handed -= len(batch)
                    self._committing = True
                    try:
                        await self.commit(batch)
                    finally:
                        self._committing = False

    async def commit(
        self, batch: list[Pending], prepared: tuple[PreparedTicks, datetime] | None = None
    ) -> None:
        """Commit `batch` in one transaction, or what the store `prepared` of it, at the
        time given with it; then tell each pending how it went. Raises LeaseLostError
        (after telling them) if another daemon took over."""
        try:
            if prepared is None:
                flat = [c for p in batch for c in p.commits]
                ticks = await self.store.commit_ticks(flat, lease_epoch=self.lease_epoch)
            else:
                made, at = prepared
                ticks = await self.store.commit_prepared(made, at=at, lease_epoch=self.lease_epoch)
        except Exception as exc:
            log.error(
                "tick.commit_failed",
                error=str(exc),
                error_type=type(exc).__name__,
                ticks=sum(len(p.commits) for p in batch),
                instigators=len(batch),
                first_instigators=[p.key[1] for p in batch[:5]],
                retry_in_s=COMMIT_RETRY.total_seconds(),
            )
            for p in batch:
                p.error = exc
                _report(p)
            self._work(0)
            if isinstance(exc, LeaseLostError):
                raise
            return
        if self.on_enqueued is not None and any(
            d.outcome is _CREATED for t in ticks for d in t.decisions
        ):
            self.on_enqueued()
        i = 0
        for p in batch:
            n = len(p.commits)
            p.result = ticks[i : i + n]
            i += n
            _report(p)
        if len(ticks) <= LOG_INLINE:
            self._log_ticks(ticks)
            self._work(0)
        else:  # the next batch's commit need not wait for these lines
            self._work(1)
            self._tg.start_soon(self._log_ticks_soon, ticks)

    async def _log_ticks_soon(self, ticks: list[Tick]) -> None:
        try:
            await anyio.lowlevel.checkpoint()
            self._log_ticks(ticks)
        finally:
            self._work(-1)

    def _log_ticks(self, ticks: list[Tick]) -> None:
        tick_log = self._log
        for tick in ticks:
            _log_tick(tick_log, tick)


def _report(pending: Pending) -> None:
    """Tell whoever waits for `pending` how its commit went."""
    if pending.on_done is not None:
        pending.on_done(pending)
    if pending.done is not None:
        pending.done.set()


def _log_tick(logger: structlog.typing.FilteringBoundLogger, tick: Tick) -> None:
    started = tick.started_at
    scheduled = tick.scheduled_for
    decisions = tick.decisions
    created = [d.run_id for d in decisions if d.outcome is _CREATED]
    fields: dict[str, object] = {
        "instigator": tick.instigator.name,
        "kind": tick.instigator.kind.value,
        "tick_id": tick.tick_id,
        "status": tick.status.value,
        "runs_created": len(created),
        "deduplicated": len(decisions) - len(created),
    }
    if scheduled is not None:
        fields["scheduled_for"] = scheduled.isoformat()
        fields["lag_s"] = round((started - scheduled).total_seconds(), 6)
    if tick.ended_at is not None:
        fields["duration_s"] = round((tick.ended_at - started).total_seconds(), 6)
    if created:
        fields["run_ids"] = created
    if tick.skip_reason:
        fields["skip_reason"] = tick.skip_reason
    if tick.error:
        fields["error"] = tick.error.splitlines()[0]
    if tick.status is TickStatus.FAILURE:
        logger.warning("tick.completed", **fields)
    else:
        logger.info("tick.completed", **fields)
