"""What `tickd schedules …` and `tickd sensors …` share: the loaded definitions, the
named schedule or sensor, and its stored state (or the definition's default)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from daemon.cli.common import note
from daemon.cli.history import existing_store
from daemon.config import Config
from daemon.definitions import RunStatusSensor, Schedule, Sensor
from daemon.domain.cron import zone
from daemon.domain.runs import InstigatorKind
from daemon.domain.ticks import InstigatorState, InstigatorStatus
from daemon.loading import LoadResult, Registry, UnknownDefinitionError, load_definitions

States = Mapping[tuple[InstigatorKind, str], InstigatorState]


class NotFound(Exception):
    """A name the loaded definitions do not hold (exit 1)."""


def load_quietly(config: Config) -> LoadResult:
    # Definitions modules may print while imported; keep stdout for our output.
    with contextlib.redirect_stdout(sys.stderr):
        result = load_definitions(config.definitions)
    if result.errors:
        count = len(result.errors)
        note(
            f"{count} problem{'s' if count != 1 else ''} in the definitions; what failed to "
            "load is missing here (see `tickd check`)"
        )
    return result


def find_instigator(
    registry: Registry, args: argparse.Namespace
) -> Schedule | Sensor | RunStatusSensor:
    """The schedule (`tickd schedules …`) or sensor (`tickd sensors …`) called `args.name`;
    NotFound naming the command to use when it is the other kind, or near names when it is
    unknown."""
    name, action = args.name, args.action
    try:
        found = registry.instigator(name)
    except UnknownDefinitionError as exc:
        raise NotFound(str(exc)) from None
    is_schedule = isinstance(found, Schedule)
    if is_schedule == (args.command == "schedules"):
        return found
    kind, other = ("schedule", "schedules") if is_schedule else ("sensor", "sensors")
    if action == "cursor":
        raise NotFound(f"{name!r} is a {kind}, and only sensors have a cursor")
    raise NotFound(f"{name!r} is a {kind}; use `tickd {other} {action} {name}`")


def effective_status(state: InstigatorState | None, default: InstigatorStatus) -> tuple[str, str]:
    """(running|stopped, default|operator): an operator's choice wins over the default."""
    if state is None or state.status is None:
        return default.value.lower(), "default"
    return state.status.value.lower(), "operator"


async def states_if_any(config: Config) -> States:
    """The stored instigator states; none (with a note) when there is no store yet."""
    if not store_exists(config.store):
        note(f"no store at {config.store} yet: showing the definitions' default statuses")
        return {}
    store = await existing_store(config)
    try:
        return await store.instigator_states()
    finally:
        await store.close()


def store_exists(location: str) -> bool:
    return "://" in location or location == ":memory:" or Path(location).exists()


def in_zone(t: datetime | None, timezone: str) -> datetime | None:
    return None if t is None else t.astimezone(zone(timezone))


def shorten(text: str | None, width: int = 40) -> str | None:
    if text is None or len(text) <= width:
        return text
    return text[: width - 1] + "…"
