"""Network faults of a cluster run by a hypervisor elsewhere: `cluster.fault`
crosses the wire and back, the run's provider asks it of the hypervisor
when (and only when) the hypervisor said its VMs can be faulted, and the
hypervisor's reason for a failure is the stage's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from phalanx.hypervisor.core import Hypervisor
from phalanx.hypervisor.daemon import fault_of
from phalanx.model import Cluster, Host
from phalanx.providers.base import FaultError, ProvisionError
from phalanx.providers.remote import (
    Fault,
    HypervisorProvider,
    Opened,
    WireFaults,
    apply_fault,
)
from phalanx.wire.hypervisor import (
    ClusterFault,
    Reply,
    encode,
    parse_daemon_message,
    parse_hub_message,
)
from phalanx.wire.messages import InvalidMessage

CLUSTER = Cluster(name="c", hosts=(Host(name="a.t"), Host(name="b.t")), provider="qemu")


def test_a_fault_crosses_the_wire_and_back_and_a_bad_one_is_refused() -> None:
    for message in (
        ClusterFault(request_id="r", cluster="k", action="partition", groups=[["a"], ["b"]]),
        ClusterFault(request_id="r", cluster="k", action="isolate", host="a"),
        ClusterFault(request_id="r", cluster="k", action="slow", host="a", delay=0.2),
        ClusterFault(request_id="r", cluster="k", action="heal"),
    ):
        back = parse_hub_message(encode(message))
        assert back == message
        assert isinstance(back, ClusterFault)
        fault = fault_of(back)
        assert (fault.action, fault.host, fault.delay) == (
            message.action,
            message.host,
            message.delay,
        )
        assert [list(g) for g in fault.groups] == message.groups
    for raw in (
        '{"type": "cluster.fault", "request_id": "r", "cluster": "k", "action": "reboot"}',
        '{"type": "cluster.fault", "request_id": "r", "cluster": "k", "action": "slow",'
        ' "host": "a", "delay": -1}',
        '{"type": "cluster.fault", "request_id": "r", "cluster": "k", "action": "heal",'
        ' "command": "rm -rf /"}',
    ):
        with pytest.raises(InvalidMessage):
            parse_hub_message(raw)
    # cluster.open's reply says whether the cluster takes faults; an older
    # daemon's says nothing, which is no.
    assert parse_daemon_message(encode(Reply(request_id="r", faults=True))) == Reply(
        request_id="r", faults=True
    )
    assert parse_daemon_message('{"type": "reply", "request_id": "r"}') == Reply(
        request_id="r", faults=False
    )


class _Remote:
    """A hypervisor across the wire, as the run's provider sees it."""

    name = "hv"

    def __init__(self, faults: bool, error: str | None = None) -> None:
        self.can_fault = faults
        self.error = error
        self.asked: list[Fault] = []

    async def open_cluster(self, key: str, cluster: Cluster, run_id: str, folder: object) -> Opened:
        return Opened("10.0.0.1", faults=self.can_fault)

    async def fault_cluster(self, key: str, fault: Fault) -> None:
        self.asked.append(fault)
        if self.error is not None:
            raise ProvisionError(f"hypervisor hv: {self.error}")


async def test_the_runs_provider_asks_faults_of_a_hypervisor_that_takes_them() -> None:
    remote = _Remote(faults=True)
    provider = HypervisorProvider(remote, CLUSTER, "run1", "k")  # type: ignore[arg-type]
    await provider.open()
    assert isinstance(provider.faults, WireFaults)
    await provider.faults.partition([["a.t"], ["b.t"]])
    await provider.faults.isolate("a.t")
    await provider.faults.slow("b.t", 0.25)
    await provider.faults.heal()
    assert remote.asked == [
        Fault("partition", groups=(("a.t",), ("b.t",))),
        Fault("isolate", host="a.t"),
        Fault("slow", host="b.t", delay=0.25),
        Fault("heal"),
    ]
    refusing = _Remote(faults=True, error="cannot slow b.t: tc failed")
    provider = HypervisorProvider(refusing, CLUSTER, "run2", "k")  # type: ignore[arg-type]
    await provider.open()
    assert provider.faults is not None
    with pytest.raises(FaultError, match=re.escape("hypervisor hv: cannot slow b.t: tc failed")):
        await provider.faults.slow("b.t", 1.0)
    # VMs on QEMU's user-mode network there: no faults, so the run's one
    # clear reason (`runs.no_faults`) answers a phalanx-net.
    user_mode = HypervisorProvider(_Remote(faults=False), CLUSTER, "run3", "k")  # type: ignore[arg-type]
    await user_mode.open()
    assert user_mode.faults is None


class _Recording:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    async def partition(self, groups: object) -> None:
        self.calls.append(("partition", groups))

    async def isolate(self, host: str) -> None:
        self.calls.append(("isolate", host))

    async def slow(self, host: str, delay: float) -> None:
        self.calls.append(("slow", host, delay))

    async def heal(self) -> None:
        self.calls.append(("heal",))


async def test_the_hypervisor_makes_a_fault_with_its_clusters_faults_or_says_why_not(
    tmp_path: Path,
) -> None:
    recording = _Recording()
    await apply_fault(recording, Fault("partition", groups=(("a",), ("b", "c"))))
    await apply_fault(recording, Fault("slow", host="a", delay=0.5))
    assert recording.calls == [("partition", [["a"], ["b", "c"]]), ("slow", "a", 0.5)]
    with pytest.raises(FaultError, match="no network fault 'reboot'"):
        await apply_fault(recording, Fault("reboot"))
    hypervisor = Hypervisor("hv", tmp_path)
    with pytest.raises(FaultError, match="hypervisor hv: no cluster 'k'"):
        await hypervisor.fault_cluster("k", Fault("heal"))
