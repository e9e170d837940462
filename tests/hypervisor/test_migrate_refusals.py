"""Live migration's cheap parts: its messages on both wires round trip and
refuse what is not one; a destination refuses a root disk whose content
differs from the source's, and a bridge it does not have, naming them; a
source refuses a VM on this machine's root over 9p; a cluster spread over
two hypervisors does not revert; an unknown hypervisor is named."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from phalanx.coordinator.agents import AgentHub
from phalanx.coordinator.auth import TokenBook
from phalanx.coordinator.hypervisors import Hypervisors, Remote
from phalanx.hypervisor.core import Hypervisor
from phalanx.hypervisor.moving import (
    Arrival,
    Departure,
    content_hash,
    crosses_whole,
    departure_fields,
    departure_of,
)
from phalanx.model import Cluster, Host
from phalanx.providers import qemuvm
from phalanx.providers.base import FaultError, Migrating, ProvisionError
from phalanx.providers.guestnet import port_args
from phalanx.providers.machine import Drive
from phalanx.providers.qemu import QemuProvider
from phalanx.providers.remote import (
    Fault,
    HypervisorProvider,
    MovingHost,
    Opened,
    WireFaults,
)
from phalanx.providers.vmimage import Image, RootDisk
from phalanx.wire import messages
from phalanx.wire.hypervisor import (
    ClusterMigrate,
    DepartureFields,
    ReceivingFields,
    Reply,
    VmDeparture,
    VmIncoming,
    VmSend,
    VmSettle,
    encode,
    parse_daemon_message,
    parse_hub_message,
)
from phalanx.wire.messages import (
    InvalidMessage,
    VmMigrate,
    VmMigrated,
    parse_agent_message,
    parse_coordinator_message,
)
from tests.vms import QEMU_MISSING

HOST = "vm0.refuse.test"
CLUSTER = Cluster(name="c", hosts=(Host(name=HOST, ram_size="256M"),), provider="qemu")


def departure(**changes: Any) -> Departure:
    base = Departure(
        hypervisor="hv1",
        run_id="r1",
        host=HOST,
        args=["qemu-system-x86_64", "-drive", "file=/src/vm-x/root.qcow2,if=none,id=phalanx-root"],
        private="/src/vm-x",
        accel="tcg",
        root_hash="0" * 64,
        drives=[Drive("phalanx-root", "/src/vm-x/root.qcow2", 1 << 30, True)],
        bridge=None,
        tap=None,
        record={"ram_mb": 256},
    )
    return dataclasses.replace(base, **changes)


def test_the_agents_migration_messages_round_trip_and_refuse_what_is_not_one() -> None:
    asked = VmMigrate(request_id="r", stage_id="s", host="vm2", to="hv2", timeout=30)
    assert parse_agent_message(messages.encode(asked)) == asked
    answer = VmMigrated(request_id="r", detail="vm2 migrated to hypervisor hv2 in 1.00s")
    assert parse_coordinator_message(messages.encode(answer)) == answer
    for bad in ({"mode": "rdma"}, {"timeout": 0}, {"timeout": 7200}, {"speed": 1}):
        with pytest.raises(messages.InvalidMessage):
            messages.checked(VmMigrate, {"request_id": "r", "stage_id": "s", **bad})


def test_the_hypervisors_migration_messages_round_trip() -> None:
    fields = messages.checked(DepartureFields, departure_fields(departure()))
    assert departure_of(messages.fields_of(fields)) == departure()
    for message in (
        ClusterMigrate(request_id="1", cluster="k", host=HOST, mode="unix", timeout=60),
        VmDeparture(request_id="2", cluster="k", host=HOST),
        VmIncoming(request_id="3", cluster="k", definition={"name": "c"}, departure=fields),
        VmSend(
            request_id="4",
            cluster="k",
            host=HOST,
            to=ReceivingFields(uri="tcp:127.0.0.1:1", exports={"phalanx-root": "nbd://x"}),
            timeout=60,
            where="hv2",
        ),
        VmSettle(request_id="5", cluster="k", host=HOST, timeout=60, migration=None),
    ):
        assert parse_hub_message(encode(message)) == message
    reply = Reply(request_id="2", data=departure_fields(departure()))
    assert parse_daemon_message(encode(reply)) == reply
    with pytest.raises(InvalidMessage):
        parse_hub_message('{"type": "vm.send", "request_id": "4", "cluster": "k", "host": "h"}')


def test_a_content_hash_is_the_files_and_is_remembered_beside_it(tmp_path: Path) -> None:
    image = tmp_path / "root.ext4"
    image.write_bytes(b"x" * 10000)
    first = content_hash(image)
    assert (tmp_path / "root.ext4.sha256").read_text().split()[-1] == first
    image.write_bytes(b"y" * 10000)  # another mtime: hashed again
    assert content_hash(image) != first


@pytest.mark.skipif(QEMU_MISSING is not None, reason=QEMU_MISSING or "")
async def test_a_destination_refuses_a_bridge_it_lacks_and_a_host_not_in_the_cluster(
    tmp_path: Path, vm_images: tuple[Image, RootDisk]
) -> None:
    _, root_disk = vm_images
    hv = Hypervisor("hv2", tmp_path)
    same = content_hash(root_disk.disk)
    with pytest.raises(ProvisionError) as refused:
        await hv.vm_incoming("k", CLUSTER, departure(root_hash=same, bridge="pxnosuchbr", tap="t"))
    assert "hypervisor hv2 has no bridge pxnosuchbr" in str(refused.value)
    assert "user-mode network" in str(refused.value)
    with pytest.raises(ProvisionError, match=r"no host 'other\.test'"):
        await hv.vm_incoming("k", CLUSTER, departure(host="other.test"))
    assert not hv.moves.arrivals
    assert not list(qemuvm.PRIVATE_PARENT.glob("phalanx-in-r1-*"))


async def test_a_source_refuses_a_vm_on_this_machines_root_and_an_unknown_one(
    tmp_path: Path,
) -> None:
    hv = Hypervisor("hv1", tmp_path)
    provider = QemuProvider(tmp_path / "hosts", "r1", cluster=CLUSTER)
    hv.clusters["k"] = provider
    provider.vms[HOST] = SimpleNamespace(root="host", host=CLUSTER.hosts[0])  # type: ignore[assignment]
    with pytest.raises(ProvisionError, match="does not boot phalanx's root disk"):
        await hv.vm_departure("k", HOST)
    with pytest.raises(ProvisionError, match="runs no VM for nosuch"):
        await hv.vm_departure("k", "nosuch")
    with pytest.raises(ProvisionError, match="no cluster 'other'"):
        await hv.migrate_vm("other", HOST, "tcp", 10)


class _Moving:
    """A hypervisor that records what it is asked (the protocol's shape)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.asked: list[str] = []

    async def open_cluster(self, *args: Any) -> Any: ...
    async def up_cluster(self, *args: Any) -> None: ...
    async def down_cluster(self, key: str, lost: Any) -> None:
        self.asked.append("down")

    async def close_cluster(self, key: str) -> None:
        self.asked.append("close")

    async def revert_cluster(self, key: str) -> None:
        self.asked.append("revert")

    async def resume_cluster(self, key: str) -> None: ...
    async def migrate_vm(self, *args: Any) -> dict[str, Any]:
        return {"downtime_ms": 5}

    async def vm_departure(self, key: str, host: str) -> Departure:
        self.asked.append("departure")
        return departure()

    async def vm_incoming(self, key: str, cluster: Cluster, d: Departure) -> Any:
        self.asked.append("incoming")
        return SimpleNamespace(uri="tcp:x", exports={})

    async def vm_send(self, *args: Any) -> dict[str, Any]:
        self.asked.append("send")
        return {"downtime_ms": 7}

    async def vm_settle(self, key: str, host: str, timeout: float, migration: Any) -> None:
        self.asked.append("settle" if migration is not None else "abandon")


async def test_a_moved_vm_is_ended_by_its_hypervisor_and_the_cluster_no_longer_reverts() -> None:
    hv1, hv2 = _Moving("hv1"), _Moving("hv2")
    provider = HypervisorProvider(
        hv1, CLUSTER, "r1", "k", resolve=lambda to, host: {"hv2": hv2}[to]
    )
    assert isinstance(provider, Migrating) and isinstance(hv1, MovingHost)
    beside = await provider.migrate_vm(HOST)
    assert (beside.hypervisor, beside.moved, beside.downtime_ms) == ("hv1", False, 5)
    with pytest.raises(ProvisionError, match="over TCP, not unix"):
        await provider.migrate_vm(HOST, to="hv2", mode="unix")
    moved = await provider.migrate_vm(HOST, to="hv2")
    assert (moved.hypervisor, moved.moved, moved.downtime_ms) == ("hv2", True, 7)
    assert hv1.asked == ["departure", "send"] and hv2.asked == ["incoming", "settle"]
    with pytest.raises(ProvisionError, match="does not revert after a migration"):
        await provider.revert()
    provider._open_called = True
    await provider.down()
    await provider.close()
    assert hv1.asked[-2:] == ["down", "close"] and hv2.asked[-2:] == ["down", "close"]


async def test_a_failed_send_abandons_the_destination() -> None:
    hv1, hv2 = _Moving("hv1"), _Moving("hv2")

    async def fails(*args: Any) -> dict[str, Any]:
        raise ProvisionError("the migration of vm0 failed: boom")

    hv1.vm_send = fails  # type: ignore[method-assign]
    provider = HypervisorProvider(hv1, CLUSTER, "r1", "k", resolve=lambda to, host: hv2)
    with pytest.raises(ProvisionError, match="boom"):
        await provider.migrate_vm(HOST, to="hv2")
    assert hv2.asked == ["incoming", "abandon"]
    assert provider.where == {}


async def test_an_unknown_or_full_hypervisor_is_refused_by_name() -> None:
    book = TokenBook()
    hypervisors = Hypervisors(AgentHub(book), book)
    with pytest.raises(
        ProvisionError, match=r"no hypervisor 'hv9' is connected \(connected: none\)"
    ):
        hypervisors._destination("hv9", CLUSTER, HOST)
    full = Remote("hv2", 2, 128, False, "", True, connection=object())
    hypervisors.remotes["hv2"] = full
    with pytest.raises(ProvisionError, match=r"hv2 has 128 MB free; the VM of .* needs 256 MB"):
        hypervisors._destination("hv2", CLUSTER, HOST)
    with pytest.raises(ProvisionError, match=r"connected: hv2\)"):
        hypervisors._destination("hv9", CLUSTER, HOST)


class _Faulting(_Moving):
    """A hypervisor that also makes network faults (`cluster.fault`)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.made: list[Fault] = []

    async def open_cluster(self, *args: Any) -> Opened:
        return Opened(None, faults=True)  # its VMs on a bridge

    async def fault_cluster(self, key: str, fault: Fault) -> None:
        self.made.append(fault)


async def test_a_moved_vm_moves_again_from_where_it_is_now_and_back() -> None:
    hv1, hv2, hv3 = _Moving("hv1"), _Moving("hv2"), _Moving("hv3")
    known = {"hv1": hv1, "hv2": hv2, "hv3": hv3}
    provider = HypervisorProvider(hv1, CLUSTER, "r1", "k", resolve=lambda to, host: known[to])
    await provider.migrate_vm(HOST, to="hv2")
    third = await provider.migrate_vm(HOST, to="hv3")  # asked of hv2, where it is now
    assert (third.hypervisor, third.moved) == ("hv3", True)
    assert hv2.asked == ["incoming", "settle", "departure", "send"]
    assert hv3.asked == ["incoming", "settle"]
    beside = await provider.migrate_vm(HOST, to="hv3")  # on hv3 already: beside itself there
    assert (beside.hypervisor, beside.moved) == ("hv3", False)
    back = await provider.migrate_vm(HOST, to="hv1")
    assert (back.hypervisor, back.moved) == ("hv1", True)
    assert hv1.asked == ["departure", "send", "incoming", "settle"]
    assert hv3.asked[-2:] == ["departure", "send"]
    # Back home it is still not the VM its snapshot is of.
    with pytest.raises(ProvisionError, match="does not revert after a migration"):
        await provider.revert()
    provider._open_called = True
    await provider.down()
    await provider.close()
    assert hv1.asked[-2:] == ["down", "close"]
    assert "down" not in hv2.asked + hv3.asked  # they hold none of it now


async def test_slow_and_heal_follow_a_moved_vm_and_cuts_stay_with_the_cluster() -> None:
    hv1, hv2 = _Faulting("hv1"), _Faulting("hv2")
    provider = HypervisorProvider(hv1, CLUSTER, "r1", "k", resolve=lambda to, host: hv2)
    await provider.open()
    assert isinstance(provider.faults, WireFaults)
    await provider.faults.slow(HOST, 0.2)  # on hv1 still
    await provider.migrate_vm(HOST, to="hv2")
    await provider.faults.slow(HOST, 0.3)
    await provider.faults.isolate(HOST)
    await provider.faults.heal()
    assert hv1.made == [
        Fault("slow", host=HOST, delay=0.2),
        Fault("isolate", host=HOST),  # by its MAC on the bridge both share
        Fault("heal"),
    ]
    assert hv2.made == [Fault("slow", host=HOST, delay=0.3), Fault("heal")]


def test_a_root_disk_crosses_whole_unless_it_is_an_overlay_on_the_same_bytes() -> None:
    assert crosses_whole("a" * 64, "a" * 64) == ()
    assert crosses_whole("b" * 64, "a" * 64) == ("phalanx-root",)
    assert crosses_whole("", "a" * 64) == ("phalanx-root",)  # it came whole: it goes whole


class _Guest:
    """A guest's phalanx.net port: answers every request `done`."""

    def __init__(self) -> None:
        self.heard: list[str] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            rid, request = line.decode().strip().split(" ", 1)
            self.heard.append(request)
            writer.write(f"{rid} done\n".encode())
            await writer.drain()


class _Machine:
    """An arrival's Machine, as far as slow, heal and departure look."""

    def __init__(self, private: Path, backing: bool) -> None:
        self.private = private
        self.args = ["qemu", *port_args(private / "net-2.sock")]
        self.accel = "tcg"
        self.returncode: int | None = None
        self.migrations = [{"to": "hv2", "from": "hv1"}]
        self.snapshots: list[Any] = []
        self.ended_by: str | None = None
        self.backing = backing

    async def drives(self) -> list[Drive]:
        return [Drive("phalanx-root", str(self.private / "root.qcow2"), 1 << 30, self.backing)]


def _arrival(hv: Hypervisor, private: Path, *, backing: bool, slowed: bool = False) -> Arrival:
    machine = _Machine(private, backing)
    came = departure(tap="pxmold", bridge="pxbr", record={"ram_mb": 256, "migrations": []})
    arrival = Arrival("k", CLUSTER.hosts[0], machine, came, "pxmnew", 1.0, slowed)  # type: ignore[arg-type]
    hv.moves.arrivals["k"] = {HOST: arrival}
    return arrival


async def test_slow_and_heal_reach_a_guest_that_came_here_even_slowed_before(
    tmp_path: Path,
) -> None:
    hv = Hypervisor("hv2", tmp_path)
    private = Path(tempfile.mkdtemp(prefix="px-", dir="/tmp"))  # a short socket path
    guest = _Guest()
    server = await asyncio.start_unix_server(guest.serve, str(private / "net-2.sock"))
    try:
        arrival = _arrival(hv, private, backing=True, slowed=True)  # slowed on hv1
        await hv.fault_cluster("k", Fault("heal"))  # no provider here: its arrivals only
        assert guest.heard == ["heal"] and not arrival.slowed
        await hv.fault_cluster("k", Fault("heal"))
        assert guest.heard == ["heal"]  # nothing slowed: the guest is not asked
        await hv.fault_cluster("k", Fault("slow", host=HOST, delay=0.25))
        assert guest.heard[-1] == "slow 250.000" and arrival.slowed
        with pytest.raises(FaultError, match="hypervisor hv2: no cluster 'k'"):
            await hv.fault_cluster("k", Fault("isolate", host=HOST))  # cut by the cluster's own
        # A departure from here carries the slow and the history; its root is an
        # overlay on this side's root disk, whose hash the next one compares.
        hv.moves._made = (None, None, "c" * 64)
        gone = await hv.vm_departure("k", HOST)
        assert (gone.hypervisor, gone.root_hash, gone.slowed, gone.tap) == (
            "hv2",
            "c" * 64,
            True,
            "pxmnew",
        )
        assert gone.record["arrived_from"] == "hv1"
        assert gone.record["migrations"] == [{"to": "hv2", "from": "hv1"}]
        assert gone.private == str(private) and gone.bridge == "pxbr"
    finally:
        server.close()
        await server.wait_closed()
        shutil.rmtree(private, ignore_errors=True)


async def test_an_arrival_copied_whole_departs_whole_and_one_still_coming_is_refused(
    tmp_path: Path,
) -> None:
    hv = Hypervisor("hv2", tmp_path)
    arrival = _arrival(hv, tmp_path, backing=False)
    assert (await hv.vm_departure("k", HOST)).root_hash == ""
    arrival.arrived_after = None  # incoming, not settled
    for asked in (
        hv.vm_departure("k", HOST),
        hv.migrate_vm("k", HOST, "tcp", 10),
    ):
        with pytest.raises(ProvisionError, match="still coming in to hypervisor hv2"):
            await asked
    with pytest.raises(FaultError, match=f"cannot slow {HOST}: .*still coming in"):
        await hv.fault_cluster("k", Fault("slow", host=HOST, delay=0.1))
    # Back where it had left, its provider no longer runs it: it may come in.
    hv.moves.arrivals.clear()
    provider = QemuProvider(tmp_path / "hosts", "r1", cluster=CLUSTER)
    provider.faults = SimpleNamespace()
    hv.clusters["k"] = provider
    hv.moves.departed.add(("k", HOST))
    with pytest.raises(FaultError, match=f"cannot slow {HOST}: its VM moved from hypervisor hv2"):
        await hv.fault_cluster("k", Fault("slow", host=HOST, delay=0.1))


def test_a_hypervisor_a_vm_came_to_and_left_holds_no_assignment_of_it(tmp_path: Path) -> None:
    book = TokenBook()
    hypervisors = Hypervisors(AgentHub(book), book)
    for name in ("hv1", "hv2", "hv3"):
        hypervisors.remotes[name] = Remote(name, 2, 4096, False, "", True, connection=object())
    hv1, hv2, hv3 = (hypervisors.remotes[n] for n in ("hv1", "hv2", "hv3"))
    provider = hypervisors.provider(CLUSTER, "r1", tmp_path)
    assert provider.hypervisor is hv3  # the most free RAM, then the last name
    assert provider._on_move is not None
    provider._on_move(HOST, hv3, hv2)
    provider._on_move(HOST, hv2, hv1)
    assert provider.key not in hv2.assigned  # it came and went on
    assert hv1.assigned[provider.key].hosts == (HOST,)
    assert hv3.assigned[provider.key].hosts == ()  # the cluster's own: its end goes there
    provider._on_move(HOST, hv1, hv3)  # back where it started
    assert provider.key not in hv1.assigned
    assert hv3.assigned[provider.key].hosts == (HOST,) and hv3.assigned[provider.key].ram_mb == 256
