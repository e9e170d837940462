"""Link conditions and `slow` for VMs, made in the guest (guestnet): the
port's vocabulary and the provider's side of it without a VM, then real
VMs under TCG on a bridge: a link's delay and loss seen by ping, `slow`
and the heal after the case."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from phalanx.coordinator.runs import RunOptions, open_coordinator, run_local
from phalanx.events import Event, HostOutput
from phalanx.model import Case, Cluster, Host, Link, Script, Status, Suite
from phalanx.providers import guestnet, netns
from phalanx.providers.base import AgentSpec, FaultError
from phalanx.providers.guestnet import GuestChannel, VmFaults
from phalanx.providers.qemu import QemuProvider
from phalanx.providers.vmimage import Image, RootDisk
from tests.coordinator.runhelpers import output
from tests.vms import BOOT, vm_missing, with_images

MISSING = vm_missing()
ROOT = not netns.lacking_capabilities("CAP_NET_ADMIN") and shutil.which("ip") is not None
needs_bridged_vms = pytest.mark.skipif(
    MISSING is not None or not ROOT,
    reason=MISSING or "VMs on a bridge need root (CAP_NET_ADMIN) and iproute2",
)
BUSYBOX = shutil.which("busybox")


# --- the vocabulary, without a VM ---------------------------------------------------


@pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed")
def test_the_guests_port_loop_runs_only_its_vocabulary_and_refuses_the_rest(
    tmp_path: Path,
) -> None:
    """The guest's loop (busybox sh, as in the guest) with a tc that only
    records: slow and heal reach tc with the checked delay; anything else,
    shell syntax included, is refused and runs nothing."""
    calls = tmp_path / "calls"
    tc = tmp_path / "tc"
    tc.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n[ "$5" = root ] && [ "$1" = qdisc ] || true\n')
    tc.chmod(0o755)
    (tmp_path / "link.tc").write_text("qdisc add dev eth0 root handle 1: netem delay 100ms\n")
    script = tmp_path / "netctl"
    script.write_text(
        guestnet.NETCTL.replace("bb=/run/phalanx/busybox", f"bb={BUSYBOX}").replace(
            "dir=/run/phalanx", f"dir={tmp_path}"
        )
    )
    lines = [
        "1 slow 200.000",
        "2 heal",
        "rm -rf /",
        "3 slow 1;reboot",
        "4 slow $(touch x)",
        "5 slow 1.2.3",
        "x heal",
        "6 reboot",
        "7 heal now",
        "8 slow",
        "",
        "9 slow " + "1" * 70,
    ]
    done = subprocess.run(
        [str(BUSYBOX), "sh", str(script)],
        input="".join(f"{line}\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "PHALANX_TC": str(tc)},
        cwd=tmp_path,
    )
    answers = done.stdout.splitlines()
    assert answers == [
        "1 done",
        "2 done",
        "- error refused: not a phalanx.net request",
        "- error refused: not a phalanx.net request",
        "- error refused: not a phalanx.net request",
        "5 error refused: not a delay: 1.2.3",
        "- error refused: no request id",
        "6 error refused: unknown request",
        "7 error refused: unknown request",
        "8 error refused: unknown request",
        "- error refused: not a phalanx.net request",
        "- error refused: too long",
    ]
    assert calls.read_text().splitlines() == [
        "qdisc replace dev eth0 root netem delay 200.000ms",
        "qdisc del dev eth0 root",
        f"-batch {tmp_path}/link.tc",
    ]
    assert not (tmp_path / "x").exists()


def test_a_links_conditions_go_both_ways_as_on_a_netns_host() -> None:
    """Outgoing on eth0, incoming through ifb0: the netns provider's tc
    lines for the veth's two ends."""
    files = guestnet.seed_files(Link(delay=0.1, jitter=0.01, loss=1, rate=8_000_000))
    assert files[guestnet.EGRESS].splitlines() == [
        "qdisc add dev eth0 root handle 1: netem delay 100ms 10ms loss 1%",
        "qdisc add dev eth0 parent 1: handle 2: tbf rate 8000000bit burst 16384 latency 200ms",
    ]
    assert files[guestnet.INGRESS].splitlines() == [
        "qdisc add dev eth0 handle ffff: ingress",
        "filter add dev eth0 parent ffff: matchall action mirred egress redirect dev ifb0",
        "qdisc add dev ifb0 root handle 1: netem delay 100ms 10ms loss 1%",
        "qdisc add dev ifb0 parent 1: handle 2: tbf rate 8000000bit burst 16384 latency 200ms",
    ]
    assert guestnet.seed_files(None) == {} and guestnet.seed_files(Link()) == {}


def test_a_request_is_only_words_the_guest_takes() -> None:
    assert guestnet.slow_request(0.2) == "slow 200.000"
    for bad in (-1.0, float("nan"), 1e9):
        with pytest.raises(FaultError):
            guestnet.slow_request(bad)
    assert guestnet.parse_answer("12 done\n") == ("12", None)
    assert guestnet.parse_answer("12 error tc: no") == ("12", "tc: no")
    assert guestnet.parse_answer("- error refused: x") == ("-", "refused: x")
    assert guestnet.parse_answer("garbage") is None


async def _guest(socket: Path, answer: list[str], seen: list[str]) -> asyncio.Server:
    """A stand-in for the guest's port: answers each line by `answer`'s
    next item (its `{id}` filled), or not at all when it is empty."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            seen.append(line.decode().strip())
            rid = line.decode().split()[0]
            reply = answer.pop(0) if answer else ""
            if reply == "close":
                writer.close()
                return
            if reply:
                writer.write(reply.format(id=rid).encode() + b"\n")
                await writer.drain()

    return await asyncio.start_unix_server(serve, str(socket))


async def test_the_channel_resends_until_answered_and_ignores_other_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No answer (a guest between reads), a closed port (a new QEMU after
    migration), an answer to another request: the channel resends the
    same request and id until its own answer comes; a guest's error is a
    FaultError naming the host."""
    monkeypatch.setattr(guestnet, "RESEND_AFTER", 0.2)
    socket = tmp_path / "net.sock"
    seen: list[str] = []
    answer = ["", "close", "- error refused: x", "1 done", "{id} done"]
    server = await _guest(socket, answer, seen)
    channel = GuestChannel("vm0.t", socket)
    try:
        await channel.ask("heal", timeout=10)
        assert len(seen) == 5 and len(set(seen)) == 1 and seen[0].endswith(" heal")
        answer.append("{id} error tc: no netem")
        with pytest.raises(FaultError, match=re.escape("vm0.t: tc: no netem")):
            await channel.ask("slow 5.000", timeout=10)
        with pytest.raises(FaultError, match="did not answer 'heal' within 1s"):
            await channel.ask("heal", timeout=1)
    finally:
        channel.close()
        server.close()


class _Cuts:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def partition(self, groups: object) -> None:
        self.calls.append("partition")

    async def isolate(self, host: str) -> None:
        self.calls.append(f"isolate {host}")

    async def heal(self) -> None:
        self.calls.append("heal")


async def test_vm_faults_slow_in_the_guest_and_heal_only_what_was_slowed(
    tmp_path: Path,
) -> None:
    seen: list[str] = []
    server = await _guest(tmp_path / "a.sock", ["{id} done"] * 3, seen)
    cuts = _Cuts()
    channels = {"a": GuestChannel("a", tmp_path / "a.sock")}
    faults = VmFaults(cuts, channels.get, ["a", "b"])
    try:
        await faults.isolate("b")
        await faults.slow("a", 0.25)
        with pytest.raises(
            FaultError, match="cannot slow b: its VM is not running, or boots its own image"
        ):
            await faults.slow("b", 0.25)
        with pytest.raises(FaultError, match="no host 'c'"):
            await faults.slow("c", 0.25)
        await faults.heal()
        await faults.heal()  # nothing slowed any more: the guest is not asked
        assert cuts.calls == ["isolate b", "heal", "heal"]
        assert [line.split(" ", 1)[1] for line in seen] == ["slow 250.000", "heal"]
        await faults.slow("a", 0.1)
        async with faults.restoring():  # a loadvm: the guest is as it booted
            pass
        assert faults.slowed == set()
    finally:
        channels["a"].close()
        server.close()


# --- real VMs ---------------------------------------------------------------------------


def _rtts(text: str) -> list[float]:
    """Every `time=X ms` of a ping's output."""
    return [float(t) for t in re.findall(r"time=([\d.]+) ms", text)]


PING = "/run/phalanx/busybox ping -c 3 -w 60 {peer}"
SHOW = "/usr/sbin/tc qdisc show dev eth0 | grep -o 'netem.*delay [0-9.]*ms' || echo 'no netem'"
A, B = "vm0.link.test", "vm1.link.test"


def _stage(on_b: str, on_a: str = "true") -> Script:
    return Script(text=f'if [ "$(hostname -f)" = {B} ]; then\n{on_b}\nelse\n{on_a}\nfi\n')


@needs_bridged_vms
@pytest.mark.timeout(BOOT + 240)
async def test_link_delay_and_slow_are_made_in_the_guest_and_healed_after_the_case(
    tmp_path: Path, vm_images: tuple[Image, RootDisk], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two VMs on root disks (tc copied onto them), A with `link: {delay:
    100ms}` both ways: B's pings to A take at least 200 ms. B slows itself
    by 300 ms (`phalanx-net slow`): its pings take at least 500 ms and its
    eth0 has a netem delay of 300 ms; the next case finds B's eth0 without
    netem (healed) and A's link as it was."""
    with_images(monkeypatch, vm_images)
    hosts = (Host(name=A, ram_size="256M", link=Link(delay=0.1)), Host(name=B, ram_size="256M"))
    ping = PING.format(peer=A)
    suite = Suite(
        name="link",
        cluster=Cluster(name="link", hosts=hosts, provider="qemu", vm_root="disk"),
        cases=(
            Case(name="link", stages={"run": _stage(ping, SHOW)}),
            Case(
                name="slow",
                stages={
                    "run": _stage(f"phalanx-net slow {B} 300ms && echo slowed\n{ping}\n{SHOW}")
                },
            ),
            Case(name="healed", stages={"run": _stage(f"{SHOW}\n{ping}", SHOW)}),
        ),
        timeout=BOOT,
    )
    run_id = f"vm-link-{uuid.uuid4().hex[:8]}"
    options = RunOptions(
        results=tmp_path / "results", heartbeat_timeout=20, connect_timeout=BOOT, run_id=run_id
    )
    result, folder = await run_local(suite, options)
    assert result.status is Status.PASSED, result.reason

    said = {
        (case, name): output(folder, result, case, "run", name)
        for case, name in [("link", A), ("link", B), ("slow", B), ("healed", A), ("healed", B)]
    }
    assert re.fullmatch(r"netem 1: root .* delay 100ms", said["link", A].strip()), said["link", A]
    rtts = _rtts(said["link", B])
    assert len(rtts) == 3 and min(rtts) >= 200, said["link", B]
    slowed = said["slow", B]
    assert slowed.startswith("slowed\n")
    assert slowed.strip().endswith("delay 300ms")
    rtts = _rtts(slowed)
    assert len(rtts) == 3 and min(rtts) >= 500, slowed
    assert said["healed", B].startswith("no netem\n")
    rtts = _rtts(said["healed", B])
    assert len(rtts) == 3 and min(rtts) >= 200
    assert said["healed", A] == said["link", A]
    console = (folder / "hosts" / A / "console.log").read_text(errors="replace")
    assert "phalanx-vm: link conditions applied" in console
    # Restored from a template, A was told its link with who it is.
    assert json.loads((folder / "hosts" / A / "vm.json").read_text())["boot"] == "template"


def _ping(address: str, within: int = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["busybox", "ping", "-c", "3", "-w", str(within), address],
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs_bridged_vms
@pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed")
@pytest.mark.timeout(BOOT + 120)
async def test_a_link_that_loses_every_packet_fails_pings_and_the_port_refuses_bad_lines(
    tmp_path: Path,
) -> None:
    """Two VMs booted by the provider (9p root): A's link loses 100% of
    its packets, so pings from this machine to A fail while pings to B go
    through; B's real phalanx.net port refuses a line outside its
    vocabulary, and slow and heal work on it."""
    hosts = (Host(name=A, link=Link(loss=100)), Host(name=B, link=Link(delay=0.05)))
    cluster = Cluster(name="loss", hosts=hosts, provider="qemu")
    provider = QemuProvider(tmp_path / "hosts", f"vm-loss-{uuid.uuid4().hex[:8]}", cluster=cluster)
    await provider.open()
    try:
        async with open_coordinator(heartbeat_timeout=10) as coordinator:
            specs = [AgentSpec(h, coordinator.agent_url, coordinator.tokens.issue(h.name))
                     for h in hosts]  # fmt: skip
            await provider.up(specs)  # booted to the agent's start: the link is applied
            try:
                addresses = provider.addresses(list(hosts))
                # (A's agent gives up after 30 s without its coordinator.)
                lost = await asyncio.to_thread(_ping, addresses[A], 5)
                assert provider.vms[A].process.returncode is None  # up, but unreachable
                assert lost.returncode != 0 and "3 packets transmitted, 0 packets received" in (
                    lost.stdout
                ), lost.stdout
                through = await asyncio.to_thread(_ping, addresses[B])
                assert through.returncode == 0, through.stdout
                assert min(_rtts(through.stdout)) >= 100  # B's 50 ms each way
                # The real port: a line outside the vocabulary is refused.
                socket = provider.vms[B].private / "net.sock"
                reader, writer = await asyncio.open_unix_connection(str(socket))
                try:
                    writer.write(b"1 slow 1; poweroff\n")
                    await writer.drain()
                    line = await asyncio.wait_for(reader.readline(), 60)
                    assert line == b"- error refused: not a phalanx.net request\n"
                finally:
                    writer.close()
                assert provider.faults is not None
                await provider.faults.slow(B, 0.3)
                slowed = await asyncio.to_thread(_ping, addresses[B])
                assert min(_rtts(slowed.stdout)) >= 350, slowed.stdout
                await provider.faults.heal()
                healed = await asyncio.to_thread(_ping, addresses[B])
                assert healed.returncode == 0 and min(_rtts(healed.stdout)) >= 100
            finally:
                await provider.down(list(provider.vms))
    finally:
        await provider.close()


@needs_bridged_vms
@pytest.mark.timeout(BOOT + 300)
async def test_slow_and_heal_hold_across_revert_case_and_a_migration(
    tmp_path: Path, vm_images: tuple[Image, RootDisk], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`revert: case`: B slowed in one case is back as it booted in the
    next (healed, then restored), A's link too; B migrated to a new QEMU
    mid-case is slowed through the new QEMU's port, and healed after."""
    providers = with_images(monkeypatch, vm_images)
    migrations: list[asyncio.Task[float]] = []

    def migrate_when_ready(event: Event) -> None:
        if isinstance(event, HostOutput) and b"ready" in event.data and not migrations:
            migrations.append(asyncio.ensure_future(providers[0].migrate(B, "tcp")))

    hosts = (Host(name=A, ram_size="256M", link=Link(delay=0.1)), Host(name=B, ram_size="256M"))
    slow = f"phalanx-net slow {B} 300ms && echo slowed\n{SHOW}"
    moved = f"{SHOW}\necho ready\nsleep 30\nphalanx-net slow {B} 200ms && echo slowed\n{SHOW}"
    suite = Suite(
        name="revert",
        cluster=Cluster(name="revert", hosts=hosts, provider="qemu", revert="case"),
        cases=(
            Case(name="slow", stages={"run": _stage(slow)}),
            Case(name="moved", stages={"run": _stage(moved, SHOW)}),
            Case(name="after", stages={"run": _stage(SHOW, SHOW)}),
        ),
        timeout=BOOT,
    )
    run_id = f"vm-revert-{uuid.uuid4().hex[:8]}"
    options = RunOptions(
        results=tmp_path / "results", heartbeat_timeout=20, connect_timeout=BOOT, run_id=run_id
    )
    result, folder = await run_local(suite, options, [migrate_when_ready])
    assert result.status is Status.PASSED, result.reason
    assert migrations and migrations[0].result() > 0

    def said(case: str, name: str) -> list[str]:
        return output(folder, result, case, "run", name).splitlines()

    assert said("slow", B)[0] == "slowed" and said("slow", B)[1].endswith("delay 300ms")
    assert said("moved", B)[:2] == ["no netem", "ready"]
    assert said("moved", B)[2] == "slowed" and said("moved", B)[3].endswith("delay 200ms")
    assert said("after", B) == ["no netem"]
    for case in ("moved", "after"):
        assert re.fullmatch(r"netem 1: root .* delay 100ms", said(case, A)[0]), said(case, A)
