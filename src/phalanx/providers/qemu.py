"""The `qemu` provider: every host is a QEMU virtual machine booting the
tiny image (`vmimage`), whose init starts an agent that connects back.

- Acceleration: KVM when a short boot under it works (nested KVM can crash
  or hang: both are caught), else TCG; the choice and its reason are logged
  and remembered until the machine reboots (`kvm-probe.json` in the image
  cache). `PHALANX_QEMU_ACCEL=kvm|tcg` decides instead.
- Each VM: `ram_size` (XrdTest's KiB number, or `256M`, `2G`), one vCPU, its
  MAC (or one derived from its name), each disk a qcow2 made for the run and
  attached as virtio-blk with the disk's name as serial, so `@diskmounts@`
  finds it whatever the guest calls it.
- Networking, as root (CAP_NET_ADMIN): every VM has a tap on the
  cluster's bridge, made and planned as the netns provider does
  (`netns.make_network`: the same bridge, addresses, run record, and sweep
  of a crashed run's leftovers). The guest's init gives eth0 the host's
  address and writes the netns hosts file (every host's names, the
  coordinator's on the bridge address), both from the VM's private seed;
  the coordinator listens on the bridge address. Otherwise (or with
  `PHALANX_QEMU_NETWORK=user`) QEMU's user-mode network, said in the log:
  the guest is 10.0.2.15 and reaches this machine's loopback at 10.0.2.2,
  so the coordinator's loopback endpoint is handed to the agent as
  ws://10.0.2.2:PORT, and VMs do not reach each other.
- What stays with the run (`hosts/<host>/`): `console.log` (the serial
  console: kernel, init, the agent's own output), `qemu.log` (QEMU's
  stderr), `qemu.pid`. What does not (disks, the seed with the token, the
  QMP socket) lives in a private folder removed by `down`/`close`.
- A host with a `boot_image` boots that instead, by its own bootloader,
  through an overlay, with a cloud-init seed (`cloudinit`).
- Control over QMP (`qemu.qmp`): `status` (`query-status`), `power_off`
  (ACPI `system_powerdown`, then `quit` after a timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import platform
import re
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from phalanx.host.process import signal_group
from phalanx.model import Cluster, Host
from phalanx.providers import bridge, cloudinit, netns, wheelhouse
from phalanx.providers.base import AgentSpec, NetworkFaults, ProvisionError
from phalanx.providers.vmimage import (
    BOOTED_MARK,
    PROBE_MARK,
    Image,
    ImageError,
    build_image,
    cache_root,
)

log = logging.getLogger("phalanx.providers.qemu")

QEMU = "qemu-system-x86_64"
QEMU_IMG = "qemu-img"
ACCEL_ENV = "PHALANX_QEMU_ACCEL"
NETWORK_ENV = "PHALANX_QEMU_NETWORK"  # user | bridge: instead of deciding by privileges
DEFAULT_RAM_MB = 512
GUEST_ADDRESS = "10.0.2.15/24"  # QEMU user-mode networking's fixed plan
GATEWAY = "10.0.2.2"  # ...where the guest reaches this machine's loopback
DNS = "10.0.2.3"
GUEST_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
GUEST_WORKDIR = "/var/lib/phalanx/agent"
GIVE_UP_AFTER = 30.0  # an agent whose coordinator is gone stops, and its VM with it
PROBE_TIMEOUT = 20.0
BOOT_TIMEOUT = {"kvm": 60.0, "tcg": 180.0}  # to the agent's start, per VM
IMAGE_BOOT_FACTOR = 3  # a boot image's whole distribution boots, and installs the agent
EXIT_GRACE = 10.0  # a VM whose agent was told to shut down powers off by itself
POWERDOWN_GRACE = 10.0  # after ACPI power-off, before `quit`
CONSOLE_LINES = 15  # of a VM that did not boot, in the run's reason
KERNEL_ARGS = "console=ttyS0 panic=-1 loglevel=4 tsc=reliable no_timer_check"


def ram_megabytes(ram_size: str | None) -> int:
    """`ram_size` as MiB: XrdTest's bare number is KiB; `256M`, `2G`, `512K`."""
    if ram_size is None or not ram_size.strip():
        return DEFAULT_RAM_MB
    match = re.fullmatch(r"(\d+)\s*([KMGT]?)i?B?", ram_size.strip(), re.I)
    if match is None:
        raise ProvisionError(f"ram_size {ram_size!r} is not a size (524288, 256M, 2G)")
    number, unit = int(match[1]), (match[2] or "K").upper()
    kib = number * {"K": 1, "M": 1024, "G": 1024**2, "T": 1024**3}[unit]
    if kib < 64 * 1024:
        raise ProvisionError(f"ram_size {ram_size!r} is less than the 64M a VM needs")
    return kib // 1024


def mac_address(host: Host) -> str:
    """The host's MAC, or a locally administered one derived from its name
    (stable from run to run)."""
    if host.mac:
        return host.mac
    digest = hashlib.sha256(host.name.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def guest_url(url: str) -> str:
    """The coordinator's endpoint as a guest on user-mode networking reaches
    it: this machine's loopback is the gateway's address there."""
    parts = urlsplit(url)
    hostname = parts.hostname or ""
    if hostname in ("localhost", "::1") or hostname.startswith("127."):
        netloc = GATEWAY + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def disk_serial(name: str) -> str:
    return name[:20]  # virtio-blk serials are at most 20 bytes


def console_tail(path: Path, lines: int = CONSOLE_LINES, empty: str = "(no console output)") -> str:
    try:
        text = path.read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return empty
    kept = [line.rstrip("\r") for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:]) or empty


# --- acceleration -----------------------------------------------------------------


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


async def _probe_kvm(image: Image, qemu: str) -> str | None:
    """None when a short boot under KVM reaches the guest's init; else why not."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is missing or not usable by this user"
    with tempfile.TemporaryDirectory(prefix="phalanx-kvm-probe-") as tmp:
        console = Path(tmp) / "console.log"
        process = await asyncio.create_subprocess_exec(
            *_machine_args("kvm", 128, image, f"{KERNEL_ARGS} phalanx.probe"),
            "-serial",
            f"file:{console}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _, err = await asyncio.wait_for(process.communicate(), PROBE_TIMEOUT)
        except TimeoutError:
            signal_group(process.pid, signal.SIGKILL)
            await process.wait()
            return f"a boot under KVM did not finish within {PROBE_TIMEOUT:g}s"
        if PROBE_MARK in console_tail(console, 100):
            return None
        lines = err.decode(errors="replace").strip().splitlines()
        detail = lines[-1] if lines else f"exit status {process.returncode}"
        return f"a boot under KVM failed: {detail}"


async def choose_accel(image: Image, qemu: str = QEMU) -> tuple[str, str]:
    """("kvm" or "tcg", why)."""
    forced = os.environ.get(ACCEL_ENV)
    if forced in ("kvm", "tcg"):
        return forced, f"{ACCEL_ENV}={forced}"
    record = cache_root().parent / "kvm-probe.json"
    key = {"boot_id": _boot_id(), "qemu": shutil.which(qemu) or qemu, "kernel": str(image.path)}
    with contextlib.suppress(OSError, ValueError, KeyError):
        known = json.loads(record.read_text())
        if all(known[k] == v for k, v in key.items()):
            return str(known["accel"]), str(known["reason"]) + " (probed earlier)"
    problem = await _probe_kvm(image, qemu)
    accel, reason = ("kvm", "KVM works") if problem is None else ("tcg", problem)
    with contextlib.suppress(OSError):
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({**key, "accel": accel, "reason": reason}))
    return accel, reason


def _machine_args(accel: str, ram_mb: int, image: Image, append: str) -> list[str]:
    return [
        *_hardware_args(accel, ram_mb),
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(image.initrd),
        "-append",
        append,
    ]


def _hardware_args(accel: str, ram_mb: int) -> list[str]:
    cpu = "host" if accel == "kvm" else "max"
    return [
        QEMU,
        "-machine",
        f"q35,accel={accel}",
        "-cpu",
        cpu,
        "-m",
        f"{ram_mb}M",
        "-smp",
        "1",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",  # a guest that panics or reboots ends its QEMU
    ]


# --- QMP --------------------------------------------------------------------------


class Monitor:
    """A VM's QMP connection, open for the VM's whole life (QEMU serves one
    client at a time): its commands, and its events (SHUTDOWN, POWERDOWN,
    RESET, ...) appended to a JSON-lines file as they come."""

    def __init__(self, socket: Path, events: Path) -> None:
        self.socket = socket
        self.events = events
        self._client: Any = None
        self._listener: Any = None
        self._pump: asyncio.Task[None] | None = None

    async def open(self, process: asyncio.subprocess.Process, within: float = 10.0) -> None:
        from qemu.qmp import EventListener, QMPClient  # only a qemu run needs it

        deadline = time.monotonic() + within
        # Until QEMU listens (a failed connect is logged as an error by qemu.qmp).
        while not self.socket.exists():
            if process.returncode is not None or time.monotonic() > deadline:
                return  # commands will say there is no monitor
            await asyncio.sleep(0.02)
        client = QMPClient("phalanx")
        try:
            await asyncio.wait_for(client.connect(str(self.socket)), within)
        except Exception:  # QEMU went away meanwhile
            with contextlib.suppress(Exception):
                await client.disconnect()
            return
        self._listener = EventListener()
        client.register_listener(self._listener)
        self._client = client
        self._pump = asyncio.create_task(self._write_events())

    async def _write_events(self) -> None:
        async for event in self._listener:
            self._write(event)

    def _write(self, event: Any) -> None:
        stamp = event.get("timestamp", {})
        seconds = stamp.get("seconds", 0) + stamp.get("microseconds", 0) / 1e6
        record = {"time": seconds, "event": event["event"], "data": event.get("data", {})}
        with self.events.open("a") as out:
            out.write(json.dumps(record) + "\n")

    async def execute(self, command: str, timeout: float = 10.0, **arguments: Any) -> Any:
        """A QMP command's `return` value."""
        if self._client is None:
            raise ProvisionError(f"no QMP monitor on {self.socket}")
        return await asyncio.wait_for(self._client.execute(command, arguments or None), timeout)

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            while not self._listener.empty():  # read before the end, not written yet
                self._write(await self._listener.get())
        if self._client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._client.disconnect(), 5)
        self._client = self._listener = self._pump = None


# --- the provider -----------------------------------------------------------------


@dataclass
class _VM:
    host: Host
    process: asyncio.subprocess.Process
    folder: Path  # kept with the run
    private: Path  # disks, seed, QMP socket: removed with the VM
    accel: str
    monitor: Monitor
    network: dict[str, str]  # how it was connected, for vm.json
    started: float = field(default_factory=time.monotonic)
    booted_after: float | None = None  # seconds from QEMU's start to the agent's
    connected_after: float | None = None  # ...to the agent's connection
    ended_by: str | None = None  # how it ended: itself, acpi, quit, killed, lost

    def record(self) -> dict[str, object]:
        """What `vm.json` keeps with the run: how the VM was made, how long
        it took to boot, how it ended."""
        host = self.host
        return {
            "accel": self.accel,
            "boot_image": host.boot_image,  # None: the tiny image
            "ram_mb": ram_megabytes(host.ram_size),
            "mac": mac_address(host),
            "network": self.network,
            "disks": [
                {"name": d.name, "size": d.size, "mount_point": d.mount_point} for d in host.disks
            ],
            "boot_to_agent_s": _rounded(self.booted_after),
            "boot_to_connected_s": _rounded(self.connected_after),
            "ended_by": self.ended_by,
            "exit_status": self.process.returncode,
        }

    @property
    def console(self) -> Path:
        return self.folder / "console.log"


def _rounded(seconds: float | None) -> float | None:
    return round(seconds, 3) if seconds is not None else None


@dataclass(frozen=True)
class Bridged:
    """The VMs' network when they have taps on the cluster's bridge."""

    plan: netns.Plan
    record: netns.Record
    taps: dict[str, str]  # host name: its tap
    hosts_file: str  # every VM's /etc/hosts


class QemuProvider:
    faults: NetworkFaults | None = None  # not yet for VMs: their taps take no faults

    def __init__(
        self,
        root: Path,
        run_id: str,
        image: Image | None = None,
        cluster: Cluster | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.root = root
        self.run_id = run_id
        self.image = image
        self.cluster = cluster
        self.state_dir = state_dir or netns.STATE_DIR
        self.accel = "tcg"
        self.vms: dict[str, _VM] = {}
        self.network: Bridged | None = None  # None: user-mode networking
        # The bridge's address once the VMs have one; None: loopback (10.0.2.2 in the guests).
        self.listen_address: str | None = None
        self._private: Path | None = None

    async def open(self) -> None:
        for tool in (QEMU, QEMU_IMG):
            if shutil.which(tool) is None:
                raise ProvisionError(
                    f"{tool} is not installed (apt-get install qemu-system-x86 qemu-utils)"
                )
        if self.image is None:
            try:
                self.image = await asyncio.to_thread(build_image)
            except ImageError as exc:
                raise ProvisionError(f"no VM image: {exc}") from exc
        self.accel, reason = await choose_accel(self.image)
        accel = "KVM" if self.accel == "kvm" else "TCG, no KVM"
        self._private = Path(
            tempfile.mkdtemp(prefix=f"phalanx-qemu-{self.run_id[-8:]}-", dir=_private_parent())
        )
        why_not = self._why_not_bridged()
        if why_not is None:
            try:
                self.network = await self._bridge()
            except (bridge.PlumbingError, OSError) as exc:
                raise ProvisionError(f"cannot make the VMs' network: {exc}") from exc
            self.listen_address = str(self.network.plan.gateway)
            log.warning(
                "qemu: %s (%s); the VMs are on the bridge %s (%s), the coordinator at %s",
                accel,
                reason,
                self.network.record.bridge,
                self.network.plan.subnet,
                self.listen_address,
            )
        else:
            log.warning(
                "qemu: %s (%s); user-mode networking, because %s: the VMs reach the "
                "coordinator at %s, and NOT each other",
                accel,
                reason,
                why_not,
                GATEWAY,
            )

    def _why_not_bridged(self) -> str | None:
        """None when the VMs get taps on the cluster's bridge; else why not
        (then they have QEMU's user-mode network)."""
        forced = os.environ.get(NETWORK_ENV)
        if forced == "user":
            return f"{NETWORK_ENV}=user"
        if self.cluster is None:
            return "no cluster to make a network for"
        problem = None
        if netns.lacking_capabilities("CAP_NET_ADMIN"):
            problem = "this process is not root (no CAP_NET_ADMIN to make taps and a bridge)"
        elif shutil.which("ip") is None:
            problem = "iproute2's ip is not on PATH"
        if problem is not None and forced == "bridge":
            raise ProvisionError(f"{NETWORK_ENV}=bridge, but {problem}")
        return problem

    async def _bridge(self) -> Bridged:
        """Taps for every VM on the cluster's bridge, as netns makes it."""
        assert self.cluster is not None
        await netns.sweep(self.state_dir)
        mark = netns.label(self.run_id)
        network = self.cluster.network
        bridge_name = (network.bridge_name if network else None) or f"phx{mark}br"
        if len(bridge_name) > bridge.IFNAMSIZ:
            raise ProvisionError(
                f"network.bridge_name {bridge_name!r} is longer than {bridge.IFNAMSIZ} characters"
            )
        taps = {h.name: f"phx{mark}t{i}" for i, h in enumerate(self.cluster.hosts)}
        lines = []
        for tap in taps.values():
            lines += [f"tuntap add dev {tap} mode tap", bridge.attach(tap, bridge_name)]
        plan, record = await netns.make_network(
            self.cluster, self.run_id, self.state_dir, bridge_name, lines, taps=list(taps.values())
        )
        return Bridged(plan, record, taps, netns.hosts_file(self.cluster, plan))

    async def close(self) -> None:
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None
        network, self.network = self.network, None
        self.listen_address = None
        if network is not None:
            # Cancelled meanwhile (a service shutting down) or not, the taps
            # and the bridge go.
            await asyncio.shield(netns.remove_network(network.record, self.state_dir))

    def addresses(self, hosts: list[Host]) -> dict[str, str]:
        if self.network is not None:
            ips = self.network.plan.ips
            return {h.name: str(ips[h.name]) for h in hosts if h.name in ips}
        # Under user-mode networking a VM has no address the others reach;
        # the definitions' own is the best there is to tell a stage.
        return {h.name: h.ip or h.name for h in hosts}

    def diskmounts(self, host: Host) -> str:
        return " && ".join(
            f"/run/phalanx/mount-disk {shlex.quote(disk_serial(d.name))} "
            f"{shlex.quote(d.mount_point)}"
            for d in host.disks
        )

    async def up(self, specs: list[AgentSpec]) -> None:
        if self._private is None or self.image is None:
            raise ProvisionError("the qemu provider was not opened")
        for spec in specs:
            await self._start(spec, self._private, self.image)
        booting = [self._booted(self.vms[s.host.name]) for s in specs]
        problems = [p for p in await asyncio.gather(*booting) if p is not None]
        if problems:
            raise ProvisionError("\n".join(problems))

    async def _start(self, spec: AgentSpec, private_root: Path, image: Image) -> None:
        host = spec.host
        if (host.arch or "x86_64") not in ("x86_64", "amd64"):
            raise ProvisionError(f"{host.name}: arch {host.arch}: only x86_64 VMs for now")
        folder = self.root / host.name
        folder.mkdir(parents=True, exist_ok=True)
        private = Path(tempfile.mkdtemp(prefix="vm-", dir=private_root))
        seed = private / "seed"
        seed.mkdir(mode=0o700)
        token = seed / "token"
        token.touch(mode=0o600)
        token.write_text(spec.token)
        python = os.path.abspath(sys.executable)  # the same path in the guest
        address, gateway, dns, netdev = GUEST_ADDRESS, GATEWAY, DNS, "user,id=net0"
        if self.network is not None:
            if host.name not in self.network.taps:
                raise ProvisionError(f"no network was made for {host.name}")
            plan = self.network.plan
            address = plan.interface(plan.ips[host.name]).with_prefixlen
            gateway, dns = str(plan.gateway), ""  # no name server: /etc/hosts has every name
            tap = self.network.taps[host.name]
            netdev = f"tap,id=net0,ifname={tap},script=no,downscript=no"
            (seed / "hosts").write_text(self.network.hosts_file)
        env = {
            "PHALANX_NAME": host.name,
            "PHALANX_URL": guest_url(spec.url),
            "PHALANX_PYTHON": python,
            "PHALANX_PATH": os.pathsep.join((os.path.dirname(python), *GUEST_PATH)),
            "PHALANX_WORKDIR": GUEST_WORKDIR,
            "PHALANX_GIVE_UP": f"{GIVE_UP_AFTER:g}",
            "PHALANX_ADDRESS": address,
            "PHALANX_GATEWAY": gateway,
            "PHALANX_DNS": dns,
            "PHALANX_PRIVATE": str(private_root.resolve()),
        }
        (seed / "vm.env").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
        if host.boot_image is not None:  # its own bootloader, a cloud-init seed
            cloud_seed = cloudinit.Seed(
                host.name, env["PHALANX_URL"], spec.token, address, gateway, dns,
                self.network.hosts_file if self.network is not None else "",
                GUEST_WORKDIR, GIVE_UP_AFTER, mac_address(host),
            )  # fmt: skip
            args = await cloudinit.boot_image_args(
                host.boot_image,
                cloud_seed,
                private,
                (await self._wheelhouse()).wheels,
                f"{self.run_id}-{host.name}",
                _hardware_args(self.accel, ram_megabytes(host.ram_size)),
            )
        else:
            args = _machine_args(self.accel, ram_megabytes(host.ram_size), image, KERNEL_ARGS)
            args += _share("hostroot", Path("/"), multidevs=True)
            args += _share("seed", seed)
        args += ["-name", host.name]
        args += ["-serial", f"file:{folder / 'console.log'}"]
        args += ["-qmp", f"unix:{private / 'qmp.sock'},server=on,wait=off"]
        args += [
            "-netdev",
            netdev,
            "-device",
            f"virtio-net-pci,netdev=net0,mac={mac_address(host)}",
        ]
        for index, disk in enumerate(host.disks):
            path = private / f"disk{index}.qcow2"
            await _qemu_img(path, disk.size)
            args += [
                "-drive",
                f"file={path},if=none,id=disk{index},format=qcow2",
                "-device",
                f"virtio-blk-pci,drive=disk{index},serial={disk_serial(disk.name)}",
            ]
        with (folder / "qemu.log").open("ab") as qemu_log:
            try:
                process = await asyncio.create_subprocess_exec(
                    *args,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=qemu_log,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                shutil.rmtree(private, ignore_errors=True)
                raise ProvisionError(f"cannot start the VM of {host.name}: {exc}") from exc
        # Kept with the run (QEMU's own -pidfile goes when it exits): which
        # process was this VM, for whoever looks at the run afterwards.
        (folder / "qemu.pid").write_text(f"{process.pid}\n")
        monitor = Monitor(private / "qmp.sock", folder / "qmp-events.jsonl")
        network = {"mode": "user", "address": address}
        if self.network is not None:
            network = {"mode": "bridge", "address": address, "bridge": self.network.record.bridge}
            network["tap"] = self.network.taps[host.name]
        self.vms[host.name] = _VM(host, process, folder, private, self.accel, monitor, network)
        await monitor.open(process)

    async def _wheelhouse(self) -> wheelhouse.Wheelhouse:
        """The agent's wheels for a boot image's seed: built once (cached)."""
        target = wheelhouse.Target(sys.version_info[:2], platform.machine())
        try:
            return await asyncio.to_thread(wheelhouse.wheelhouse, target)
        except wheelhouse.WheelhouseError as exc:
            raise ProvisionError(f"cannot build the agent's wheelhouse: {exc}") from exc

    async def _booted(self, vm: _VM) -> str | None:
        """None once the guest starts its agent; else why it did not."""
        timeout = BOOT_TIMEOUT[self.accel] * (IMAGE_BOOT_FACTOR if vm.host.boot_image else 1)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(FileNotFoundError):
                if BOOTED_MARK.encode() in vm.console.read_bytes():
                    vm.booted_after = time.monotonic() - vm.started
                    return None
            if vm.process.returncode is not None:
                said = console_tail(vm.folder / "qemu.log", 3, empty="")
                return (
                    f"the VM of {vm.host.name} ended before its agent started "
                    f"(QEMU exit status {vm.process.returncode}"
                    + (f"; QEMU: {said}" if said else "")
                    + f"); its console's last lines:\n{console_tail(vm.console)}"
                )
            if time.monotonic() > deadline:
                return (
                    f"the VM of {vm.host.name} did not start its agent within {timeout:g}s "
                    f"({self.accel.upper()}); its console's last lines:\n{console_tail(vm.console)}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(vm.process.wait()), 0.2)

    def connected(self, host: str) -> None:
        """`Diagnosing.connected`: the boot's last step, for vm.json."""
        if (vm := self.vms.get(host)) is not None and vm.connected_after is None:
            vm.connected_after = time.monotonic() - vm.started

    def explain(self, host: str) -> str | None:
        """`Diagnosing.explain`: a VM that booted but whose agent did not
        connect (a wrong address, a refused token, an agent that crashed)
        says so on its console."""
        vm = self.vms.get(host)
        if vm is None:
            return None
        how = (
            "started its agent, which did not connect"
            if vm.booted_after is not None
            else "did not start its agent"
        )
        if vm.process.returncode is not None:
            how += f" (QEMU exit status {vm.process.returncode})"
        return f"the VM of {host} {how}; its console's last lines:\n{console_tail(vm.console)}"

    async def status(self, host: str) -> str:
        """The VM's run state as QEMU reports it (`running`, `paused`, ...)."""
        reply = await self.vms[host].monitor.execute("query-status")
        return str(reply["status"])

    async def power_off(self, host: str, timeout: float = POWERDOWN_GRACE) -> None:
        """ACPI power-off (the guest ends its agent and powers down), then
        `quit` if it has not within `timeout`, then SIGKILL."""
        vm = self.vms[host]
        if vm.process.returncode is None:
            with contextlib.suppress(Exception):
                await vm.monitor.execute("system_powerdown")
            await self._wait_or_force(vm, timeout)

    async def _wait_or_force(self, vm: _VM, timeout: float) -> None:
        """After an ACPI power-off: its end, else `quit`, else SIGKILL."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(vm.process.wait(), timeout)
            vm.ended_by = "acpi"
            return
        with contextlib.suppress(Exception):
            await vm.monitor.execute("quit", timeout=3)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(vm.process.wait(), 5)
            vm.ended_by = "quit"
            return
        signal_group(vm.process.pid, signal.SIGKILL)
        await vm.process.wait()
        vm.ended_by = "killed"

    async def down(self, lost: Collection[str] = ()) -> None:
        """End every VM: a lost one (its agent gone: QEMU killed, guest
        frozen) at once, the others once their agents have shut down and
        powered off, by ACPI and then `quit` if not. Their disks go."""
        vms, self.vms = list(self.vms.values()), {}
        await asyncio.gather(*(self._stop(vm, vm.host.name in lost) for vm in vms))

    async def _stop(self, vm: _VM, lost: bool) -> None:
        try:
            if vm.ended_by is not None:
                pass  # powered off already (`power_off`)
            elif lost:
                signal_group(vm.process.pid, signal.SIGKILL)
                await vm.process.wait()
                vm.ended_by = "lost"
            else:
                try:
                    await asyncio.wait_for(vm.process.wait(), EXIT_GRACE)
                    vm.ended_by = "itself"  # its agent ended (or its kernel did)
                except TimeoutError:
                    with contextlib.suppress(Exception):
                        await vm.monitor.execute("system_powerdown")
                    await self._wait_or_force(vm, POWERDOWN_GRACE)
            signal_group(vm.process.pid, signal.SIGKILL)  # anything left in its group
        finally:
            await vm.monitor.close()
            shutil.rmtree(vm.private, ignore_errors=True)
            with contextlib.suppress(OSError):
                (vm.folder / "vm.json").write_text(json.dumps(vm.record(), indent=2) + "\n")


def _share(tag: str, path: Path, multidevs: bool = False) -> list[str]:
    """A read-only virtio-9p share of `path` under mount tag `tag`."""
    options = f"local,id={tag},path={path},security_model=none,readonly=on"
    if multidevs:
        options += ",multidevs=remap"  # `/` spans many file systems
    return ["-fsdev", options, "-device", f"virtio-9p-pci,fsdev={tag},mount_tag={tag}"]


async def _qemu_img(path: Path, size: int) -> None:
    process = await asyncio.create_subprocess_exec(
        QEMU_IMG,
        "create",
        "-q",
        "-f",
        "qcow2",
        str(path),
        str(size),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise ProvisionError(f"qemu-img cannot make {path.name}: {out.decode().strip()}")


PRIVATE_PARENT = Path("/run/phalanx/qemu")


def _private_parent() -> str | None:
    """Where the VMs' seeds and disks go: under /run when this process may
    write there (every guest mounts a fresh /run, so no VM sees another's
    seed through its 9p root), else the temp dir (the guest masks them)."""
    try:
        PRIVATE_PARENT.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    return str(PRIVATE_PARENT) if os.access(PRIVATE_PARENT, os.W_OK) else None
