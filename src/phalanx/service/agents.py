"""The agents `phalanx serve` knows. What the hub sees of them is written to
the store (`SeenRecorder`, the hub's `on_seen`), so an agent that has gone
stays listed with when it was last seen, across restarts too; `known`
joins that record with the hub's live links for the API and the Agents page.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from phalanx.coordinator.agents import Sighting
from phalanx.store.agents import Agents
from phalanx.store.failures import Throttle, describe

if TYPE_CHECKING:
    from phalanx.service.app import Service

log = logging.getLogger("phalanx.service")


def stored_labels(labels: Mapping[str, str]) -> list[str]:
    """The store keeps labels as `KEY=VALUE` strings."""
    return [f"{key}={value}" for key, value in labels.items()]


def parsed_labels(labels: Sequence[str]) -> dict[str, str]:
    return dict(label.partition("=")[::2] for label in labels)


class SeenRecorder:
    """The hub's `on_seen`: each sighting is written to the store by one
    task, in the order they came, so the hub never waits on the database
    and a disconnect is never overwritten by the connect before it."""

    def __init__(self, agents: Agents) -> None:
        self.agents = agents
        self.queue: asyncio.Queue[tuple[Sighting, datetime]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.throttle = Throttle(time.monotonic)

    def __call__(self, sighting: Sighting) -> None:
        self.queue.put_nowait((sighting, datetime.now(UTC)))

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._write())

    async def _write(self) -> None:
        while True:
            sighting, at = await self.queue.get()
            try:
                await self.agents.seen(
                    sighting.name,
                    labels=stored_labels(sighting.labels),
                    version=sighting.version or None,
                    at=at,
                )
            except Exception as exc:
                if (why := describe(exc)) is None:
                    log.exception("recording agent %s failed", sighting.name)
                elif (
                    line := self.throttle.line(why, f"recording agents failed: {why}")
                ) is not None:
                    log.error("%s", line)
            finally:
                self.queue.task_done()

    async def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued (the disconnects of a hub that stopped), then end."""
        if self.task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.queue.join()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.task = None


def current_stages(service: Service) -> dict[str, tuple[str, str | None, str, datetime | None]]:
    """host -> (run id, case, stage, since) of the stage each host runs
    now, as the running runs' boards have it."""
    found: dict[str, tuple[str, str | None, str, datetime | None]] = {}
    for active in list(service.queue.active.values()):
        for host, (case, stage, since) in active.live.board.running().items():
            found[host] = (active.id, case, stage, since)
    return found


@dataclass
class AgentInfo:
    name: str
    connected: bool
    lost: str | None  # why the hub gave it up, while it remembers
    address: str | None  # where its connection comes from (while the hub knows it)
    last_seen: datetime | None
    seconds_ago: float | None  # since its last message, while the hub knows it
    labels: dict[str, str]
    version: str | None
    run: str | None  # the run holding its host
    case: str | None
    stage: str | None
    clusters: list[str] = field(default_factory=list)  # those with a host of its name

    @property
    def doing(self) -> str | None:
        """The stage it runs now, as `case/stage`."""
        if self.stage is None:
            return None
        return "/".join(p for p in (self.case, self.stage) if p)

    @property
    def label_text(self) -> str:
        return ", ".join(f"{k}={v}" if v else k for k, v in self.labels.items())

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "connected": self.connected,
            "lost": self.lost,
            "address": self.address,
            "last_seen": self.last_seen.isoformat() if self.last_seen is not None else None,
            "labels": self.labels,
            "version": self.version,
            "run": self.run,
            "case": self.case,
            "stage": self.stage,
            "clusters": self.clusters,
        }


async def known(service: Service) -> list[AgentInfo]:
    """Every agent the hub holds a link for or the store remembers."""
    hub = service.hub
    stored = {a.name: a for a in await service.store.agents.all()}
    stages = current_stages(service)
    serving: dict[str, list[str]] = {}
    for _, cluster in service.clusters():
        for host in cluster.hosts:
            serving.setdefault(host.name, []).append(cluster.name)
    now = asyncio.get_running_loop().time()
    wall = datetime.now(UTC)
    found = []
    for name in sorted(set(hub.links) | set(stored)):
        link = hub.links.get(name)
        record = stored.get(name)
        holder = hub.holder(name)
        current = stages.get(name)
        ago = now - link.last_seen if link is not None and link.last_seen else None
        last_seen = record.last_seen if record is not None else None
        if ago is not None:
            last_seen = wall - timedelta(seconds=ago)  # fresher than the store's
        labels = parsed_labels(record.labels) if record is not None else {}
        version = record.version if record is not None else None
        if link is not None and link.last_seen:  # it has said hello: its own word
            labels, version = dict(link.labels), link.version or version
        found.append(
            AgentInfo(
                name=name,
                connected=link is not None and link.connected.is_set(),
                lost=link.lost if link is not None else None,
                address=link.address if link is not None else None,
                last_seen=last_seen,
                seconds_ago=ago,
                labels=labels,
                version=version,
                run=current[0] if current else (holder.run_id if holder is not None else None),
                case=current[1] if current else None,
                stage=current[2] if current else None,
                clusters=serving.get(name, []),
            )
        )
    return found
