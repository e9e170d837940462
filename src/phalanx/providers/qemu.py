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
import json
import logging
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Collection
from pathlib import Path

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
from phalanx.providers.machine import Machine, console_tail
from phalanx.providers.qemuaccel import choose_accel
from phalanx.providers.qemuargs import (
    DISK_ROOT_ARG,
    KERNEL_ARGS,
    QEMU,
    chardev_path,
    disk_args,
    disk_serial,
    fresh_sockets,
    go_args,
    hardware_args,
    mac_address,
    machine_args,
    ram_megabytes,
    share_args,
    template_vm_args,
)
from phalanx.providers.qemuguest import (
    DNS,
    GATEWAY,
    GIVE_UP_AFTER,
    GUEST_ADDRESS,
    GUEST_WORKDIR,
    guest_env,
    write_seed,
)
from phalanx.providers.qemuimg import make_overlay
from phalanx.providers.qemuvm import (
    POWERDOWN_GRACE,
    VM,
    Bridged,
    end_machine,
    net_channel,
    private_parent,
)
from phalanx.providers.vmimage import (
    BOOTED_MARK,
    Image,
    ImageError,
    RootDisk,
    build_image,
    build_root_disk,
    cache_root,
)
from phalanx.providers.vmtemplate import Template

__all__ = ["QemuProvider"]

log = logging.getLogger("phalanx.providers.qemu")

QEMU_IMG = qemuimg.QEMU_IMG
NETWORK_ENV = "PHALANX_QEMU_NETWORK"  # user | bridge: instead of deciding by privileges
BOOT_TIMEOUT = {"kvm": 60.0, "tcg": 180.0}  # to the agent's start, per VM
IMAGE_BOOT_FACTOR = 3  # a boot image's whole distribution boots, and installs the agent
CONSOLE_LINES = 15  # of a VM that did not boot, in the run's reason
REVERT_TAG = "phalanx-revert"  # the snapshot a cluster with `revert: case` returns to
WAITING_MARK = "phalanx-vm: waiting for go"  # the guest's stage2, before its agent (revert)


def fault_table(mark: str) -> str:
    """The run's nftables table for faults between its VMs (bridgefaults)."""
    return f"phalanx_{mark}"


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
        self.vms: dict[str, VM] = {}
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

    async def _go(self, vm: VM) -> None:
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
                hardware_args(self.accel, ram_megabytes(host.ram_size), vcpus=host.vcpus or 1),
            )
        else:
            append = KERNEL_ARGS
            args = machine_args(
                self.accel, ram_megabytes(host.ram_size), image, "", vcpus=host.vcpus or 1
            )
            if disk_root:
                assert self.root_disk is not None
                overlay = private / "root.qcow2"
                await make_overlay(self.root_disk.disk, overlay)
                args += disk_args(overlay)
                append += f" {DISK_ROOT_ARG}"
            else:
                args += share_args("hostroot", Path("/"), multidevs=True)
            args[args.index("-append") + 1] = append
            args += share_args("seed", private / "seed")
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
        self.vms[host.name] = VM(host, machine, network, "disk" if disk_root else "host")

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
    ) -> VM | None:
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
        vm = VM(host, machine, network, "disk", boot="template")
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

    async def _tell(self, vm: VM, line: bytes) -> None:
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

    async def _booted(self, vm: VM, mark: str = BOOTED_MARK) -> str | None:
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

    async def _stop(self, vm: VM, lost: bool) -> None:
        machine = vm.machine
        try:
            await end_machine(machine, lost)
        finally:
            if vm.go is not None:
                vm.go.close()
            await machine.close()  # anything left of its process group, its private folder
            with contextlib.suppress(OSError):
                (vm.folder / "vm.json").write_text(json.dumps(vm.record(), indent=2) + "\n")
