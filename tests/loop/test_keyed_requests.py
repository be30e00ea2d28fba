"""Many requests that each have a run_key of their own are left for the store to build
into runs once it knows which it needs; the runs it builds are those `build_runs` makes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon import RunRequest, SensorResult, job, sensor
from daemon.domain.ids import IdGenerator
from daemon.domain.runs import Instigator, InstigatorKind
from daemon.domain.ticks import KeyedRequests, Outcome, TickStatus
from daemon.evaluation import KEYED_MIN, EvaluationError, RunDefaults, build_runs, requested_runs
from daemon.ports import RunQuery, TickQuery
from daemon.testing import drive
from daemon.ticking import Evaluator

from .conftest import START, Defs

pytestmark = pytest.mark.anyio

AT = datetime(2026, 6, 1, tzinfo=UTC)
SENSOR = Instigator(kind=InstigatorKind.SENSOR, name="files")


@job(tags={"team": "data"}, priority=3)
def ingest(context):  # pragma: no cover - never executed here
    pass


def requests(n: int = KEYED_MIN, **first: object) -> list[RunRequest]:
    made = [RunRequest(run_key=f"f{i}", run_config={"i": i}) for i in range(n)]
    if first:
        made[0] = RunRequest(**{"run_key": "f0", **first})  # type: ignore[arg-type]
    return made


def keyed_of(reqs: list[RunRequest]):
    return requested_runs(
        "sensor 'files'",
        reqs,
        jobs={"ingest": ingest},
        instigator=SENSOR,
        defaults=RunDefaults(job="ingest"),
        now=AT,
        ids=IdGenerator(),
        tick_id="t1",
        keyed=True,
    )


@pytest.mark.parametrize(
    "reqs",
    [
        requests(KEYED_MIN - 1),
        requests(run_key=None),
        requests(tags={"x": "y"}),
        requests(priority=5),
        [*requests(), RunRequest(run_key="f1")],  # a key twice
    ],
    ids=["few", "no run_key", "tags", "priority", "duplicate key"],
)
def test_requests_that_need_building_now_are_not_left_for_the_store(reqs):
    runs = keyed_of(reqs)
    assert isinstance(runs, list) and len(runs) == len(reqs)


def test_a_request_for_a_partition_is_built_and_checked_now():
    with pytest.raises(EvaluationError, match="which has no partitions"):
        keyed_of(requests(partition_key="2026-06-01"))


def test_the_store_builds_the_runs_build_runs_would_make():
    reqs = requests()
    keyed = keyed_of(reqs)
    assert isinstance(keyed, KeyedRequests)
    assert keyed.run_keys == tuple(r.run_key for r in reqs)
    assert keyed.jobs == ("ingest",) * len(reqs)
    built = keyed.build([0, 5, 7])
    expected = build_runs(
        "sensor 'files'",
        [reqs[i] for i in (0, 5, 7)],
        jobs={"ingest": ingest},
        instigator=SENSOR,
        defaults=RunDefaults(job="ingest"),
        now=AT,
        ids=IdGenerator(),
        tick_id="t1",
        run_ids=[r.run_id for r in built],
    )
    assert built == expected
    assert [r.run_config for r in built] == [{"i": 0}, {"i": 5}, {"i": 7}]
    assert {(r.priority, r.tags["team"]) for r in built} == {(3, "data")}
    assert len({r.run_id for r in built + keyed.build([1])}) == 4  # ids made per request


def test_an_unknown_job_fails_the_evaluation_as_before():
    with pytest.raises(EvaluationError, match="unknown job 'nope'"):
        keyed_of(requests(job="nope"))


async def test_a_sensor_asking_again_for_everything_gets_one_run_per_key(running, store, clock):
    asked = []

    @sensor(job=ingest, minimum_interval=10)
    def files(context):
        asked.append(len(asked))
        keys = [f"f{i}" for i in range(KEYED_MIN + 10 * len(asked))]
        return SensorResult(
            run_requests=[RunRequest(run_key=k, run_config={"path": k}) for k in keys],
            cursor=str(len(asked)),
        )

    sched = await running.start(Defs.of(ingest, files))
    await drive(clock, START + timedelta(seconds=25), sched)
    ticks = sorted(
        await store.list_ticks(TickQuery(instigator_name="files", limit=None)),
        key=lambda t: t.started_at,
    )
    assert [t.status for t in ticks] == [TickStatus.SUCCESS] * 3
    assert [len(t.run_ids) for t in ticks] == [KEYED_MIN + 10, 10, 10]
    assert [len(t.deduplicated) for t in ticks] == [0, KEYED_MIN + 10, KEYED_MIN + 20]
    assert {d.outcome for d in ticks[2].deduplicated} == {Outcome.DEDUPLICATED_RUN_KEY}
    runs = await store.list_runs(RunQuery(limit=None))
    assert len(runs) == len({r.run_key for r in runs}) == KEYED_MIN + 30
    assert all(r.run_config == {"path": r.run_key} for r in runs)
    (state,) = (await store.instigator_states()).values()
    assert (state.cursor, state.last_run_key) == ("3", f"f{KEYED_MIN + 29}")


async def test_a_keyed_request_for_an_unknown_job_is_a_failed_tick():
    @sensor(job=ingest)
    def files(context):
        return [RunRequest(run_key=f"f{i}", job="nope") for i in range(KEYED_MIN)]

    evaluator = Evaluator(jobs={"ingest": ingest}, ids=IdGenerator(), now=lambda: AT, keyed=True)
    commit = await evaluator.sensor_tick(files, cursor=None)
    assert commit.tick.status is TickStatus.FAILURE
    assert "unknown job 'nope'" in (commit.tick.error or "")
    assert commit.keyed is None and commit.runs == ()
