"""Live migration of a hypervisor's VMs: to a new QEMU beside it, or to
another hypervisor (each side's part; the coordinator's `HypervisorProvider`
asks them in turn).

To another hypervisor, in four requests:

1. the source's `departure`: what the destination needs to rebuild the VM
   (its QEMU command line and the folder its paths are in, its root disk's
   content hash, its bridge and tap, its writable drives);
2. the destination's `incoming`: the same command line with its own
   paths (an empty overlay on its own copy of the root disk, whose content
   hash must be the source's; the user disks empty, of the same sizes; its
   own seed folder and console), on a tap of its own on the cluster's
   bridge (found by name: refused when this machine has no such bridge) or
   on QEMU's user-mode network as the source was, started with
   `-incoming defer` and its drives exported over NBD;
3. the source's `send`: mirror, migrate, switch over, end (`Machine.send`);
4. the destination's `settle`: the guest running (or, after a failure,
   `abandon`: the new QEMU, its tap and folder gone).

A VM that came in is an `Arrival`, held beside the hypervisor's clusters
under the same key: the cluster's down and close reach it, and so do
`slow` and heal (`phalanx-net`, in the guest over its own `phalanx.net`
socket). It migrates again as a provider's VM does: beside itself (a new
tap of its own on the bridge), or to a third hypervisor or back to the one
it came from, whose provider no longer runs it (its root disk whole again
when it came whole). Its cluster does not revert (its snapshot stayed
behind). Its migrations so far, and whether it is slowed, travel with it.

The NBD exports and the migration stream are plain TCP on the address the
destination gives (its loopback when the coordinator is on its machine):
they carry the guest's disks and memory unencrypted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phalanx.model import Host
from phalanx.providers import bridge, guestnet, netns, qemuimg
from phalanx.providers.base import FaultError, ProvisionError
from phalanx.providers.machine import Drive, Machine, Receiving
from phalanx.providers.qemu import QemuProvider
from phalanx.providers.qemuargs import ROOT_DEVICE, chardev_path, fresh_sockets
from phalanx.providers.qemuvm import end_machine, net_channel, private_parent

if TYPE_CHECKING:
    from phalanx.hypervisor.core import Hypervisor
    from phalanx.providers.vmimage import Image, RootDisk

log = logging.getLogger("phalanx.hypervisor")

HASH_CHUNK = 4 << 20


@dataclass(frozen=True)
class Departure:
    """What the source says of a VM that is to move to another hypervisor."""

    hypervisor: str  # the source's name
    run_id: str
    host: str
    args: list[str]  # its QEMU command line (Machine.args)
    private: str  # the source's folder the command line's own files are in
    accel: str
    root_hash: str  # sha256 of the root disk's base image; "": it has none, it crosses whole
    drives: list[Drive]
    bridge: str | None = None  # None: QEMU's user-mode network
    tap: str | None = None
    record: dict[str, Any] = field(default_factory=dict)  # its vm.json so far
    slowed: bool = False  # `phalanx-net slow` holds in the guest: a heal must reach it there


def departure_fields(departure: Departure) -> dict[str, Any]:
    """As the wire carries it (`wire.hypervisor.DepartureFields`)."""
    return dataclasses.asdict(departure)


def departure_of(fields: dict[str, Any]) -> Departure:
    """From `departure_fields` (checked on the wire already)."""
    drives = [Drive(**d) for d in fields.get("drives", [])]
    return Departure(**{**fields, "drives": drives})


def content_hash(path: Path) -> str:
    """sha256 of a (large, read-only) image; remembered beside it as long as
    its size and mtime hold, so a second migration does not read it again."""
    stat = path.stat()
    stamp = f"{stat.st_size} {stat.st_mtime_ns}"
    sidecar = path.with_name(path.name + ".sha256")
    with contextlib.suppress(OSError, ValueError):
        known_stamp, known = sidecar.read_text().rsplit(" ", 1)
        if known_stamp == stamp:
            return known.strip()
    digest = hashlib.sha256()
    with path.open("rb") as image:
        while chunk := image.read(HASH_CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    with contextlib.suppress(OSError):
        sidecar.write_text(f"{stamp} {value}\n")
    return value


def crosses_whole(root_hash: str, mine: str) -> tuple[str, ...]:
    """The drives a destination takes whole besides the user disks: the
    root disk, unless the source's is an overlay on the very bytes of this
    side's (`root_hash` "": it has no base image, it came whole)."""
    return () if root_hash and root_hash == mine else (ROOT_DEVICE,)


def bridge_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}/bridge").is_dir()


@dataclass
class Arrival:
    """A VM that came in from another hypervisor."""

    key: str
    host: Host
    machine: Machine
    departure: Departure
    tap: str | None  # made here, on the cluster's bridge
    arrived_after: float | None = None
    slowed: bool = False
    channel: guestnet.GuestChannel | None = None  # its phalanx.net port, once asked


class Moves:
    """One hypervisor's side of migrations: its departures and arrivals."""

    def __init__(self, hypervisor: Hypervisor) -> None:
        self.hypervisor = hypervisor
        self.arrivals: dict[str, dict[str, Arrival]] = {}  # key: host: the VM that came in
        self.departed: set[tuple[str, str]] = set()  # (key, host) gone (or going) elsewhere
        # Where a destination listens for the source: its loopback unless
        # the daemon knows a better address (the one it reaches the coordinator from).
        self.address = "127.0.0.1"
        self._made: tuple[Image, RootDisk, str] | None = None

    async def _images(self) -> tuple[Image, RootDisk, str]:
        """The tiny image, the root disk and its content hash: found (or
        built) once per process, whose code they are made from."""
        if self._made is None:
            from phalanx.providers.vmimage import ImageError, build_image, build_root_disk

            try:
                image = await asyncio.to_thread(build_image)
                root_disk = await asyncio.to_thread(build_root_disk)
            except ImageError as exc:
                raise ProvisionError(
                    f"hypervisor {self.hypervisor.name} cannot make the VM's images: {exc}"
                ) from exc
            self._made = (image, root_disk, await asyncio.to_thread(content_hash, root_disk.disk))
        return self._made

    def holds(self, key: str) -> bool:
        return bool(self.arrivals.get(key))

    def arrived(self, key: str, host: str) -> Arrival | None:
        """The VM of `host` if it came here from another hypervisor and runs
        here now (ProvisionError while it is still coming in)."""
        arrival = self.arrivals.get(key, {}).get(host)
        if arrival is not None and arrival.arrived_after is None:
            raise ProvisionError(
                f"the VM of {host} is still coming in to hypervisor {self.hypervisor.name}"
            )
        return arrival

    def _provider(self, key: str, host: str) -> QemuProvider:
        hv = self.hypervisor
        provider = hv.clusters.get(key)
        if provider is None:
            raise ProvisionError(f"hypervisor {hv.name}: no cluster {key!r}")
        if host not in provider.vms:
            raise ProvisionError(f"hypervisor {hv.name} runs no VM for {host} in cluster {key!r}")
        return provider

    # --- beside itself ---------------------------------------------------------------

    async def migrate(self, key: str, host: str, mode: str, timeout: float) -> dict[str, Any]:
        """To a new QEMU on this hypervisor; its migration record."""
        if (arrival := self.arrived(key, host)) is not None:
            await self._beside(arrival, mode, timeout)
            machine = arrival.machine
        else:
            provider = self._provider(key, host)
            await provider.migrate(host, mode, timeout)
            machine = provider.vms[host].machine
        self.hypervisor.tell(key, host, "running", machine.pid)
        return dict(machine.migrations[-1])

    async def _beside(self, arrival: Arrival, mode: str, timeout: float) -> None:
        """An arrival to a new QEMU here: its sockets at new paths, on a new
        tap of its own (it has no spare); the old tap goes once it has moved."""
        machine = arrival.machine
        if machine.returncode is not None:
            raise ProvisionError(f"the VM of {arrival.host.name} is not running")
        net = chardev_path(machine.args, guestnet.CHARDEV)
        generation = len(machine.migrations) + 1
        args = fresh_sockets(machine.args, generation)
        while net is not None and chardev_path(args, guestnet.CHARDEV) == net:
            generation += 1  # it came with sockets of this generation's name
            args = fresh_sockets(machine.args, generation)
        bridge_name, tap = arrival.departure.bridge, None
        if arrival.tap is not None and bridge_name is not None:
            tap = await _new_tap(self.hypervisor.name, bridge_name)
            args = [a.replace(f"ifname={arrival.tap},", f"ifname={tap},") for a in args]
        try:
            await machine.migrate(mode, timeout, args=args)
        except BaseException:
            await _remove_tap(tap, bridge_name)
            raise
        if tap is not None:
            old, arrival.tap = arrival.tap, tap
            await _remove_tap(old, bridge_name)
            log.info(
                "hypervisor %s: %s on tap %s (was %s)", self.hypervisor.name, machine.name, tap, old
            )
        if arrival.channel is not None:
            arrival.channel.retarget(chardev_path(args, guestnet.CHARDEV) or arrival.channel.socket)

    # --- the source's part -----------------------------------------------------------

    async def departure(self, key: str, host: str) -> Departure:
        if (arrival := self.arrived(key, host)) is not None:
            return await self._departure(arrival)
        provider = self._provider(key, host)
        vm = provider.vms[host]
        if vm.root != "disk" or vm.host.boot_image is not None:
            raise ProvisionError(
                f"the VM of {host} does not boot phalanx's root disk (vm_root: disk): "
                "only such a VM moves to another hypervisor"
            )
        if provider.reverts:
            raise ProvisionError(
                f"cluster {provider.cluster.name if provider.cluster else key} reverts "
                "(revert: case): its snapshots stay on this hypervisor, so its VMs do not "
                "move to another"
            )
        if provider.root_disk is None:
            raise ProvisionError(f"the VM of {host} has no root disk")
        if vm.process.returncode is not None:
            raise ProvisionError(f"the VM of {host} is not running")
        root_hash = await asyncio.to_thread(content_hash, provider.root_disk.disk)
        if vm.boot == "template":  # its overlay's backing is a template only this side has
            await vm.machine.flatten(ROOT_DEVICE, provider.root_disk.disk)
        drives = await vm.machine.drives()
        network = provider.network
        return Departure(
            hypervisor=self.hypervisor.name,
            run_id=provider.run_id,
            host=host,
            args=list(vm.machine.args),
            private=str(vm.machine.private),
            accel=vm.machine.accel,
            root_hash=root_hash,
            drives=drives,
            bridge=network.record.bridge if network is not None else None,
            tap=network.taps.get(host) if network is not None else None,
            record=vm.record(),
            slowed=isinstance(provider.faults, guestnet.VmFaults)
            and host in provider.faults.slowed,
        )

    async def _departure(self, arrival: Arrival) -> Departure:
        """An arrival's: its root disk is an overlay on this hypervisor's
        (whose hash the next destination compares), or a standalone image
        (it came whole: it goes whole)."""
        machine = arrival.machine
        if machine.returncode is not None:
            raise ProvisionError(f"the VM of {arrival.host.name} is not running")
        drives = await machine.drives()
        root = next((d for d in drives if d.id == ROOT_DEVICE), None)
        root_hash = ""
        if root is not None and root.backing:  # made by `incoming` on this side's root disk
            root_hash = (await self._images())[2]
        return Departure(
            hypervisor=self.hypervisor.name,
            run_id=arrival.departure.run_id,
            host=arrival.host.name,
            args=list(machine.args),
            private=str(machine.private),
            accel=machine.accel,
            root_hash=root_hash,
            drives=drives,
            bridge=arrival.departure.bridge,
            tap=arrival.tap,
            record=_record(arrival),
            slowed=arrival.slowed,
        )

    async def send(
        self, key: str, host: str, to: Receiving, timeout: float, where: str
    ) -> dict[str, Any]:
        """The guest moved to the destination that answered `incoming`; this
        side's VM ended and forgotten (its vm.json kept with the run)."""
        if (arrival := self.arrived(key, host)) is not None:
            return await self._send(arrival, to, timeout, where)
        provider = self._provider(key, host)
        vm = provider.vms[host]
        record = await self._send_out(key, host, vm.machine, to, timeout, where)
        provider.vms.pop(host, None)
        with contextlib.suppress(Exception):
            await vm.machine.close()
        with contextlib.suppress(OSError):
            (vm.folder / "vm.json").write_text(json.dumps(vm.record(), indent=2) + "\n")
        if isinstance(provider.faults, guestnet.VmFaults):
            provider.faults.slowed.discard(host)  # it goes with the guest (Departure.slowed)
        self.hypervisor.forget(key, host)
        return record

    async def _send(
        self, arrival: Arrival, to: Receiving, timeout: float, where: str
    ) -> dict[str, Any]:
        """`send` of an arrival: on success it is ended and forgotten here
        (its tap removed), as a departed VM of this side's provider is."""
        key, host = arrival.key, arrival.host.name
        record = await self._send_out(key, host, arrival.machine, to, timeout, where)
        arrivals = self.arrivals.get(key, {})
        arrivals.pop(host, None)
        if not arrivals:
            self.arrivals.pop(key, None)
        if arrival.channel is not None:
            arrival.channel.close()
        with contextlib.suppress(Exception):
            await arrival.machine.close()
        await _remove_tap(arrival.tap, arrival.departure.bridge)
        _write_record(arrival)
        self.hypervisor.forget(key, host)
        return record

    async def _send_out(
        self, key: str, host: str, machine: Machine, to: Receiving, timeout: float, where: str
    ) -> dict[str, Any]:
        """`machine`'s guest sent on, its drives mirrored; marked departed
        meanwhile (its QEMU ending is no loss), unmarked if it stays."""
        self.departed.add((key, host))
        try:
            drives = await machine.drives()
            return await machine.send(to, drives, timeout, where=where)
        except BaseException:
            self.departed.discard((key, host))
            raise

    # --- the destination's part ------------------------------------------------------

    async def incoming(self, key: str, host: Host, departure: Departure) -> Receiving:
        """A QEMU waiting for `departure`'s guest, its drives exported."""
        hv = self.hypervisor
        if host.name in self.arrivals.get(key, {}) or (
            (provider := hv.clusters.get(key)) is not None and host.name in provider.vms
        ):
            raise ProvisionError(f"hypervisor {hv.name} runs the VM of {host.name} already")
        image, root_disk, mine = await self._images()
        # Another root disk than the source's (two builds are never the same
        # bytes): the overlay's blocks mean nothing over it, so the source
        # copies the whole disk into a standalone image here.
        whole = crosses_whole(departure.root_hash, mine)
        if whole:
            log.info(
                "hypervisor %s: %s arrives with its root disk whole (sha256 %s… here, %s on %s)",
                hv.name, host.name, mine[:12],
                f"{departure.root_hash[:12]}…" if departure.root_hash else "no base image",
                departure.hypervisor,
            )  # fmt: skip
        if departure.bridge is not None and not bridge_exists(departure.bridge):
            raise ProvisionError(
                f"hypervisor {hv.name} has no bridge {departure.bridge}: a VM on a bridge "
                "moves only to a hypervisor with the cluster's bridge by name (on the same "
                "machine), or the cluster must use QEMU's user-mode network"
            )
        folder = hv.root / departure.run_id / "hosts" / host.name
        # Where the provider keeps its VMs' private files: a short path (a
        # unix socket's must fit in 108 bytes), not the workdir, which may be long.
        private = Path(
            tempfile.mkdtemp(prefix=f"phalanx-in-{departure.run_id[-8:]}-", dir=private_parent())
        )
        tap: str | None = None
        machine: Machine | None = None
        try:
            args = _rewrite(departure, private, image.kernel, image.initrd)
            (private / "seed").mkdir(mode=0o700)  # the guest read its own long ago
            for drive in departure.drives:
                target = Path(_moved(drive.file, departure.private, private))
                if target.parent != private:
                    raise ProvisionError(
                        f"the drive {drive.id} of {host.name} is not in its VM's folder "
                        f"({drive.file}): it cannot be rebuilt here"
                    )
                if drive.id == ROOT_DEVICE and not whole:
                    await qemuimg.make_overlay(root_disk.disk, target)
                else:
                    await qemuimg.create(target, drive.virtual_size)
            if departure.bridge is not None and departure.tap is not None:
                tap = await _new_tap(hv.name, departure.bridge)
                args = [a.replace(f"ifname={departure.tap},", f"ifname={tap},") for a in args]
            machine = Machine(host.name, args, folder, private, accel=departure.accel)
            machine.migrations = list(departure.record.get("migrations") or [])  # its history
            receiving = await machine.receive(self.address, [d.id for d in departure.drives])
            receiving = Receiving(receiving.uri, receiving.exports, whole)
        except BaseException:
            if machine is not None:
                await machine.close()
            await _remove_tap(tap, departure.bridge)
            shutil.rmtree(private, ignore_errors=True)
            raise
        self.arrivals.setdefault(key, {})[host.name] = Arrival(
            key, host, machine, departure, tap, slowed=departure.slowed
        )
        hv.tell(key, host.name, "booting", machine.pid)
        return receiving

    async def settle(self, key: str, host: str, timeout: float, migration: dict[str, Any]) -> None:
        """Until the guest runs here; `migration`: the source's record of it."""
        arrival = self._arrival(key, host)
        began = time.monotonic()
        await arrival.machine.arrived(timeout)
        arrival.arrived_after = time.monotonic() - began
        arrival.machine.migrations.append({**migration, "from": arrival.departure.hypervisor})
        self.departed.discard((key, host))  # back where it had left: lost if it ends now
        self.hypervisor.tell(key, host, "running", arrival.machine.pid)
        self.hypervisor.watch(key, host, arrival.machine)

    async def abandon(self, key: str, host: str) -> None:
        """After a failed migration: the QEMU that waited for it, its tap and folder gone."""
        arrival = self.arrivals.get(key, {}).pop(host, None)
        if arrival is None:
            return
        await arrival.machine.close()
        await _remove_tap(arrival.tap, arrival.departure.bridge)
        self.hypervisor.forget(key, host)

    def _arrival(self, key: str, host: str) -> Arrival:
        arrival = self.arrivals.get(key, {}).get(host)
        if arrival is None:
            raise ProvisionError(f"hypervisor {self.hypervisor.name} awaits no VM for {host}")
        return arrival

    # --- `phalanx-net slow` and heal, in an arrival's guest ----------------------------

    def _channel(self, arrival: Arrival) -> guestnet.GuestChannel:
        if arrival.channel is None:
            arrival.channel = net_channel(arrival.host.name, arrival.machine)
        return arrival.channel

    async def slow(self, key: str, host: str, delay: float) -> None:
        arrival = self.arrived(key, host)
        if arrival is None:
            raise FaultError(f"cannot slow {host}: its VM did not come to this hypervisor")
        request = guestnet.slow_request(delay)
        if arrival.machine.returncode is not None:
            raise FaultError(f"cannot slow {host}: its VM is not running")
        arrival.slowed = True  # before: a half-made delay is healed too
        try:
            await self._channel(arrival).ask(request)
        except FaultError as exc:
            raise FaultError(f"cannot slow {exc}") from None

    async def heal(self, key: str) -> None:
        """Undo `slow` in the guests that came here under `key` (slowed
        here or before they came)."""
        problems = []
        for arrival in list(self.arrivals.get(key, {}).values()):
            if not arrival.slowed or arrival.machine.returncode is not None:
                continue
            try:
                await self._channel(arrival).ask(guestnet.HEAL)
            except FaultError as exc:
                problems.append(f"heal failed: {exc}")
            else:
                arrival.slowed = False
        if problems:
            raise FaultError("; ".join(problems))

    # --- the end of the cluster ------------------------------------------------------

    async def down(self, key: str, lost: Collection[str] = ()) -> list[str]:
        """End the VMs that came in under `key`, as the qemu provider ends its
        own; their names."""
        arrivals = self.arrivals.pop(key, {})
        for arrival in arrivals.values():
            if arrival.channel is not None:
                arrival.channel.close()
        await asyncio.gather(*(_stop(a, a.host.name in lost) for a in arrivals.values()))
        return list(arrivals)

    def pids(self, key: str) -> dict[str, int]:
        return {
            name: a.machine.pid
            for name, a in self.arrivals.get(key, {}).items()
            if a.machine.process is not None
        }


def _moved(arg: str, source: str, private: Path) -> str:
    return arg.replace(source.rstrip("/") + "/", str(private) + "/")


def _rewrite(departure: Departure, private: Path, kernel: Path, initrd: Path) -> list[str]:
    """The source's command line with this side's files."""
    args = [_moved(a, departure.private, private) for a in departure.args]
    for flag, path in (("-kernel", kernel), ("-initrd", initrd)):
        if flag in args:
            args[args.index(flag) + 1] = str(path)
    return args


async def _new_tap(hypervisor: str, bridge_name: str) -> str:
    """A tap of this hypervisor's on the cluster's bridge, for a VM that came
    here (recorded first: a hypervisor that dies leaves it to the sweep)."""
    tap = "pxm" + uuid.uuid4().hex[:10]
    try:
        await netns.add_tap(tap, bridge_name)
    except bridge.PlumbingError as exc:
        raise ProvisionError(f"hypervisor {hypervisor} cannot make a tap: {exc}") from exc
    return tap


async def _remove_tap(tap: str | None, bridge_name: str | None) -> None:
    if tap is not None and bridge_name is not None:
        with contextlib.suppress(bridge.PlumbingError):
            await netns.remove_tap(tap, bridge_name)


async def _stop(arrival: Arrival, lost: bool) -> None:
    machine = arrival.machine
    try:
        await end_machine(machine, lost)
    finally:
        await machine.close()
        await _remove_tap(arrival.tap, arrival.departure.bridge)
        _write_record(arrival)


def _record(arrival: Arrival) -> dict[str, Any]:
    """Its vm.json: the source's record, with what happened to it here."""
    machine = arrival.machine
    return {
        **arrival.departure.record,
        "network": {
            **dict(arrival.departure.record.get("network") or {}),
            **({"tap": arrival.tap} if arrival.tap else {}),
        },
        "arrived_from": arrival.departure.hypervisor,
        "arrived_after_s": (
            round(arrival.arrived_after, 3) if arrival.arrived_after is not None else None
        ),
        "migrations": machine.migrations,
        "snapshots": machine.snapshots,
        "ended_by": machine.ended_by,
        "exit_status": machine.returncode,
    }


def _write_record(arrival: Arrival) -> None:
    with contextlib.suppress(OSError):
        arrival.machine.folder.mkdir(parents=True, exist_ok=True)
        (arrival.machine.folder / "vm.json").write_text(
            json.dumps(_record(arrival), indent=2) + "\n"
        )
