"""Global and tag limits are never exceeded, whatever arrives and finishes when."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.adapters.memory_store import MemoryStore
from daemon.domain.ids import IdGenerator
from daemon.domain.limits import ConcurrencyLimits, TagLimit
from daemon.domain.runs import IN_FLIGHT_STATUSES, Instigator, InstigatorKind, Run, RunStatus
from daemon.ports import RunQuery

T0 = datetime(2026, 7, 1, tzinfo=UTC)
LIMITS = ConcurrencyLimits(
    max_concurrent_runs=5,
    tag_limits=(
        TagLimit(key="db", value="warehouse", limit=2),
        TagLimit(key="team", per_value=True, limit=2),
        TagLimit(key="api", limit=1),
    ),
)

tags = st.fixed_dictionaries(
    {},
    optional={
        "db": st.sampled_from(["warehouse", "lake"]),
        "team": st.sampled_from(["a", "b", "c"]),
        "api": st.just("x"),
    },
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("enqueue"), tags, st.integers(-2, 2)),
        st.tuples(st.just("claim"), st.integers(1, 6)),
        st.tuples(st.just("finish"), st.integers(0, 10)),
    ),
    max_size=60,
)


def check(in_flight: list[Run]) -> None:
    assert len(in_flight) <= 5
    assert sum(r.tags.get("db") == "warehouse" for r in in_flight) <= 2
    assert sum("api" in r.tags for r in in_flight) <= 1
    per_team = Counter(r.tags["team"] for r in in_flight if "team" in r.tags)
    assert all(n <= 2 for n in per_team.values())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_limits_hold_under_random_arrival(sequence):
    async def main() -> None:
        store = MemoryStore()
        gen = IdGenerator()
        now = T0
        for op in sequence:
            now += timedelta(seconds=1)
            if op[0] == "enqueue":
                run = Run(
                    run_id=gen.new(now),
                    job="j",
                    status=RunStatus.QUEUED,
                    created_at=now,
                    instigator=Instigator(kind=InstigatorKind.MANUAL, name="m"),
                    tags=op[1],
                    priority=op[2],
                )
                await store.create_runs([run])
            elif op[0] == "claim":
                await store.claim_runs(node_id="n", limit=op[1], limits=LIMITS, now=now)
            else:
                flying = await store.list_runs(
                    RunQuery(statuses=tuple(IN_FLIGHT_STATUSES), limit=None)
                )
                if flying:
                    victim = flying[op[1] % len(flying)]
                    await store.transition_run(victim.run_id, RunStatus.FAILURE, now=now)
            flying = await store.list_runs(RunQuery(statuses=tuple(IN_FLIGHT_STATUSES), limit=None))
            check(flying)
        # whatever is still queued is blocked by a limit, not forgotten
        queued = await store.list_runs(RunQuery(statuses=(RunStatus.QUEUED,), limit=None))
        claimed = await store.claim_runs(node_id="n", limit=100, limits=LIMITS, now=now)
        flying = await store.list_runs(RunQuery(statuses=tuple(IN_FLIGHT_STATUSES), limit=None))
        check(flying)
        assert len(claimed) <= len(queued)

    anyio.run(main, backend="asyncio")
