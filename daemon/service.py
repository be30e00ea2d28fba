"""`tickd serve`: wire the store, clock, definitions, scheduler and dispatcher; hold the
lease; speak sd_notify; stop gracefully on SIGTERM, reload on SIGHUP."""

from __future__ import annotations

import gc
import os
import signal
import socket
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import timedelta

import anyio
import structlog
from anyio.abc import TaskStatus

from daemon.adapters.inprocess_executor import InProcessExecutor
from daemon.adapters.process_executor import ProcessExecutor
from daemon.adapters.sd_notify import SdNotifier
from daemon.config import Config
from daemon.definitions import ExecutorKind
from daemon.dispatch import Dispatcher
from daemon.domain.limits import ConcurrencyLimits
from daemon.errors import LeaseHeldError, LeaseLostError, TickdError
from daemon.loading import LoadResult, Registry, load_definitions, log_load_result
from daemon.loop import Scheduler
from daemon.ports import Clock, Executor, Lease, Store

log = structlog.get_logger("tickd.service")

# How often the daemon purges history past its retention.
PURGE_EVERY = timedelta(hours=1)


def node_identity() -> tuple[str, int, str]:
    """(node id, pid, host) of this daemon process."""
    host = socket.gethostname()
    pid = os.getpid()
    return f"{host}:{pid}:{uuid.uuid4().hex[:8]}", pid, host


class Daemon:
    """One `tickd serve` process."""

    def __init__(
        self,
        config: Config,
        *,
        store: Store,
        clock: Clock,
        notifier: SdNotifier | None = None,
        load: Callable[[], LoadResult] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.notify = notifier or SdNotifier()
        self._load = load or (lambda: load_definitions(config.definitions))
        self.node_id, self.pid, self.host = node_identity()
        self.lease: Lease | None = None
        self.scheduler: Scheduler | None = None
        self.dispatcher: Dispatcher
        self._executors: dict[ExecutorKind, Executor] = {}
        self._scheduler_scope = anyio.CancelScope()
        self._executors_ready = anyio.Event()
        self._stopping = anyio.Event()
        self._reloaded = anyio.Event()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until SIGTERM/SIGINT (or `stop()`). Raises nothing for a clean stop."""
        result = self._load()
        log_load_result(result, log, self.config.definitions)
        sched_cfg = self.config.scheduler
        async with AsyncExitStack() as stack:
            tg = await stack.enter_async_context(anyio.create_task_group())
            tg.start_soon(self._signals)
            self.lease = await self._acquire_lease()
            if self.lease is None:  # stopped while waiting
                tg.cancel_scope.cancel()
                return
            self.dispatcher = self._make_dispatcher(result.registry)
            self.scheduler = Scheduler(
                store=self.store,
                clock=self.clock,
                definitions=result.registry,
                lease_epoch=self.lease.epoch,
                max_concurrent_evaluations=sched_cfg.max_concurrent_evaluations,
                on_enqueued=self.dispatcher.wake,
            )
            self.dispatcher.on_finished = self.scheduler.run_finished
            await self.dispatcher.recover(live_nodes=[self.node_id])
            dispatch_scope = anyio.CancelScope()
            tg.start_soon(self._run_dispatcher, dispatch_scope)
            tg.start_soon(self._run_scheduler)
            tg.start_soon(self._heartbeat)
            tg.start_soon(self._freeze_heap)
            watchdog = self.notify.watchdog_interval()
            if watchdog:
                tg.start_soon(self._watchdog, watchdog)
            self.notify.ready(self._status_line())
            log.info(
                "daemon.started",
                node_id=self.node_id,
                store=self.config.store,
                lease_epoch=self.lease.epoch,
            )
            task_status.started()
            await self._stopping.wait()
            self.notify.stopping()
            drain = self.config.dispatch.drain_timeout
            log.info(
                "daemon.stopping",
                node_id=self.node_id,
                active_runs=self.dispatcher.active_count,
                drain_timeout_s=drain,
            )
            self._scheduler_scope.cancel()
            with anyio.CancelScope(shield=True):
                await self.dispatcher.drain(drain)
                for executor in set(self._executors.values()):
                    await executor.aclose()
            dispatch_scope.cancel()
            tg.cancel_scope.cancel()
        if self.lease is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await self.store.release_lease(self.lease)
                except TickdError as exc:
                    log.warning("lease.release_failed", error=str(exc))
        log.info("daemon.stopped", node_id=self.node_id)

    def stop(self) -> None:
        self._stopping.set()

    async def reload(self) -> None:
        """Reload definitions; on any load error keep the previous ones running."""
        self.notify.reloading()
        result = self._load()
        log_load_result(result, log, self.config.definitions)
        if result.errors:
            log.error(
                "definitions.reload_rejected",
                reason="a definition module failed to load; the previous definitions keep running",
                errors=len(result.errors),
            )
        else:
            if self.scheduler is not None:
                gc.unfreeze()  # the previous definitions may be collected now
                await self.scheduler.replace_definitions(result.registry)
                log.info("definitions.reloaded", **self.scheduler.status_counts())
                self.dispatcher.replace_jobs(result.registry.jobs)
                await self._executors_ready.wait()  # a pool still starting is not reloaded
                for executor in set(self._executors.values()):
                    reload = getattr(executor, "reload", None)
                    if reload is not None:
                        await reload()
            self._reloaded.set()
        self.notify.ready(self._status_line())

    # ---- tasks --------------------------------------------------------------------------

    async def _freeze_heap(self) -> None:
        """Once the scheduler is idle after start-up, move what lives as long as the
        daemon (definitions, heap, states, caches) out of the garbage collector's view:
        a full collection then walks only what ticks and runs made since, instead of
        pausing a tick for ~100 ms with 10,000 schedules. After a reload, again."""
        assert self.scheduler is not None
        try:
            while True:
                await self.scheduler.wait_idle()
                gc.collect()
                gc.freeze()
                log.info("daemon.heap_frozen", objects=gc.get_freeze_count())
                await self._reloaded.wait()
                self._reloaded = anyio.Event()
        finally:
            gc.unfreeze()  # stopping: the process (a test's, say) may go on without us

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    log.info("daemon.reload_requested", signal="SIGHUP")
                    await self.reload()
                else:
                    log.info("daemon.stop_requested", signal=signal.Signals(signum).name)
                    self.stop()

    async def _acquire_lease(self) -> Lease | None:
        ttl = timedelta(seconds=self.config.scheduler.lease_ttl)
        announced = False
        while not self._stopping.is_set():
            try:
                return await self.store.acquire_lease(
                    holder=self.node_id,
                    pid=self.pid,
                    host=self.host,
                    now=self.clock.now(),
                    ttl=ttl,
                    dead_holder=await self._dead_holder(),
                )
            except LeaseHeldError as exc:
                if not announced:
                    log.warning(
                        "lease.held",
                        holder=exc.holder,
                        since=exc.since,
                        message=str(exc),
                        retry_every_s=self.config.scheduler.heartbeat_interval,
                    )
                    self.notify.status(f"standby: {exc}")
                    announced = True
            with anyio.move_on_after(self.config.scheduler.heartbeat_interval):
                await self._stopping.wait()
        return None

    def _make_dispatcher(self, registry: Registry) -> Dispatcher:
        cfg = self.config.dispatch
        inproc = InProcessExecutor(
            lambda: self.dispatcher.jobs, clock=self.clock, max_threads=cfg.max_concurrent_runs
        )
        executors: dict[ExecutorKind, Executor] = {
            ExecutorKind.THREAD: inproc,
            ExecutorKind.ASYNC: inproc,
        }
        if (
            any(
                (job.executor or cfg.default_executor) is ExecutorKind.PROCESS
                for job in registry.jobs.values()
            )
            or cfg.default_executor is ExecutorKind.PROCESS
        ):
            executors[ExecutorKind.PROCESS] = ProcessExecutor(
                self.config.definitions, size=cfg.max_concurrent_runs, clock=self.clock
            )
        self._executors = executors
        return Dispatcher(
            store=self.store,
            clock=self.clock,
            executors=executors,
            jobs=registry.jobs,
            node_id=self.node_id,
            limits=ConcurrencyLimits(
                max_concurrent_runs=cfg.max_concurrent_runs, tag_limits=cfg.tag_limits
            ),
            default_executor=cfg.default_executor,
        )

    async def _run_dispatcher(self, scope: anyio.CancelScope) -> None:
        process = self._executors.get(ExecutorKind.PROCESS)
        try:
            if isinstance(process, ProcessExecutor):
                await process.start()
        except Exception as exc:  # the daemon keeps scheduling; process runs will fail
            log.error("executor.start_failed", executor="process", error=str(exc))
        finally:
            self._executors_ready.set()
        with scope:
            await self.dispatcher.run()

    async def _dead_holder(self) -> str | None:
        """The lease holder, if it was a process on this host that no longer exists (a
        daemon killed with SIGKILL): no need to wait for its lease to lapse."""
        lease = await self.store.current_lease()
        if lease is None or lease.host != self.host or lease.pid == self.pid:
            return None
        try:
            os.kill(lease.pid, 0)
        except ProcessLookupError:
            log.info("lease.holder_gone", holder=lease.holder, pid=lease.pid, host=lease.host)
            return lease.holder
        except PermissionError:  # alive, another user's
            return None
        return None

    async def _run_scheduler(self) -> None:
        assert self.scheduler is not None
        try:
            with self._scheduler_scope:
                await self.scheduler.run()
        except LeaseLostError as exc:
            log.error("lease.lost", error=str(exc), node_id=self.node_id)
            self.lease = None
            self.stop()

    async def _heartbeat(self) -> None:
        interval = timedelta(seconds=self.config.scheduler.heartbeat_interval)
        ttl = timedelta(seconds=self.config.scheduler.lease_ttl)
        last_purge = self.clock.now()
        while True:
            await self.clock.sleep_until(self.clock.now() + interval)
            assert self.lease is not None
            try:
                self.lease = await self.store.renew_lease(self.lease, now=self.clock.now(), ttl=ttl)
                if self.scheduler is not None:
                    await self.scheduler.refresh_states()
                if self.clock.now() - last_purge >= PURGE_EVERY:
                    last_purge = self.clock.now()
                    counts = await self.store.purge(now=last_purge, retention=self.config.retention)
                    log.info("store.purged", ticks=counts.ticks, runs=counts.runs)
            except LeaseLostError as exc:
                log.error("lease.lost", error=str(exc), node_id=self.node_id)
                self.lease = None
                self.stop()
                return
            except TickdError as exc:
                log.error("heartbeat.failed", error=str(exc))

    async def _watchdog(self, interval: float) -> None:
        # Pinged from the event loop itself: a blocked loop stops the pings.
        while True:
            self.notify.watchdog()
            self.notify.status(self._status_line())
            await self.clock.sleep_until(self.clock.now() + timedelta(seconds=interval))

    def _status_line(self) -> str:
        if self.scheduler is None:
            return "starting"
        counts = self.scheduler.status_counts()
        counts["active runs"] = self.dispatcher.active_count
        return ", ".join(f"{v} {k}" for k, v in counts.items())
