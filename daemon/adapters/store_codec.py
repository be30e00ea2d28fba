"""What the store adapters share: how values become columns and back, how a batch's
dedup is reported, and the store errors that daemon/errors.py does not have yet.

Times are stored as ISO-8601 UTC text with microseconds, so they sort as text and read
back as aware UTC datetimes. Mappings (tags, run config, event data) are JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from daemon.domain.requests import collapse
from daemon.domain.runs import Instigator, InstigatorKind, Run, RunStatus
from daemon.domain.ticks import (
    Decision,
    InstigatorState,
    InstigatorStatus,
    KeyedRequests,
    Outcome,
    Tick,
    TickStatus,
)
from daemon.errors import DuplicateIdError, LeaseHeldError
from daemon.ports import Lease
from daemon.slotted import positional_constructor

# Status sets as SQL lists, written word for word as in the schema's partial indexes so
# that the planner matches queries to them.
SQL_ACTIVE = "('QUEUED', 'STARTING', 'RUNNING', 'CANCELING')"
SQL_IN_FLIGHT = "('STARTING', 'RUNNING', 'CANCELING')"
SQL_TERMINAL = "('SUCCESS', 'FAILURE', 'CANCELED', 'TIMED_OUT')"


# ---- scalars --------------------------------------------------------------------------


_ENCODED: dict[datetime, str] = {}  # a tick's times recur across the ticks of one boundary


def enc_time(dt: datetime) -> str:
    text = _ENCODED.get(dt)
    if text is None:
        if dt.tzinfo is None:
            raise ValueError(f"naive datetime {dt.isoformat()} given to the store; use aware UTC")
        if len(_ENCODED) >= 4096:
            _ENCODED.clear()
        text = _ENCODED[dt] = dt.astimezone(UTC).isoformat(timespec="microseconds")
    return text


def enc_opt_time(dt: datetime | None) -> str | None:
    return None if dt is None else enc_time(dt)


def dec_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def dec_opt_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def utc(dt: datetime) -> datetime:
    """`dt` as the store gives it back: aware UTC."""
    return dec_time(enc_time(dt))


def opt_utc(dt: datetime | None) -> datetime | None:
    return None if dt is None else utc(dt)


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def dumps(value: Any) -> str:
    """Compact JSON text; raises TypeError for what JSON cannot hold."""
    return _encoder.encode(value)


def json_copy(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A mapping as it reads back from a JSON column (tuples become lists, and so on)."""
    copied: dict[str, Any] = json.loads(dumps(dict(mapping)))
    return copied


_make_run = positional_constructor(Run)
#: Decision(job, outcome, run_id, run_key, partition_key), positionally and fast.
make_decision = positional_constructor(Decision)


@lru_cache(maxsize=4096)
def instigator(kind: str, name: str) -> Instigator:
    return Instigator(kind=InstigatorKind(kind), name=name)


_STATUS = {s.value: s for s in RunStatus}


_raw_decode = json.JSONDecoder().raw_decode  # loads without its whitespace passes


def mapping(text: str) -> dict[str, Any]:
    """A JSON object column as the store wrote it (compact; most are empty)."""
    if text == "{}":
        return {}
    value: dict[str, Any] = _raw_decode(text)[0]
    return value


# ---- runs ------------------------------------------------------------------------------

RUN_COLUMNS = (
    "run_id, job, status, instigator_kind, instigator_name, created_at, priority, tags, "
    "run_config, partition_key, run_key, tick_id, started_at, ended_at, attempt, "
    "parent_run_id, error, not_before, node_id"
)


def run_from_row(r: Sequence[Any]) -> Run:
    """A run from a row selected as RUN_COLUMNS (tags and run config as JSON text)."""
    return _make_run(
        r[0],  # run_id
        r[1],  # job
        _STATUS[r[2]],
        instigator(r[3], r[4]),
        dec_time(r[5]),  # created_at
        r[6],  # priority
        mapping(r[7]),  # tags
        mapping(r[8]),  # run_config
        r[9],  # partition_key
        r[10],  # run_key
        r[11],  # tick_id
        dec_opt_time(r[12]),  # started_at
        dec_opt_time(r[13]),  # ended_at
        r[14],  # attempt
        r[15],  # parent_run_id
        r[16],  # error
        dec_opt_time(r[17]),  # not_before
        r[18],  # node_id
    )


# ---- ticks and instigator state ----------------------------------------------------------

TICK_COLUMNS = (
    "tick_id, instigator_kind, instigator_name, status, started_at, ended_at, scheduled_for, "
    "decisions, skip_reason, error, cursor_before, cursor_after"
)


def decision_columns(decisions: Sequence[Decision]) -> dict[str, list[Any]]:
    """Decisions as a JSON object of columns: {"job": [...], "outcome": [...], "run_id":
    [...], "run_key": [...], "partition_key": [...]} (a tick may hold 10,000; columns
    encode faster than one array per decision)."""
    return {
        "job": [d.job for d in decisions],
        "outcome": [d.outcome for d in decisions],
        "run_id": [d.run_id for d in decisions],
        "run_key": [d.run_key for d in decisions],
        "partition_key": [d.partition_key for d in decisions],
    }


_OUTCOME = {o.value: o for o in Outcome}


def decisions_from_json(text: str) -> tuple[Decision, ...]:
    columns = json.loads(text)
    outcomes = [_OUTCOME[o] for o in columns["outcome"]]
    return tuple(
        map(
            make_decision,
            columns["job"],
            outcomes,
            columns["run_id"],
            columns["run_key"],
            columns["partition_key"],
        )
    )


def decisions_value(decisions: Sequence[Decision]) -> dict[str, list[Any]] | str:
    """A tick's decisions column for a batch insert: nested as an object when few (one
    encoder pass for the whole batch of ticks), as JSON text when many (SQLite would
    otherwise parse and re-render a large object)."""
    columns = decision_columns(decisions)
    return columns if len(decisions) <= 16 else dumps(columns)


def tick_from_row(r: Sequence[Any]) -> Tick:
    return Tick(
        tick_id=r[0],
        instigator=instigator(r[1], r[2]),
        status=TickStatus(r[3]),
        started_at=dec_time(r[4]),
        ended_at=dec_opt_time(r[5]),
        scheduled_for=dec_opt_time(r[6]),
        decisions=decisions_from_json(r[7]),
        skip_reason=r[8],
        error=r[9],
        cursor_before=r[10],
        cursor_after=r[11],
    )


STATE_COLUMNS = (
    "instigator_kind, instigator_name, status, cursor, last_tick_at, last_run_key, updated_at"
)


def state_from_row(r: Sequence[Any]) -> InstigatorState:
    return InstigatorState(
        instigator=instigator(r[0], r[1]),
        status=None if r[2] is None else InstigatorStatus(r[2]),
        cursor=r[3],
        last_tick_at=dec_opt_time(r[4]),
        last_run_key=r[5],
        updated_at=dec_opt_time(r[6]),
    )


# ---- the lease ---------------------------------------------------------------------------

LEASE_COLUMNS = "holder, epoch, pid, host, since, heartbeat_at, expires_at"


def lease_from_row(r: Sequence[Any]) -> Lease:
    """The lease from a row selected as LEASE_COLUMNS."""
    return Lease(
        holder=r[0],
        epoch=r[1],
        pid=r[2],
        host=r[3],
        since=dec_time(r[4]),
        heartbeat_at=dec_time(r[5]),
        expires_at=dec_time(r[6]),
    )


# ---- batch dedup bookkeeping --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch of runs after in-batch collapse.

    `kept` go to the store; `winner_of[i]` is None for a kept run, else the kept run
    that the i-th run duplicates (same run_key or partition earlier in the batch).
    `decided`: requests (by position among all of the batch's requests) that a stored run
    blocked before they became runs (`of_keyed`); `runs` are the others, in order.
    """

    runs: Sequence[Run]
    kept: list[Run]
    winner_of: list[Run | None]
    decided: Mapping[int, Decision]

    @classmethod
    def of(cls, runs: Sequence[Run]) -> Batch:
        for run in runs:
            if run.status is not RunStatus.QUEUED:
                raise ValueError(f"run {run.run_id} is {run.status}; new runs must be QUEUED")
        if len(runs) < 2:  # a schedule tick's one run: thousands at a fan-out
            return _new_batch(runs, list(runs), [None] * len(runs), _NONE_DECIDED)
        kept, dropped = collapse(runs)
        if not dropped:
            return _new_batch(runs, kept, [None] * len(runs), _NONE_DECIDED)
        winner_of: list[Run | None] = []
        k = d = 0
        for run in runs:  # collapse keeps input order in both lists
            if k < len(kept) and kept[k] is run:
                winner_of.append(None)
                k += 1
            else:
                winner_of.append(dropped[d][1])
                d += 1
        return cls(runs, kept, winner_of, _NONE_DECIDED)

    @classmethod
    def of_keyed(cls, keyed: KeyedRequests, held: Iterable[tuple[int, str]]) -> Batch:
        """The batch of `keyed` requests once the store knows which keys stored runs hold
        (`held`: request position and the run holding its run_key): those are decided
        DEDUPLICATED_RUN_KEY, and runs are built for the others."""
        by_key, jobs, keys = Outcome.DEDUPLICATED_RUN_KEY, keyed.jobs, keyed.run_keys
        blocked = {i: make_decision(jobs[i], by_key, run_id, keys[i], None) for i, run_id in held}
        runs = keyed.build([i for i in range(len(keys)) if i not in blocked])
        return cls(runs, list(runs), [None] * len(runs), blocked)

    def decisions(self, resolved: Mapping[str, Decision]) -> tuple[Decision, ...]:
        """Every run's decision, in batch order. `resolved` maps each kept run's id to its
        decision: CREATED, or deduplicated against a stored run. A duplicate within the
        batch is DEDUPLICATED_IN_TICK against the run its winner resolved to, so a
        decision's run_id always names a stored run."""
        if self.decided:
            made = iter([resolved[run.run_id] for run in self.runs])
            count = len(self.decided) + len(self.runs)
            return tuple(self.decided.get(i) or next(made) for i in range(count))
        if len(self.kept) == len(self.runs):  # no duplicates within the batch
            return tuple([resolved[run.run_id] for run in self.runs])
        in_tick = Outcome.DEDUPLICATED_IN_TICK
        return tuple(
            resolved[run.run_id]
            if winner is None
            else make_decision(
                run.job, in_tick, resolved[winner.run_id].run_id, run.run_key, run.partition_key
            )
            for run, winner in zip(self.runs, self.winner_of, strict=True)
        )

    def report(
        self, resolved: Mapping[str, Decision]
    ) -> tuple[list[Run], list[tuple[Run, Decision]]]:
        """The created runs and the deduplicated (run, decision) pairs, in batch order."""
        created: list[Run] = []
        deduplicated: list[tuple[Run, Decision]] = []
        for run, made in zip(self.runs, self.decisions(resolved), strict=True):
            if made.outcome is Outcome.CREATED:
                created.append(run)
            else:
                deduplicated.append((run, made))
        return created, deduplicated


_new_batch = positional_constructor(Batch)
_NONE_DECIDED: Mapping[int, Decision] = MappingProxyType({})


def check_unique_ids(runs: Sequence[Run]) -> None:
    """Raise DuplicateIdError if two runs to insert share an id."""
    if len({run.run_id for run in runs}) == len(runs):
        return
    seen: set[str] = set()
    for run in runs:
        if run.run_id in seen:
            raise DuplicateIdError("run", run.run_id)
        seen.add(run.run_id)


def decision(run: Run, outcome: Outcome, run_id: str) -> Decision:
    """The decision for request `run`: created as `run_id`, or deduplicated by `run_id`."""
    return make_decision(run.job, outcome, run_id, run.run_key, run.partition_key)


# ---- rules both stores apply the same way ------------------------------------------------


def take_lease(
    current: Lease | None,
    *,
    holder: str,
    pid: int,
    host: str,
    now: datetime,
    ttl: timedelta,
    dead_holder: str | None = None,
) -> Lease:
    """The lease after `holder` asks for it at `now`: free, lapsed (expires_at <= now),
    already ours, or held by `dead_holder`. A new holder gets epoch + 1; the same holder
    keeps its epoch. Raises LeaseHeldError naming the live holder otherwise."""
    if current is None:
        epoch, since = 1, now
    elif current.holder == holder:
        epoch = current.epoch
        since = current.since if current.expires_at > now else now
    elif current.expires_at <= now or current.holder == dead_holder:
        epoch, since = current.epoch + 1, now
    else:
        raise LeaseHeldError(
            holder=f"pid {current.pid} on {current.host}",
            since=current.since.isoformat(timespec="seconds"),
        )
    return Lease(
        holder=holder,
        epoch=epoch,
        pid=pid,
        host=host,
        since=utc(since),
        heartbeat_at=utc(now),
        expires_at=utc(now + ttl),
    )


def nearest(ticks: Iterable[Tick], around: datetime, limit: int | None) -> list[Tick]:
    """Ticks nearest first to `around` by scheduled_for (else started_at); ties go to the
    earlier tick, then the smaller tick id."""

    def key(t: Tick) -> tuple[timedelta, datetime, str]:
        at = t.tick_at
        return (abs(at - around), at, t.tick_id)

    ordered = sorted(ticks, key=key)
    return ordered if limit is None else ordered[:limit]
