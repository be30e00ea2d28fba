"""`tickd schedules …` and `tickd sensors …`: list, start and stop them, set cursors,
and preview them (daemon.cli.preview).

A start or stop is stored (it outlives restarts and reloads, and overrides the
definition's `default_status`); a running daemon picks it up at its next heartbeat.

JSON shapes (`--json`):
* `schedules list`: [{name, cron, timezone, job, status, status_source, default_status,
  last_tick_at, next_fire_at}]; status is running or stopped, status_source default or
  operator; next_fire_at is null while stopped.
* `sensors list`: [{name, kind, jobs, watched_jobs, minimum_interval, status,
  status_source, default_status, last_tick_at, cursor, last_run_key}]; kind is sensor or
  run_status_sensor.
* `schedules start|stop`, `sensors start|stop`: {name, kind, status, previous_status,
  previous_source}.
* `sensors cursor`: {sensor, cursor, previous}.
"""

from __future__ import annotations

import argparse
from typing import Any

from daemon.adapters.system_clock import SystemClock
from daemon.cli.args import positive
from daemon.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Command,
    Subparsers,
    add_command,
    error,
    format_table,
    note,
    print_json,
    run_async,
)
from daemon.cli.history import existing_store
from daemon.cli.instigators import (
    NotFound,
    effective_status,
    find_instigator,
    in_zone,
    load_quietly,
    shorten,
    states_if_any,
)
from daemon.cli.preview import DEFAULT_PREVIEW, run_schedules_preview, run_sensors_preview
from daemon.config import Config
from daemon.definitions import RunStatusSensor, Schedule, Sensor
from daemon.domain.runs import Instigator, InstigatorKind
from daemon.domain.ticks import InstigatorStatus
from daemon.ticking import next_fire_time


def register(subparsers: Subparsers) -> None:
    _register_schedules(subparsers)
    _register_sensors(subparsers)


def _instigator_commands(
    subparsers: Subparsers, noun: str, *, help: str, list_run: Command, list_help: str
) -> Subparsers:
    """`tickd <noun> list|start|stop`; returns the actions for the noun's own extras."""
    parser = add_command(subparsers, noun, run=_no_action, help=help)
    actions = parser.add_subparsers(title="actions", dest="action", metavar="<action>")
    actions.required = True
    listing = add_command(actions, "list", run=list_run, help=list_help)
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    for verb, status in (("start", InstigatorStatus.RUNNING), ("stop", InstigatorStatus.STOPPED)):
        toggle = add_command(actions, verb, run=_set_status(status), help=f"{verb} NAME")
        toggle.add_argument("name", metavar="NAME")
        toggle.add_argument("--json", action="store_true", help="print one JSON object")
    return actions


def _register_schedules(subparsers: Subparsers) -> None:
    actions = _instigator_commands(
        subparsers,
        "schedules",
        help="list, start, stop or preview schedules",
        list_run=run_schedules_list,
        list_help="every schedule: status, last and next tick",
    )
    preview = add_command(
        actions,
        "preview",
        run=run_schedules_preview,
        help="the next fire times, in the schedule's zone and in UTC, with DST changes marked",
    )
    preview.add_argument("name", metavar="NAME")
    preview.add_argument(
        "--from",
        dest="start",
        default="now",
        metavar="TIME",
        help="ISO-8601 (naive: the schedule's zone) or now (default)",
    )
    bound = preview.add_mutually_exclusive_group()
    bound.add_argument(
        "--count", type=positive, metavar="N", help=f"this many fire times ({DEFAULT_PREVIEW})"
    )
    bound.add_argument("--until", metavar="TIME", help="every fire time up to TIME")
    preview.add_argument("--json", action="store_true", help="print one JSON object")


def _register_sensors(subparsers: Subparsers) -> None:
    actions = _instigator_commands(
        subparsers,
        "sensors",
        help="list, start, stop or preview sensors; read or set a sensor's cursor",
        list_run=run_sensors_list,
        list_help="every sensor: status, last tick, cursor",
    )
    preview = add_command(
        actions,
        "preview",
        run=run_sensors_preview,
        help="evaluate a sensor once and print what it would request; stores nothing",
    )
    preview.add_argument("name", metavar="NAME")
    preview.add_argument(
        "--cursor", metavar="C", help="evaluate with this cursor (default: the stored one)"
    )
    preview.add_argument(
        "--run", metavar="RUN_ID", help="run-status sensors: the finished run to evaluate for"
    )
    preview.add_argument("--json", action="store_true", help="print one JSON object")
    cursor = add_command(
        actions,
        "cursor",
        run=run_sensors_cursor,
        help="print a sensor's cursor, or set or clear it",
    )
    cursor.add_argument("name", metavar="NAME")
    change = cursor.add_mutually_exclusive_group()
    change.add_argument("--set", dest="value", metavar="V", help="store V as the cursor")
    change.add_argument("--clear", action="store_true", help="forget the cursor")
    cursor.add_argument("--json", action="store_true", help="print one JSON object")


def _no_action(args: argparse.Namespace, config: Config) -> int:  # argparse requires one
    error(f"{args.command} needs an action; see `tickd {args.command} --help`")
    return EXIT_USAGE


# ---- list -----------------------------------------------------------------------------------


def run_schedules_list(args: argparse.Namespace, config: Config) -> int:
    registry = load_quietly(config).registry
    states = run_async(states_if_any, config)
    now = SystemClock().now()
    items: list[dict[str, Any]] = []
    for name in sorted(registry.schedules):
        schedule = registry.schedules[name]
        state = states.get((InstigatorKind.SCHEDULE, name))
        status, source = effective_status(state, schedule.default_status)
        items.append(
            {
                "name": name,
                "cron": list(schedule.cron),
                "timezone": schedule.timezone,
                "job": schedule.job_name,
                "status": status,
                "status_source": source,
                "default_status": schedule.default_status.value.lower(),
                "last_tick_at": state.last_tick_at if state else None,
                "next_fire_at": next_fire_time(schedule, now) if status == "running" else None,
            }
        )
    if args.json:
        print_json(items)
        return EXIT_OK
    rows = [
        (
            i["name"],
            "; ".join(i["cron"]),
            i["timezone"],
            i["job"],
            f"{i['status']} ({i['status_source']})",
            i["last_tick_at"],
            in_zone(i["next_fire_at"], i["timezone"]),
        )
        for i in items
    ]
    headers = ("NAME", "CRON", "TIMEZONE", "JOB", "STATUS", "LAST TICK", "NEXT FIRE")
    print(format_table(headers, rows))
    return EXIT_OK


def run_sensors_list(args: argparse.Namespace, config: Config) -> int:
    registry = load_quietly(config).registry
    states = run_async(states_if_any, config)
    sensors: dict[str, Sensor | RunStatusSensor] = {
        **registry.sensors,
        **registry.run_status_sensors,
    }
    items: list[dict[str, Any]] = []
    for name in sorted(sensors):
        sensor = sensors[name]
        state = states.get((InstigatorKind.SENSOR, name))
        status, source = effective_status(state, sensor.default_status)
        is_plain = isinstance(sensor, Sensor)
        items.append(
            {
                "name": name,
                "kind": "sensor" if is_plain else "run_status_sensor",
                "jobs": list(sensor.job_names),
                "watched_jobs": None
                if isinstance(sensor, Sensor)
                else list(sensor.watched_job_names),
                "minimum_interval": sensor.minimum_interval if isinstance(sensor, Sensor) else None,
                "status": status,
                "status_source": source,
                "default_status": sensor.default_status.value.lower(),
                "last_tick_at": state.last_tick_at if state else None,
                "cursor": state.cursor if state else None,
                "last_run_key": state.last_run_key if state else None,
            }
        )
    if args.json:
        print_json(items)
        return EXIT_OK
    rows = [
        (
            i["name"],
            "sensor" if i["kind"] == "sensor" else "run status",
            ", ".join(i["jobs"]),
            f"{i['status']} ({i['status_source']})",
            i["last_tick_at"],
            shorten(i["cursor"]),
        )
        for i in items
    ]
    print(format_table(("NAME", "KIND", "JOBS", "STATUS", "LAST TICK", "CURSOR"), rows))
    return EXIT_OK


# ---- start and stop -------------------------------------------------------------------------


def _set_status(status: InstigatorStatus) -> Command:
    def run(args: argparse.Namespace, config: Config) -> int:
        try:
            definition = find_instigator(load_quietly(config).registry, args)
        except NotFound as exc:
            error(str(exc))
            return EXIT_FAILURE
        return run_async(_store_status, args, config, definition, status)

    return run


async def _store_status(
    args: argparse.Namespace,
    config: Config,
    definition: Schedule | Sensor | RunStatusSensor,
    status: InstigatorStatus,
) -> int:
    kind = InstigatorKind.SCHEDULE if isinstance(definition, Schedule) else InstigatorKind.SENSOR
    instigator = Instigator(kind=kind, name=definition.name)
    store = await existing_store(config)
    try:
        before = (await store.instigator_states()).get((kind, definition.name))
        await store.set_instigator_status(instigator, status, now=SystemClock().now())
    finally:
        await store.close()
    was, source = effective_status(before, definition.default_status)
    now_is = status.value.lower()
    what = f"{kind.value} {definition.name!r}"
    if was == now_is:
        note(f"{what} was already {was} ({source}); it stays {now_is}, as an operator's choice")
    else:
        note(
            f"{what} {'started' if now_is == 'running' else 'stopped'} (it was {was}, "
            f"{source}); a running daemon picks this up at its next heartbeat"
        )
    if args.json:
        print_json(
            {
                "name": definition.name,
                "kind": kind.value,
                "status": now_is,
                "previous_status": was,
                "previous_source": source,
            }
        )
    return EXIT_OK


# ---- sensors cursor -------------------------------------------------------------------------


def run_sensors_cursor(args: argparse.Namespace, config: Config) -> int:
    try:
        definition = find_instigator(load_quietly(config).registry, args)
    except NotFound as exc:
        error(str(exc))
        return EXIT_FAILURE
    if isinstance(definition, RunStatusSensor):
        error(f"{definition.name!r} is a run-status sensor; those have no cursor")
        return EXIT_USAGE
    if args.value == "":
        error("--set needs a value; to forget the cursor use --clear")
        return EXIT_USAGE
    return run_async(_cursor, args, config, definition.name)


async def _cursor(args: argparse.Namespace, config: Config, name: str) -> int:
    instigator = Instigator(kind=InstigatorKind.SENSOR, name=name)
    change = args.clear or args.value is not None
    store = await existing_store(config)
    try:
        state = (await store.instigator_states()).get((InstigatorKind.SENSOR, name))
        previous = state.cursor if state else None
        if change:
            new = None if args.clear else args.value
            await store.set_cursor(instigator, new, now=SystemClock().now())
        else:
            new = previous
    finally:
        await store.close()
    if change:
        note(
            f"cursor of sensor {name!r} {'cleared' if new is None else f'set to {new!r}'} "
            f"(it was {previous!r}); the daemon uses it from the sensor's next evaluation"
        )
    if args.json:
        print_json({"sensor": name, "cursor": new, "previous": previous})
    elif not change:
        print("-" if new is None else new)
    return EXIT_OK
