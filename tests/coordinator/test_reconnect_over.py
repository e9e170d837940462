"""What a reconnecting agent says it still runs: the coordinator ends the
stages and scopes of runs that are over, and leaves the live run's alone."""

from __future__ import annotations

from collections.abc import Awaitable

from phalanx.coordinator.agents import AgentHub
from phalanx.coordinator.auth import TokenBook
from phalanx.wire.messages import (
    PROTOCOL_VERSION,
    AgentMessage,
    Hello,
    ScopeEnd,
    StageCancel,
    encode,
    parse_agent_message,
)
from tests.coordinator.hubhelpers import FakeConnection

HOST = "h1.t.test"


class _Run:
    """The run holding the host, as the hub sees one."""

    def __init__(self, run_id: str, sent: set[str]) -> None:
        self.run_id = run_id
        self.attached = 0
        self.sent = frozenset(sent)  # the stage ids and scopes it sent the host

    def on_message(self, host: str, message: AgentMessage) -> Awaitable[None] | None:
        return None

    def on_attach(self, host: str) -> None:
        self.attached += 1

    def on_lost(self, host: str, reason: str) -> None:
        pass

    def known(self, host: str) -> frozenset[str]:
        return self.sent


def _hello(running: list[str], scopes: list[str]) -> Hello:
    return Hello(version=PROTOCOL_VERSION, host=HOST, running=running, scopes=scopes)


async def test_the_live_runs_stages_go_on_and_the_others_are_ended() -> None:
    hub = AgentHub(TokenBook())
    hub.claim(_Run("live", {"live:1:a:run", "live:1:a", "live:0:suite"}), [HOST])
    link = hub.link(HOST)
    connection = FakeConnection()
    link.attach(connection)
    hub.welcome(
        link,
        _hello(
            running=["live:1:a:run", "old:1:a:run"],
            scopes=["live:1:a", "old:1:a", "live:0:suite", "old:0:suite", "older:2:b"],
        ),
    )
    assert [m.stage_id for m in connection.of(StageCancel)] == ["old:1:a:run"]
    assert sorted(m.scope for m in connection.of(ScopeEnd)) == [
        "old:0:suite",
        "old:1:a",
        "older:2:b",
    ]


async def test_with_no_run_holding_the_host_everything_it_runs_is_over() -> None:
    hub = AgentHub(TokenBook())
    link = hub.link(HOST)
    connection = FakeConnection()
    link.attach(connection)
    hub.welcome(link, _hello(running=["r:1:a:run"], scopes=["r:1:a"]))
    assert [m.stage_id for m in connection.of(StageCancel)] == ["r:1:a:run"]
    assert [m.scope for m in connection.of(ScopeEnd)] == ["r:1:a"]


def test_an_agent_holding_nothing_sends_the_hello_older_coordinators_take() -> None:
    sent = encode(Hello(version=PROTOCOL_VERSION, host=HOST))
    assert "running" not in sent and "scopes" not in sent
    parsed = parse_agent_message(encode(_hello(["r:1:a:run"], ["r:1:a"])))
    assert isinstance(parsed, Hello) and parsed.running == ["r:1:a:run"]
