"""Machine (one QEMU + QMP) on real VMs under TCG: a disk-root VM saved,
restored and live-migrated; a 9p-root VM whose snapshot and migration QEMU
refuses, with QEMU's reason. The image and the root disk are built once per
session (conftest.py)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

import pytest

from phalanx.providers import qemuargs, qemuguest, qemuvm
from phalanx.providers.base import ProvisionError
from phalanx.providers.machine import Machine, Monitor
from phalanx.providers.vmimage import Image, RootDisk
from tests.eventually import eventually_async
from tests.processes import alive
from tests.vms import vm_missing

BOOT = 240  # seconds: a boot under TCG on a busy machine


MISSING = vm_missing()
needs_qemu = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


async def _up(machine: Machine, mark: str) -> None:
    await machine.start()

    def booted() -> bool:
        if machine.returncode is not None:
            raise RuntimeError(machine.console.read_text(errors="replace"))
        return mark.encode() in machine.console.read_bytes()

    await eventually_async(booted, within=BOOT, what=f"{mark!r} on the console")


UP = "phalanx-vm: no coordinator, no agent; up"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@needs_qemu
@pytest.mark.timeout(BOOT + 120)
async def test_a_disk_root_vm_is_saved_restored_and_migrated_over_tcp_and_unix(
    tmp_path: Path, vm_images: tuple[Image, RootDisk]
) -> None:
    """A VM without an agent, driven over SSH (its seed's keys start sshd;
    the host key is checked): a file written after savevm is gone after
    loadvm; after each migration (each QEMU forwards its own port to the
    guest's sshd) the guest is the same, its uptime carrying on."""
    import asyncssh

    image, root_disk = vm_images
    user, host_key = (asyncssh.generate_private_key("ssh-ed25519") for _ in range(2))
    ports = [_free_port() for _ in range(3)]
    private = tmp_path / "private"
    machine = await qemuvm.standalone_vm(
        "disk.machine.test",
        tmp_path / "vm",
        private,
        accel="tcg",
        image=image,
        root_disk=root_disk,
        netdev=f"user,id=net0,hostfwd=tcp:127.0.0.1:{ports[0]}-:22",
        files={
            "authorized_keys": user.export_public_key().decode(),
            "ssh_host_ed25519_key": host_key.export_private_key().decode(),
        },
    )

    async def run(port: int, command: str) -> str:
        known = asyncssh.import_known_hosts(
            f"[127.0.0.1]:{port} {host_key.export_public_key().decode()}"
        )

        # A guest just restored or migrated may drop the first connection
        # through its user-mode network (a loaded machine saw a reset): the
        # login is tried again for a while, as login_remote does.
        async def attempt() -> list[str] | None:  # a list: an empty output is an answer too
            try:
                async with asyncssh.connect(
                    "127.0.0.1", port, username="root", client_keys=[user], known_hosts=known
                ) as connection:
                    done = await connection.run(command, check=True, timeout=60)
                    return [str(done.stdout)]
            except (OSError, asyncssh.ConnectionLost) as exc:
                raise AssertionError(f"no login yet: {exc!r}") from exc  # tried again

        found: list[str] = await eventually_async(attempt, within=60, what=f"ssh {command!r}")
        return found[0]

    def uptime(said: str) -> float:
        return float(said.split()[0])

    pids = []
    try:
        await _up(machine, UP)
        pids.append(machine.pid)
        assert await machine.savevm("booted") > 0
        assert await run(ports[0], "echo x > /root/after-savevm && ls /root") == "after-savevm\n"
        assert await machine.loadvm("booted") > 0
        assert await machine.status() == "running"
        assert await run(ports[0], "ls /root") == ""
        uptimes = [uptime(await run(ports[0], "cat /proc/uptime"))]
        for index, mode in enumerate(("tcp", "unix"), start=1):
            args = [
                a.replace(f":{ports[index - 1]}-:22", f":{ports[index]}-:22") for a in machine.args
            ]
            assert await machine.migrate(mode, args=args) > 0
            assert machine.args == args
            pids.append(machine.pid)
            assert await machine.status() == "running"
            said = await run(ports[index], "uname -n; cat /proc/uptime")
            assert said.splitlines()[0] == "disk"  # the short name, as Linux hosts say it
            uptimes.append(uptime(said.splitlines()[1]))
        assert uptimes == sorted(uptimes) and len(set(uptimes)) == 3
        assert len(set(pids)) == 3
        assert not any(alive(pid) for pid in pids[:2])  # the sources are gone
        assert [m["mode"] for m in machine.migrations] == ["tcp", "unix"]
        assert all(m["downtime_ms"] is not None for m in machine.migrations)
        assert (tmp_path / "vm" / "qemu.pid").read_text().strip() == str(pids[-1])
        # The snapshot is in the overlay the destinations opened: still there.
        await machine.loadvm("booted")
        assert await machine.power_off(timeout=30) == "acpi"
        console = machine.console.read_text(errors="replace")
        assert console.count(UP) == 1  # one boot; the console went on across QEMUs
        assert "phalanx-vm: sshd started" in console
        assert "phalanx-vm: powered off by ACPI" in console
    finally:
        await machine.close()
    assert not alive(pids[-1]) and not private.exists()


@needs_qemu
@pytest.mark.timeout(BOOT + 60)
async def test_qemu_refuses_to_save_or_migrate_a_vm_with_its_9p_root_and_says_why(
    tmp_path: Path, vm_images: tuple[Image, RootDisk]
) -> None:
    """The tiny image's default root is this machine's / over 9p: savevm
    fails with QEMU's reason, and so does a migration, the VM running on."""
    image, _ = vm_images
    private = tmp_path / "private"
    seed = private / "seed"
    env = qemuguest.guest_env("ninep.machine.test", None, python=os.path.abspath("/bin/sh"))
    qemuguest.write_seed(seed, env)
    args = qemuargs.machine_args("tcg", 256, image, qemuargs.KERNEL_ARGS)
    args += qemuargs.share_args("hostroot", Path("/"), multidevs=True)
    args += qemuargs.share_args("seed", seed)
    machine = Machine("ninep.machine.test", args, tmp_path / "vm", private, accel="tcg")
    try:
        await _up(machine, UP)
        with pytest.raises(ProvisionError, match=r"savevm x on ninep\.machine\.test: .*VirtFS"):
            await machine.savevm("x")
        source = machine.pid
        with pytest.raises(ProvisionError, match=r"migration of ninep\.machine\.test.*VirtFS"):
            await machine.migrate("unix")
        assert machine.pid == source and await machine.status() == "running"
        assert machine.migrations == []
    finally:
        await machine.close()
    assert not alive(source) and not private.exists()


@needs_qemu
async def test_a_qemu_that_ends_at_its_start_is_a_provision_error_with_what_qemu_said(
    tmp_path: Path,
) -> None:
    private = tmp_path / "private"
    machine = Machine(
        "bad.machine.test", [qemuargs.QEMU, "-no-such-option"], tmp_path / "vm", private,
        accel="tcg",
    )  # fmt: skip
    with pytest.raises(ProvisionError, match=r"ended at its start .*-no-such-option") as caught:
        await machine.start()
    assert str(caught.value).startswith("the VM of bad.machine.test ended at its start (QEMU exit")
    assert machine.returncode is not None and not alive(machine.pid)
    assert (tmp_path / "vm" / "qemu.pid").read_text().strip() == str(machine.pid)
    await machine.close()
    await machine.close()  # idempotent
    assert not private.exists()


async def test_the_monitor_waits_for_a_qmp_socket_bound_but_not_yet_listening(
    tmp_path: Path,
) -> None:
    """QEMU binds its QMP socket and listens a moment later: a connect in
    between is refused, which a loaded machine hits. The monitor tries again
    until QEMU listens (here a stand-in speaking QMP's greeting), within its
    time, rather than giving the VM up."""
    path = tmp_path / "qmp.sock"
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound.bind(str(path))  # the file exists; a connect is refused until listen()
    bound.setblocking(False)
    greeting = b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}\r\n'

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        # qemu.qmp sends each command as one JSON object, no newline after.
        while chunk := await reader.read(65536):
            asked = json.loads(chunk)
            reply = {"return": {}} | ({"id": asked["id"]} if "id" in asked else {})
            writer.write(json.dumps(reply).encode() + b"\r\n")
        writer.close()

    async def listen_later() -> asyncio.Server:
        await asyncio.sleep(0.5)
        bound.listen()
        return await asyncio.start_unix_server(serve, sock=bound)

    process = await asyncio.create_subprocess_exec("sleep", "30")  # QEMU, alive meanwhile
    later = asyncio.create_task(listen_later())
    monitor = Monitor(path, tmp_path / "events.jsonl")
    try:
        await monitor.open(process, within=10)
        assert monitor.connected
    finally:
        await monitor.close()
        (await later).close()
        process.kill()
        await process.wait()
