"""One virtual machine: a QEMU process (in its own process group), its
serial console on a file, and its QMP monitor (`qemu.qmp`), open for the
VM's whole life.

A Machine survives live migration: `migrate()` starts a clone of its
command line with `-incoming` on this machine, moves the guest there and
ends the source; from then on the same object stands for the destination
QEMU (its pid, monitor, console). To another machine (or another
hypervisor's folder) it takes two Machines: the destination `receive()`s
(QEMU waiting with `-incoming defer` and its drives exported over NBD),
the source `send()`s (its drives mirrored to those exports, RAM migrated,
the mirrors completed while the guest is paused before the switch-over,
the source ended) and the destination `arrived()` (exports stopped, the
guest running). Snapshots are QEMU 7.2's HMP `savevm` and
`loadvm` (through QMP's `human-monitor-command`), whose error text is
QEMU's own reason (a mounted 9p share, a disk that is not qcow2, ...).

What stays with the run (`folder`): `console.log` (appended to by every
QEMU the guest lived in), `qemu.log` (QEMU's own output), `qemu.pid` (the
QEMU the guest is in now), `qmp-events.jsonl`. What does not (`private`,
0700): QMP and migration sockets, QEMU's pid files; removed by `close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phalanx.host.process import signal_group
from phalanx.providers.base import ProvisionError

log = logging.getLogger("phalanx.providers.machine")

MIGRATION_BANDWIDTH = 8 << 30  # bytes/s: QEMU's default (32 MiB/s) is for real networks
MIGRATION_POLL = 0.05  # seconds between `query-migrate`s
MIRROR_JOB = "phalanx-mirror-"  # + the drive id: the block jobs `send` starts
STREAM_JOB = "phalanx-stream-"  # + the drive id: `flatten`'s
# Until a QEMU just started serves QMP: well under a second, but a loaded
# machine (other VMs under TCG) has taken more than ten.
START_TIMEOUT = 30.0


def console_tail(path: Path, lines: int = 15, empty: str = "(no console output)") -> str:
    """The last non-empty lines of a console or log file."""
    try:
        text = path.read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return empty
    kept = [line.rstrip("\r") for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:]) or empty


class Monitor:
    """A VM's QMP connection, open for the VM's whole life (QEMU serves one
    client at a time): its commands, and its events (SHUTDOWN, POWERDOWN,
    RESET, MIGRATION, ...) appended to a JSON-lines file as they come."""

    def __init__(self, socket: Path, events: Path) -> None:
        self.socket = socket
        self.events = events
        self._client: Any = None
        self._listener: Any = None
        self._pump: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def open(self, process: asyncio.subprocess.Process, within: float = 10.0) -> None:
        from qemu.qmp import EventListener, QMPClient  # only a qemu run needs it

        deadline = time.monotonic() + within
        # Until QEMU listens (a failed connect is logged as an error by qemu.qmp).
        while not self.socket.exists():
            if process.returncode is not None or time.monotonic() > deadline:
                return  # commands will say there is no monitor
            await asyncio.sleep(0.02)
        while True:
            client = QMPClient("phalanx")
            try:
                await asyncio.wait_for(
                    client.connect(str(self.socket)), max(deadline - time.monotonic(), 0.1)
                )
                break
            except Exception:
                with contextlib.suppress(Exception):
                    await client.disconnect()
            # Refused: QEMU has bound its socket but not listened on it yet
            # (a loaded machine shows the gap), or it went away meanwhile.
            if process.returncode is not None or time.monotonic() > deadline:
                return
            await asyncio.sleep(0.05)
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
        """A QMP command's `return` value; QEMU's refusal as a ProvisionError."""
        from qemu.qmp import ExecuteError

        if self._client is None:
            raise ProvisionError(f"no QMP monitor on {self.socket}")
        try:
            return await asyncio.wait_for(self._client.execute(command, arguments or None), timeout)
        except ExecuteError as exc:
            raise ProvisionError(f"QMP {command}: {exc.error.error.desc}") from exc
        except TimeoutError as exc:
            raise ProvisionError(f"QMP {command}: no answer within {timeout:g}s") from exc

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


def _free_port(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Drive:
    """A writable drive of a running VM, as a migration to another machine
    copies it."""

    id: str  # the -drive id
    file: str  # its image on this machine
    virtual_size: int  # bytes
    backing: bool  # an overlay on a base image: only its own clusters are copied (sync=top)


@dataclass(frozen=True)
class Receiving:
    """Where a destination QEMU takes a migration: RAM on `uri`, each drive
    on its NBD export; `whole`: the drives it has no base for (another root
    disk than the source's), so the source copies them whole, not only the
    overlay's own clusters."""

    uri: str
    exports: dict[str, str]  # drive id: nbd://address:port/name
    whole: tuple[str, ...] = ()


class Machine:
    """One VM: a QEMU process (its own process group), its serial console
    file, its QMP monitor. Survives live migration: after `migrate()` the
    same object stands for the destination QEMU."""

    def __init__(self, name: str, args: list[str], folder: Path, private: Path, *, accel: str):
        # args: the QEMU command line (binary first) WITHOUT -serial, -qmp,
        # -incoming, -name, -pidfile: the Machine adds them.
        self.name = name
        self.args = list(args)
        self.folder = folder
        self.private = private
        self.accel = accel
        self.process: asyncio.subprocess.Process | None = None
        self.monitor: Monitor | None = None
        self.started = time.monotonic()
        self.ended_by: str | None = None  # itself, acpi, quit, killed, lost
        self.migrations: list[dict[str, Any]] = []
        self.snapshots: list[dict[str, Any]] = []  # {"op", "tag", "seconds"}
        self._generation = 0  # one per QEMU process this guest lived in
        self._closed = False
        self._settling: asyncio.Future[None] | None = None  # a migration coming in

    # --- what a caller reads -------------------------------------------------

    @property
    def console(self) -> Path:
        return self.folder / "console.log"

    @property
    def events(self) -> Path:
        return self.folder / "qmp-events.jsonl"

    @property
    def log_file(self) -> Path:
        return self.folder / "qemu.log"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ProvisionError(f"the VM of {self.name} was not started")
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    # --- life ----------------------------------------------------------------

    def _command(
        self, generation: int, extra: list[str], args: list[str] | None = None
    ) -> list[str]:
        return [
            *(args if args is not None else self.args),
            "-name", self.name,
            "-chardev", f"file,id=phalanx-serial,path={self.console},append=on",
            "-serial", "chardev:phalanx-serial",
            "-qmp", f"unix:{self._qmp_socket(generation)},server=on,wait=off",
            "-pidfile", str(self.private / f"qemu-{generation}.pid"),
            *extra,
        ]  # fmt: skip

    def _qmp_socket(self, generation: int) -> Path:
        return self.private / f"qmp-{generation}.sock"

    async def _launch(
        self, generation: int, extra: list[str], args: list[str] | None = None
    ) -> asyncio.subprocess.Process:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.private.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self.log_file.open("ab") as qemu_log:
            try:
                return await asyncio.create_subprocess_exec(
                    *self._command(generation, extra, args),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=qemu_log,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ProvisionError(f"cannot start the VM of {self.name}: {exc}") from exc

    async def _connect(self, process: asyncio.subprocess.Process, generation: int) -> Monitor:
        """The monitor of a QEMU just launched; if there is none (QEMU
        ended at once: a bad option, a busy tap; or it did not serve QMP
        within START_TIMEOUT), QEMU is ended and the ProvisionError says
        what QEMU said."""
        monitor = Monitor(self._qmp_socket(generation), self.events)
        await monitor.open(process, START_TIMEOUT)
        if not monitor.connected:
            signal_group(process.pid, signal.SIGKILL)
            await process.wait()
            said = console_tail(self.log_file, 3, empty="")
            raise ProvisionError(
                f"the VM of {self.name} ended at its start (QEMU exit status {process.returncode}"
                + (f"; QEMU: {said}" if said else "")
                + ")"
            )
        return monitor

    def _keep_pid(self) -> None:
        # Kept with the run (QEMU's own -pidfile goes when it exits): which
        # process is this VM now, for whoever looks at the run afterwards.
        (self.folder / "qemu.pid").write_text(f"{self.pid}\n")

    async def start(self, extra: Sequence[str] = ()) -> None:
        """Spawn QEMU and connect its monitor (ProvisionError on failure).
        `extra`: options for this start only, not cloned by `migrate` (an
        `-incoming` that restores a saved state)."""
        self.started = time.monotonic()
        self.process = await self._launch(self._generation, list(extra))
        self._keep_pid()
        self.monitor = await self._connect(self.process, self._generation)

    async def qmp(self, command: str, timeout: float = 10.0, **arguments: Any) -> Any:
        """A QMP command's `return` value (ProvisionError with QEMU's reason)."""
        if self.monitor is None:
            raise ProvisionError(f"the VM of {self.name} was not started")
        return await self.monitor.execute(command, timeout, **arguments)

    async def hmp(self, command_line: str, timeout: float = 60.0) -> str:
        """An HMP command's text, through QMP `human-monitor-command`."""
        reply = await self.qmp("human-monitor-command", timeout, **{"command-line": command_line})
        return str(reply)

    async def status(self) -> str:
        """`running`, `paused`, `postmigrate`, `shutdown`, ..."""
        return str((await self.qmp("query-status"))["status"])

    async def _snapshot(self, op: str, tag: str) -> float:
        if not tag or any(c.isspace() for c in tag):
            raise ProvisionError(f"{op} {tag!r}: a snapshot tag is one word")
        began = time.monotonic()
        said = (await self.hmp(f"{op} {tag}")).strip()
        seconds = time.monotonic() - began
        # HMP answers a successful savevm/loadvm with nothing; anything else
        # is QEMU's reason (a mounted 9p share, a disk without snapshots).
        if said:
            raise ProvisionError(f"{op} {tag} on {self.name}: {said.removeprefix('Error: ')}")
        self.snapshots.append({"op": op, "tag": tag, "seconds": round(seconds, 3)})
        return seconds

    async def savevm(self, tag: str) -> float:
        """A snapshot of the whole VM (RAM, devices, disks) under `tag`;
        seconds taken."""
        return await self._snapshot("savevm", tag)

    async def loadvm(self, tag: str) -> float:
        """Back to the snapshot `tag`; seconds taken."""
        return await self._snapshot("loadvm", tag)

    async def migrate(
        self, mode: str = "tcp", timeout: float = 120.0, *, args: list[str] | None = None
    ) -> float:
        """Live-migrate the guest to a new QEMU on this machine (a clone of
        this one's command line, or `args`: e.g. with a tap of its own) over
        TCP on a free loopback port or a unix socket. On success the source
        is ended and this Machine stands for the destination; on failure
        the destination is ended, the source keeps running, and the
        ProvisionError has QEMU's reason. Returns the seconds taken.
        `args`, once migrated to, are this Machine's command line."""
        if mode not in ("tcp", "unix"):
            raise ProvisionError(f"migration mode {mode!r}: tcp or unix")
        if self.process is None or self.monitor is None or self.process.returncode is not None:
            raise ProvisionError(f"the VM of {self.name} is not running")
        generation = self._generation + 1
        if mode == "tcp":
            uri = f"tcp:127.0.0.1:{_free_port()}"
        else:
            uri = f"unix:{self.private / f'migrate-{generation}.sock'}"
        began = time.monotonic()
        process = await self._launch(generation, ["-incoming", uri], args)
        monitor = await self._connect(process, generation)
        try:
            await self.qmp("migrate-set-parameters", **{"max-bandwidth": MIGRATION_BANDWIDTH})
            try:
                await self.qmp("migrate", uri=uri)
            except ProvisionError as exc:  # refused at once (a blocker: a mounted 9p share)
                reason = str(exc).removeprefix("QMP migrate: ")
                raise ProvisionError(f"the migration of {self.name} failed: {reason}") from exc
            info = await self._wait_status(("completed",), timeout, began)
            await self._wait_arrived(monitor, timeout, began)
        except BaseException:
            signal_group(process.pid, signal.SIGKILL)
            await process.wait()
            await monitor.close()
            with contextlib.suppress(Exception):
                await self.qmp("migrate_cancel")
            with contextlib.suppress(Exception):  # a cancelled one leaves it paused
                if await self.status() != "running":
                    await self.qmp("cont")
            raise
        seconds = time.monotonic() - began
        old_process, old_monitor = self.process, self.monitor
        self.process, self.monitor, self._generation = process, monitor, generation
        if args is not None:
            self.args = list(args)  # what the next migration clones
        self._keep_pid()
        await self._end_source(old_process, old_monitor)
        self.migrations.append(
            {
                "seconds": round(seconds, 3),
                "mode": mode,
                "downtime_ms": info.get("downtime"),
                "total_ms": info.get("total-time"),
            }
        )
        log.info("%s: migrated (%s) in %.2fs", self.name, mode, seconds)
        return seconds

    async def _wait_arrived(self, monitor: Monitor, timeout: float, began: float) -> None:
        """Until the destination runs the guest: the source says `completed`
        a moment before the destination has loaded the last of it."""
        while (await monitor.execute("query-status"))["status"] == "inmigrate":
            if time.monotonic() - began > timeout:
                raise ProvisionError(
                    f"the migration of {self.name} completed, but its destination did not "
                    f"start the guest within {timeout:g}s"
                )
            await asyncio.sleep(MIGRATION_POLL / 5)

    async def _end_source(self, process: asyncio.subprocess.Process, monitor: Monitor) -> None:
        with contextlib.suppress(Exception):
            await monitor.execute("quit", timeout=3)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 5)
        signal_group(process.pid, signal.SIGKILL)  # anything left of it
        await process.wait()
        await monitor.close()

    # --- migration to another machine ------------------------------------------------

    async def drives(self) -> list[Drive]:
        """The writable drives (`query-block`): what `send` mirrors."""
        found = []
        for block in await self.qmp("query-block"):
            inserted = block.get("inserted")
            if not inserted or inserted.get("ro") or not block.get("device"):
                continue
            image = inserted.get("image", {})
            found.append(
                Drive(
                    block["device"],
                    str(inserted.get("file", "")),
                    int(image.get("virtual-size", 0)),
                    bool(inserted.get("backing_file") or image.get("backing-filename")),
                )
            )
        return found

    async def receive(self, address: str, drives: list[str], timeout: float = 120.0) -> Receiving:
        """Start this (new) Machine as a migration's destination: QEMU paused
        and waiting (`-incoming defer`, `-S`), `drives` exported over NBD
        for the source to mirror to, listening on `address`. The guest runs
        as soon as the migration completes (`arrived` waits for that)."""
        self.started = time.monotonic()
        self.process = await self._launch(self._generation, ["-incoming", "defer", "-S"])
        self._keep_pid()
        self.monitor = await self._connect(self.process, self._generation)
        # The drives are taken over at `cont`, once the exports have gone:
        # QEMU would otherwise activate them while NBD still holds them.
        await self.qmp(
            "migrate-set-capabilities",
            capabilities=[{"capability": "late-block-activate", "state": True}],
        )
        nbd_port, port = _free_port(address), _free_port(address)
        await self.qmp(
            "nbd-server-start",
            addr={"type": "inet", "data": {"host": address, "port": str(nbd_port)}},
        )
        for drive in drives:
            await self.qmp("nbd-server-add", device=drive, writable=True)
        uri = f"tcp:{address}:{port}"
        await self.qmp("migrate-incoming", uri=uri)
        self._settling = asyncio.ensure_future(self._settle(timeout))
        return Receiving(uri, {d: f"nbd://{address}:{nbd_port}/{d}" for d in drives})

    async def _settle(self, timeout: float) -> None:
        """Once the migration has come in: the exports stopped, the guest run."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.returncode is not None:
                raise ProvisionError(
                    f"the destination QEMU of {self.name} ended while the guest came in "
                    f"(exit status {self.returncode}; QEMU: {console_tail(self.log_file, 2)})"
                )
            with contextlib.suppress(ProvisionError):  # a monitor gone: said above, next turn
                if await self.status() != "inmigrate":
                    break
            if time.monotonic() > deadline:
                raise ProvisionError(
                    f"the guest of {self.name} did not come in within {timeout:g}s"
                )
            await asyncio.sleep(MIGRATION_POLL / 5)
        await self.qmp("nbd-server-stop")
        await self.qmp("cont")

    async def arrived(self, timeout: float = 120.0) -> None:
        """Until the guest that `receive` waited for runs here
        (ProvisionError: why not)."""
        settling = self._settling
        if settling is None:
            raise ProvisionError(f"the VM of {self.name} is not receiving a migration")
        try:
            await asyncio.wait_for(asyncio.shield(settling), timeout)
        except TimeoutError:
            raise ProvisionError(
                f"the guest of {self.name} did not run at its destination within {timeout:g}s"
            ) from None

    async def send(
        self, to: Receiving, drives: list[Drive], timeout: float = 120.0, *, where: str = ""
    ) -> dict[str, Any]:
        """Move the guest to the destination that answered `receive` with
        `to`: each drive mirrored to its export (an overlay's own clusters,
        other disks whole), RAM migrated, the mirrors completed while the
        guest is paused before the switch-over, then the switch-over. On
        success this QEMU is ended (`ended_by`: migrated) and the migration
        recorded; on failure the mirrors and the migration are cancelled
        and the guest runs on here (ProvisionError with QEMU's reason)."""
        if self.process is None or self.monitor is None or self.process.returncode is not None:
            raise ProvisionError(f"the VM of {self.name} is not running")
        missing = [d.id for d in drives if d.id not in to.exports]
        if missing:
            raise ProvisionError(f"the destination of {self.name} exports no drive {missing[0]}")
        began = time.monotonic()
        jobs = [MIRROR_JOB + d.id for d in drives]
        try:
            for drive in drives:
                mirror: dict[str, Any] = {
                    "device": drive.id,
                    "job-id": MIRROR_JOB + drive.id,
                    "target": to.exports[drive.id],
                    "format": "raw",
                    "sync": "top" if drive.backing and drive.id not in to.whole else "full",
                    "mode": "existing",
                    "copy-mode": "write-blocking",  # once ready, every write lands on both
                }
                await self.qmp("drive-mirror", 10.0, **mirror)
            await self._wait_jobs(jobs, timeout, began, "ready")
            mirrored = time.monotonic() - began
            await self.qmp("migrate-set-parameters", **{"max-bandwidth": MIGRATION_BANDWIDTH})
            await self.qmp(
                "migrate-set-capabilities",
                capabilities=[{"capability": "pause-before-switchover", "state": True}],
            )
            await self.qmp("migrate", uri=to.uri)
            await self._wait_status(("pre-switchover",), timeout, began)
            for job in jobs:  # a ready mirror cancelled completes: the copy is whole
                await self.qmp("block-job-cancel", device=job)
            await self._wait_jobs(jobs, timeout, began, "gone")
            await self.qmp("migrate-continue", state="pre-switchover")
            info = await self._wait_status(("completed",), timeout, began)
        except BaseException:
            await self._unsend(jobs)
            raise
        seconds = time.monotonic() - began
        process, monitor = self.process, self.monitor
        await self._end_source(process, monitor)
        self.ended_by = "migrated"
        record = {
            "seconds": round(seconds, 3),
            "mode": "tcp",
            "to": where,
            "mirror_s": round(mirrored, 3),
            "downtime_ms": info.get("downtime"),
            "total_ms": info.get("total-time"),
        }
        self.migrations.append(record)
        log.info("%s: migrated to %s in %.2fs", self.name, where or to.uri, seconds)
        return record

    async def flatten(self, drive: str, base: Path, timeout: float = 120.0) -> None:
        """Copy into `drive`'s own image what its backing chain holds above
        `base`, which becomes its backing file: an overlay whose chain has
        a layer only this machine has (a template's) then mirrors `sync:
        top` onto an overlay of `base` elsewhere. The guest runs on."""
        began = time.monotonic()
        job = STREAM_JOB + drive
        await self.qmp("block-stream", 10.0, device=drive, **{"job-id": job, "base": str(base)})
        await self._wait_jobs([job], timeout, began, "gone")
        backing = next(
            (
                b["inserted"].get("image", {}).get("backing-image", {}).get("filename")
                for b in await self.qmp("query-block")
                if b.get("device") == drive and b.get("inserted")
            ),
            None,
        )
        if backing != str(base):
            raise ProvisionError(
                f"the disk {drive} of {self.name} could not be made an overlay of {base} "
                f"(its backing file is {backing})"
            )

    async def _wait_jobs(self, jobs: list[str], timeout: float, began: float, until: str) -> None:
        while True:
            found = {j["device"]: j for j in await self.qmp("query-block-jobs")}
            ours = [found[j] for j in jobs if j in found]
            if until == "gone" and not ours:
                return
            if until == "ready":
                if len(ours) < len(jobs):
                    raise ProvisionError(
                        f"the disks of {self.name} could not be copied to the destination "
                        "(a mirror ended before it was ready)"
                    )
                if all(j.get("ready") for j in ours):
                    return
            if time.monotonic() - began > timeout:
                raise ProvisionError(
                    f"the disks of {self.name} were not copied within {timeout:g}s"
                )
            await asyncio.sleep(MIGRATION_POLL)

    async def _wait_status(
        self, wanted: tuple[str, ...], timeout: float, began: float
    ) -> dict[str, Any]:
        while True:
            info: dict[str, Any] = await self.qmp("query-migrate")
            status = info.get("status")
            if status in wanted:
                return info
            if status in ("failed", "cancelled"):
                reason = info.get("error-desc") or status
                raise ProvisionError(f"the migration of {self.name} failed: {reason}")
            if self.process is not None and self.process.returncode is not None:
                raise ProvisionError(f"the VM of {self.name} ended while migrating")
            if time.monotonic() - began > timeout:
                raise ProvisionError(
                    f"the migration of {self.name} did not complete within {timeout:g}s "
                    f"(status {status})"
                )
            await asyncio.sleep(MIGRATION_POLL)

    async def _unsend(self, jobs: list[str]) -> None:
        """After a failed `send`: no migration, no mirror, the guest running here."""
        with contextlib.suppress(Exception):
            await self.qmp("migrate_cancel")
        for job in jobs:
            with contextlib.suppress(Exception):
                await self.qmp("block-job-cancel", device=job, force=True)
        with contextlib.suppress(Exception):
            await self.qmp(
                "migrate-set-capabilities",
                capabilities=[{"capability": "pause-before-switchover", "state": False}],
            )
        with contextlib.suppress(Exception):
            if await self.status() != "running":
                await self.qmp("cont")

    async def wait(self, timeout: float | None = None) -> int:
        """Until QEMU ends (TimeoutError after `timeout`); its exit status."""
        if self.process is None:
            raise ProvisionError(f"the VM of {self.name} was not started")
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def power_off(self, timeout: float = 10.0) -> str:
        """ACPI power-off, then `quit` after `timeout`, then SIGKILL; how it
        ended (`itself` when it had already)."""
        if self.process is None:
            return "itself"
        if self.process.returncode is not None:
            self.ended_by = self.ended_by or "itself"
            return self.ended_by
        with contextlib.suppress(Exception):
            await self.qmp("system_powerdown")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), timeout)
            self.ended_by = "acpi"
            return self.ended_by
        with contextlib.suppress(Exception):
            await self.qmp("quit", timeout=3)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 5)
            self.ended_by = "quit"
            return self.ended_by
        await self.kill()
        self.ended_by = "killed"
        return self.ended_by

    async def kill(self) -> None:
        """SIGKILL QEMU's process group; wait for it."""
        if self.process is not None:
            signal_group(self.process.pid, signal.SIGKILL)
            await self.process.wait()

    async def close(self) -> None:
        """Monitor closed, anything left of the process group killed, the
        private folder removed. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.process is not None:
                signal_group(self.process.pid, signal.SIGKILL)
                if self.process.returncode is None:
                    await self.process.wait()
        finally:
            if self.monitor is not None:
                await self.monitor.close()
            shutil.rmtree(self.private, ignore_errors=True)
