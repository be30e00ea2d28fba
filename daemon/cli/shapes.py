"""The JSON shapes of runs and ticks, as DESIGN.md documents them (times ISO-8601 UTC)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from daemon.domain.runs import Run
from daemon.domain.ticks import Tick


def iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat()


def run_json(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "job": run.job,
        "status": run.status.value,
        "priority": run.priority,
        "tags": dict(run.tags),
        "run_config": dict(run.run_config),
        "partition_key": run.partition_key,
        "run_key": run.run_key,
        "instigator": {"kind": run.instigator.kind.value, "name": run.instigator.name},
        "tick_id": run.tick_id,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "attempt": run.attempt,
        "parent_run_id": run.parent_run_id,
        "error": run.error,
        "not_before": iso(run.not_before),
        "node_id": run.node_id,
    }


def tick_json(tick: Tick) -> dict[str, Any]:
    return {
        "tick_id": tick.tick_id,
        "instigator": {"kind": tick.instigator.kind.value, "name": tick.instigator.name},
        "scheduled_for": iso(tick.scheduled_for),
        "started_at": iso(tick.started_at),
        "ended_at": iso(tick.ended_at),
        "status": tick.status.value,
        "run_ids": list(tick.run_ids),
        "deduplicated": [
            {
                "job": d.job,
                "run_key": d.run_key,
                "partition_key": d.partition_key,
                "by": d.outcome.value,
                "existing_run_id": d.run_id,
            }
            for d in tick.deduplicated
        ],
        "decisions": [
            {
                "job": d.job,
                "outcome": d.outcome.value,
                "run_id": d.run_id,
                "run_key": d.run_key,
                "partition_key": d.partition_key,
            }
            for d in tick.decisions
        ],
        "skip_reason": tick.skip_reason,
        "error": tick.error,
        "cursor_before": tick.cursor_before,
        "cursor_after": tick.cursor_after,
    }
