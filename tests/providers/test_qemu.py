"""The qemu provider on real VMs: QEMU booting the tiny image, agents in
the guests connecting to a real coordinator. Under TCG (no working KVM) a
boot to a connected agent takes 15-40 s on a loaded 2-core machine, so the
tests share boots where they can."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from phalanx.coordinator.runs import RunOptions, open_coordinator, run_local
from phalanx.events import Event, HostOutput
from phalanx.model import Case, Cluster, Disk, Host, RunResult, Script, Status, Suite
from phalanx.providers import bridge, bridgefaults, netns
from phalanx.providers import qemu as qemu_module
from phalanx.providers.base import AgentSpec, ProvisionError
from phalanx.providers.bridgefaults import BridgeFaults
from phalanx.providers.qemu import QemuProvider
from phalanx.providers.qemuargs import DEFAULT_RAM_MB, mac_address, ram_megabytes
from phalanx.providers.qemuguest import guest_url
from phalanx.providers.qemuvm import PRIVATE_PARENT
from phalanx.providers.vmimage import Image, build_image
from tests.coordinator.runhelpers import output
from tests.processes import alive
from tests.vms import BOOT, needs_qemu


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An image cache of this module's own (the image and the KVM probe)."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(root))
        yield root


def _qemu_pid(folder: Path, host: str) -> int:
    return int((folder / "hosts" / host / "qemu.pid").read_text())


def _run_id(what: str) -> str:
    """Unique: other test runs on this machine make bridges at the same time."""
    return f"{what}-{uuid.uuid4().hex[:8]}"


ROOT = not netns.lacking_capabilities("CAP_NET_ADMIN") and shutil.which("ip") is not None


def test_ram_size_is_xrdtest_kib_or_a_size_with_a_unit() -> None:
    assert ram_megabytes("524288") == 512
    assert ram_megabytes("256M") == 256
    assert ram_megabytes("2G") == 2048
    assert ram_megabytes(None) == DEFAULT_RAM_MB


def test_the_guest_reaches_the_coordinators_loopback_at_the_user_network_gateway() -> None:
    assert guest_url("ws://127.0.0.1:4242/agent") == "ws://10.0.2.2:4242/agent"
    assert guest_url("ws://192.0.2.7:4242/agent") == "ws://192.0.2.7:4242/agent"


@needs_qemu
@pytest.mark.timeout(900)
def test_image_build_builds_once_then_finds_it_in_the_cache(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    command = [sys.executable, "-m", "phalanx", "image", "build"]
    # The root disk's wheelhouse comes from the package index (pip download).
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert len(lines) == 2
    path, how = lines[0].split(" ", 1)
    assert how.startswith("(built;")
    assert Path(path).parent == tmp_path / "phalanx" / "images"
    assert {p.name for p in Path(path).iterdir()} >= {"initramfs.img", "image.json"}
    disk, what = lines[1].split(" ", 1)
    assert what.startswith("(built; root disk root.ext4, Python /usr/local/bin/python3")
    assert Path(disk).parent == Path(path).parent
    assert {p.name for p in Path(disk).iterdir()} == {"root.ext4", "image.json"}
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == [
        f"{path} {how.replace('built', 'cached')}",
        f"{disk} {what.replace('built', 'cached')}",
    ]


def _two_vm_suite(cases: tuple[Case, ...]) -> Suite:
    disk = Disk(name="scratch", size=32 << 20, device="vdb", mount_point="/mnt/scratch")
    hosts = tuple(
        Host(name=f"vm{i}.qemu.test", ram_size="262144" if i else "256M", disks=(disk,))
        for i in range(2)
    )
    return Suite(
        name="vms",
        cluster=Cluster(name="vms", hosts=hosts, provider="qemu"),
        cases=cases,
        timeout=BOOT,
    )


# Each VM's own address, its partner's by name (/etc/hosts) and by
# @host:NAME@, the coordinator's by name, and a ping to the partner by name.
NET = """if [ "$(hostname -f)" = vm0.qemu.test ]; then
    peer=vm1.qemu.test at=@host:vm1.qemu.test@
else
    peer=vm0.qemu.test at=@host:vm0.qemu.test@
fi
echo "own $(ip -4 -o addr show dev eth0 | awk '{print $4}') @address@"
echo "peer $(getent hosts $peer | awk '{print $1}') $at"
echo "coordinator $(getent hosts phalanx-coordinator | awk '{print $1}')"
/run/phalanx/busybox ping -c 1 -w 20 $peer >/dev/null && echo "pinged $peer"
"""
CHECK = """hostname -f
@diskmounts@
grep ' /mnt/scratch ' /proc/mounts | cut -d' ' -f1-3
echo written > /mnt/scratch/file && cat /mnt/scratch/file
"""
VICTIM = """if [ "$(hostname -f)" = vm1.qemu.test ]; then echo sleeping; sleep 200; fi"""
# vm0 cuts vm1 off (phalanx-net: the cut is made on the bridge); neither
# reaches the other until the case ends, which heals it.
CUT = """if [ "$(hostname -f)" = vm0.qemu.test ]; then
    phalanx-net isolate vm1.qemu.test && echo isolated
    phalanx-send cut 1
    peer=vm1.qemu.test
else
    phalanx-wait cut --timeout 60 >/dev/null
    peer=vm0.qemu.test
fi
/run/phalanx/busybox ping -c 1 -w 3 $peer >/dev/null || echo "cut off from $peer"
"""
# Suite files as XrdTest fetched them (/showScript from the VM, no
# credential): the stage's own curl gets the file; a copy of it with the
# run's key altered, and a process outside the run (a daemon of the VM in
# a session of its own, none of the run's environment, started after the
# stage hands off to it, not a child of the stage by then) get 403.
FILES = """code() { curl -s -o /dev/null -w '%{http_code}' --max-time 20 "$@"; }
url="@proto@://@coordinator@:@port@/showScript/utils/data.txt"
echo "stage: $(code "$url")"
echo "text: $(curl -s --max-time 20 "$url")"
echo "keyed: $(code "$PHALANX_SCRIPTS_URL/utils/data.txt")"
forged="$(echo "$PHALANX_SCRIPTS_URL" | sed 's|/[0-9a-f]*$|/0000000000000000000000000000000000000000000000000000000000000000|')"
echo "forged key: $(PHALANX_SCRIPTS_URL="$forged" curl -s -o /dev/null -w '%{http_code}' --max-time 20 "$url")"
echo "$url" > /tmp/outsider.url
( setsid env -i PATH=/usr/bin:/bin sh -c '
    curl -s -o /dev/null -w "%{http_code}" --max-time 20 "$(cat /tmp/outsider.url)" > /tmp/outsider.tmp
    mv /tmp/outsider.tmp /tmp/outsider.code' </dev/null >/dev/null 2>&1 & )
for _ in $(seq 300); do [ -s /tmp/outsider.code ] && break; sleep 0.1; done
echo "outside the run: $(cat /tmp/outsider.code)"
"""
REACH = """for peer in vm0.qemu.test vm1.qemu.test; do
    if [ "$(hostname -f)" != $peer ]; then
        /run/phalanx/busybox ping -c 1 -w 20 $peer >/dev/null && echo "pinged $peer"
    fi
done
"""


@needs_qemu
@pytest.mark.timeout(BOOT + 120)
async def test_a_two_vm_cluster_on_a_bridge_runs_stages_and_a_killed_qemu_is_a_lost_agent(
    tmp_path: Path, cache: Path
) -> None:
    """Both VMs boot on the cluster's bridge and connect to the coordinator
    over it; a stage in each sees its own host name and address, pings its
    partner by name and gets its address by @host:NAME@, and sees its disk
    mounted by @diskmounts@; then one QEMU is killed with -9 mid-stage: that
    host is `error` (agent lost), the run goes on. The taps and the bridge
    go at the end. As root, a stage isolates one VM (phalanx-net: cut on the
    bridge): neither pings the other until the case ends, which heals it.
    (Not root: the same on user-mode networking, without the network's
    checks.)"""
    net = (
        (
            Case(name="net", stages={"run": Script(text=NET)}),
            Case(name="cut", stages={"run": Script(text=CUT)}),
            Case(name="healed", stages={"run": Script(text=REACH)}),
            Case(name="files", stages={"run": Script(text=FILES)}),
        )
        if ROOT
        else ()
    )
    suite = _two_vm_suite(
        (
            *net,
            Case(name="check", stages={"run": Script(text=CHECK)}),
            Case(name="victim", stages={"run": Script(text=VICTIM)}),
            Case(name="after", stages={"run": Script(text="hostname -f")}),
        )
    )
    results = tmp_path / "results"
    killed: list[int] = []

    def kill_when_sleeping(event: Event) -> None:
        if (
            isinstance(event, HostOutput)
            and event.case == "victim"
            and b"sleeping" in event.data
            and not killed
        ):
            folder = next(results.iterdir())
            killed.append(_qemu_pid(folder, "vm1.qemu.test"))
            os.kill(killed[0], signal.SIGKILL)

    run_id = _run_id("vm-run")
    repo = tmp_path / "repo"  # the suite's definitions repo: its files are served to the run
    (repo / "utils").mkdir(parents=True)
    (repo / "utils" / "data.txt").write_text("from the repo\n")
    options = RunOptions(
        results=results, heartbeat_timeout=15, connect_timeout=BOOT, run_id=run_id,
        scripts_root=repo,
    )  # fmt: skip
    result, folder = await run_local(suite, options, [kill_when_sleeping])

    own = _bridged(folder, result) if ROOT else {}
    if ROOT:
        vms = ("vm0.qemu.test", "vm1.qemu.test")
        for case_name in ("cut", "healed"):
            faulted = result.case(case_name)
            assert faulted is not None and faulted.status is Status.PASSED, result.reason
        cut = {n: output(folder, result, "cut", "run", n).splitlines() for n in vms}
        assert cut == {
            "vm0.qemu.test": ["isolated", "cut off from vm1.qemu.test"],
            "vm1.qemu.test": ["cut off from vm0.qemu.test"],
        }
        files = {n: output(folder, result, "files", "run", n).splitlines() for n in vms}
        fetched = ["stage: 200", "text: from the repo", "keyed: 200", "forged key: 403",
                   "outside the run: 403"]  # fmt: skip
        assert files == {n: fetched for n in vms}, files
        healed = {n: output(folder, result, "healed", "run", n).splitlines() for n in vms}
        assert healed == {
            "vm0.qemu.test": ["pinged vm1.qemu.test"],
            "vm1.qemu.test": ["pinged vm0.qemu.test"],
        }
    check = result.case("check")
    assert check is not None and check.status is Status.PASSED, result.reason
    for name in ("vm0.qemu.test", "vm1.qemu.test"):
        text = output(folder, result, "check", "run", name)
        assert text.splitlines() == [name, "/dev/vda /mnt/scratch ext2", "written"]
        console = (folder / "hosts" / name / "console.log").read_text(errors="replace")
        assert "phalanx-vm: starting the agent" in console
    victim = result.case("victim")
    assert victim is not None and killed
    lost = victim.stages[0].host("vm1.qemu.test")
    assert lost is not None and lost.status is Status.ERROR
    assert (lost.reason or "").startswith("agent lost")
    survivor = victim.stages[0].host("vm0.qemu.test")
    assert survivor is not None and survivor.status is Status.PASSED
    after = result.case("after")
    assert after is not None
    ran = after.stages[0].host("vm0.qemu.test")
    assert ran is not None and ran.status is Status.PASSED
    assert result.status is Status.ERROR
    # Nothing is left running, and the per-run disks are gone; how each VM
    # booted and ended is kept with the run.
    for name, ended_by in (("vm0.qemu.test", "itself"), ("vm1.qemu.test", "lost")):
        assert not alive(_qemu_pid(folder, name))
        record = json.loads((folder / "hosts" / name / "vm.json").read_text())
        assert record["ended_by"] == ended_by
        assert record["boot_to_agent_s"] > 0
        assert record["disks"] == [
            {"name": "scratch", "size": 32 << 20, "mount_point": "/mnt/scratch"}
        ]
        if ROOT:
            assert record["network"]["mode"] == "bridge"
            assert record["network"]["address"] == own[name]
            assert record["network"]["tap"].startswith(f"phx{netns.label(run_id)}t")
    assert json.loads((folder / "hosts/vm1.qemu.test/vm.json").read_text())["ram_mb"] == 256
    for parent in (PRIVATE_PARENT, Path(os.environ.get("TMPDIR", "/tmp"))):
        assert not list(parent.glob(f"phalanx-qemu-{run_id[-8:]}-*")), parent  # seeds, disks
    if ROOT:
        mark = f"phx{netns.label(run_id)}"
        assert [link for link in await bridge.links() if link.startswith(mark)] == []
        assert not (netns.STATE_DIR / f"{netns.label(run_id)}.json").exists()


def _bridged(folder: Path, result: RunResult) -> dict[str, str]:
    """The `net` case's checks; each VM's address (ip/prefix) by name."""
    net = result.case("net")
    assert net is not None and net.status is Status.PASSED, result.reason
    said = {
        name: output(folder, result, "net", "run", name).splitlines()
        for name in ("vm0.qemu.test", "vm1.qemu.test")
    }
    own = {name: lines[0].split()[1] for name, lines in said.items()}
    coordinator = said["vm0.qemu.test"][2]
    for name, peer in (("vm0.qemu.test", "vm1.qemu.test"), ("vm1.qemu.test", "vm0.qemu.test")):
        address = own[name].split("/")[0]
        assert said[name][0] == f"own {own[name]} {address}"
        assert own[name].endswith("/24") and not address.startswith("10.0.2.")
        peer_address = own[peer].split("/")[0]
        assert said[name][1:] == [
            f"peer {peer_address} {peer_address}",
            coordinator,
            f"pinged {peer}",
        ]
    assert (
        coordinator.startswith("coordinator 10.") and own["vm0.qemu.test"] != own["vm1.qemu.test"]
    )
    return own


def test_without_root_the_vms_fall_back_to_user_mode_networking_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = Cluster(name="c", hosts=(Host(name="h"),), provider="qemu")
    monkeypatch.setattr(netns, "lacking_capabilities", lambda *names: list(names))
    provider = QemuProvider(tmp_path, "r", cluster=cluster)
    assert "not root" in (provider._why_not_bridged() or "")
    monkeypatch.setenv(qemu_module.NETWORK_ENV, "bridge")
    with pytest.raises(ProvisionError, match="PHALANX_QEMU_NETWORK=bridge, but this process"):
        provider._why_not_bridged()
    monkeypatch.setenv(qemu_module.NETWORK_ENV, "user")
    monkeypatch.setattr(netns, "lacking_capabilities", lambda *names: [])
    assert provider._why_not_bridged() == "PHALANX_QEMU_NETWORK=user"


@pytest.mark.skipif(not ROOT, reason="taps and a bridge need root (CAP_NET_ADMIN) and iproute2")
async def test_the_taps_and_bridge_of_a_crashed_run_are_swept_like_netns_leftovers(
    tmp_path: Path,
) -> None:
    """No VM needed: the network a qemu run makes, its owner then gone as
    after a kill -9; the next sweep (a netns or qemu run's start, `phalanx
    cleanup`) removes the taps and the bridge."""
    hosts = (Host(name="a.sweep.test"), Host(name="b.sweep.test", ip="10.99.7.20"))
    cluster = Cluster(name="sweep", hosts=hosts, provider="qemu")
    state = tmp_path / "state"
    run_id = _run_id("vm-crash")
    provider = QemuProvider(tmp_path / "hosts", run_id, cluster=cluster, state_dir=state)
    mark = f"phx{netns.label(run_id)}"
    arrived = f"pxm{mark[3:]}in"  # a VM from another hypervisor has a tap of its own here
    network = await provider._bridge()
    try:
        assert network.taps == {"a.sweep.test": f"{mark}t0", "b.sweep.test": f"{mark}t1"}
        assert {str(a) for a in network.plan.ips.values()} == {"10.99.7.2", "10.99.7.20"}
        assert str(network.plan.gateway) == "10.99.7.1"
        shown = json.loads(await bridge.ip("-j", "link", "show", "master", f"{mark}br"))
        assert sorted(link["ifname"] for link in shown) == [f"{mark}t0", f"{mark}t1"]
        table = qemu_module.fault_table(netns.label(run_id))
        faults = BridgeFaults(table=table, macs={h.name: mac_address(h) for h in hosts})
        await faults.isolate("a.sweep.test")  # a cut the crashed run never healed
        await netns.add_tap(arrived, f"{mark}br", state)
        shown = json.loads(await bridge.ip("-j", "link", "show", "master", f"{mark}br"))
        assert arrived in {link["ifname"] for link in shown}
        for path in (
            state / f"{netns.label(run_id)}.json",
            state / f"{netns.label(f'tap {arrived}')}.json",
        ):
            saved = json.loads(path.read_text())
            path.write_text(json.dumps({**saved, "started": "gone"}))  # its owner is dead
        swept = await netns.sweep(state)
        assert swept == {
            run_id: [
                f"tap {mark}t0",
                f"tap {mark}t1",
                f"bridge {mark}br",
                f"nftables table bridge {table}",
            ],
            f"tap {arrived}": [f"tap {arrived}"],
        }
        assert not await bridgefaults.remove_table(table)  # gone
        assert [link for link in await bridge.links() if link.startswith((mark, arrived))] == []
        assert not list(state.glob("*.json"))
    finally:
        await netns.remove_network(network.record, state)  # whatever a failure left
        await netns.remove_tap(arrived, f"{mark}br", state)


@needs_qemu
@pytest.mark.timeout(BOOT + 60)
async def test_qmp_reports_a_running_vm_on_user_mode_networking_and_powers_it_off(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Not root: no taps, QEMU's user-mode network, said in the log."""
    host = Host(name="solo.qemu.test", ram_size="256M")
    cluster = Cluster(name="solo", hosts=(host,), provider="qemu")
    monkeypatch.setattr(netns, "lacking_capabilities", lambda *names: list(names))
    provider = QemuProvider(tmp_path / "hosts", _run_id("qmp-test"), cluster=cluster)
    with caplog.at_level(logging.WARNING, logger="phalanx.providers.qemu"):
        await provider.open()
    assert "user-mode networking, because this process is not root" in caplog.text
    assert provider.network is None and provider.listen_address is None
    assert provider.addresses([host]) == {host.name: host.name}
    try:
        async with open_coordinator(heartbeat_timeout=10) as coordinator:
            token = coordinator.tokens.issue(host.name)
            await provider.up([AgentSpec(host, coordinator.agent_url, token)])
            try:
                assert await coordinator.hub.wait_connected([host.name], BOOT) == []
                vm = provider.vms[host.name]
                # The token reaches the guest on its own 9p share: neither
                # QEMU's command line nor the guest's kernel's has it.
                assert token.encode() not in Path(f"/proc/{vm.process.pid}/cmdline").read_bytes()
                assert await provider.status(host.name) == "running"
                await provider.power_off(host.name, timeout=30)
                assert vm.process.returncode is not None
                assert not alive(vm.process.pid)
                console = vm.console.read_text(errors="replace")
                assert "phalanx-vm: powered off by ACPI" in console
                assert token not in console
            finally:
                await provider.down()
    finally:
        await provider.close()
    assert provider._private is None and provider.vms == {}
    record = json.loads((tmp_path / "hosts" / host.name / "vm.json").read_text())
    assert record["ended_by"] == "acpi" and record["exit_status"] == 0
    assert record["network"] == {"mode": "user", "address": "10.0.2.15/24"}
    # QEMU's events, as QMP told them, are kept with the run too.
    lines = (tmp_path / "hosts" / host.name / "qmp-events.jsonl").read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines]
    assert "SHUTDOWN" in events[events.index("POWERDOWN") :]


@needs_qemu
@pytest.mark.timeout(BOOT)
async def test_a_vm_that_does_not_boot_is_a_run_error_with_its_last_console_lines(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An initramfs that is not one: the kernel finds no root and panics."""
    good = await asyncio.to_thread(build_image)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "initramfs.img").write_bytes(b"not an archive" * 100)
    image = Image(broken, good.kernel, broken / "initramfs.img", good.kernel_version, False)
    monkeypatch.setattr(qemu_module, "build_image", lambda: image)
    suite = _two_vm_suite((Case(name="never", stages={"run": Script(text="true")}),))
    run_id = _run_id("vm-broken")
    options = RunOptions(results=tmp_path / "results", connect_timeout=BOOT, run_id=run_id)
    result, folder = await run_local(suite, options)
    assert result.status is Status.ERROR
    reason = result.reason or ""
    assert reason.startswith("provisioning failed: the VM of vm0.qemu.test ended before")
    assert "Kernel panic" in reason
    assert (folder / "hosts" / "vm0.qemu.test" / "console.log").is_file()
    for name in ("vm0.qemu.test", "vm1.qemu.test"):
        assert not alive(_qemu_pid(folder, name))
        assert (
            json.loads((folder / "hosts" / name / "vm.json").read_text())["boot_to_agent_s"] is None
        )
