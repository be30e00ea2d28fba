"""The dispatcher: priority order, limits, retries, cancellation, recovery."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
import structlog.testing

from daemon import job
from daemon.adapters.inprocess_executor import InProcessExecutor
from daemon.adapters.memory_store import MemoryStore
from daemon.adapters.sqlite_store import SqliteStore
from daemon.definitions import ExecutorKind, Job
from daemon.dispatch import RECOVERED_REASON, STORE_RETRY, Dispatcher, retry_delay
from daemon.domain.ids import IdGenerator
from daemon.domain.limits import ConcurrencyLimits, TagLimit
from daemon.domain.runs import Instigator, InstigatorKind, Run, RunStatus
from daemon.errors import StoreFullError
from daemon.ports import RunQuery
from daemon.testing import FakeClock

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
MANUAL = Instigator(kind=InstigatorKind.MANUAL, name="test")
ids = IdGenerator()


@pytest.fixture(autouse=True)
def _quiet_logs() -> Any:
    with structlog.testing.capture_logs() as logs:
        yield logs


def queued(
    job_name: str,
    *,
    priority: int = 0,
    tags: dict[str, str] | None = None,
    at: datetime = T0,
    **kw: Any,
) -> Run:
    return Run(
        run_id=ids.new(at),
        job=job_name,
        status=RunStatus.QUEUED,
        instigator=MANUAL,
        created_at=at,
        priority=priority,
        tags=tags or {},
        **kw,
    )


class Harness:
    def __init__(self, tg: Any, jobs: dict[str, Job], limits: ConcurrencyLimits) -> None:
        self.store = MemoryStore()
        self.clock = FakeClock(T0)
        self.jobs = jobs
        executor = InProcessExecutor(lambda: self.jobs, clock=self.clock)
        self.dispatcher = Dispatcher(
            store=self.store,
            clock=self.clock,
            executors={ExecutorKind.THREAD: executor, ExecutorKind.ASYNC: executor},
            jobs=jobs,
            node_id="node-a",
            limits=limits,
            default_executor=ExecutorKind.THREAD,
        )
        self.tg = tg

    async def start(self) -> None:
        self.tg.start_soon(self.dispatcher.run)
        await self.dispatcher.wait_idle()

    async def enqueue(self, *runs: Run) -> None:
        await self.store.create_runs(list(runs))
        self.dispatcher.wake()

    async def settle(self) -> None:
        with anyio.fail_after(10):
            await self.dispatcher.wait_idle()

    async def runs(self) -> list[Run]:
        return await self.store.list_runs(RunQuery(limit=None))


@pytest.fixture
async def make() -> AsyncIterator[Any]:
    async with anyio.create_task_group() as tg:

        def factory(jobs: dict[str, Job], limits: ConcurrencyLimits | None = None) -> Harness:
            return Harness(tg, jobs, limits or ConcurrencyLimits(max_concurrent_runs=4))

        yield factory
        tg.cancel_scope.cancel()


async def test_priority_order_with_one_slot(make):
    order: list[str] = []

    @job(executor="async")
    async def record(context):
        order.append(context.run_config["name"])

    h = make({"record": record}, ConcurrencyLimits(max_concurrent_runs=1))
    runs = [
        queued("record", priority=p, at=T0 + timedelta(seconds=i), run_config={"name": n})
        for i, (p, n) in enumerate([(0, "a"), (5, "b"), (0, "c"), (9, "d"), (5, "e")])
    ]
    await h.store.create_runs(runs)  # all queued before the dispatcher starts
    await h.start()
    await h.settle()
    assert order == ["d", "b", "e", "a", "c"]
    assert {r.status for r in await h.runs()} == {RunStatus.SUCCESS}


async def test_limits_hold_and_blocked_runs_do_not_block_others(make):
    running: dict[str, int] = {}
    peak: dict[str, int] = {}
    gate = anyio.Event()

    @job(executor="async")
    async def work(context):
        key = context.tags.get("db", "none")
        running[key] = running.get(key, 0) + 1
        peak[key] = max(peak.get(key, 0), running[key])
        await gate.wait()
        running[key] -= 1

    h = make(
        {"work": work},
        ConcurrencyLimits(
            max_concurrent_runs=3, tag_limits=(TagLimit(key="db", value="warehouse", limit=1),)
        ),
    )
    await h.start()
    await h.enqueue(
        queued("work", priority=9, tags={"db": "warehouse"}, at=T0),
        queued("work", priority=9, tags={"db": "warehouse"}, at=T0 + timedelta(seconds=1)),
        queued("work", priority=0, tags={"db": "lake"}, at=T0 + timedelta(seconds=2)),
    )
    for _ in range(50):
        await anyio.sleep(0.005)
        if running.get("lake"):
            break
    # the second warehouse run waits; the low-priority lake run got the free slot
    assert running == {"warehouse": 1, "lake": 1}
    gate.set()
    await h.settle()
    assert peak["warehouse"] == 1
    assert {r.status for r in await h.runs()} == {RunStatus.SUCCESS}


async def test_failure_retries_with_backoff_on_the_clock(make):
    attempts: list[int] = []

    @job(executor="async", max_retries=2, retry_delay=10)
    async def flaky(context):
        attempts.append(context.attempt)
        raise RuntimeError(f"attempt {context.attempt} failed")

    h = make({"flaky": flaky})
    await h.start()
    first = queued("flaky")
    await h.enqueue(first)
    await h.settle()
    assert attempts == [1]
    runs = await h.runs()
    retry = next(r for r in runs if r.parent_run_id == first.run_id)
    assert retry.attempt == 2 and retry.status is RunStatus.QUEUED
    delay = retry.not_before - retry.created_at
    assert timedelta(seconds=10) <= delay <= timedelta(seconds=12.5)
    await h.clock.advance(9)  # not before its delay
    await h.settle()
    assert attempts == [1]
    await h.clock.advance(timedelta(seconds=4))
    await h.settle()
    assert attempts == [1, 2]
    await h.clock.advance(timedelta(seconds=30))  # 20 s base for the third attempt
    await h.settle()
    assert attempts == [1, 2, 3]
    runs = await h.runs()
    assert sorted(r.attempt for r in runs) == [1, 2, 3]
    assert all(r.status is RunStatus.FAILURE for r in runs)
    assert "attempt 3 failed" in next(r for r in runs if r.attempt == 3).error


def test_retry_delay_doubles_with_bounded_jitter():
    j = Job(name="j", fn=lambda c: None, retry_delay=10)
    delays = [retry_delay(j, queued("j", attempt=n)) for n in (1, 2, 3)]
    for n, d in enumerate(delays):
        base = 10 * 2**n
        assert timedelta(seconds=base) <= d <= timedelta(seconds=base * 1.25)


async def test_timeout_and_cancel_of_thread_and_async_jobs(make):
    release = threading.Event()

    @job(executor="thread", timeout=0.05)
    def slow_thread(context):
        release.wait(5)

    @job(executor="async")
    async def slow_async(context):
        await anyio.sleep_forever()

    h = make({"slow_thread": slow_thread, "slow_async": slow_async})
    await h.start()
    a, b = queued("slow_thread"), queued("slow_async")
    await h.enqueue(a, b)
    for _ in range(100):
        await anyio.sleep(0.01)
        if (await h.store.get_run(a.run_id)).status.is_terminal:
            break
    assert (await h.store.get_run(a.run_id)).status is RunStatus.TIMED_OUT
    await h.store.transition_run(
        b.run_id, RunStatus.CANCELING, now=h.clock.now(), error="canceled by an operator"
    )
    await h.settle()
    done = await h.store.get_run(b.run_id)
    assert done.status is RunStatus.CANCELED
    assert done.error == "canceled by an operator"
    release.set()


async def test_recovery_fails_orphans_and_retries_where_allowed(make):
    @job(executor="async", max_retries=1, retry_delay=0)
    async def once(context):
        pass

    h = make({"once": once})
    orphan = queued("once")
    await h.store.create_runs([orphan])
    [claimed] = await h.store.claim_runs(
        node_id="dead-node", limit=1, limits=ConcurrencyLimits(), now=T0
    )
    await h.store.transition_run(claimed.run_id, RunStatus.RUNNING, now=T0)
    recovered = await h.dispatcher.recover(live_nodes=["node-a"])
    assert [r.run_id for r in recovered] == [orphan.run_id]
    failed = await h.store.get_run(orphan.run_id)
    assert failed.status is RunStatus.FAILURE and failed.error == RECOVERED_REASON
    await h.start()
    await h.settle()
    retry = next(r for r in await h.runs() if r.parent_run_id == orphan.run_id)
    assert retry.status is RunStatus.SUCCESS and retry.attempt == 2


async def test_unknown_job_fails_its_run_only(make):
    @job(executor="async")
    async def fine(context):
        pass

    h = make({"fine": fine})
    await h.start()
    ghost, ok = queued("ghost"), queued("fine")
    await h.enqueue(ghost, ok)
    await h.settle()
    assert (await h.store.get_run(ghost.run_id)).error.startswith("job 'ghost' is not defined")
    assert (await h.store.get_run(ok.run_id)).status is RunStatus.SUCCESS


async def test_drain_lets_short_runs_finish_and_cancels_the_rest(make):
    @job(executor="async")
    async def quick(context):
        await anyio.sleep(0.01)

    @job(executor="async")
    async def forever(context):
        await anyio.sleep_forever()

    h = make({"quick": quick, "forever": forever})
    await h.start()
    q, f = queued("quick"), queued("forever")
    await h.enqueue(q, f)
    await anyio.sleep(0.005)
    await h.dispatcher.drain(0.2)
    assert (await h.store.get_run(q.run_id)).status is RunStatus.SUCCESS
    stopped = await h.store.get_run(f.run_id)
    assert stopped.status is RunStatus.CANCELED
    assert "drain timeout" in stopped.error


async def test_a_run_is_claimed_started_and_finished_with_its_events(make, _quiet_logs):
    @job(executor="async")
    async def fine(context):
        pass

    h = make({"fine": fine})
    await h.start()
    run = queued("fine")
    await h.enqueue(run)
    await h.settle()
    done = await h.store.get_run(run.run_id)
    assert (done.status, done.node_id, done.started_at, done.ended_at) == (
        RunStatus.SUCCESS,
        "node-a",
        T0,
        T0,
    )
    events = await h.store.run_events(run.run_id)
    assert [e.kind for e in events] == [
        "run.enqueued",
        "run.starting",
        "run.running",
        "run.success",
    ]
    assert events[2].data == {"queue_wait_s": 0.0, "node_id": "node-a"}
    assert [e["event"] for e in _quiet_logs if e.get("run_id") == run.run_id] == [
        "run.started",
        "run.succeeded",
    ]


async def test_a_thread_job_s_log_lines_reach_the_store_while_it_runs(make):
    release = threading.Event()

    @job(executor="thread")
    def chatty(context):
        context.log.info("halfway")
        release.wait(10)

    h = make({"chatty": chatty})
    appended = anyio.Event()
    append_logs = h.store.append_logs

    async def watched(run_id, lines):
        await append_logs(run_id, lines)
        appended.set()

    h.store.append_logs = watched
    await h.start()
    run = queued("chatty")
    await h.enqueue(run)
    try:
        with anyio.fail_after(10):
            await appended.wait()  # flushed while the job still runs
        assert (await h.store.get_run(run.run_id)).status is RunStatus.RUNNING
    finally:
        release.set()
    await h.settle()
    [line] = await h.store.read_logs(run.run_id)
    assert "halfway" in line.text


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_a_drain_keeps_the_global_limit_and_the_queue_order(backend, tmp_path):
    running = 0
    peak = 0
    order: list[int] = []

    @job(executor="thread")
    def work(context):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            order.append(context.run_config["n"])
        release.wait(0.001)  # overlap a little with the others
        with lock:
            running -= 1

    lock, release = threading.Lock(), threading.Event()
    store = MemoryStore() if backend == "memory" else await SqliteStore.open(tmp_path / "t.db")
    clock = FakeClock(T0)
    jobs = {"work": work}
    executor = InProcessExecutor(lambda: jobs, clock=clock)
    dispatcher = Dispatcher(
        store=store,
        clock=clock,
        executors={ExecutorKind.THREAD: executor},
        jobs=jobs,
        node_id="node-a",
        limits=ConcurrencyLimits(max_concurrent_runs=3),
        default_executor=ExecutorKind.THREAD,
    )
    runs = [
        queued("work", priority=n % 3, at=T0 + timedelta(seconds=n), run_config={"n": n})
        for n in range(30)
    ]
    await store.create_runs(runs)
    async with anyio.create_task_group() as tg:
        tg.start_soon(dispatcher.run)
        with anyio.fail_after(20):
            await dispatcher.wait_idle()
        tg.cancel_scope.cancel()
    done = await store.list_runs(RunQuery(limit=None))
    claimed_at = {}  # run -> seq of its run.starting event: the order of the claims
    for run in done:
        [starting] = [e for e in await store.run_events(run.run_id) if e.kind == "run.starting"]
        claimed_at[run.run_id] = starting.seq
    await store.close()
    assert {r.status for r in done} == {RunStatus.SUCCESS}
    assert peak <= 3
    in_claim_order = sorted(done, key=lambda r: claimed_at[r.run_id])
    assert in_claim_order == sorted(done, key=lambda r: (-r.priority, r.created_at, r.run_id))
    assert sorted(order) == list(range(30))


class _FullUntilFreed(MemoryStore):
    """A store whose disk is full for the first `times` writes of a run's end."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.refusals = times

    def _refuse(self, moves: Any) -> None:
        if self.refusals and any(m.status.is_terminal for m in moves):
            self.refusals -= 1
            raise StoreFullError("memory://", "no space left on device")

    async def move_and_claim(self, moves: Any, **kw: Any) -> Any:
        self._refuse(moves)
        return await super().move_and_claim(moves, **kw)


async def test_a_run_s_end_the_store_cannot_write_yet_is_written_later(make, _quiet_logs):
    """A full disk when a run ends costs time, not the record: the end is tried again
    every STORE_RETRY (on the clock) and the run is not left RUNNING."""

    @job(executor="async")
    async def fine(context):
        pass

    h = make({"fine": fine})
    h.store = h.dispatcher.store = _FullUntilFreed(times=2)
    await h.start()
    run = queued("fine")
    await h.enqueue(run)
    for _ in range(3):
        await h.clock.advance(STORE_RETRY)
    await h.settle()
    assert (await h.store.get_run(run.run_id)).status is RunStatus.SUCCESS
    retried = [e for e in _quiet_logs if e["event"] == "run.finish_failed"]
    assert len(retried) == 2 and retried[0]["retry_in_s"] == STORE_RETRY.total_seconds()


class _WatchFailsOnce(MemoryStore):
    """A store whose first wait for other processes' changes fails."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    async def wait_for_change(self, token: int, *, max_wait: float) -> int:
        self.waits += 1
        if self.waits == 1:
            raise StoreFullError("memory://", "no space left on device")
        return await super().wait_for_change(token, max_wait=max_wait)


async def test_a_failed_wait_for_other_processes_changes_is_tried_again(make, _quiet_logs):
    """The watch on other processes' changes survives a store error, its first wait
    included, and tries again after STORE_RETRY (on the clock)."""
    h = make({})
    h.store = h.dispatcher.store = _WatchFailsOnce()
    await h.start()
    failed = [e for e in _quiet_logs if e["event"] == "dispatch.watch_failed"]
    assert len(failed) == 1 and failed[0]["retry_in_s"] == STORE_RETRY.total_seconds()
    assert h.store.waits == 1
    await h.clock.advance(STORE_RETRY)
    assert h.store.waits >= 2  # tried again (and, having its token, waits on)
