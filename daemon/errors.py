"""Every error tickd raises on purpose: one base, each subclass builds its message.

A message names the file, object or flag at fault and says what to do about it.
"""

from __future__ import annotations


class TickdError(Exception):
    """Base of every error tickd raises on purpose."""


class DefinitionError(TickdError):
    """A definition (job, schedule, sensor, partitions) is invalid."""

    def __init__(self, obj: str, problem: str, fix: str | None = None) -> None:
        self.obj = obj
        self.problem = problem
        self.fix = fix
        message = f"{obj}: {problem}"
        if fix:
            message += f"; {fix}"
        super().__init__(message)


class InvalidCronError(DefinitionError):
    """A cron expression does not parse."""

    def __init__(self, expression: str, field: str | None, problem: str) -> None:
        self.expression = expression
        self.field = field
        where = f"{field} field of " if field else ""
        super().__init__(
            f"cron {expression!r}",
            f"invalid {where}expression: {problem}",
            "use 5 fields (minute hour day-of-month month day-of-week) "
            "or 6 with a leading seconds field",
        )


class UnknownTimezoneError(DefinitionError):
    def __init__(self, timezone: str, obj: str | None = None) -> None:
        self.timezone = timezone
        super().__init__(
            obj or f"timezone {timezone!r}",
            f"unknown timezone {timezone!r}",
            "use an IANA name such as 'UTC', 'Europe/Berlin' or 'America/New_York'",
        )


class InvalidPartitionError(TickdError):
    """A partition key that does not belong to a partitions definition."""

    def __init__(self, key: str, definition: str, expected: str) -> None:
        self.key = key
        self.definition = definition
        super().__init__(
            f"partition key {key!r} is not valid for {definition}; expected {expected}"
        )


class IllegalTransitionError(TickdError):
    def __init__(self, run_id: str, current: str, target: str) -> None:
        self.run_id = run_id
        self.current = current
        self.target = target
        super().__init__(
            f"run {run_id} cannot move from {current} to {target}"
            + ("; it has already finished" if current in _TERMINAL_NAMES else "")
        )


_TERMINAL_NAMES = frozenset({"SUCCESS", "FAILURE", "CANCELED", "TIMED_OUT"})


class RunNotFoundError(TickdError):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run with id {run_id!r}; list runs with `tickd runs`")


class StoreError(TickdError):
    """The store cannot be opened or used."""


class NotATickdStoreError(StoreError):
    def __init__(self, location: str, detail: str) -> None:
        self.location = location
        super().__init__(
            f"{location} is not a tickd store ({detail}); it was left untouched. "
            "Point --store / TICKD_STORE at a new path or an existing tickd database"
        )


class StoreTooNewError(StoreError):
    def __init__(self, location: str, found: int, supported: int) -> None:
        self.location = location
        self.found = found
        self.supported = supported
        super().__init__(
            f"{location} has schema version {found}, but this tickd understands up to "
            f"{supported}; it was left untouched. Upgrade tickd to use this store"
        )


class StoreLocationError(StoreError):
    def __init__(self, location: str, problem: str) -> None:
        self.location = location
        super().__init__(f"cannot open store {location}: {problem}")


class StoreFullError(StoreError):
    """The disk (or the database's size limit) is full; the failed write left nothing."""

    def __init__(self, location: str, detail: str) -> None:
        self.location = location
        super().__init__(
            f"store {location} is full ({detail}); nothing of the failed write was kept. "
            "Free space on the filesystem that holds it, or run `tickd purge`"
        )


class StoreBusyError(StoreError):
    """Another process held the store's write lock for longer than we are willing to wait."""

    def __init__(self, location: str, waited_s: float) -> None:
        self.location = location
        super().__init__(
            f"store {location} stayed locked by another process for {waited_s:.0f}s; "
            "check for a stuck tickd or sqlite3 shell holding a transaction open"
        )


class StoreClosedError(StoreError):
    def __init__(self, location: str) -> None:
        self.location = location
        super().__init__(f"store {location} is closed; open it again with open_store()")


class DuplicateIdError(StoreError):
    """A run or tick id that is already stored: ids are fresh per run and per tick."""

    def __init__(self, what: str, ident: str) -> None:
        self.what = what
        self.ident = ident
        super().__init__(
            f"{what} id {ident!r} is already stored; give every new {what} a fresh id "
            "(daemon.domain.ids.new_id)"
        )


class LeaseHeldError(StoreError):
    """Another daemon holds the scheduler lease of this store."""

    def __init__(self, holder: str, since: str) -> None:
        self.holder = holder
        self.since = since
        super().__init__(
            f"another tickd ({holder}, since {since}) is scheduling on this store; "
            "stop it first, or wait for its lease to lapse"
        )


class LeaseLostError(StoreError):
    """A commit came from a lease holder that has since been deposed."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        super().__init__(f"scheduler lease epoch {epoch} is no longer current; stopping ticks")


class ConfigError(TickdError):
    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        super().__init__(f"configuration {key}: {problem}")
