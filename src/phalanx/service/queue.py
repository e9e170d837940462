"""The service's runs: queued per cluster, run one at a time per cluster on
the service's coordinator, recorded in the store as they go.

A run is created `queued` in the store with a snapshot of the suite's
definition; the `Suite` itself is kept here, so a reload of the repo never
reaches a queued or running run. A cluster runs one run at a time, the
others wait in the order they were queued (different clusters run at once).
A running run's events go to its `LiveRun` (service/live.py), which folds
them for every reader and writes each host's result to the store as it
ends, before the agent's ack; the final record when the run ends, then the
alerts go out (how that went is kept beside the run, `alerts.json` in its
folder) and retention prunes old runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phalanx import layout
from phalanx.coordinator.runs import Coordinator, RunOptions, run_suite
from phalanx.engine.step import Cancellation
from phalanx.events import Event, HostStageEnded, Sink
from phalanx.model import PROVIDER_AGENTS, RunResult, Status, Suite
from phalanx.service import alerts
from phalanx.service.live import LiveRun
from phalanx.store.errors import NotFound
from phalanx.store.failures import describe
from phalanx.store.runs import RunSummary
from phalanx.store.store import Store

if TYPE_CHECKING:
    from phalanx.service.metrics import ServiceMetrics

log = logging.getLogger("phalanx.service")

ALERTS_FILE = "alerts.json"
STOP_GRACE = 10.0
# Pauses between tries to record a run's end while the store cannot be written.
END_RETRY_FIRST = 1.0
END_RETRY_MAX = 60.0


class NotActive(Exception):
    """The run has ended already: there is nothing to cancel."""


@dataclass
class ActiveRun:
    """A run that is queued or running in this process."""

    id: str
    suite: Suite
    cluster: str
    live: LiveRun  # its fold and its store records, and how readers hear of a change
    cancellation: Cancellation = field(default_factory=Cancellation)
    waiting: str = ""  # e.g. "waiting for agents: a, b"
    task: asyncio.Task[None] | None = None
    root: Path | None = None  # the definitions repo it came from (its hosts may read it)

    @property
    def started(self) -> bool:
        return self.task is not None


@dataclass(frozen=True)
class QueueSettings:
    results: Path  # run folders go here (inside the data folder)
    heartbeat_timeout: float = 10.0
    connect_timeout: float = 60.0
    public_url: str = "http://127.0.0.1:8470"
    keep_days: float | None = None
    keep_runs: int | None = None
    smtp: alerts.SmtpSettings | None = None


class RunQueue:
    def __init__(self, store: Store, settings: QueueSettings) -> None:
        self.store = store
        self.settings = settings
        self.coordinator: Coordinator | None = None  # set once the server listens
        self.active: dict[str, ActiveRun] = {}  # run id -> queued or running, in queue order
        self._closed = False
        self.metrics: ServiceMetrics | None = None  # set by `serve`
        # Told the ids of the runs retention removed (what keeps them in memory forgets them).
        self.on_pruned: Callable[[list[str]], None] = lambda gone: None

    # --- asking -------------------------------------------------------------------

    async def submit(self, suite: Suite, trigger: str, root: Path | None = None) -> RunSummary:
        """Queue a run of `suite` (the definition as it is now) from the
        definitions repo at `root`."""
        run_id = layout.new_run_id()
        summary = await self.store.runs.create(
            run_id,
            suite.name,
            trigger=trigger,
            cluster=suite.cluster.name,
            hosts=[h.name for h in suite.hosts],
            definition=snapshot(suite),
            folder=self.settings.results / run_id,
        )
        live = LiveRun(run_id, self.store.runs)
        self.active[run_id] = ActiveRun(run_id, suite, suite.cluster.name, live, root=root)
        log.info("run %s of suite %s queued (%s)", run_id, suite.name, trigger)
        self._dispatch()
        return summary

    async def cancel(self, run_id: str, by: str) -> str:
        """Cancel a queued run (it ends `cancelled` at once) or a running one
        (its stages are cancelled, its finalizes still run); the run's
        status after the request. NotFound, or NotActive when it has ended."""
        active = self.active.get(run_id)
        if active is None:
            if await self.store.runs.get(run_id) is None:
                raise NotFound(f"no run {run_id!r}")
            raise NotActive(f"run {run_id!r} has ended")
        reason = f"cancelled by {by}"
        if not active.started:
            del self.active[run_id]
            await self.store.runs.end(run_id, Status.CANCELLED, reason)
            active.live.touch(ended=True)
            self._ended(Status.CANCELLED.value)
            log.info("run %s cancelled in the queue by %s", run_id, by)
            return Status.CANCELLED.value
        active.cancellation.cancel(reason)
        log.info("run %s: cancel requested by %s", run_id, by)
        return "running"

    def waiting(self, run_id: str) -> str:
        active = self.active.get(run_id)
        return active.waiting if active is not None else ""

    def roots_for(self, client: str) -> list[Path]:
        """The repos of the running runs with a host whose agent connects
        from `client` (coordinator/scripts.py: who may read suite files)."""
        if self.coordinator is None or not client:
            return []
        links = self.coordinator.hub.links
        found = []
        for active in self.active.values():
            if not active.started or active.root is None:
                continue
            if any(
                (link := links.get(h.name)) is not None
                and link.connection is not None
                and link.address == client
                for h in active.suite.hosts
            ):
                found.append(active.root)
        return found

    def root_of(self, run_id: str) -> Path | None:
        """The repo of run `run_id` while it runs (coordinator/scripts.py:
        the run's capability reads its files only then)."""
        active = self.active.get(run_id)
        return active.root if active is not None and active.started else None

    def queue_length(self) -> int:
        return sum(1 for a in self.active.values() if not a.started)

    # --- lifetime -----------------------------------------------------------------

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Cancel what runs (finalizes get `grace` seconds), leave the queue:
        the next start marks what is left `interrupted`."""
        self._closed = True
        tasks = [a.task for a in self.active.values() if a.task is not None]
        for active in self.active.values():
            active.cancellation.cancel("the service is stopping")
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for active in self.active.values():
                active.cancellation.abort("the service is stopping")
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=grace)

    # --- running ------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start the first queued run of every cluster that runs nothing."""
        if self._closed or self.coordinator is None:
            return
        busy = {a.cluster for a in self.active.values() if a.started}
        for active in list(self.active.values()):
            if not active.started and active.cluster not in busy:
                busy.add(active.cluster)
                active.task = asyncio.create_task(
                    self._run(active), name=f"phalanx-run-{active.id}"
                )

    def start(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self._dispatch()

    async def _run(self, active: ActiveRun) -> None:
        assert self.coordinator is not None
        try:
            await self.store.runs.start(active.id)
            active.live.touch()
            log.info("run %s of suite %s started", active.id, active.suite.name)

            def status(text: str) -> None:
                active.waiting = text
                if text:
                    log.info("run %s: %s", active.id, text)

            live = active.live
            options = RunOptions(
                results=self.settings.results,
                heartbeat_timeout=self.settings.heartbeat_timeout,
                connect_timeout=self.settings.connect_timeout,
                run_id=active.id,
                provider=PROVIDER_AGENTS,
                recorder=live,
                on_status=status,
            )
            result, folder = await run_suite(
                self.coordinator, active.suite, options, self._sinks(), active.cancellation
            )
            await live.flush()  # every host's row first: the final record overwrites them
            await self.store.runs.record_run_result(result, folder=folder)
            self._ended(result.status.value)
            log.info("run %s ended: %s", active.id, result.status.value)
            await self._alert(active.suite, result, folder)
            await self._prune()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if (why := describe(exc)) is not None:
                log.error("run %s could not be recorded: %s", active.id, why)
                reason = f"the run could not be recorded: {why}"
            else:
                log.exception("run %s failed in the service", active.id)
                reason = f"the service failed: {exc}"
            await self._end_in_error(active.id, reason)
            self._ended(Status.ERROR.value)
        finally:
            self.active.pop(active.id, None)
            active.live.touch(ended=True)  # readers now find it in the store
            self._dispatch()

    async def _end_in_error(self, run_id: str, reason: str) -> None:
        """The run ends `error` with `reason`. While the store cannot be
        written (a full disk) this is tried again, each pause twice the last
        up to a minute, until it is written or the service stops: the run
        must not stay `running` once space is back."""
        pause = END_RETRY_FIRST
        while True:
            try:
                await self.store.runs.end(run_id, Status.ERROR, reason)
                return
            except NotFound:
                return
            except Exception as exc:
                if describe(exc) is None or self._closed:
                    log.warning("run %s: its end could not be recorded: %s", run_id, exc)
                    return
            await asyncio.sleep(pause)
            pause = min(pause * 2, END_RETRY_MAX)

    def _ended(self, status: str) -> None:
        if self.metrics is not None:
            self.metrics.run_ended(status)

    def _sinks(self) -> list[Sink]:
        metrics = self.metrics
        if metrics is None:
            return []

        def observe(event: Event) -> None:
            if isinstance(event, HostStageEnded):
                result = event.result
                if result.started_at is not None and result.ended_at is not None:
                    metrics.stage_ended(result.started_at, result.ended_at)

        return [observe]

    async def _alert(self, suite: Suite, result: RunResult, folder: Path) -> None:
        planned = alerts.plan(result, suite, public_url=self.settings.public_url)
        if not planned.mails and not planned.webhooks:
            return
        deliveries = await alerts.send(planned, self.settings.smtp)
        for failed in (d for d in deliveries if not d.ok):
            log.warning(
                "run %s: %s alert to %s failed: %s", result.run_id, failed.channel, failed.target,
                failed.error,
            )  # fmt: skip
        document = [d.to_dict() for d in deliveries]
        await asyncio.to_thread(
            (folder / ALERTS_FILE).write_text, json.dumps(document, indent=2), "utf-8"
        )

    async def _prune(self) -> None:
        if self.settings.keep_days is None and self.settings.keep_runs is None:
            return
        gone = await self.store.runs.prune(self.settings.keep_days, self.settings.keep_runs)
        if gone:
            self.on_pruned(gone)
            log.info("retention removed %d run(s)", len(gone))


def snapshot(suite: Suite) -> dict[str, Any]:
    """What the store keeps of the definition a run started with."""
    return {
        "name": suite.name,
        "description": suite.description,
        "cluster": suite.cluster.name,
        "provider": suite.cluster.provider,
        "hosts": [h.name for h in suite.hosts],
        "cases": [c.name for c in suite.cases],
        "timeout": suite.timeout,
        "path": str(suite.path) if suite.path is not None else None,
    }
