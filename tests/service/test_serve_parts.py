"""The pieces `phalanx serve` wires together, each on its own: a cluster's
`provider`, how a stage id reads back into case and stage, and the hub
admitting agents by an async verifier and holding the ack until a result is
written."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from phalanx.coordinator.agents import AgentHub
from phalanx.coordinator.fleet import RunFleet
from phalanx.load.cluster import load_cluster
from phalanx.load.errors import DefinitionErrors
from phalanx.tasks import Outcome
from phalanx.wire.messages import Ack, StageResult
from tests.coordinator.hubhelpers import FakeConnection, until


def test_a_cluster_says_who_serves_its_hosts(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("name: c\nhosts: [a.t]\n")
    assert load_cluster(file).provider is None
    file.write_text("name: c\nprovider: local\nhosts: [a.t]\n")
    assert load_cluster(file).provider == "local"
    file.write_text("name: c\nprovider: cloud\nhosts: [a.t]\n")
    with pytest.raises(DefinitionErrors) as raised:
        load_cluster(file)
    said = str(raised.value)
    assert "c.yaml:2: provider: unknown provider 'cloud' (installed: " in said
    assert all(name in said for name in ("local", "netns", "ssh", "agents")), said


class StoreLike:
    """A verifier that answers later, as the service's store does."""

    async def host_for(self, token: str | None) -> str | None:
        await asyncio.sleep(0)
        return "a" if token == "good" else None


async def test_the_ack_waits_for_the_write() -> None:
    hub = AgentHub(StoreLike())
    written = asyncio.Event()
    order: list[str] = []

    async def write() -> None:
        await written.wait()
        order.append("written")

    def durable(stage_id: str, host: str) -> asyncio.Task[None]:
        return asyncio.ensure_future(write())

    connection = FakeConnection()
    link = hub.link("a")
    link.attach(connection)
    with RunFleet(hub, "r1", ["a"], durable=durable) as fleet:
        fleet.hosts["a"].ordered.add("r1:s")
        moment = datetime.now(UTC)
        pending = link.handle(
            StageResult(stage_id="r1:s", outcome=Outcome(exit_code=0), started_at=moment,
                        ended_at=moment)
        )  # fmt: skip
        assert pending is not None
        await asyncio.sleep(0.05)
        # Not written: not acked, nor waiting to be (with a stage.start or alone).
        assert connection.acks() == [] and link.acks == []
        written.set()
        await pending
        assert order == ["written"]
        await until(lambda: connection.acks() == ["r1:s"])
        assert [m.ref for m in connection.of(Ack)] == ["r1:s"]
