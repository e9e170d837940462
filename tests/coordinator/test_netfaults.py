"""Network faults from a stage, through real local agents to the run's
provider: `phalanx-net` and `phalanx.net` reach the provider's
`NetworkFaults` with the hosts' full names, the stage hears why a fault
cannot be made, and every fault is healed when its case ends (passed,
failed or timed out) and when the run ends, before anything else starts."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from phalanx.coordinator import runs
from phalanx.coordinator.agents import AgentHub
from phalanx.coordinator.auth import TokenBook
from phalanx.coordinator.fleet import RunFleet
from phalanx.engine.step import Cancellation
from phalanx.model import Case, Cluster, Host, RunResult, Status
from phalanx.providers.base import Capabilities, FaultError
from phalanx.providers.local import LocalProvider
from phalanx.wire.messages import NetDone, NetFault, StageStart
from tests.coordinator.hubhelpers import FakeConnection, order, result, until
from tests.coordinator.runhelpers import case, output, run, suite

HEAL_TAKES = 0.3  # a heal that takes a while: a stage sent before it is done would show


class RecordingFaults:
    """A `NetworkFaults` that records what it was asked, and when a heal ended."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.healed_at: list[datetime] = []

    async def partition(self, groups: Sequence[Sequence[str]]) -> None:
        self.calls.append(("partition", [list(group) for group in groups]))

    async def isolate(self, host: str) -> None:
        if host == "h3.phalanx.test":
            raise FaultError("h3 cannot be isolated today")
        self.calls.append(("isolate", host))

    async def slow(self, host: str, delay: float) -> None:
        self.calls.append(("slow", host, delay))

    async def heal(self) -> None:
        await asyncio.sleep(HEAL_TAKES)
        self.calls.append(("heal",))
        self.healed_at.append(datetime.now(UTC))


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> RecordingFaults:
    """Local hosts whose provider says it can break their network."""
    recording = RecordingFaults()

    class FaultyLocal(LocalProvider):
        def capabilities(self) -> Capabilities:
            return replace(super().capabilities(), faults=recording)

    def make_provider(
        name: str, *, cluster: Cluster, root: Path, run_id: str, **_: object
    ) -> FaultyLocal:
        return FaultyLocal(root)

    monkeypatch.setattr(runs, "make_provider", make_provider)
    return recording


def started(result: RunResult, case_name: str) -> datetime:
    """When the first host started the case's first stage (the agent's clock)."""
    stage = result.cases[[c.name for c in result.cases].index(case_name)].stages[0]
    return min(h.started_at for h in stage.hosts if h.started_at is not None)


def test_faults_reach_the_provider_by_full_name_and_heal_when_each_case_ends(
    tmp_path: Path, faults: RecordingFaults
) -> None:
    only_h0 = '[ "$PHALANX_SHORTNAME" != h0 ] || '
    s = suite(
        # h0 asks, by short name and by full name; then the case fails.
        case("cut", run=only_h0 + "phalanx-net partition h0 h1.phalanx.test && exit 1"),
        # ... and this one times out.
        case("slow", run=only_h0 + "phalanx-net slow h1 250ms && sleep 30", timeout=2),
        case("last"),
        n=2,
        finalize=only_h0 + "phalanx-net isolate h1",
    )
    result, _ = run(s, tmp_path)

    assert [c.status for c in result.cases] == [Status.FAILED, Status.TIMEOUT, Status.PASSED]
    assert faults.calls == [
        ("partition", [["h0.phalanx.test"], ["h1.phalanx.test"]]),
        ("heal",),  # the failed case's end
        ("slow", "h1.phalanx.test", 0.25),
        ("heal",),  # the timed-out case's end
        ("isolate", "h1.phalanx.test"),
        ("heal",),  # the run's end
    ]
    # Each heal was over before any host started the next case.
    assert faults.healed_at[0] <= started(result, "slow")
    assert faults.healed_at[1] <= started(result, "last")


def test_a_cancelled_case_is_healed_before_the_suite_finalize_starts(
    tmp_path: Path, faults: RecordingFaults
) -> None:
    cancellation = Cancellation()

    async def isolate(host: str) -> None:
        faults.calls.append(("isolate", host))
        # The stage goes on sleeping; the run is cancelled under it.
        asyncio.get_running_loop().call_later(0.5, cancellation.cancel, "Ctrl-C")

    faults.isolate = isolate  # type: ignore[method-assign]
    s = suite(
        case("cut", run='[ "$PHALANX_SHORTNAME" != h0 ] || phalanx-net isolate h1\nsleep 60'),
        case("never"),
        n=2,
        finalize="true",
    )
    options = runs.RunOptions(results=tmp_path, connect_timeout=30)
    result, _ = asyncio.run(runs.run_local(s, options, cancellation=cancellation))

    assert result.status is Status.CANCELLED
    assert [c.status for c in result.cases] == [Status.CANCELLED, Status.CANCELLED]
    assert faults.calls == [("isolate", "h1.phalanx.test"), ("heal",)]
    finalize = result.stage("finalize")
    assert finalize is not None
    assert all(
        h.started_at is not None and faults.healed_at[0] <= h.started_at for h in finalize.hosts
    )


def test_a_case_that_breaks_nothing_heals_nothing(tmp_path: Path, faults: RecordingFaults) -> None:
    result, _ = run(suite(case("a"), case("b"), n=2), tmp_path)
    assert result.status is Status.PASSED
    assert faults.calls == []


def test_the_stage_hears_why_a_fault_cannot_be_made(
    tmp_path: Path, faults: RecordingFaults
) -> None:
    script = (
        '[ "$PHALANX_SHORTNAME" != h0 ] && exit 0\n'
        "phalanx-net isolate zz || echo unknown=$?\n"
        "phalanx-net isolate h3 || echo refused=$?\n"
        "phalanx-net heal && echo heal=$?\n"
    )
    result, folder = run(suite(case("why", run=script), n=4), tmp_path)
    text = output(folder, result, "why", "run", "h0.phalanx.test")
    assert "phalanx-net: no host 'zz' in this run (its hosts: h0.phalanx.test," in text
    assert "unknown=1" in text
    assert "phalanx-net: h3 cannot be isolated today" in text
    assert "refused=1" in text
    assert "heal=0" in text
    # the refused isolate may have half-happened: healed by the heal asked for
    assert faults.calls == [("heal",)]


PY_TEST = """
import phalanx.net


class Breaker:
    def __init__(self, config):
        self.final_results = "NoData"

    def run(self):
        phalanx.net.partition(["h0", "h1.phalanx.test"], "h2,h3")
        phalanx.net.slow("h2", 0.125)
        try:
            phalanx.net.isolate("nowhere")
        except phalanx.net.NetFaultError as exc:
            refused = str(exc)
        self.final_results = {"refused": refused}
"""


def python_case(name: str) -> Case:
    return Case(
        name=name,
        kind="python",
        options={"class": "roletests:Breaker", "modules": {"roletests": PY_TEST}},
    )


def test_python_tests_break_the_network_with_phalanx_net(
    tmp_path: Path, faults: RecordingFaults
) -> None:
    result, _ = run(suite(python_case("py"), n=4), tmp_path)
    host = result.cases[0].stages[0].hosts[0]
    assert host.status is Status.PASSED, host.reason
    refused = host.data["final_results"]["roletests"]["refused"]
    assert refused.startswith("phalanx.net isolate: no host 'nowhere' in this run")
    assert faults.calls == [
        (
            "partition",
            [["h0.phalanx.test", "h1.phalanx.test"], ["h2.phalanx.test", "h3.phalanx.test"]],
        ),
        ("slow", "h2.phalanx.test", 0.125),
        ("heal",),
    ]


def test_on_local_hosts_a_fault_is_one_clear_error(tmp_path: Path) -> None:
    script = "phalanx-net partition h0 h1 || echo exit=$?\n"
    py = replace(python_case("py"), stages={})
    result, folder = run(suite(case("local", run=script), py, n=2), tmp_path)
    text = output(folder, result, "local", "run", "h0.phalanx.test")
    said = (
        "network faults need hosts with a network of their own (provider: netns or qemu); "
        "this run's hosts are local"
    )
    assert f"phalanx-net: {said}" in text
    assert "exit=1" in text
    host = result.cases[1].stages[0].hosts[0]
    assert host.status is Status.FAILED
    assert said in (host.reason or "")


def test_a_host_is_named_by_full_name_short_name_or_alias() -> None:
    hosts = [
        Host(name="web1.lab.test", aliases=("www.lab.test",)),
        Host(name="web1.other.test"),  # the same short name: the first host keeps it
        Host(name="www.lab.test.x", aliases=("web1.lab.test",)),  # a full name wins
    ]
    assert runs.host_names(hosts) == {
        "web1.lab.test": "web1.lab.test",
        "web1.other.test": "web1.other.test",
        "www.lab.test.x": "www.lab.test.x",
        "web1": "web1.lab.test",
        "www.lab.test": "web1.lab.test",
        "www": "www.lab.test.x",
    }


# --- the fleet alone, fed messages straight to its links (no processes) ---------------


def fault(rid: str, stage_id: str = "r1:s", host: str = "b-alias") -> NetFault:
    return NetFault(request_id=rid, stage_id=stage_id, action="isolate", host=host)


async def test_a_fault_resent_after_a_reconnect_is_made_once_and_answered_again() -> None:
    hub = AgentHub(TokenBook())
    first, second = FakeConnection(), FakeConnection()
    link = hub.link("a")
    link.attach(first)
    recording = RecordingFaults()
    with RunFleet(hub, "r1", ["a", "b"], faults=recording, names={"b-alias": "b"}) as fleet:
        running = asyncio.create_task(fleet.session("a").run_stage(order("r1:s", "a"), print))
        await until(lambda: first.of(StageStart))
        link.handle(fault("n1"))
        link.handle(fault("n1"))  # resent while it is being made
        await until(lambda: first.of(NetDone))
        link.detach(first)
        link.attach(second)
        link.handle(fault("n1"))  # resent after a reconnect
        await until(lambda: second.of(NetDone))
        link.handle(fault("n2", stage_id="r1:over"))
        await until(lambda: len(second.of(NetDone)) == 2)
        link.handle(result("r1:s"))
        await asyncio.wait_for(running, 5)
    assert recording.calls == [("isolate", "b")]
    assert first.of(NetDone) == [NetDone(request_id="n1")]
    assert second.of(NetDone) == [
        NetDone(request_id="n1"),
        NetDone(request_id="n2", error="the stage that asked for it is over"),
    ]


async def test_without_faults_the_stage_is_told_why() -> None:
    hub = AgentHub(TokenBook())
    connection = FakeConnection()
    link = hub.link("a")
    link.attach(connection)
    with RunFleet(hub, "r1", ["a"], no_faults="these hosts share one network") as fleet:
        running = asyncio.create_task(fleet.session("a").run_stage(order("r1:s", "a"), print))
        await until(lambda: connection.of(StageStart))
        link.handle(fault("n1", host="a"))
        await until(lambda: connection.of(NetDone))
        link.handle(result("r1:s"))
        await asyncio.wait_for(running, 5)
    assert connection.of(NetDone) == [
        NetDone(request_id="n1", error="these hosts share one network")
    ]


async def test_a_heal_that_fails_is_the_next_stages_error_and_is_tried_again() -> None:
    class HealsOnSecondTry(RecordingFaults):
        async def heal(self) -> None:
            self.calls.append(("heal",))
            if self.calls.count(("heal",)) == 1:
                raise FaultError("iptables failed: gone")

    hub = AgentHub(TokenBook())
    connection = FakeConnection()
    link = hub.link("a")
    link.attach(connection)
    faults = HealsOnSecondTry()
    with RunFleet(hub, "r1", ["a", "b"], faults=faults) as fleet:
        session = fleet.session("a")
        running = asyncio.create_task(session.run_stage(order("r1:1", "a"), print))
        await until(lambda: connection.of(StageStart))
        link.handle(fault("n1", stage_id="r1:1", host="b"))
        await until(lambda: connection.of(NetDone))
        link.handle(result("r1:1"))
        await asyncio.wait_for(running, 5)

        fleet.end_scope("r1:1:c1")
        refused = await asyncio.wait_for(session.run_stage(order("r1:2", "a"), print), 5)
        assert refused.outcome.error == (
            "the network faults of the last case could not be healed: iptables failed: gone"
        )
        assert [m.stage_id for m in connection.of(StageStart)] == ["r1:1"]  # never sent

        fleet.end_scope("r1:2:c2")
        running = asyncio.create_task(session.run_stage(order("r1:3", "a"), print))
        await until(lambda: len(connection.of(StageStart)) == 2)
        link.handle(result("r1:3"))
        assert (await asyncio.wait_for(running, 5)).outcome.error is None
    assert faults.calls == [("isolate", "b"), ("heal",), ("heal",)]
