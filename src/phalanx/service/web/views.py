"""What each page shows, gathered from the service (the store, the queue,
the hub and the definition catalogs: the same sources the REST API reads)."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from phalanx import layout
from phalanx.service.agents import AgentInfo, current_stages, known
from phalanx.service.app import Service
from phalanx.service.definitions import Catalog, SuiteEntry
from phalanx.service.documents import run_document
from phalanx.service.web.charts import Point
from phalanx.store.runs import ACTIVE, RunSummary

STRIP = 20
TAIL = 4 * 1024
OK = ("passed", "skipped")


def _status_class(status: str | None) -> str:
    return f"st-{status}" if status else "st-none"


@dataclass
class SuiteView:
    name: str
    repo: str
    cluster: str | None
    description: str
    state: str  # idle, queued, waiting (for agents), running, definition error
    errors: list[str]
    last_good: bool
    next_run: datetime | None
    schedule: str | None
    recent: list[RunSummary]  # newest first
    active: list[str] = field(default_factory=list)  # queued or running run ids

    @property
    def last_status(self) -> str | None:
        ended = [r for r in self.recent if r.status not in ACTIVE]
        return ended[0].status if ended else None

    @property
    def strip(self) -> list[RunSummary]:
        return list(reversed(self.recent))  # oldest left, as time goes


def _suite_view(
    service: Service, catalog: Catalog, entry: SuiteEntry, recent: list[RunSummary]
) -> SuiteView:
    active = [a for a in service.queue.active.values() if a.suite.name == entry.name]
    if entry.errors or entry.suite is None:
        state = "definition error"
    elif started := [a for a in active if a.started]:
        # Started, but its hosts' agents not all connected yet: nothing runs.
        waiting = all(service.queue.waiting(a.id) for a in started)
        state = "waiting" if waiting else "running"
    elif active:
        state = "queued"
    else:
        state = "idle"
    suite = entry.suite
    return SuiteView(
        name=entry.name,
        repo=catalog.source,
        cluster=suite.cluster.name if suite is not None else None,
        description=suite.description if suite is not None else "",
        state=state,
        errors=[str(e) for e in entry.errors],
        last_good=entry.last_good,
        next_run=service.next_runs.get(entry.name),
        schedule=_cron(suite.schedule) if suite is not None else None,
        recent=recent,
        active=[a.id for a in active],
    )


def _cron(schedule: dict[str, str] | None) -> str | None:
    if not schedule:
        return None
    return " ".join(f"{key}={value}" for key, value in schedule.items())


async def suites(service: Service) -> list[SuiteView]:
    entries = service.entries()
    strips = await service.store.runs.recent_by_suite([e.name for _, e in entries], STRIP)
    return [_suite_view(service, catalog, entry, strips[entry.name]) for catalog, entry in entries]


async def suite(service: Service, name: str) -> SuiteView:
    catalog, entry = service.entry(name)
    recent = await service.store.runs.recent(suite=name, limit=STRIP)
    return _suite_view(service, catalog, entry, recent)


# --- agents and clusters ------------------------------------------------------------------


async def agents(service: Service) -> list[AgentInfo]:
    return await known(service)


@dataclass
class HypervisorView:
    """A hypervisor as the pages show it: the hub's view, with its runs' statuses."""

    name: str
    state: str  # connected, lost, disconnected
    lost: str | None
    last_seen: datetime
    cpus: int
    ram_mb: int
    free_mb: int
    kvm: bool
    clusters: list[Any]  # coordinator.hypervisors.ClusterView
    runs: list[RunSummary]  # its recent runs, newest first

    @property
    def errored(self) -> int:
        return sum(1 for r in self.runs if r.status == "error")

    @property
    def colour(self) -> str:
        """Red when lost or its last run errored, green when connected."""
        if self.lost or (self.runs and self.runs[0].status == "error"):
            return "st-failed"
        return "st-passed" if self.state == "connected" else "st-none"


async def hypervisors(
    service: Service, recent: list[RunSummary] | None = None
) -> list[HypervisorView]:
    if service.hypervisors is None:
        return []
    if recent is None:
        recent = await service.store.runs.recent(limit=200)
    by_id = {r.id: r for r in recent}
    views = []
    for h in service.hypervisors.views():
        state = "connected" if h.connected else ("lost" if h.lost else "disconnected")
        runs = [by_id[i] for i in reversed(h.runs) if i in by_id]
        views.append(
            HypervisorView(
                name=h.name,
                state=state,
                lost=h.lost,
                last_seen=datetime.fromtimestamp(h.last_seen).astimezone(),
                cpus=h.cpus,
                ram_mb=h.ram_mb,
                free_mb=h.free_mb,
                kvm=h.kvm,
                clusters=h.clusters,
                runs=runs,
            )
        )
    return views


@dataclass
class ClusterView:
    name: str
    repo: str
    provider: str
    hosts: list[tuple[str, str]]  # (host, state: connected, lost, not connected, busy)
    runs: list[RunSummary]  # its recent runs, newest first
    # A VM cluster: the hypervisor it is on now, and its VMs' states there.
    hypervisor: str | None = None
    vms: dict[str, str] = field(default_factory=dict)
    kept: bool = False

    @property
    def failures(self) -> int:
        return sum(1 for r in self.runs if r.status not in (*ACTIVE, *OK))

    @property
    def last_status(self) -> str | None:
        ended = [r for r in self.runs if r.status not in ACTIVE]
        return ended[0].status if ended else None


async def clusters(service: Service, recent: list[RunSummary] | None = None) -> list[ClusterView]:
    if recent is None:
        recent = await service.store.runs.recent(limit=200)
    hub = service.hub
    placed = {
        c.cluster: (h.name, c)
        for h in (service.hypervisors.views() if service.hypervisors is not None else [])
        for c in h.clusters
    }
    views = []
    for catalog, cluster in service.clusters():
        hosts = []
        for h in cluster.hosts:
            link = hub.links.get(h.name)
            if hub.holder(h.name) is not None:
                state = "busy"
            elif link is not None and link.connected.is_set():
                state = "connected"
            elif link is not None and link.lost:
                state = "lost"
            else:
                state = "not connected"
            hosts.append((h.name, state))
        views.append(
            ClusterView(
                name=cluster.name,
                repo=catalog.source,
                provider=cluster.provider or "agents",
                hosts=hosts,
                runs=[r for r in recent if r.cluster == cluster.name][:STRIP],
            )
        )
        if (on := placed.get(cluster.name)) is not None:
            views[-1].hypervisor, views[-1].vms, views[-1].kept = on[0], on[1].vms, on[1].kept
    return views


# --- runs ---------------------------------------------------------------------------------


@dataclass
class ActiveView:
    summary: RunSummary
    stage: str  # what it does now, in words
    waiting: bool = False  # started, but its hosts' agents are not all connected yet


def dashboard_key(service: Service) -> Hashable:
    """What the dashboard and the suites list show of the service's memory
    (web/shared.py): the active runs and how far each has come, the agents'
    connections, the definition catalogs and the schedules."""
    return (
        tuple((a.id, a.started, a.waiting, a.live.version) for a in service.queue.active.values()),
        tuple(
            sorted(
                (n, link.connected.is_set(), bool(link.lost))
                for n, link in service.hub.links.items()
            )
        ),
        tuple(id(c) for c in service.catalogs()),
        tuple(sorted(service.next_runs.items())),
    )


async def dashboard(service: Service) -> dict[str, Any]:
    # Its three store queries at once: under load each waits its turn on
    # the event loop several times, and one after the other they added up.
    recent, suite_views, agent_views = await asyncio.gather(
        service.store.runs.recent(limit=200), suites(service), agents(service)
    )
    stages = current_stages(service)
    in_progress = []
    for r in recent:
        if r.status not in ACTIVE:
            continue
        now = sorted(
            {"/".join(p for p in (case, stage) if p) for run, case, stage, _ in stages.values()
             if run == r.id}
        )  # fmt: skip
        waiting = service.queue.waiting(r.id)
        words = ", ".join(now) or waiting or r.status
        in_progress.append(ActiveView(r, words, waiting=bool(waiting) and not now))
    next_runs = sorted(service.next_runs.items(), key=lambda item: item[1])[:10]
    return {
        "suites": suite_views,
        "clusters": await clusters(service, recent),
        "agents": agent_views,
        "hypervisors": await hypervisors(service, recent),
        "in_progress": in_progress,
        "next_runs": next_runs,
        "finished": [r for r in recent if r.status not in ACTIVE][:20],
    }


@dataclass
class RunView:
    summary: RunSummary
    report: dict[str, Any]  # results.json's shape, with output tails and the stages running now
    files: list[str]  # report files present in the run folder
    waiting: str = ""  # what a run that has started waits for (agents to connect)

    @property
    def active(self) -> bool:
        return self.summary.status in ACTIVE

    @property
    def failed_cases(self) -> int:
        return sum(1 for c in self.report.get("cases", []) if c.get("status") not in OK)


def files_link(run_id: str, relative: str) -> str:
    return f"/runs/{quote(run_id)}/files/{quote(relative)}"


def output_link(run_id: str, case: str | None, stage: str, host: str) -> str:
    return files_link(run_id, layout.output_path(case, stage, host))


REPORT_FILES = (layout.RESULTS_JSON, layout.JUNIT_XML, layout.RESULTS_TAP, layout.REPORT_HTML)


def ended_kept(service: Service, run_id: str) -> bool:
    """Whether the ended run's document is kept (service/caches.py): what
    is made of it may be served as it was."""
    return service.caches.documents.get((run_id, TAIL)) is not None


async def run(service: Service, run_id: str) -> RunView | None:
    found = await run_document(service, run_id, tail=TAIL)
    if found is None:
        return None
    summary, report = found
    files: list[str] = []
    if summary.folder is not None:
        folder: Path = summary.folder
        files = await asyncio.to_thread(lambda: [n for n in REPORT_FILES if (folder / n).is_file()])
    return RunView(summary, report, files, service.queue.waiting(run_id))


# --- suite history ------------------------------------------------------------------------


@dataclass
class HistoryView:
    name: str
    runs: list[RunSummary]  # oldest first
    points: list[Point]
    cases: list[str]
    grid: dict[tuple[str, str], str]  # (case, run id) -> status
    flaky: set[str]


async def history(service: Service, name: str, limit: int = 50) -> HistoryView:
    runs = [
        r
        for r in await service.store.runs.recent(suite=name, limit=limit)
        if r.status not in ACTIVE
    ]
    runs.reverse()
    # Ended runs never change: the same runs, the same history.
    key = (name, tuple(r.id for r in runs))
    if isinstance(kept := service.caches.histories.get(key), HistoryView):
        return kept
    points = []
    grid: dict[tuple[str, str], str] = {}
    cases: list[str] = []
    statuses = await service.store.runs.case_statuses([r.id for r in runs])
    for r in runs:
        seconds = (
            (r.ended_at - r.started_at).total_seconds()
            if r.started_at is not None and r.ended_at is not None
            else None
        )
        points.append(Point(r.id, r.status, seconds))
        for case, status in statuses[r.id]:
            if case not in cases:
                cases.append(case)
            grid[(case, r.id)] = status.value
    flaky = set()
    for case in cases:
        seen = {grid[(case, r.id)] in OK for r in runs if (case, r.id) in grid}
        if len(seen) == 2:
            flaky.add(case)
    found = HistoryView(name, runs, points, cases, grid, flaky)
    service.caches.histories.put(key, found)
    return found
