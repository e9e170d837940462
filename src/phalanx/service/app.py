"""What `phalanx serve` holds while it runs, in one object the API reads:
the store, the definition sources, the agent hub, the run queue and the
schedules.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from phalanx.coordinator.agents import AgentHub
from phalanx.coordinator.auth import TokenBook
from phalanx.coordinator.scripts import ScriptKeys
from phalanx.model import Cluster, Suite
from phalanx.service.auth import Auth
from phalanx.service.caches import ServiceCaches
from phalanx.service.config import ServiceConfig
from phalanx.service.definitions import Catalog, DefinitionSource, SuiteEntry
from phalanx.service.queue import RunQueue
from phalanx.store.errors import NotFound
from phalanx.store.runs import RunSummary
from phalanx.store.store import Store

if TYPE_CHECKING:
    from phalanx.coordinator.hypervisors import Hypervisors
    from phalanx.service.metrics import ServiceMetrics

log = logging.getLogger("phalanx.service")


class UnknownSuite(LookupError):
    pass


class Unrunnable(Exception):
    """The suite is known but has never loaded: there is nothing to run."""


class ServiceTokens:
    """The tokens the agent endpoint admits: the ones this process gave to
    the agents it started (`provider: local`), and the store's agent tokens."""

    def __init__(self, book: TokenBook, auth: Auth) -> None:
        self.book = book
        self.auth = auth

    async def host_for(self, token: str | None) -> str | None:
        return self.book.host_for(token) or await self.auth.verify_agent_token(token)


@dataclass
class Service:
    config: ServiceConfig
    store: Store
    auth: Auth
    hub: AgentHub
    queue: RunQueue
    sources: Sequence[DefinitionSource] = ()
    next_runs: dict[str, datetime] = field(default_factory=dict)
    metrics: ServiceMetrics | None = None  # `/metrics` serves it when set
    hypervisors: Hypervisors | None = None  # `/hypervisor` serves it when set
    # Each run's capability for its suite files (coordinator/scripts.py).
    script_keys: ScriptKeys = field(default_factory=ScriptKeys)
    caches: ServiceCaches = field(default_factory=ServiceCaches)

    def catalogs(self) -> list[Catalog]:
        return [s.catalog for s in self.sources]

    def entry(self, name: str) -> tuple[Catalog, SuiteEntry]:
        """The suite `name` and its repo's catalog (the first repo that has it)."""
        for catalog in self.catalogs():
            if (entry := catalog.suites.get(name)) is not None:
                return catalog, entry
        raise UnknownSuite(f"no suite {name!r}")

    def entries(self) -> list[tuple[Catalog, SuiteEntry]]:
        seen: set[str] = set()
        found = []
        for catalog in self.catalogs():
            for name, entry in sorted(catalog.suites.items()):
                if name not in seen:
                    seen.add(name)
                    found.append((catalog, entry))
        return found

    def clusters(self) -> list[tuple[Catalog, Cluster]]:
        return [(c, cl) for c in self.catalogs() for _, cl in sorted(c.clusters.items())]

    def schedules(self) -> dict[str, dict[str, str] | None]:
        merged: dict[str, dict[str, str] | None] = {}
        for catalog in reversed(self.catalogs()):  # the first repo wins a name
            merged.update(catalog.schedules())
        return merged

    async def submit(self, name: str, trigger: str) -> RunSummary:
        catalog, entry = self.entry(name)
        suite: Suite | None = entry.suite
        if suite is None:
            raise Unrunnable(f"suite {name!r} has never loaded: fix its definition first")
        return await self.queue.submit(suite, trigger, catalog.root)

    async def rerun(self, run_id: str, *, failed_only: bool = False) -> RunSummary:
        """Run a past run's suite again, with its current definition; with
        `failed_only`, only the cases that did not pass or skip that time."""
        summary = await self.store.runs.get(run_id)
        if summary is None:
            raise NotFound(f"no run {run_id!r}")
        catalog, entry = self.entry(summary.suite)
        suite = entry.suite
        if suite is None:
            raise Unrunnable(f"suite {summary.suite!r} has never loaded: fix its definition first")
        if failed_only:
            result = await self.store.runs.load_result(run_id)
            failed = {c.name for c in result.cases if not c.status.ok} if result else set()
            cases = tuple(c for c in suite.cases if c.name in failed)
            if not cases:
                raise Unrunnable(f"run {run_id!r} has no failed case that the suite still has")
            suite = replace(suite, cases=cases)
        return await self.queue.submit(suite, f"rerun:{run_id}", catalog.root)

    async def fire(self, name: str) -> None:
        """The scheduler's call."""
        summary = await self.submit(name, "schedule")
        await self.store.audit.record("schedule", "run.start", summary.id, detail=name)
