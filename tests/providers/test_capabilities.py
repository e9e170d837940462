"""What each provider says it can do besides bringing hosts up and down
(faults, migration, revert, keep): the object that does it, or the reason
a stage or a run that asks is given."""

from __future__ import annotations

from pathlib import Path

from phalanx.model import Cluster, Host
from phalanx.providers.base import (
    NO_VM_FAULTS,
    Capabilities,
    Keeping,
    Migrating,
    Refused,
    Reverting,
    capabilities_of,
    granted,
    refusal,
)
from phalanx.providers.local import LocalProvider
from phalanx.providers.netns import NetnsProvider
from phalanx.providers.qemu import QemuProvider
from phalanx.providers.remote import HypervisorProvider, Opened
from phalanx.providers.ssh import SshProvider

CLUSTER = Cluster(name="c", hosts=(Host(name="a.t"), Host(name="b.t")))


def reasons(can: Capabilities) -> dict[str, str | None]:
    return {
        "faults": refusal(can.faults),
        "migration": refusal(can.migration),
        "revert": refusal(can.revert),
        "keep": refusal(can.keep),
    }


def test_processes_on_this_machine_or_over_ssh_can_do_none_of_it(tmp_path: Path) -> None:
    for can, hosts in [
        (LocalProvider(tmp_path).capabilities(), "local hosts"),
        (SshProvider(tmp_path, "r1").capabilities(), "ssh hosts"),
    ]:
        assert reasons(can) == {
            "faults": "network faults need hosts with a network of their own "
            f"(provider: netns or qemu); this run's hosts are {hosts}",
            "migration": f"live migration needs VMs (provider: qemu); this run's hosts are {hosts}",
            "revert": "revert: case needs VMs that can be snapshotted (provider: qemu); "
            f"this run's hosts are {hosts}",
            "keep": f"only a cluster of VMs (provider: qemu) is kept up; this run's hosts are {hosts}",
        }


def test_netns_hosts_take_faults_once_their_network_is_made(tmp_path: Path) -> None:
    provider = NetnsProvider(CLUSTER, tmp_path, "r1")
    assert refusal(provider.capabilities().faults) == (
        "the hosts' network is made when the provider opens"
    )
    assert granted(provider.capabilities().migration) is None


def test_vms_run_without_a_hypervisor_revert_but_neither_move_nor_stay(tmp_path: Path) -> None:
    provider = QemuProvider(tmp_path, "r1", cluster=CLUSTER)
    can = provider.capabilities()
    assert can.revert is provider and isinstance(can.revert, Reverting)
    assert refusal(can.faults) == NO_VM_FAULTS  # on QEMU's user-mode network
    assert "live migration needs a hypervisor" in (refusal(can.migration) or "")
    assert "only a hypervisor keeps a cluster up" in (refusal(can.keep) or "")


class _UserModeHypervisor:
    """A hypervisor whose VMs share QEMU's user-mode network."""

    name = "hv"

    async def open_cluster(self, key: str, cluster: Cluster, run_id: str, folder: object) -> Opened:
        return Opened("10.0.0.1", faults=False)


async def test_vms_on_a_hypervisor_move_revert_and_stay_up() -> None:
    provider = HypervisorProvider(_UserModeHypervisor(), CLUSTER, "r1", "k", keep=True)  # type: ignore[arg-type]
    await provider.open()
    can = provider.capabilities()
    assert can.migration is provider and isinstance(provider, Migrating)
    assert can.revert is provider and can.keep is provider and isinstance(provider, Keeping)
    assert refusal(can.faults) == NO_VM_FAULTS


class _Silent:
    """A plug-in's provider written before capabilities were asked for."""

    listen_address: str | None = None


def test_a_provider_that_says_nothing_can_do_nothing_and_says_so() -> None:
    can = capabilities_of(_Silent(), "cloud hosts")  # type: ignore[arg-type]
    assert can == Capabilities.none("cloud hosts")
    assert isinstance(can.faults, Refused)
    assert refusal(can.faults) == (
        "network faults need hosts with a network of their own (provider: netns or qemu); "
        "this run's hosts are cloud hosts"
    )
