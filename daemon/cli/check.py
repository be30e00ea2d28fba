"""`tickd check`: load the definitions, show what was found and every problem.

Exit 1 when any definition failed to load, 0 otherwise; the store is never opened, so it
is safe in CI and before a deploy. `--json` prints one object:
{"definitions", "checked_at", "jobs", "schedules", "sensors", "run_status_sensors",
"errors"}, with ISO-8601 times.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import UTC, datetime
from typing import Any, Final

from daemon.adapters.system_clock import SystemClock
from daemon.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    Style,
    Subparsers,
    add_command,
    format_seconds,
    format_time,
    note,
    print_json,
    to_jsonable,
    use_color,
)
from daemon.config import Config
from daemon.definitions import Job, RunStatusSensor, Schedule, Sensor
from daemon.domain.cron import next_fire, zone
from daemon.domain.partitions import TimeWindowPartitions
from daemon.loading import LoadResult, Registry, load_definitions

NEXT_FIRES: Final = 3

_DESCRIPTION = """\
Load the definitions and print what was found: jobs, schedules (with their next fire
times), sensors and run-status sensors, then every problem with the file and object at
fault. Exits 1 if there is any problem. Does not open the store.
"""


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "check",
        run=run,
        help="load the definitions and report what was found and what is wrong",
        description=_DESCRIPTION,
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace, config: Config) -> int:
    # Definitions modules may print or log while imported; keep stdout for the report.
    with contextlib.redirect_stdout(sys.stderr):
        result = load_definitions(config.definitions)
    report = build_report(result, config, SystemClock().now())
    if args.json:
        print_json(report)
    else:
        print(render(report, Style(use_color(sys.stdout))))
    if result.errors:
        count = len(result.errors)
        note(f"check failed: {count} problem{'s' if count != 1 else ''} in the definitions")
        return EXIT_FAILURE
    return EXIT_OK


# ---- the report, as JSON-ready data -----------------------------------------------------------


def build_report(result: LoadResult, config: Config, now: datetime) -> dict[str, Any]:
    registry = result.registry
    return {
        "definitions": [str(d) for d in config.definitions],
        "modules": [str(m) for m in result.modules],
        "checked_at": now.astimezone(UTC).isoformat(),
        "jobs": [_job(j, registry, config) for j in _by_name(registry.jobs)],
        "schedules": [_schedule(s, registry, now) for s in _by_name(registry.schedules)],
        "sensors": [_sensor(s, registry) for s in _by_name(registry.sensors)],
        "run_status_sensors": [
            _run_status_sensor(s, registry) for s in _by_name(registry.run_status_sensors)
        ],
        "errors": [
            {
                "kind": e.kind.value,
                "file": str(e.file),
                "object": e.object,
                "message": e.message,
                "traceback": e.traceback,
            }
            for e in result.errors
        ],
    }


def _by_name(table: Any) -> list[Any]:
    return [table[name] for name in sorted(table)]


def _file(definition: Any, registry: Registry) -> str | None:
    source = registry.source(definition)
    return None if source is None else str(source)


def _job(job: Job, registry: Registry, config: Config) -> dict[str, Any]:
    executor = job.executor or config.dispatch.default_executor
    return {
        "name": job.name,
        "file": _file(job, registry),
        "executor": executor.value,
        "executor_is_default": job.executor is None,
        "is_async": job.is_async,
        "priority": job.priority or 0,
        "tags": dict(job.tags),
        "timeout": job.timeout,
        "max_retries": job.max_retries,
        "retry_delay": job.retry_delay,
        "partitions": None if job.partitions is None else str(job.partitions),
        "description": job.description,
    }


def _schedule(schedule: Schedule, registry: Registry, now: datetime) -> dict[str, Any]:
    tz = zone(schedule.timezone)
    job = registry.jobs.get(schedule.job_name)
    partitions = job.partitions if job is not None else None
    upcoming = []
    t = now
    for _ in range(NEXT_FIRES):
        t = next_fire(schedule.cron, schedule.timezone, t)
        fire: dict[str, Any] = {"local": t.astimezone(tz), "utc": t.astimezone(UTC)}
        if schedule.fn is None and isinstance(partitions, TimeWindowPartitions):
            fire["partition_key"] = partitions.key_closed_by(t)
        upcoming.append(fire)
    return {
        "name": schedule.name,
        "file": _file(schedule, registry),
        "cron": list(schedule.cron),
        "timezone": schedule.timezone,
        "job": schedule.job_name,
        "has_function": schedule.fn is not None,
        "catchup": schedule.catchup.value,
        "max_catchup": schedule.max_catchup,
        "catchup_window": schedule.catchup_window,
        "overlap": schedule.overlap.value,
        "jitter": schedule.jitter,
        "default_status": schedule.default_status.value,
        "tags": dict(schedule.tags),
        "priority": schedule.priority,
        "description": schedule.description,
        "next": to_jsonable(upcoming),
    }


def _sensor(sensor: Sensor, registry: Registry) -> dict[str, Any]:
    return {
        "name": sensor.name,
        "file": _file(sensor, registry),
        "jobs": list(sensor.job_names),
        "minimum_interval": sensor.minimum_interval,
        "timeout": sensor.timeout,
        "default_status": sensor.default_status.value,
        "description": sensor.description,
    }


def _run_status_sensor(sensor: RunStatusSensor, registry: Registry) -> dict[str, Any]:
    return {
        "name": sensor.name,
        "file": _file(sensor, registry),
        "watched_jobs": list(sensor.watched_job_names),  # empty: every job
        "statuses": [s.value for s in sensor.statuses],
        "jobs": list(sensor.job_names),
        "timeout": sensor.timeout,
        "default_status": sensor.default_status.value,
        "description": sensor.description,
    }


# ---- the human listing ------------------------------------------------------------------------


def render(report: dict[str, Any], style: Style) -> str:
    lines: list[str] = []
    dirs = ", ".join(report["definitions"])
    lines.append(f"Definitions in {dirs}: {_count(len(report['modules']), 'module')}")
    sections = (
        ("Jobs", report["jobs"], _job_lines),
        ("Schedules", report["schedules"], _schedule_lines),
        ("Sensors", report["sensors"], _sensor_lines),
        ("Run-status sensors", report["run_status_sensors"], _run_status_lines),
    )
    for title, items, describe in sections:
        if not items:
            continue
        lines += ["", style.bold(f"{title} ({len(items)})")]
        for item in items:
            where = f"  {style.dim(item['file'])}" if item["file"] else ""
            lines += ["", f"  {style.bold(item['name'])}{where}"]
            if item["description"]:
                lines.append(f"    {item['description'].splitlines()[0]}")
            lines += [f"    {key:<11} {value}" for key, value in describe(item)]
    if not any(items for _, items, _ in sections):
        lines += ["", "No definitions found."]
    errors = report["errors"]
    if errors:
        lines += ["", style.bold(style.red(f"Errors ({len(errors)})"))]
        for e in errors:
            lines += ["", f"  {e['file']}" + (f"  {e['object']}" if e["object"] else "")]
            lines.append(f"    {style.red(e['message'])}")
            if e["traceback"]:
                lines += [f"      {line}" for line in e["traceback"].splitlines()]
    lines += ["", _summary(report, style)]
    return "\n".join(lines)


def _summary(report: dict[str, Any], style: Style) -> str:
    found = ", ".join(
        [
            _count(len(report["jobs"]), "job"),
            _count(len(report["schedules"]), "schedule"),
            _count(len(report["sensors"]), "sensor"),
            _count(len(report["run_status_sensors"]), "run-status sensor"),
        ]
    )
    if report["errors"]:
        return style.red(f"FAILED: {_count(len(report['errors']), 'error')}; loaded {found}")
    return style.green(f"OK: {found}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _tags(tags: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in tags.items()) or "-"


def _jobs(names: list[str], empty: str = "-") -> str:
    return ", ".join(names) or empty


def _job_lines(job: dict[str, Any]) -> list[tuple[str, str]]:
    executor = job["executor"] + (" (default)" if job["executor_is_default"] else "")
    retries = str(job["max_retries"])
    if job["max_retries"]:
        retries += f", first after {format_seconds(job['retry_delay'])}, then doubling"
    return [
        ("executor", executor + (", async function" if job["is_async"] else "")),
        ("priority", str(job["priority"])),
        ("tags", _tags(job["tags"])),
        ("timeout", format_seconds(job["timeout"])),
        ("retries", retries),
        ("partitions", job["partitions"] or "-"),
    ]


def _schedule_lines(schedule: dict[str, Any]) -> list[tuple[str, str]]:
    catchup = schedule["catchup"]
    if catchup == "all":
        catchup += f", at most {schedule['max_catchup']}"
    if schedule["catchup_window"] is not None:
        catchup += f", within {format_seconds(schedule['catchup_window'])}"
    rows = [
        ("cron", f"{' | '.join(schedule['cron'])}  ({schedule['timezone']})"),
        ("job", schedule["job"] + ("" if schedule["has_function"] else ", one run per tick")),
        ("catch-up", catchup),
        ("overlap", schedule["overlap"]),
        ("default", schedule["default_status"].lower()),
    ]
    if schedule["jitter"]:
        rows.append(("jitter", f"up to {format_seconds(schedule['jitter'])}"))
    for i, fire in enumerate(schedule["next"]):
        local = datetime.fromisoformat(fire["local"])
        utc = datetime.fromisoformat(fire["utc"])
        when = format_time(local.astimezone(zone(schedule["timezone"])))
        if schedule["timezone"] != "UTC":
            when += f"  =  {utc.strftime('%Y-%m-%d %H:%M:%S')} UTC"
        if fire.get("partition_key"):
            when += f"  (partition {fire['partition_key']})"
        rows.append(("next" if i == 0 else "", when))
    return rows


def _sensor_lines(sensor: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("interval", f"every {format_seconds(sensor['minimum_interval'])} at most"),
        ("timeout", format_seconds(sensor["timeout"])),
        ("jobs", _jobs(sensor["jobs"], "- (its requests name their job)")),
        ("default", sensor["default_status"].lower()),
    ]


def _run_status_lines(sensor: dict[str, Any]) -> list[tuple[str, str]]:
    watched = _jobs(sensor["watched_jobs"], "every job")
    return [
        ("watches", f"{watched} on {', '.join(sensor['statuses'])}"),
        ("jobs", _jobs(sensor["jobs"], "- (its requests name their job)")),
        ("timeout", format_seconds(sensor["timeout"])),
        ("default", sensor["default_status"].lower()),
    ]
