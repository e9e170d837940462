"""One run from start to end (DESIGN §2): provision, wait for the agents,
walk the lockstep, release the hosts, write the reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from phalanx import layout
from phalanx.coordinator.agents import AgentHub
from phalanx.coordinator.app import AGENT_PATH, agent_app
from phalanx.coordinator.auth import TokenBook
from phalanx.coordinator.server import serving
from phalanx.engine.lockstep import Lockstep
from phalanx.events import Fanout, Sink
from phalanx.model import RunResult, Status, Suite
from phalanx.providers.base import AgentSpec, ProvisionError
from phalanx.providers.local import LocalProvider
from phalanx.report.writers import ReportPaths, write_reports
from phalanx.store.files import RunFolder
from phalanx.tags import RunContext

DEFAULT_RESULTS = Path("phalanx-results")


@dataclass
class RunOptions:
    results: Path = DEFAULT_RESULTS
    heartbeat_timeout: float = 10.0
    connect_timeout: float = 60.0
    reports: ReportPaths = field(default_factory=ReportPaths)
    run_id: str | None = None


async def run_local(
    suite: Suite, options: RunOptions, sinks: Sequence[Sink] = ()
) -> tuple[RunResult, Path]:
    """Run `suite` on local agent processes under an embedded coordinator.
    Returns the result and the run folder."""
    run_id = options.run_id or layout.new_run_id()
    folder = RunFolder(options.results / run_id)
    emit = Fanout([folder, *sinks])
    tokens = TokenBook()
    hub = AgentHub(tokens, heartbeat_timeout=options.heartbeat_timeout, journal=folder.journal)
    provider = LocalProvider(folder.path / "hosts")
    hosts = list(suite.hosts)
    try:
        async with serving(agent_app(hub)) as port:
            hub.start()
            engine = Lockstep(
                suite,
                hub,
                RunContext(run_id, "127.0.0.1", port, "http"),
                emit,
                addresses=provider.addresses(hosts),
                diskmounts={h.name: provider.diskmounts(h) for h in hosts},
            )
            try:
                specs = [
                    AgentSpec(h, f"ws://127.0.0.1:{port}{AGENT_PATH}", tokens.issue(h.name))
                    for h in hosts
                ]
                await provider.up(specs)
                missing = await hub.wait_connected([h.name for h in hosts], options.connect_timeout)
                if missing:
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
                await hub.stop()
                await provider.down()
    finally:
        folder.close()
    write_reports(result, folder.path, options.reports)
    return result, folder.path
