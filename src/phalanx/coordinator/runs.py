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
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from phalanx import layout
from phalanx.coordinator.agents import AgentHub
from phalanx.coordinator.auth import TokenBook
from phalanx.coordinator.fleet import RunFleet
from phalanx.coordinator.listener import Routes, listening
from phalanx.coordinator.scripts import ScriptKeys, SuiteFiles
from phalanx.coordinator.sharedlisteners import SharedListeners
from phalanx.engine.lockstep import Lockstep
from phalanx.engine.step import Cancellation, scope_id
from phalanx.events import Event, Fanout, Sink
from phalanx.host.endpoint import AGENT_PATH
from phalanx.model import (
    PROVIDER_AGENTS,
    PROVIDER_LOCAL,
    PROVIDER_QEMU,
    Host,
    RunResult,
    Status,
    Suite,
)
from phalanx.providers.agentenv import AgentUser
from phalanx.providers.attached import AttachedAgents, Unprovided
from phalanx.providers.base import (
    AgentSpec,
    Capabilities,
    Diagnosing,
    Provider,
    ProvisionError,
    Reverting,
    attached,
    capabilities_of,
    granted,
    refusal,
)
from phalanx.providers.registry import make_provider
from phalanx.report.writers import ReportPaths, prepare_writers, write_reports
from phalanx.store.files import RunFolder
from phalanx.tags import RunContext
from phalanx.wire.messages import prepare_coordinator_side

if TYPE_CHECKING:
    from phalanx.coordinator.hypervisors import Hypervisors

log = logging.getLogger("phalanx.coordinator")

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
    # Whoever serves the hosts, whatever the cluster says (`--provider`).
    provider_override: str | None = None
    # What keeps the run's records as they come (the service's store): the
    # run's events go to it, and an agent's result is acked once its record
    # is safe there (`Recorder.durable`).
    recorder: Recorder | None = None
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
    # Serve the agent endpoint on one more address for a block (a provider's
    # bridge), yielding the port; None: this coordinator cannot.
    also_listen: Callable[[str], AbstractAsyncContextManager[int]] | None = None
    # Who runs a qemu cluster's VMs: connected hypervisor daemons, else an
    # embedded one (coordinator/hypervisors.py), made when first asked for;
    # None: the qemu provider itself.
    hypervisors: Callable[[], Hypervisors] | None = None
    tls: bool = False  # it serves https and wss (`phalanx serve` with a certificate)
    # The environment of the local agents it starts; None: this process's
    # own (`phalanx run`). The service gives a minimal one (providers/agentenv.py).
    agent_env: Mapping[str, str] | None = None
    # Each run's capability for its suite files (coordinator/scripts.py);
    # None: its stages get no $PHALANX_SCRIPTS_URL.
    script_keys: ScriptKeys | None = None
    # Who the local agents run as, and the folder their runs' working
    # folders go in (None: this process's user; the run folder).
    agent_user: AgentUser | None = None
    agent_workroot: Path | None = None

    @property
    def agent_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}{AGENT_PATH}"

    @property
    def proto(self) -> str:
        """How hosts reach its web routes (`@proto@`), e.g. /showScript."""
        return "https" if self.tls else "http"


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

    keys = ScriptKeys()
    routes = Routes(
        {AGENT_PATH: hub.serve}, SuiteFiles(roots_for, lambda run_id: scripts_root, keys, hub)
    )
    async with listening(routes, host, port) as bound:
        listeners = SharedListeners(lambda address: listening(routes, address, 0))
        made: list[Hypervisors] = []

        def hypervisors() -> Hypervisors:
            # Only a qemu cluster's run asks: the others go without the
            # hypervisors' modules (no hypervisor daemon connects to `phalanx run`).
            if not made:
                from phalanx.coordinator.hypervisors import Hypervisors

                made.append(
                    Hypervisors(
                        hub, tokens, heartbeat_timeout=heartbeat_timeout, listeners=listeners
                    )
                )
            return made[0]

        hub.start()
        try:
            yield Coordinator(
                hub, tokens, host, bound, listeners.hold, hypervisors, script_keys=keys
            )
        finally:
            for made_hypervisors in made:
                await made_hypervisors.stop()
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
    kept = [options.recorder] if options.recorder is not None else []
    emit = Fanout([folder, *kept, *sinks])
    provider: Provider = AttachedAgents(suite.cluster)
    name = provider_name(suite, options)
    if name != PROVIDER_AGENTS:
        try:
            if name == PROVIDER_QEMU and coordinator.hypervisors is not None:
                provider = coordinator.hypervisors().provider(
                    suite.cluster, run_id, folder.path / "hosts"
                )
            else:
                provider = make_provider(
                    name,
                    cluster=suite.cluster,
                    root=folder.path / "hosts",
                    run_id=run_id,
                    agent_env=coordinator.agent_env,
                    agent_user=coordinator.agent_user,
                    agent_workroot=(
                        coordinator.agent_workroot / run_id
                        if coordinator.agent_workroot is not None
                        else None
                    ),
                )
        except ProvisionError as exc:
            provider = Unprovided(suite.cluster, str(exc))
    # The writers' imports and templates in a thread from the start: the
    # run waits for its agents to start and connect, and for them to end,
    # and this work goes beside those waits instead of after them. The
    # reports themselves only after: a provider writes its record of a host
    # at its down (a VM's vm.json), and they show it.
    preparing = asyncio.ensure_future(asyncio.to_thread(prepare_writers))
    try:
        async with _provided(coordinator, provider) as reach:
            result = await _run_provided(
                coordinator,
                reach,
                suite,
                options,
                run_id,
                folder,
                emit,
                provider,
                cancellation,
            )
    finally:
        folder.close()
    await preparing
    write_reports(result, folder.path, options.reports)
    return result, folder.path


def _scripts_url(coordinator: Coordinator, reach: _Reach, run_id: str) -> str:
    keys = coordinator.script_keys
    if keys is None:
        return ""
    host = f"[{reach.host}]" if ":" in reach.host else reach.host
    return f"{coordinator.proto}://{host}:{reach.port}/scripts/{run_id}/{keys.key(run_id)}"


def provider_name(suite: Suite, options: RunOptions) -> str:
    return options.provider_override or suite.cluster.provider or options.provider


@dataclass(frozen=True)
class _Reach:
    """How this run's hosts reach the coordinator, or why they cannot."""

    host: str
    port: int
    problem: str | None = None
    scheme: str = "ws"  # wss when the coordinator serves TLS

    @property
    def agent_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{AGENT_PATH}"


@contextlib.asynccontextmanager
async def _provided(coordinator: Coordinator, provider: Provider) -> AsyncIterator[_Reach]:
    """The provider opened (its networks made) for the block, and the
    coordinator listening where the provider's hosts can reach it; closed
    after, however the run ended."""
    scheme = coordinator.agent_url.split("://", 1)[0]
    try:
        await provider.open()
    except ProvisionError as exc:
        try:
            yield _Reach(coordinator.host, coordinator.port, str(exc), scheme)
        finally:
            await _released("close", provider.close())
        return
    try:
        address = provider.listen_address
        if address is None or address == coordinator.host:
            yield _Reach(coordinator.host, coordinator.port, scheme=scheme)
        elif coordinator.also_listen is None:
            yield _Reach(
                coordinator.host,
                coordinator.port,
                f"these hosts reach the coordinator on {address}, where it cannot listen",
                scheme,
            )
        else:
            async with coordinator.also_listen(address) as port:
                yield _Reach(address, port, scheme=scheme)
    finally:
        await _released("close", provider.close())


async def _released(what: str, releasing: Awaitable[None]) -> None:
    """A provider's `down` or `close`: a failure there is one line in the
    log, never the run's end. The run has its result (and its first
    reason) by then, and its reports are still to be written."""
    try:
        await releasing
    except Exception as exc:
        log.warning("releasing the hosts (%s) failed: %s", what, exc)


async def _run_provided(
    coordinator: Coordinator,
    reach: _Reach,
    suite: Suite,
    options: RunOptions,
    run_id: str,
    folder: RunFolder,
    emit: Fanout,
    provider: Provider,
    cancellation: Cancellation,
) -> RunResult:
    """The run's result, once its hosts are released."""
    hub, book = coordinator.hub, coordinator.tokens
    hosts = list(suite.hosts)
    names = [h.name for h in hosts]
    tokens: list[str] = []
    noticing: list[asyncio.Task[None]] = []
    status = options.on_status or _no_status

    # What the provider can do besides up and down: each the object, or why not.
    can = capabilities_of(provider, f"{provider_name(suite, options)} hosts")
    # Whether the run starts its hosts' agents, or they connect on their own.
    starts = not attached(provider)
    reverting = granted(can.revert) if suite.cluster.revert is not None else None
    # Agents of these names connected already, that this run neither starts
    # nor kept up from an earlier one (remote agents of another cluster):
    # they are not this run's to use, nor to shut down.
    others = _others_connected(hub, names, can) if starts else []
    with RunFleet(
        hub,
        run_id,
        names,
        durable=options.recorder.durable if options.recorder is not None else None,
        emit=emit,
        faults=granted(can.faults),
        names=host_names(hosts),
        no_faults=refusal(can.faults) or "",
        before_case=(
            _reverter(reverting, hub, names, options.connect_timeout)
            if reverting is not None
            else None
        ),
        migrator=granted(can.migration),
        no_migration=refusal(can.migration) or "",
    ) as fleet:
        engine = Lockstep(
            suite,
            fleet,
            RunContext(
                run_id,
                reach.host,
                reach.port,
                coordinator.proto,
                scripts_url=_scripts_url(coordinator, reach, run_id),
            ),
            emit,
            addresses=provider.addresses(hosts),
            diskmounts={h.name: provider.diskmounts(h) for h in hosts},
            cancellation=cancellation,
        )

        async def outcome() -> RunResult:
            try:
                if reach.problem is not None:
                    raise ProvisionError(reach.problem)
                if suite.cluster.revert is not None and (refused := refusal(can.revert)):
                    raise ProvisionError(refused)
                if others:
                    raise ProvisionError(
                        f"{', '.join(others)}: an agent of that name is connected already, "
                        "and this cluster's provider starts its own; the two clusters cannot "
                        "share host names while those agents are connected"
                    )
                if starts:
                    specs = []
                    for h in hosts:
                        tokens.append(book.issue(h.name))
                        specs.append(AgentSpec(h, reach.agent_url, tokens[-1]))
                    noticing.extend(_notice_connections(hub, names, provider))
                    # The agents' messages' parser, built in a thread while
                    # this one waits for their processes to start; else
                    # the first hello waits for it.
                    parser = asyncio.ensure_future(asyncio.to_thread(prepare_coordinator_side))
                    try:
                        await provider.up(specs)
                    finally:
                        await parser
                else:
                    absent = [n for n in names if not hub.link(n).connected.is_set()]
                    if absent:
                        status("waiting for agents: " + ", ".join(absent))
                missing = await _wait_connected(hub, names, options.connect_timeout, cancellation)
                status("")
                if cancellation.reason is not None:
                    return engine.fail_before_start(Status.CANCELLED, cancellation.reason)
                if missing:
                    return engine.fail_before_start(
                        Status.ERROR,
                        f"agents did not connect within {options.connect_timeout:g}s: "
                        + ", ".join(missing)
                        + _explained(provider, missing),
                    )
                return await engine.execute()
            except ProvisionError as exc:
                return engine.fail_before_start(Status.ERROR, f"provisioning failed: {exc}")

        try:
            result = await outcome()
        finally:
            for noticed in noticing:
                noticed.cancel()
            # Hosts that outlive the run (VMs, remote agents) get their network back.
            await fleet.heal_faults()
            if starts:
                # An agent known lost (killed, frozen) is not asked nor waited for.
                lost = {n for n in names if (link := hub.links.get(n)) and link.lost}
                # A kept cluster's agents (`keep: true`) live on with their tokens.
                keeping = granted(can.keep)
                kept = set(keeping.keeps) if keeping is not None and not lost else set()
                if kept:
                    # Their agents do not exit: what the suite's stages left
                    # running ends as a case's does, not with the next run.
                    fleet.end_scope(scope_id(run_id, 0, None))
                else:
                    hub.shutdown(n for n in names if n not in lost and n not in others)
                await _released("down", provider.down(lost))
                # The agents are gone with the run: so are their tokens and links.
                for token in tokens:
                    if token not in kept:
                        book.revoke(token)
                if not kept:
                    hub.forget(n for n in names if n not in others)
            # Remote agents outlive the run: they stay connected for the next.
    return result


def _others_connected(hub: AgentHub, names: list[str], can: Capabilities) -> list[str]:
    """The hosts whose names connected agents hold that the run's provider
    did not start, nor keep up from an earlier run."""
    keeping = granted(can.keep)
    kept = set(keeping.keeps) if keeping is not None else set()
    return [
        n
        for n in names
        if (link := hub.links.get(n)) is not None
        and link.connection is not None
        and link.token not in kept
    ]


class Recorder(Protocol):
    """A sink that keeps a run's records (the service's store) as its events
    come, and says when the record of a host's result is safe."""

    def __call__(self, event: Event, /) -> None: ...

    def durable(self, stage_id: str, host: str) -> Awaitable[None] | None: ...


def _reverter(
    provider: Reverting, hub: AgentHub, names: list[str], timeout: float
) -> Callable[[], Awaitable[str | None]]:
    """Before a case: every VM restored, the hub told that their agents
    are being replaced (not lost), the guests' fresh agents started and
    connected. None, or why not (the case's stages' error)."""

    async def revert() -> str | None:
        try:
            await provider.revert()
            hub.replace(names)
            await provider.resume()
        except ProvisionError as exc:
            return f"revert failed: {exc}"
        missing = await hub.wait_connected(names, timeout)
        if missing:
            return f"after the revert, agents did not reconnect within {timeout:g}s: " + ", ".join(
                missing
            )
        return None

    return revert


def host_names(hosts: Sequence[Host]) -> dict[str, str]:
    """Every name a host answers to → its name; a full name wins over
    another host's short name or alias, and the first host over the next."""
    names: dict[str, str] = {}
    for host in hosts:
        names.setdefault(host.name, host.name)
    for host in hosts:
        for name in (host.short_name, *host.aliases):
            names.setdefault(name, host.name)
    return names


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


def _notice_connections(
    hub: AgentHub, hosts: list[str], provider: Provider
) -> list[asyncio.Task[None]]:
    """Tell a provider that wants to know (`Diagnosing.connected`) when each
    host's agent connects: watched from before `up`, as an agent may connect
    while the provider still brings up others."""
    if not isinstance(provider, Diagnosing):
        return []

    async def notice(host: str) -> None:
        await hub.link(host).connected.wait()
        provider.connected(host)

    return [asyncio.create_task(notice(h)) for h in hosts]


def _explained(provider: Provider, missing: list[str]) -> str:
    """What the provider knows of why these hosts' agents did not connect
    (`Diagnosing.explain`), a paragraph per host it can say something of."""
    if not isinstance(provider, Diagnosing):
        return ""
    said = [text for host in missing if (text := provider.explain(host))]
    return "".join(f"\n{text}" for text in said)


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
