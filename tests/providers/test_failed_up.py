"""A provider that failed to come up goes down quietly: after a failed
`open` or `up`, `down` and `close` never raise, and the run ends `error`
with the first reason and every report written."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path

import pytest

from phalanx.hypervisor.core import Hypervisor
from phalanx.model import Cluster, Host, SshAccess
from phalanx.providers.base import AgentSpec, Provider, ProvisionError
from phalanx.providers.local import LocalProvider
from phalanx.providers.netns import label
from phalanx.providers.qemu import QemuProvider
from phalanx.providers.remote import HypervisorProvider, Opened
from phalanx.providers.ssh import SshProvider
from tests.providers.containers import needs_podman
from tests.providers.test_netns import WHY_NOT as NETNS_WHY_NOT

CLUSTER = Cluster(name="c", hosts=(Host(name="h1.fail.test"), Host(name="h2.fail.test")))


def specs(cluster: Cluster) -> list[AgentSpec]:
    # Nothing listens there: an agent that did start would only retry.
    return [AgentSpec(h, "ws://127.0.0.1:9/agent", f"token-{h.name}") for h in cluster.hosts]


async def fails_then_goes_down_quietly(
    provider: Provider, cluster: Cluster, fails: str, *, in_open: bool = False
) -> ProvisionError:
    """Bring `provider` up until it fails (with a ProvisionError matching
    `fails`), then down and close it as a run does: neither may raise."""
    with pytest.raises(ProvisionError, match=fails) as caught:
        await provider.open()
        assert not in_open, "open was expected to fail"
        await provider.up(specs(cluster))
    await provider.down(())
    await provider.close()
    await provider.close()  # twice: "safe to call more than once"
    return caught.value


async def test_local_when_the_agents_python_is_not_there(tmp_path: Path) -> None:
    provider = LocalProvider(tmp_path / "hosts", python=str(tmp_path / "no-python"))
    await fails_then_goes_down_quietly(provider, CLUSTER, "cannot start the agent of h1")
    assert provider.agents == []


async def test_local_when_its_folder_cannot_be_made_says_so(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text("a file where the hosts' folder should be")
    provider = LocalProvider(tmp_path / "hosts")
    error = await fails_then_goes_down_quietly(provider, CLUSTER, "h1.fail.test")
    assert "hosts" in str(error)


@pytest.mark.skipif(NETNS_WHY_NOT is not None, reason=f"netns hosts: {NETNS_WHY_NOT}")
async def test_netns_when_the_agents_cannot_start_removes_its_network(tmp_path: Path) -> None:
    from phalanx.providers.netns import NetnsProvider

    run_id = f"failup{os.getpid()}"
    provider = NetnsProvider(
        CLUSTER, tmp_path / "hosts", run_id, python=str(tmp_path / "no-python"),
        state_dir=tmp_path / "state",
    )  # fmt: skip
    await fails_then_goes_down_quietly(provider, CLUSTER, "cannot start the agent")
    namespaces = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=30
    ).stdout
    assert f"phx-{run_id}" not in namespaces


@needs_podman
async def test_podman_when_an_image_is_not_there_removes_its_network(tmp_path: Path) -> None:
    """The image is judged while the network is made: the run ends before
    any container starts, and nothing of the network is left."""
    from phalanx.providers.podman import PodmanProvider

    run_id = f"failpod{os.getpid()}"
    missing = "localhost/phalanx-no-such-image:none"
    cluster = Cluster(
        name="c", provider="podman", hosts=(Host(name="h1.fail.test", image=missing),)
    )
    provider = PodmanProvider(cluster, tmp_path / "hosts", run_id, state_dir=tmp_path / "state")
    error = await fails_then_goes_down_quietly(provider, cluster, "is not on this machine",
                                               in_open=True)  # fmt: skip
    assert missing in str(error)
    namespaces = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=30
    ).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, timeout=30).stdout
    assert f"phx-{run_id}-" not in namespaces  # its hosts' namespaces
    assert f"phx{label(run_id)}" not in links  # its bridge


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_ssh_when_a_host_cannot_be_reached(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    access = SshAccess(port=closed_port(), address="127.0.0.1", known_hosts=str(known))
    cluster = Cluster(
        name="c",
        hosts=(Host(name="h1.fail.test", ssh=access), Host(name="h2.fail.test", ssh=access)),
    )
    provider = SshProvider(tmp_path / "hosts", "run1", connect_timeout=5)
    await fails_then_goes_down_quietly(provider, cluster, "cannot reach 127.0.0.1")


@pytest.fixture
def no_qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A PATH without QEMU, as on a machine where it is not installed (the
    way an open fails here whether or not QEMU is)."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return str(empty)


async def test_qemu_when_it_cannot_open(tmp_path: Path, no_qemu: str) -> None:
    provider = QemuProvider(tmp_path / "hosts", "run1", cluster=CLUSTER)
    await fails_then_goes_down_quietly(provider, CLUSTER, "not installed", in_open=True)


async def test_a_hypervisors_cluster_that_did_not_open_goes_down_quietly(
    tmp_path: Path, no_qemu: str
) -> None:
    # The case: the embedded hypervisor could not open the cluster,
    # and `down` then raised "hypervisor embedded: no cluster".
    hypervisor = Hypervisor("embedded", tmp_path / "hv")
    provider = HypervisorProvider(hypervisor, CLUSTER, "run1", "run1", folder=tmp_path / "hosts")
    await fails_then_goes_down_quietly(provider, CLUSTER, "not installed", in_open=True)
    assert hypervisor.clusters == {}


class _Dropped:
    """A hypervisor across the wire whose connection dropped after it
    opened the cluster: every later request fails, as `RemoteHypervisor`'s
    do then (a ProvisionError with the reason)."""

    name = "dropped"

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def open_cluster(
        self, key: str, cluster: Cluster, run_id: str, folder: Path | None = None
    ) -> Opened:
        return Opened(None)

    def _refuse(self, what: str) -> None:
        self.asked.append(what)
        raise ProvisionError(f"hypervisor dropped: {what} failed")

    async def up_cluster(self, key: str, specs: list[AgentSpec]) -> None:
        self._refuse("up_cluster")

    async def down_cluster(self, key: str, lost: Collection[str]) -> None:
        self._refuse("down_cluster")

    async def close_cluster(self, key: str) -> None:
        self._refuse("close_cluster")

    async def revert_cluster(self, key: str) -> None:
        self._refuse("revert_cluster")

    async def resume_cluster(self, key: str) -> None:
        self._refuse("resume_cluster")


async def test_a_hypervisor_failing_up_down_and_close_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = _Dropped()
    provider = HypervisorProvider(host, CLUSTER, "run1", "run1")
    await fails_then_goes_down_quietly(provider, CLUSTER, "up_cluster failed")
    assert host.asked == ["up_cluster", "down_cluster", "close_cluster"]
    assert "down_cluster failed" in caplog.text and "close_cluster failed" in caplog.text


def test_a_qemu_run_that_cannot_open_ends_error_with_its_reports(
    tmp_path: Path, no_qemu: str
) -> None:
    repo = tmp_path / "repo"
    (repo / "clusters").mkdir(parents=True)
    (repo / "clusters" / "vms.yaml").write_text("provider: qemu\nhosts: [vm1.fail.test]\n")
    case = repo / "test-suites" / "boots" / "tc" / "a"
    case.mkdir(parents=True)
    (case / "run.sh").write_text("true\n")
    (repo / "test-suites" / "boots" / "suite.yaml").write_text("cluster: vms\ntests: [a]\n")
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "run", str(repo), "-s", "boots", "--plain"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": no_qemu},
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    (folder,) = (tmp_path / "phalanx-results").iterdir()
    results = json.loads((folder / "results.json").read_text())
    assert results["status"] == "error"
    assert "qemu-system-x86_64 is not installed" in results["reason"]
    assert "no cluster" not in json.dumps(results)
    for report in ("junit.xml", "results.tap", "report.html"):
        assert (folder / report).is_file(), report
