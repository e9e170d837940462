"""The `qemu` provider: every host is a QEMU virtual machine booting the
tiny image (`vmimage`), whose init starts an agent that connects back.

- Acceleration: KVM when a short boot under it works (nested KVM can crash
  or hang: both are caught), else TCG; the choice and its reason are logged
  and remembered until the machine reboots (`kvm-probe.json` in the image
  cache). `PHALANX_QEMU_ACCEL=kvm|tcg` decides instead.
- Each VM: `ram_size` (XrdTest's KiB number, or `256M`, `2G`), `vcpus` (default 1), its
  MAC (or one derived from its name), each disk a qcow2 made for the run and
  attached as virtio-blk with the disk's name as serial, so `@diskmounts@`
  finds it whatever the guest calls it.
- Networking, as root (CAP_NET_ADMIN): every VM has a tap on the
  cluster's bridge, made and planned as the netns provider does
  (`netns.make_network`: the same bridge, addresses, run record, and sweep
  of a crashed run's leftovers). The guest's init gives eth0 the host's
  address and writes the netns hosts file (every host's names, the
  coordinator's on the bridge address), both from the VM's private seed;
  the coordinator listens on the bridge address; network faults between
  the VMs are cut on the bridge (`bridgefaults`). Otherwise (or with
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
  (ACPI `system_powerdown`, then `quit` after a timeout). Each VM is a
  `Machine` (machine.py): one QEMU process group, its console, its monitor.
- Root disks (`vm_root: disk`, and any cluster with `revert: case`): the
  VM boots a qcow2 overlay of `vmimage.build_root_disk` instead of this
  machine's / over 9p, so QEMU can snapshot and migrate it: `migrate(host)`
  moves it to a new QEMU here (on a bridge, to its spare tap); `revert:
  case` snapshots every VM once booted, its guest waiting before its agent,
  and `revert` + `resume` go back there before a case (coordinator/runs.py).
- Templates (`vmtemplate`): a root-disk VM without disks of its own is
  restored from a saved template of its shape and told who it is on its
  go port (`_restore`); without one, or if it does not restore, it boots
  cold.
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
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from phalanx.host.process import signal_group
from phalanx.model import Cluster, Host
from phalanx.providers import (
    bridge,
    cloudinit,
    guestnet,
    netns,
    qemuimg,
    vmtemplate,
    wheelhouse,
)
from phalanx.providers.base import (
    NO_VM_FAULTS,
    AgentSpec,
    Capabilities,
    NetworkFaults,
    ProvisionError,
    Refused,
)
from phalanx.providers.bridgefaults import BridgeFaults
from phalanx.providers.machine import Machine, Monitor, console_tail
from phalanx.providers.qemuimg import make_overlay
from phalanx.providers.vmimage import (
    BOOTED_MARK,
    PROBE_MARK,
    ROOT_SERIAL,
    Image,
    ImageError,
    RootDisk,
    build_image,
    build_root_disk,
    cache_root,
)
from phalanx.providers.vmtemplate import Template

__all__ = ["Machine", "Monitor", "QemuProvider", "console_tail", "mac_address", "ram_megabytes"]

log = logging.getLogger("phalanx.providers.qemu")

QEMU = "qemu-system-x86_64"
QEMU_IMG = qemuimg.QEMU_IMG
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


def fault_table(mark: str) -> str:
    """The run's nftables table for faults between its VMs (bridgefaults)."""
    return f"phalanx_{mark}"


def disk_serial(name: str) -> str:
    return name[:20]  # virtio-blk serials are at most 20 bytes


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


def _machine_args(
    accel: str,
    ram_mb: int,
    image: Image,
    append: str,
    machine_type: str = "q35",
    vcpus: int = 1,
) -> list[str]:
    return [
        *_hardware_args(accel, ram_mb, machine_type, vcpus),
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(image.initrd),
        "-append",
        append,
    ]


def _hardware_args(accel: str, ram_mb: int, machine_type: str = "q35", vcpus: int = 1) -> list[str]:
    cpu = "host" if accel == "kvm" else "max"
    return [
        QEMU,
        "-machine",
        f"{machine_type},accel={accel}",
        "-cpu",
        cpu,
        "-m",
        f"{ram_mb}M",
        "-smp",
        str(vcpus),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",  # a guest that panics or reboots ends its QEMU
    ]


# --- the provider -----------------------------------------------------------------

REVERT_TAG = "phalanx-revert"  # the snapshot a cluster with `revert: case` returns to
WAITING_MARK = "phalanx-vm: waiting for go"  # the guest's stage2, before its agent (revert)
DISK_ROOT_ARG = "phalanx.root=disk"
ROOT_DEVICE = "phalanx-root"  # the root disk's drive id


@dataclass
class _VM:
    host: Host
    machine: Machine
    network: dict[str, str]  # how it was connected, for vm.json
    root: str  # host | disk
    boot: str = "cold"  # cold | template (restored from one: vmtemplate)
    booted_after: float | None = None  # seconds from QEMU's start to the agent's (or to `go`)
    connected_after: float | None = None  # ...to the agent's connection
    go: asyncio.StreamWriter | None = None  # the "go" port's connection (revert: case)

    @property
    def process(self) -> asyncio.subprocess.Process:
        assert self.machine.process is not None, "a VM is registered once QEMU runs"
        return self.machine.process

    @property
    def folder(self) -> Path:
        return self.machine.folder

    @property
    def private(self) -> Path:
        return self.machine.private

    @property
    def monitor(self) -> Monitor | None:
        return self.machine.monitor

    @property
    def console(self) -> Path:
        return self.machine.console

    def record(self) -> dict[str, object]:
        """What `vm.json` keeps with the run: how the VM was made, how long
        it took to boot, its migrations and snapshots, how it ended."""
        host = self.host
        return {
            "accel": self.machine.accel,
            "boot_image": host.boot_image,  # None: the tiny image
            "ram_mb": ram_megabytes(host.ram_size),
            "vcpus": host.vcpus or 1,
            "mac": mac_address(host),
            "root": self.root,
            "boot": self.boot,
            "network": self.network,
            "disks": [
                {"name": d.name, "size": d.size, "mount_point": d.mount_point} for d in host.disks
            ],
            "boot_to_agent_s": _rounded(self.booted_after),
            "boot_to_connected_s": _rounded(self.connected_after),
            "migrations": self.machine.migrations,
            "snapshots": self.machine.snapshots,
            "ended_by": self.machine.ended_by,
            "exit_status": self.machine.returncode,
        }


def _rounded(seconds: float | None) -> float | None:
    return round(seconds, 3) if seconds is not None else None


@dataclass(frozen=True)
class Bridged:
    """The VMs' network when they have taps on the cluster's bridge."""

    plan: netns.Plan
    record: netns.Record
    taps: dict[str, str]  # host name: its tap
    hosts_file: str  # every VM's /etc/hosts
    # host name: a second tap on the bridge, for the QEMU a VM migrates to
    # (a tap serves one QEMU at a time); the two swap at each migration.
    spares: dict[str, str] = field(default_factory=dict)


def guest_env(
    name: str,
    url: str | None,
    *,
    python: str,
    address: str = GUEST_ADDRESS,
    gateway: str = GATEWAY,
    dns: str = DNS,
    private: str = "",
    wait_go: bool = False,
) -> dict[str, str]:
    """What the guest's init and stage2 are told (`vm.env` in its seed).
    No `url`: no agent is started (a VM driven from outside)."""
    env = {
        "PHALANX_NAME": name,
        "PHALANX_URL": guest_url(url) if url else "",
        "PHALANX_PYTHON": python,
        "PHALANX_PATH": os.pathsep.join(dict.fromkeys((os.path.dirname(python), *GUEST_PATH))),
        "PHALANX_WORKDIR": GUEST_WORKDIR,
        "PHALANX_GIVE_UP": f"{GIVE_UP_AFTER:g}",
        "PHALANX_ADDRESS": address,
        "PHALANX_GATEWAY": gateway,
        "PHALANX_DNS": dns,
        "PHALANX_PRIVATE": private,
    }
    if wait_go:
        env["PHALANX_WAIT_GO"] = "1"
    return env


def write_seed(
    seed: Path,
    env: dict[str, str],
    token: str | None = None,
    files: Mapping[str, str | bytes] = {},
) -> None:
    """A VM's seed folder (0700; its files 0600): `vm.env`, the agent's
    token, and `files` by name (`hosts`, `authorized_keys`,
    `ssh_host_ed25519_key`). It reaches the guest on a 9p share its init
    reads and unmounts before anything else runs (an unmounted share keeps
    neither savevm nor migration from working)."""
    seed.mkdir(mode=0o700, parents=True, exist_ok=True)
    texts: dict[str, str | bytes] = dict(files)
    texts["vm.env"] = "".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items())
    if token is not None:
        texts["token"] = token
    for name, data in texts.items():
        path = seed / name
        path.touch(mode=0o600)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)


def disk_args(overlay: Path) -> list[str]:
    """The root disk (its per-VM overlay) as the init finds it: by serial."""
    return [
        "-drive",
        f"file={overlay},if=none,id={ROOT_DEVICE},format=qcow2",
        "-device",
        f"virtio-blk-pci,drive={ROOT_DEVICE},serial={ROOT_SERIAL}",
    ]


def go_args(socket: Path) -> list[str]:
    """The `phalanx.go` port: the provider says go on it, the guest's stage2
    waits for it before starting its agent."""
    return [
        "-device", "virtio-serial-pci,id=phalanx-vser",
        "-chardev", f"socket,id=phalanx-go,path={socket},server=on,wait=off",
        "-device", "virtserialport,bus=phalanx-vser.0,chardev=phalanx-go,name=phalanx.go",
    ]  # fmt: skip


def fresh_sockets(args: list[str], generation: int) -> list[str]:
    """A migration's clone of `args`, its ports' sockets (`go`, `net`) at
    paths of its own: QEMU removes a listening socket's path when it ends,
    so a path shared with the source would be gone with the source (and a
    destination that failed would take the source's with it)."""
    return [
        re.sub(r"(path=[^,]*/(?:go|net))(?:-\d+)?\.sock", rf"\g<1>-{generation}.sock", a)
        for a in args
    ]


def chardev_path(args: list[str], chardev: str) -> Path | None:
    """Where the QEMU of `args` listens for chardev `chardev`'s socket."""
    for arg in args:
        if arg.startswith("socket,") and f",id={chardev}," in f",{arg[7:]},":
            match = re.search(r"(?:^|,)path=([^,]*)", arg)
            if match:
                return Path(match[1])
    return None


def net_channel(host: str, machine: Machine) -> guestnet.GuestChannel:
    """The phalanx.net port of `host`'s VM (`phalanx-net slow` and heal, in
    the guest), at the socket its QEMU listens on now."""
    socket = chardev_path(machine.args, guestnet.CHARDEV) or machine.private / "net.sock"
    return guestnet.GuestChannel(host, socket)


def template_vm_args(
    accel: str,
    ram_mb: int,
    vcpus: int,
    image: Image,
    overlay: Path,
    seed: Path,
    go: Path,
    net: Path,
    netdev: str,
    mac: str,
) -> list[str]:
    """A VM that is a template (vmtemplate) or is restored from one: the
    same machine and devices in the same order either way (a restoring QEMU
    must match the saved one), only the files and the network's backend
    its own. `vmgenid`: each restoring QEMU has a new one, and the guest's
    kernel reseeds its RNG when it changes."""
    args = _machine_args(accel, ram_mb, image, f"{KERNEL_ARGS} {DISK_ROOT_ARG}", vcpus=vcpus)
    args += disk_args(overlay) + _share("seed", seed) + go_args(go) + guestnet.port_args(net)
    args += ["-device", "vmgenid,guid=auto"]
    args += ["-netdev", netdev, "-device", f"virtio-net-pci,netdev=net0,mac={mac}"]
    return args


async def standalone_vm(
    name: str,
    folder: Path,
    private: Path,
    *,
    accel: str,
    image: Image,
    root_disk: RootDisk,
    ram_mb: int = 256,
    netdev: str = "user,id=net0",
    mac: str = "",
    files: Mapping[str, str | bytes] = {},
    extra: tuple[str, ...] = (),
    machine_type: str = "q35",
) -> Machine:
    """A disk-root VM without an agent (phalanx.virt drives it): its seed
    (`files`: `authorized_keys` and `ssh_host_ed25519_key` start sshd),
    its overlay and command line; not started yet. `machine_type`: `pc`
    for tests whose devices name the i440fx buses (`bus=pci.0`)."""
    private.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_seed(private / "seed", guest_env(name, None, python=root_disk.python), files=files)
    overlay = private / "root.qcow2"
    await make_overlay(root_disk.disk, overlay)
    mac = mac or mac_address(Host(name=name))
    args = _machine_args(accel, ram_mb, image, f"{KERNEL_ARGS} {DISK_ROOT_ARG}", machine_type)
    args += _share("seed", private / "seed") + disk_args(overlay)
    args += ["-netdev", netdev, "-device", f"virtio-net-pci,netdev=net0,mac={mac}", *extra]
    return Machine(name, args, folder, private, accel=accel)


class QemuProvider:
    # On a bridge: cuts between the VMs' MACs (bridgefaults), delays in
    # the guests (guestnet); on the user-mode network there is nothing
    # between them to cut.
    faults: NetworkFaults | None = None

    def __init__(
        self,
        root: Path,
        run_id: str,
        image: Image | None = None,
        cluster: Cluster | None = None,
        state_dir: Path | None = None,
        root_disk: RootDisk | None = None,
        vm_root: str | None = None,
    ) -> None:
        """`vm_root`: `host` or `disk`, whatever the cluster says (the
        cluster's `vm_root`, else `disk` when it reverts, else `host`)."""
        self.root = root
        self.run_id = run_id
        self.image = image
        self.root_disk = root_disk
        self.cluster = cluster
        self.state_dir = state_dir or netns.STATE_DIR
        self.accel = "tcg"
        self.vms: dict[str, _VM] = {}
        self.network: Bridged | None = None  # None: user-mode networking
        # The bridge's address once the VMs have one; None: loopback (10.0.2.2 in the guests).
        self.listen_address: str | None = None
        self._private: Path | None = None
        self._channels: dict[str, guestnet.GuestChannel] = {}  # host: its phalanx.net port
        # Where templates are kept (vmtemplate); None: beside the images.
        self.templates_root: Path | None = None
        self._templates: dict[tuple[int, int], Template | None] = {}  # (MiB, vCPUs)
        self.reverts = cluster is not None and cluster.revert == "case"
        vm_root = vm_root or (cluster.vm_root if cluster is not None else None)
        self.vm_root = vm_root or ("disk" if self.reverts else "host")
        if self.reverts and self.vm_root != "disk":
            raise ProvisionError("revert: case needs VMs with a root disk (vm_root: disk)")

    def capabilities(self) -> Capabilities:
        # Moving a VM and keeping a cluster up are a hypervisor's (remote.py);
        # this provider runs its VMs without one.
        without = (
            "these VMs run without a hypervisor (phalanx hypervisor, or the coordinator's own)"
        )
        return Capabilities(
            faults=self.faults if self.faults is not None else Refused(NO_VM_FAULTS),
            migration=Refused(f"live migration needs a hypervisor; {without}"),
            revert=self,
            keep=Refused(f"only a hypervisor keeps a cluster up; {without}"),
        )

    async def open(self) -> None:
        for tool in (QEMU, QEMU_IMG):
            if shutil.which(tool) is None:
                raise ProvisionError(
                    f"{tool} is not installed (apt-get install qemu-system-x86 qemu-utils)"
                )
        try:
            if self.image is None:
                self.image = await asyncio.to_thread(build_image)
            if self.vm_root == "disk" and self.root_disk is None:
                self.root_disk = await asyncio.to_thread(build_root_disk)
        except ImageError as exc:
            raise ProvisionError(f"no VM image: {exc}") from exc
        self.accel, reason = await choose_accel(self.image)
        accel = "KVM" if self.accel == "kvm" else "TCG, no KVM"
        if self.vm_root == "disk":
            reason += "; the VMs boot root disks of their own"
        self._private = Path(
            tempfile.mkdtemp(prefix=f"phalanx-qemu-{self.run_id[-8:]}-", dir=private_parent())
        )
        why_not = self._why_not_bridged()
        if why_not is None:
            try:
                self.network = await self._bridge()
                hosts = list(self.cluster.hosts) if self.cluster is not None else []
                cuts = BridgeFaults(
                    table=fault_table(netns.label(self.run_id)),
                    macs={h.name: mac_address(h) for h in hosts},
                )
                self.faults = guestnet.VmFaults(cuts, self._channel, [h.name for h in hosts])
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
        """Taps for every VM on the cluster's bridge, as netns makes it (and
        a spare one each when the VMs have root disks: they may migrate)."""
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
        spares = (
            {h.name: f"phx{mark}s{i}" for i, h in enumerate(self.cluster.hosts)}
            if self.vm_root == "disk"
            else {}
        )
        lines = []
        for tap in [*taps.values(), *spares.values()]:
            lines += [f"tuntap add dev {tap} mode tap", bridge.attach(tap, bridge_name)]
        plan, record = await netns.make_network(
            self.cluster,
            self.run_id,
            self.state_dir,
            bridge_name,
            lines,
            taps=[*taps.values(), *spares.values()],
            tables=[fault_table(mark)],
        )
        return Bridged(plan, record, taps, netns.hosts_file(self.cluster, plan), spares)

    async def close(self) -> None:
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None
        network, self.network = self.network, None
        self.listen_address = None
        self.faults = None
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
        """Every VM booted to its agent's start. A cluster that reverts is
        snapshotted first, each guest waiting before its agent (so that
        every restore starts a fresh agent, as the first boot did)."""
        if self._private is None or self.image is None:
            raise ProvisionError("the qemu provider was not opened")
        await self._start_all(specs, self._private, self.image)
        mark = WAITING_MARK if self.reverts else BOOTED_MARK
        booting = [self._booted(self.vms[s.host.name], mark) for s in specs]
        problems = [p for p in await asyncio.gather(*booting) if p is not None]
        if problems:
            raise ProvisionError("\n".join(problems))
        if self.reverts:
            vms = [self.vms[s.host.name] for s in specs]
            await asyncio.gather(*(vm.machine.savevm(REVERT_TAG) for vm in vms))
            await asyncio.gather(*(self._go(vm) for vm in vms))

    async def revert(self) -> None:
        """Every VM back to the snapshot `up` took (`revert: case`), then
        told to go: each starts a fresh agent, which connects with the same
        token (the coordinator takes it in place of the old one:
        `AgentHub.replace`, between `revert` and `resume`)."""
        faults = self.faults if isinstance(self.faults, guestnet.VmFaults) else None
        async with faults.restoring() if faults is not None else contextlib.nullcontext():
            await asyncio.gather(*(vm.machine.loadvm(REVERT_TAG) for vm in self.vms.values()))

    async def resume(self) -> None:
        """After `revert`: the guests start their agents."""
        await asyncio.gather(*(self._go(vm) for vm in self.vms.values()))

    async def _go(self, vm: _VM) -> None:
        if vm.go is not None:
            vm.go.close()
        try:
            socket = chardev_path(vm.machine.args, "phalanx-go") or vm.private / "go.sock"
            _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(socket)), 10)
            vm.go = writer
            writer.write(b"go\n")
            await writer.drain()
        except (OSError, TimeoutError) as exc:
            raise ProvisionError(f"cannot tell the VM of {vm.host.name} to go: {exc}") from exc

    async def migrate(self, host: str, mode: str = "tcp", timeout: float = 120.0) -> float:
        """Live-migrate a VM (root disk only) to a new QEMU on this machine;
        on a bridge it moves to its spare tap. Seconds taken."""
        vm = self.vms[host]
        if vm.root != "disk":
            raise ProvisionError(
                f"the VM of {host} shares this machine's root over 9p: QEMU cannot migrate it "
                "(vm_root: disk)"
            )
        args = fresh_sockets(vm.machine.args, len(vm.machine.migrations) + 1)
        if self.network is not None:
            tap, spare = self.network.taps[host], self.network.spares[host]
            args = [a.replace(f"ifname={tap},", f"ifname={spare},") for a in args]
        seconds = await vm.machine.migrate(mode, timeout, args=args)
        if self.network is not None:
            self.network.taps[host], self.network.spares[host] = spare, tap
            vm.network["tap"] = spare
        if (channel := self._channels.get(host)) is not None:
            channel.retarget(chardev_path(args, guestnet.CHARDEV) or channel.socket)
        return seconds

    async def _start_all(self, specs: list[AgentSpec], private_root: Path, image: Image) -> None:
        """Cold boots one after another; VMs restored from templates side by
        side once their templates are there (each built once, in turn)."""
        restoring = [s for s in specs if self._why_cold(s.host) is None]
        for spec in restoring:
            await self._template(ram_megabytes(spec.host.ram_size), spec.host.vcpus or 1)
        for spec in specs:
            if spec not in restoring:
                await self._start(spec, private_root, image)
        started = await asyncio.gather(
            *(self._start(s, private_root, image) for s in restoring), return_exceptions=True
        )
        for problem in started:
            if isinstance(problem, BaseException):
                raise problem

    async def _start(self, spec: AgentSpec, private_root: Path, image: Image) -> None:
        host = spec.host
        if (host.arch or "x86_64") not in ("x86_64", "amd64"):
            raise ProvisionError(f"{host.name}: arch {host.arch}: only x86_64 VMs for now")
        folder = self.root / host.name
        folder.mkdir(parents=True, exist_ok=True)
        private = Path(tempfile.mkdtemp(prefix="vm-", dir=private_root))
        disk_root = self.vm_root == "disk" and self.root_disk is not None
        python = self.root_disk.python if self.root_disk and disk_root else sys.executable
        address, gateway, dns, netdev = GUEST_ADDRESS, GATEWAY, DNS, "user,id=net0"
        files: dict[str, str | bytes] = {}
        if self.network is not None:
            if host.name not in self.network.taps:
                raise ProvisionError(f"no network was made for {host.name}")
            plan = self.network.plan
            address = plan.interface(plan.ips[host.name]).with_prefixlen
            gateway, dns = str(plan.gateway), ""  # no name server: /etc/hosts has every name
            tap = self.network.taps[host.name]
            netdev = f"tap,id=net0,ifname={tap},script=no,downscript=no"
            files["hosts"] = self.network.hosts_file
        files.update(guestnet.seed_files(host.link))  # applied by the guest at boot
        env = guest_env(
            host.name,
            spec.url,
            # The same path in the guest (9p root), or the root disk's Python.
            python=python if disk_root else os.path.abspath(python),
            address=address,
            gateway=gateway,
            dns=dns,
            private=str(private_root.resolve()),
            wait_go=self.reverts,
        )
        write_seed(private / "seed", env, spec.token, files)
        network = {"mode": "user", "address": address}
        if self.network is not None:
            network = {"mode": "bridge", "address": address, "bridge": self.network.record.bridge}
            network["tap"] = self.network.taps[host.name]
        if self._why_cold(host) is None:
            hosts = self.network.hosts_file if self.network is not None else ""
            restored = await self._restore(spec, folder, private, env, netdev, hosts, network)
            if restored is not None:
                self.vms[host.name] = restored
                return
        if host.boot_image is not None:  # its own bootloader, a cloud-init seed
            if guestnet.seed_files(host.link):
                raise ProvisionError(
                    f"{host.name} boots its own image (boot_image): phalanx cannot give it "
                    "link conditions (they are applied by the tiny image's guest)"
                )
            if self.reverts:
                raise ProvisionError(
                    f"{host.name} boots its own image (boot_image), which cannot wait for "
                    "phalanx's go before its agent: revert: case needs phalanx's root disk"
                )
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
                _hardware_args(self.accel, ram_megabytes(host.ram_size), vcpus=host.vcpus or 1),
            )
        else:
            append = KERNEL_ARGS
            args = _machine_args(
                self.accel, ram_megabytes(host.ram_size), image, "", vcpus=host.vcpus or 1
            )
            if disk_root:
                assert self.root_disk is not None
                overlay = private / "root.qcow2"
                await make_overlay(self.root_disk.disk, overlay)
                args += disk_args(overlay)
                append += f" {DISK_ROOT_ARG}"
            else:
                args += _share("hostroot", Path("/"), multidevs=True)
            args[args.index("-append") + 1] = append
            args += _share("seed", private / "seed")
            if self.reverts:
                args += go_args(private / "go.sock")
            args += guestnet.port_args(private / "net.sock")  # slow and heal, in the guest
        args += [
            "-netdev",
            netdev,
            "-device",
            f"virtio-net-pci,netdev=net0,mac={mac_address(host)}",
        ]
        for index, disk in enumerate(host.disks):
            path = private / f"disk{index}.qcow2"
            await qemuimg.create(path, disk.size)
            args += [
                "-drive",
                f"file={path},if=none,id=disk{index},format=qcow2",
                "-device",
                f"virtio-blk-pci,drive=disk{index},serial={disk_serial(disk.name)}",
            ]
        machine = Machine(host.name, args, folder, private, accel=self.accel)
        try:
            await machine.start()
        except ProvisionError:
            if machine.process is None:  # not even started
                await machine.close()
                raise
            # QEMU ended at once: `_booted` says so, with what QEMU said.
        self.vms[host.name] = _VM(host, machine, network, "disk" if disk_root else "host")

    def _channel(self, host: str) -> guestnet.GuestChannel | None:
        """The VM's phalanx.net port (None: it boots its own image, or is not
        running: nothing to slow, nor to heal)."""
        vm = self.vms.get(host)
        if vm is None or vm.host.boot_image is not None or vm.process.returncode is not None:
            return None
        if host not in self._channels:
            self._channels[host] = net_channel(host, vm.machine)
        return self._channels[host]

    def _why_cold(self, host: Host) -> str | None:
        """None when `host`'s VM may be restored from a template; else why not."""
        if not vmtemplate.enabled():
            return f"{vmtemplate.ENV}=0"
        if (host.arch or "x86_64") not in ("x86_64", "amd64"):
            return f"arch {host.arch}"
        if self.vm_root != "disk" or self.root_disk is None:
            return "it shares this machine's root over 9p, which QEMU cannot save"
        if host.boot_image is not None:
            return "it boots its own image"
        if host.disks:
            return "it has disks of its own"
        return None

    def _shape(self, ram_mb: int, vcpus: int) -> vmtemplate.Shape:
        assert self.image is not None and self.root_disk is not None
        placeholders = (Path("/overlay"), Path("/seed"), Path("/go"), Path("/net"))
        args = template_vm_args(
            self.accel, ram_mb, vcpus, self.image, *placeholders, vmtemplate.NETDEV, vmtemplate.MAC
        )
        return vmtemplate.Shape(
            tuple(args), str(self.root_disk.disk), vmtemplate.qemu_identity(QEMU)
        )

    async def _template(self, ram_mb: int, vcpus: int) -> Template | None:
        """The template VMs of this RAM and vCPUs restore from: found in the
        cache or built now (once per provider); None (logged) if it cannot be."""
        key = (ram_mb, vcpus)
        if key in self._templates:
            return self._templates[key]
        shape = self._shape(ram_mb, vcpus)
        root = self.templates_root or cache_root()
        template = await asyncio.to_thread(vmtemplate.find, shape, root)
        if template is None:
            began = time.monotonic()
            try:
                template = await vmtemplate.build(
                    shape,
                    root,
                    lambda disk, folder: self._boot_template(ram_mb, vcpus, disk, folder),
                    self.accel,
                )
                log.info(
                    "qemu: built the template for %d MiB, %d vCPUs in %.1fs (%s)",
                    ram_mb, vcpus, time.monotonic() - began, template.path,
                )  # fmt: skip
            except ProvisionError as exc:
                log.warning(
                    "qemu: no template for %d MiB, %d vCPUs, so its VMs boot cold: %s",
                    ram_mb, vcpus, exc,
                )  # fmt: skip
        self._templates[key] = template
        return template

    async def _boot_template(self, ram_mb: int, vcpus: int, disk: Path, folder: Path) -> Machine:
        """The template's VM started: a root disk overlay at `disk`, no
        name, no address, no agent yet (PHALANX_TEMPLATE)."""
        assert self._private is not None and self.image is not None and self.root_disk is not None
        private = Path(tempfile.mkdtemp(prefix="template-", dir=self._private))
        env = guest_env("template.invalid", None, python=self.root_disk.python)
        env["PHALANX_TEMPLATE"] = "1"
        write_seed(private / "seed", env)
        await make_overlay(self.root_disk.disk, disk)
        args = template_vm_args(
            self.accel, ram_mb, vcpus, self.image, disk, private / "seed", private / "go.sock",
            private / "net.sock", vmtemplate.NETDEV, vmtemplate.MAC,
        )  # fmt: skip
        machine = Machine("template", args, folder, private, accel=self.accel)
        try:
            await machine.start()
        except BaseException:
            await machine.close()
            raise
        return machine

    async def _restore(
        self,
        spec: AgentSpec,
        folder: Path,
        private: Path,
        env: dict[str, str],
        netdev: str,
        hosts: str,
        network: dict[str, str],
    ) -> _VM | None:
        """The host's VM restored from its template and told who it is;
        None (logged) when there is no template or it did not restore: the
        caller boots it cold. A template QEMU cannot load is discarded (the
        next run builds it anew)."""
        assert self.image is not None
        host = spec.host
        ram_mb, vcpus = ram_megabytes(host.ram_size), host.vcpus or 1
        template = await self._template(ram_mb, vcpus)
        if template is None:
            return None
        overlay = private / "root.qcow2"
        await make_overlay(template.disk, overlay)
        args = template_vm_args(
            self.accel, ram_mb, vcpus, self.image, overlay, private / "seed", private / "go.sock",
            private / "net.sock", netdev, mac_address(host),
        )  # fmt: skip
        machine = Machine(host.name, args, folder, private, accel=self.accel)
        vm = _VM(host, machine, network, "disk", boot="template")
        try:
            await machine.start(vmtemplate.incoming(template))
            await vmtemplate.restored(machine)
            told = vmtemplate.identity(
                env, spec.token, mac_address(host), hosts, guestnet.seed_files(host.link)
            )
            await self._tell(vm, told)
        except ProvisionError as exc:
            log.warning(
                "qemu: %s: the template %s did not restore, so it boots cold: %s",
                host.name, template.path.name, exc,
            )  # fmt: skip
            await machine.kill()
            unrestorable = isinstance(exc, vmtemplate.Unrestorable) or vmtemplate.refused(machine)
            if machine.monitor is not None:
                await machine.monitor.close()
            for leftover in private.glob("qmp-*.sock"):  # the cold boot's QEMU serves its own
                leftover.unlink(missing_ok=True)
            if unrestorable:
                self._templates[(ram_mb, vcpus)] = None
                vmtemplate.discard(template)
            return None
        return vm

    async def _tell(self, vm: _VM, line: bytes) -> None:
        """`line` on the VM's go port (its connection kept: closed at `down`)."""
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(vm.private / "go.sock")), 10
            )
            vm.go = writer
            writer.write(line)
            await writer.drain()
        except (OSError, TimeoutError) as exc:
            raise ProvisionError(f"cannot tell the VM of {vm.host.name} who it is: {exc}") from exc

    async def _wheelhouse(self) -> wheelhouse.Wheelhouse:
        """The agent's wheels for a boot image's seed: built once (cached)."""
        target = wheelhouse.Target(sys.version_info[:2], platform.machine())
        try:
            return await asyncio.to_thread(wheelhouse.wheelhouse, target)
        except wheelhouse.WheelhouseError as exc:
            raise ProvisionError(f"cannot build the agent's wheelhouse: {exc}") from exc

    async def _booted(self, vm: _VM, mark: str = BOOTED_MARK) -> str | None:
        """None once the guest starts its agent (or waits to); else why not."""
        timeout = BOOT_TIMEOUT[self.accel] * (IMAGE_BOOT_FACTOR if vm.host.boot_image else 1)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(FileNotFoundError):
                if mark.encode() in vm.console.read_bytes():
                    vm.booted_after = time.monotonic() - vm.machine.started
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
            vm.connected_after = time.monotonic() - vm.machine.started

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
        return await self.vms[host].machine.status()

    async def power_off(self, host: str, timeout: float = POWERDOWN_GRACE) -> None:
        """ACPI power-off (the guest ends its agent and powers down), then
        `quit` if it has not within `timeout`, then SIGKILL."""
        vm = self.vms[host]
        if vm.process.returncode is None:
            await vm.machine.power_off(timeout)

    async def down(self, lost: Collection[str] = ()) -> None:
        """End every VM: a lost one (its agent gone: QEMU killed, guest
        frozen) at once, the others once their agents have shut down and
        powered off, by ACPI and then `quit` if not. Their disks go."""
        vms, self.vms = list(self.vms.values()), {}
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()
        await asyncio.gather(*(self._stop(vm, vm.host.name in lost) for vm in vms))

    async def _stop(self, vm: _VM, lost: bool) -> None:
        machine = vm.machine
        try:
            await end_machine(machine, lost)
        finally:
            if vm.go is not None:
                vm.go.close()
            await machine.close()  # anything left of its process group, its private folder
            with contextlib.suppress(OSError):
                (vm.folder / "vm.json").write_text(json.dumps(vm.record(), indent=2) + "\n")


async def end_machine(machine: Machine, lost: bool) -> None:
    """A VM at its cluster's end: a lost one (its agent gone: QEMU killed,
    guest frozen) at once, the others once their agents have shut down and
    powered off, by ACPI and then `quit` if not. One already powered off
    (`power_off`) is left as it was."""
    if machine.ended_by is not None:
        return
    if lost:
        await machine.kill()
        machine.ended_by = "lost"
        return
    try:
        await machine.wait(EXIT_GRACE)
        machine.ended_by = "itself"  # its agent ended (or its kernel did)
    except TimeoutError:
        await machine.power_off(POWERDOWN_GRACE)


def _share(tag: str, path: Path, multidevs: bool = False) -> list[str]:
    """A read-only virtio-9p share of `path` under mount tag `tag`."""
    options = f"local,id={tag},path={path},security_model=none,readonly=on"
    if multidevs:
        options += ",multidevs=remap"  # `/` spans many file systems
    return ["-fsdev", options, "-device", f"virtio-9p-pci,fsdev={tag},mount_tag={tag}"]


PRIVATE_PARENT = Path("/run/phalanx/qemu")


def private_parent() -> str | None:
    """Where the VMs' seeds and disks go: under /run when this process may
    write there (every guest mounts a fresh /run, so no VM sees another's
    seed through its 9p root), else the temp dir (the guest masks them)."""
    try:
        PRIVATE_PARENT.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    return str(PRIVATE_PARENT) if os.access(PRIVATE_PARENT, os.W_OK) else None
