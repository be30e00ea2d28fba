"""The Python client, sync and async, against a SQLite store file, and from another process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from daemon.client import AsyncClient, Client, RunFinishedError, new_run, rerun_of
from daemon.config import Config
from daemon.domain.runs import PRIORITY_TAG, Instigator, InstigatorKind, RunStatus
from daemon.domain.ticks import Outcome
from daemon.errors import RunNotFoundError, StoreLocationError

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "tickd.db")


@pytest.fixture
async def aclient(db: str) -> AsyncIterator[AsyncClient]:
    async with await AsyncClient.open(db, create=True) as client:
        yield client


@pytest.fixture
def client(db: str) -> Iterator[Client]:
    with Client.open(db, create=True) as opened:
        yield opened


async def _move(client: AsyncClient, run_id: str, *statuses: RunStatus) -> None:
    """Play the daemon: move a run through `statuses`."""
    for status in statuses:
        await client.store.transition_run(run_id, status, now=datetime.now(UTC))


# ---- async -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_submit_queues_a_manual_run_with_priority_as_field_and_tag(
    aclient: AsyncClient,
) -> None:
    run = await aclient.submit(
        "report", run_config={"day": "2026-03-01"}, tags={"team": "data"}, priority=5
    )

    assert run.status is RunStatus.QUEUED
    assert run.instigator == Instigator(kind=InstigatorKind.MANUAL, name="report")
    assert run.priority == 5
    assert run.tags == {"team": "data", PRIORITY_TAG: "5"}
    assert run.attempt == 1
    assert await aclient.get(run.run_id) == run
    assert await aclient.get("no-such-run") is None


@pytest.mark.anyio
async def test_a_priority_tag_alone_sets_the_priority(aclient: AsyncClient) -> None:
    run = await aclient.submit("report", tags={PRIORITY_TAG: "-2"})
    assert run.priority == -2
    plain = await aclient.submit("report")
    assert plain.priority == 0 and PRIORITY_TAG not in plain.tags


@pytest.mark.anyio
async def test_a_used_run_key_returns_the_existing_run(aclient: AsyncClient) -> None:
    first = await aclient.submit("report", run_key="2026-03-01")
    await _move(aclient, first.run_id, RunStatus.STARTING, RunStatus.RUNNING, RunStatus.SUCCESS)

    again = await aclient.submit("report", run_key="2026-03-01", run_config={"other": True})

    assert again.run_id == first.run_id
    assert again.status is RunStatus.SUCCESS  # the stored run, as it is now
    assert len(await aclient.list(job="report")) == 1
    # the key is per job: another job may use it
    other = await aclient.submit("publish", run_key="2026-03-01")
    assert other.run_id != first.run_id


@pytest.mark.anyio
async def test_an_active_partition_returns_the_existing_run_until_it_finishes(
    aclient: AsyncClient,
) -> None:
    first = await aclient.submit("report", partition_key="2026-03-01")
    assert (await aclient.submit("report", partition_key="2026-03-01")).run_id == first.run_id

    await _move(aclient, first.run_id, RunStatus.STARTING, RunStatus.RUNNING, RunStatus.FAILURE)
    second = await aclient.submit("report", partition_key="2026-03-01")

    assert second.run_id != first.run_id
    assert second.status is RunStatus.QUEUED


@pytest.mark.anyio
async def test_enqueue_reports_created_and_deduplicated_in_one_batch(
    aclient: AsyncClient,
) -> None:
    kept = await aclient.submit("report", run_key="a")
    now = datetime.now(UTC)
    runs = [
        new_run("report", now=now, run_key="a"),
        new_run("report", now=now, run_key="b"),
        new_run("report", now=now, run_key="b"),
    ]

    done = await aclient.enqueue(runs)

    assert [s.outcome for s in done] == [
        Outcome.DEDUPLICATED_RUN_KEY,
        Outcome.CREATED,
        Outcome.DEDUPLICATED_IN_TICK,
    ]
    assert done[0].run.run_id == kept.run_id
    assert done[2].run.run_id == done[1].run.run_id == runs[1].run_id
    assert [s.created for s in done] == [False, True, False]


@pytest.mark.anyio
async def test_wait_returns_the_finished_run_and_times_out_otherwise(
    aclient: AsyncClient,
) -> None:
    run = await aclient.submit("report")
    with pytest.raises(TimeoutError, match=f"run {run.run_id} is still QUEUED after 0.2s"):
        await aclient.wait(run.run_id, timeout=0.2, poll=0.02)

    async def finish_soon() -> None:
        await anyio.sleep(0.1)
        await _move(aclient, run.run_id, RunStatus.STARTING, RunStatus.RUNNING)
        await _move(aclient, run.run_id, RunStatus.SUCCESS)

    async with anyio.create_task_group() as tg:
        tg.start_soon(finish_soon)
        done = await aclient.wait(run.run_id, timeout=5, poll=0.02)

    assert done.status is RunStatus.SUCCESS
    with pytest.raises(RunNotFoundError):
        await aclient.wait("no-such-run", timeout=1)


@pytest.mark.anyio
async def test_cancel_queued_running_and_finished_runs(aclient: AsyncClient) -> None:
    queued = await aclient.submit("report")
    canceled = await aclient.cancel(queued.run_id, reason="not today")
    assert canceled.status is RunStatus.CANCELED
    assert canceled.error == "not today"

    running = await aclient.submit("report")
    await _move(aclient, running.run_id, RunStatus.STARTING, RunStatus.RUNNING)
    canceling = await aclient.cancel(running.run_id)
    assert canceling.status is RunStatus.CANCELING  # the daemon's dispatcher kills it
    assert (await aclient.cancel(running.run_id)).status is RunStatus.CANCELING  # idempotent

    with pytest.raises(RunFinishedError, match="already finished with CANCELED"):
        await aclient.cancel(queued.run_id)
    with pytest.raises(RunNotFoundError):
        await aclient.cancel("no-such-run")


@pytest.mark.anyio
async def test_list_filters_by_status_job_tags_partition_and_age(aclient: AsyncClient) -> None:
    a = await aclient.submit("report", tags={"team": "data"}, partition_key="p1")
    b = await aclient.submit("report", tags={"team": "ops"})
    c = await aclient.submit("publish")
    await aclient.cancel(c.run_id)

    assert {r.run_id for r in await aclient.list()} == {a.run_id, b.run_id, c.run_id}
    assert [r.run_id for r in await aclient.list(job="report")] == [b.run_id, a.run_id]
    assert [r.run_id for r in await aclient.list(status="canceled")] == [c.run_id]
    assert [r.run_id for r in await aclient.list(status=["QUEUED"], tags={"team": "data"})] == [
        a.run_id
    ]
    assert [r.run_id for r in await aclient.list(partition_key="p1")] == [a.run_id]
    assert len(await aclient.list(since=timedelta(minutes=5))) == 3
    assert await aclient.list(since=datetime.now(UTC) + timedelta(minutes=1)) == []
    assert len(await aclient.list(limit=1)) == 1
    with pytest.raises(ValueError, match="'DONE' is not a run status"):
        await aclient.list(status="DONE")


@pytest.mark.anyio
async def test_rerun_copies_the_run_and_names_its_parent(aclient: AsyncClient) -> None:
    original = await aclient.submit(
        "report", run_config={"x": 1}, tags={"t": "v"}, priority=3, partition_key="p", run_key="k"
    )
    await _move(aclient, original.run_id, RunStatus.STARTING, RunStatus.RUNNING, RunStatus.FAILURE)

    again = await aclient.rerun(original.run_id)

    assert again.run_id != original.run_id
    assert again.parent_run_id == original.run_id
    assert (again.job, again.partition_key, again.priority) == ("report", "p", 3)
    assert again.run_config == {"x": 1} and again.tags == original.tags
    assert again.attempt == 1 and again.run_key is None
    assert again.instigator.kind is InstigatorKind.MANUAL


def test_new_run_refuses_an_empty_job_and_a_bad_priority_tag() -> None:
    with pytest.raises(ValueError, match="job must be a non-empty job name"):
        new_run(" ", now=T0)
    with pytest.raises(ValueError, match="is not an integer"):
        new_run("report", now=T0, tags={PRIORITY_TAG: "high"})
    with pytest.raises(ValueError, match="run_key must be a non-empty string"):
        new_run("report", now=T0, run_key="")
    original = new_run("report", now=T0, partition_key="p")
    assert rerun_of(original, now=T0).parent_run_id == original.run_id


@pytest.mark.anyio
async def test_open_refuses_a_missing_store_unless_asked_to_create_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "tickd.db"
    with pytest.raises(StoreLocationError, match="no store there yet"):
        await AsyncClient.open(str(missing))
    assert not missing.exists()
    async with await AsyncClient.open(config=Config(store=str(missing)), create=True) as client:
        assert await client.list() == []
    assert missing.exists()


@pytest.mark.anyio
async def test_open_defaults_to_the_configured_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "env.db"
    monkeypatch.setenv("TICKD_STORE", str(db))
    monkeypatch.delenv("TICKD_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    async with await AsyncClient.open(create=True) as client:
        run = await client.submit("report")
    async with await AsyncClient.open(str(db)) as client:
        assert await client.get(run.run_id) is not None


# ---- sync --------------------------------------------------------------------------------


def test_the_sync_client_submits_dedups_waits_and_cancels(client: Client) -> None:
    run = client.submit("report", run_key="k", priority=1)
    assert client.submit("report", run_key="k").run_id == run.run_id
    assert client.get(run.run_id) == run
    assert [r.run_id for r in client.list(job="report")] == [run.run_id]

    with pytest.raises(TimeoutError):
        client.wait(run.run_id, timeout=0.1, poll=0.02)
    assert client.cancel(run.run_id).status is RunStatus.CANCELED
    assert client.wait(run.run_id, timeout=1).status is RunStatus.CANCELED
    with pytest.raises(RunFinishedError):
        client.cancel(run.run_id)
    assert client.rerun(run.run_id).parent_run_id == run.run_id


def test_the_sync_client_closes_its_loop_and_store(db: str) -> None:
    client = Client.open(db, create=True)
    client.submit("report")
    client.close()
    client.close()  # twice is harmless
    with Client.open(db) as again:
        assert len(again.list()) == 1


def test_the_sync_client_open_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(StoreLocationError):
        Client.open(str(tmp_path / "missing.db"))


# ---- another process ---------------------------------------------------------------------

SUBMITTER = textwrap.dedent(
    """
    import json, sys
    from daemon.client import Client

    with Client.open(sys.argv[1]) as tickd:
        first = tickd.submit("report", run_key="from-elsewhere", tags={"by": "script"})
        second = tickd.submit("report", run_key="from-elsewhere")
        print(json.dumps([first.run_id, second.run_id]))
    """
)


def test_a_run_submitted_from_another_process_is_seen_here(client: Client, db: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKD_")}
    done = subprocess.run(
        [sys.executable, "-c", SUBMITTER, db],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 0, done.stderr
    first, second = json.loads(done.stdout)
    assert first == second  # deduplicated by run_key across calls
    run = client.get(first)
    assert run is not None
    assert (run.job, run.tags["by"], run.status) == ("report", "script", RunStatus.QUEUED)
    # and this process's submission with the same key lands on the same run
    assert client.submit("report", run_key="from-elsewhere").run_id == first
