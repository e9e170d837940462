"""Runs on a coordinator (DESIGN §2).

A coordinator (`open_coordinator`) serves the agent endpoint and holds the
hub and the token book for as long as it is open; `run_suite` runs one suite
on it from start to end: provision, wait for the agents, walk the lockstep,
release the hosts, write the reports. They are apart because a coordinator
outlives its runs (`phalanx serve` runs many at once on one hub);
`run_local` is the one-call pair that `phalanx run` uses.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from phalanx import layout
from phalanx.coordinator.agents import AgentHub
from phalanx.coordinator.app import AGENT_PATH, agent_app
from phalanx.coordinator.auth import TokenBook
from phalanx.coordinator.fleet import Journal, RunFleet
from phalanx.coordinator.scripts import script_routes
from phalanx.coordinator.server import serving
from phalanx.engine.lockstep import Lockstep
from phalanx.engine.step import Cancellation
from phalanx.events import Fanout, Sink
from phalanx.model import PROVIDER_AGENTS, PROVIDER_LOCAL, RunResult, Status, Suite
from phalanx.providers.base import AgentSpec, ProvisionError
from phalanx.providers.local import LocalProvider
from phalanx.report.writers import ReportPaths, write_reports
from phalanx.store.files import RunFolder
from phalanx.tags import RunContext
from phalanx.wire.messages import StageResult

DEFAULT_RESULTS = Path("phalanx-results")


@dataclass
class RunOptions:
    results: Path = DEFAULT_RESULTS
    # The coordinator's, when `run_local` opens one; a run on an open
    # coordinator goes by the coordinator's own.
    heartbeat_timeout: float = 10.0
    connect_timeout: float = 60.0
    reports: ReportPaths = field(default_factory=ReportPaths)
    run_id: str | None = None
    # Who serves the hosts when the cluster does not say (`provider:`):
    # `local` starts an agent process per host for the run; `agents` waits
    # for remote agents, connected on their own, named like the hosts.
    provider: str = PROVIDER_LOCAL
    # Called with each result before the folder's journal has it acked
    # (the service's store); an awaitable holds the ack until it is done.
    journal: Journal | None = None
    # The definitions repo whose files the run's hosts may fetch
    # (/showScript, /downloadScript: coordinator/scripts.py); None: none.
    scripts_root: Path | None = None
    # Told what the run waits for (`waiting for agents: a, b`), and "" when
    # it no longer does.
    on_status: Callable[[str], None] | None = None


@dataclass(frozen=True)
class Coordinator:
    hub: AgentHub
    tokens: TokenBook
    host: str
    port: int

    @property
    def agent_url(self) -> str:
        return f"ws://{self.host}:{self.port}{AGENT_PATH}"

    @property
    def proto(self) -> str:
        """How hosts reach its web routes (`@proto@`), e.g. /showScript."""
        return "http"


@contextlib.asynccontextmanager
async def open_coordinator(
    *,
    heartbeat_timeout: float = 10.0,
    host: str = "127.0.0.1",
    port: int = 0,
    scripts_root: Path | None = None,
) -> AsyncIterator[Coordinator]:
    """Serve the agent endpoint for the duration of the block, and the files
    of `scripts_root` to the connected agents' hosts."""
    tokens = TokenBook()
    hub = AgentHub(tokens, heartbeat_timeout=heartbeat_timeout)

    def roots_for(client: str) -> list[Path]:
        hosts = any(
            link.connection is not None and link.address == client for link in hub.links.values()
        )
        return [scripts_root] if scripts_root is not None and hosts else []

    app = agent_app(hub, script_routes(roots_for))
    async with serving(app, host, port) as bound:
        hub.start()
        try:
            yield Coordinator(hub, tokens, host, bound)
        finally:
            await hub.stop()


async def run_suite(
    coordinator: Coordinator,
    suite: Suite,
    options: RunOptions,
    sinks: Sequence[Sink] = (),
    cancellation: Cancellation | None = None,
) -> tuple[RunResult, Path]:
    """Run `suite` on agents connected to `coordinator`: local agent
    processes it starts, or remote agents (`provider: agents`) it waits for.
    Returns the result and the run folder. `cancellation`: how the caller
    stops the run; a cancelled run still releases its hosts and writes its
    reports."""
    cancellation = cancellation or Cancellation()
    run_id = options.run_id or layout.new_run_id()
    folder = RunFolder(options.results / run_id)
    emit = Fanout([folder, *sinks])
    hub, book = coordinator.hub, coordinator.tokens
    remote = (suite.cluster.provider or options.provider) == PROVIDER_AGENTS
    provider = None if remote else LocalProvider(folder.path / "hosts")
    hosts = list(suite.hosts)
    names = [h.name for h in hosts]
    tokens: list[str] = []
    status = options.on_status or _no_status

    def journal(host: str, result: StageResult) -> Awaitable[None] | None:
        folder.journal(host, result)
        return options.journal(host, result) if options.journal is not None else None

    try:
        with RunFleet(hub, run_id, names, journal=journal, emit=emit) as fleet:
            engine = Lockstep(
                suite,
                fleet,
                RunContext(run_id, coordinator.host, coordinator.port, coordinator.proto),
                emit,
                addresses=(
                    provider.addresses(hosts)
                    if provider is not None
                    else {h.name: h.ip or h.name for h in hosts}
                ),
                diskmounts={
                    h.name: provider.diskmounts(h) if provider is not None else "" for h in hosts
                },
                cancellation=cancellation,
            )
            try:
                if provider is not None:
                    specs = []
                    for h in hosts:
                        tokens.append(book.issue(h.name))
                        specs.append(AgentSpec(h, coordinator.agent_url, tokens[-1]))
                    await provider.up(specs)
                else:
                    absent = [n for n in names if not hub.link(n).connected.is_set()]
                    if absent:
                        status("waiting for agents: " + ", ".join(absent))
                missing = await _wait_connected(hub, names, options.connect_timeout, cancellation)
                status("")
                if cancellation.reason is not None:
                    result = engine.fail_before_start(Status.CANCELLED, cancellation.reason)
                elif missing:
                    result = engine.fail_before_start(
                        Status.ERROR,
                        f"agents did not connect within {options.connect_timeout:g}s: "
                        + ", ".join(missing),
                    )
                else:
                    result = await engine.execute()
            except ProvisionError as exc:
                result = engine.fail_before_start(Status.ERROR, f"provisioning failed: {exc}")
            finally:
                if provider is not None:
                    # An agent known lost (killed, frozen) is not asked nor waited for.
                    lost = {n for n in names if (link := hub.links.get(n)) and link.lost}
                    hub.shutdown(n for n in names if n not in lost)
                    await provider.down(lost)
                    # The agents are gone with the run: so are their tokens and links.
                    for token in tokens:
                        book.revoke(token)
                    hub.forget(names)
                # Remote agents outlive the run: they stay connected for the next.
    finally:
        folder.close()
    write_reports(result, folder.path, options.reports)
    return result, folder.path


def _no_status(text: str) -> None:
    pass


async def _wait_connected(
    hub: AgentHub, hosts: list[str], timeout: float, cancellation: Cancellation
) -> list[str]:
    """`hub.wait_connected`, given up when the run is cancelled."""
    stop = asyncio.Event()
    cancellation.on_request(stop.set)
    waiting = asyncio.ensure_future(hub.wait_connected(hosts, timeout))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        waiting.cancel()
    return waiting.result() if not waiting.cancelled() and waiting.done() else []


async def run_local(
    suite: Suite,
    options: RunOptions,
    sinks: Sequence[Sink] = (),
    cancellation: Cancellation | None = None,
) -> tuple[RunResult, Path]:
    """Run `suite` on local agent processes under a coordinator of its own.
    Returns the result and the run folder."""
    async with open_coordinator(
        heartbeat_timeout=options.heartbeat_timeout, scripts_root=options.scripts_root
    ) as coordinator:
        return await run_suite(coordinator, suite, options, sinks, cancellation)
