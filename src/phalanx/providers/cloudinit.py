"""A host's own `boot_image:` (XrdTest's bootImage): a qcow2 the VM boots by
its own bootloader, through a per-run overlay, with a cloud-init NoCloud
seed that installs the agent and starts it.

- The overlay: `qemu-img create -f qcow2 -F qcow2 -b BASE` in the VM's
  private folder; the base is opened read-only by QEMU through it and never
  written, and the overlay goes with the VM.
- The seed: an ISO 9660 volume labelled `cidata` (with Rock Ridge names,
  so `meta-data`, `user-data`, `network-config` and the wheels keep their
  names; Joliet's 64 characters are too few for a wheel's), attached
  read-only as a second virtio disk, made by pycdlib (pure Python, on PyPI:
  no genisoimage/xorriso to install from apt, nothing mounted, no root).
  It holds the agent's wheelhouse (`providers.wheelhouse`, for this
  machine's Python version: the image's python3 must be the same) and the
  agent's token in a file of its own, so the token is in neither the
  user-data (which cloud-init keeps in /var/lib/cloud) nor a command line.
- user-data: cloud-config with `write_files` (/etc/hosts, the agent's
  systemd unit) and `runcmd`: mount the seed, `python3 -m venv`, pip
  --no-index from the wheelhouse, the token copied to a 0600 file, the unit
  started, and the boot mark (`vmimage.BOOTED_MARK`) written on the serial
  console, which the provider waits for as it does for the tiny image.
  The unit powers the VM off when the agent ends, as the tiny image's init
  does. network-config (version 2): eth0 with the host's static address.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phalanx.providers.base import ProvisionError
from phalanx.providers.qemuimg import make_overlay
from phalanx.providers.vmimage import BOOTED_MARK

LABEL = "cidata"
GUEST_SEED = "/run/phalanx-seed"  # where the user-data's commands mount the seed
GUEST_VENV = "/opt/phalanx"
GUEST_TOKEN = "/etc/phalanx/token"
UNIT = "phalanx-agent.service"


@dataclass(frozen=True)
class Seed:
    """What a guest is told: who it is, how it is connected, where its
    coordinator is."""

    name: str
    url: str  # the coordinator's agent endpoint as the guest reaches it
    token: str  # a secret: written in a file of its own on the seed only
    address: str  # CIDR, e.g. 10.0.2.15/24
    gateway: str
    dns: str  # "" when /etc/hosts has every name
    hosts_file: str  # the guest's /etc/hosts ("": its own names only)
    workdir: str
    give_up: float  # seconds an agent without its coordinator carries on
    mac: str


def meta_data(seed: Seed, instance_id: str) -> str:
    return json.dumps({"instance-id": instance_id, "local-hostname": seed.name}) + "\n"


def network_config(seed: Seed) -> str:
    ethernet: dict[str, Any] = {
        "match": {"macaddress": seed.mac},
        "set-name": "eth0",
        "addresses": [seed.address],
        "gateway4": seed.gateway,
    }
    if seed.dns:
        ethernet["nameservers"] = {"addresses": [seed.dns]}
    return json.dumps({"version": 2, "ethernets": {"eth0": ethernet}}, indent=1) + "\n"


def unit(seed: Seed) -> str:
    command = [
        f"{GUEST_VENV}/bin/python", "-m", "phalanx.host",
        "--coordinator", seed.url, "--name", seed.name,
        "--workdir", seed.workdir, "--give-up", f"{seed.give_up:g}",
        "--token-file", GUEST_TOKEN,
    ]  # fmt: skip
    return (
        "[Unit]\n"
        "Description=phalanx agent\n"
        "After=network.target\n"
        # An agent told to end (or giving up) ends its VM, as the tiny image's
        # init does: the provider then finds the VM powered off by itself.
        # At once: a whole systemd shutdown takes longer under TCG than the
        # provider waits, and the overlay it would keep tidy is thrown away.
        "SuccessAction=poweroff-force\n"
        "FailureAction=poweroff-force\n"
        "[Service]\n"
        f"ExecStart={shlex.join(command)}\n"
        "Environment=HOME=/root\n"
        f"WorkingDirectory={seed.workdir}\n"
        "StandardOutput=journal+console\n"
        "StandardError=journal+console\n"
    )


def install_script(seed: Seed) -> str:
    """runcmd's one command: install the agent from the seed and start it."""
    lines = [
        "set -e",
        f"mkdir -p {GUEST_SEED} {shlex.quote(seed.workdir)} {Path(GUEST_TOKEN).parent}",
        f"chmod 0700 {Path(GUEST_TOKEN).parent}",
        f"mount -o ro LABEL={LABEL} {GUEST_SEED}",
        # pip runs from its wheel (no ensurepip: half the install's time
        # under TCG), compiling nothing that the agent will not import.
        f"python3 -m venv --without-pip {GUEST_VENV}",
        f"pip=$(ls {GUEST_SEED}/wheelhouse/pip-*.whl | head -n 1)",
        f'{GUEST_VENV}/bin/python "$pip/pip" install --quiet --no-index --no-compile '
        f"--disable-pip-version-check --find-links {GUEST_SEED}/wheelhouse phalanx",
        f"install -m 0600 {GUEST_SEED}/token {GUEST_TOKEN}",
        f"umount {GUEST_SEED}",
        "systemctl daemon-reload",
        f"systemctl start --no-block {UNIT}",
        f"echo {shlex.quote(f'{BOOTED_MARK} (systemd unit {UNIT}, coordinator {seed.url})')}"
        " > /dev/ttyS0",
    ]
    return "\n".join(lines) + "\n"


def user_data(seed: Seed) -> str:
    files: list[dict[str, str]] = [
        {"path": f"/etc/systemd/system/{UNIT}", "permissions": "0644", "content": unit(seed)}
    ]
    config: dict[str, Any] = {
        "hostname": seed.name.split(".", 1)[0],
        "fqdn": seed.name,
        # `hostname` the short name, `hostname -f` the full one (from
        # /etc/hosts), as on netns hosts and XrdTest's guests.
        "prefer_fqdn_over_hostname": False,
        "manage_etc_hosts": False,
        "write_files": files,
        "runcmd": [["sh", "-c", install_script(seed)]],
    }
    # As the tiny image's init: every host's names (bridged), else its own.
    short = seed.name.split(".", 1)[0]
    hosts = seed.hosts_file or f"127.0.0.1 localhost\n127.0.1.1 {seed.name} {short}\n"
    files.append({"path": "/etc/hosts", "permissions": "0644", "content": hosts})
    # JSON is YAML: one less dependency, and no quoting to get wrong.
    return "#cloud-config\n" + json.dumps(config, indent=1) + "\n"


def make_seed(path: Path, seed: Seed, instance_id: str, wheels: list[Path]) -> None:
    """The NoCloud seed ISO at `path`. Blocking: run it in a thread."""
    import pycdlib  # only a VM with a boot image needs it
    from pycdlib.pycdlibexception import PyCdlibException

    files = {
        "meta-data": meta_data(seed, instance_id).encode(),
        "user-data": user_data(seed).encode(),
        "network-config": network_config(seed).encode(),
        "token": seed.token.encode(),
    }
    iso = pycdlib.PyCdlib()
    with contextlib.ExitStack() as opened:
        try:
            iso.new(interchange_level=3, rock_ridge="1.09", vol_ident=LABEL)
            opened.callback(iso.close)
            for index, (name, data) in enumerate(files.items()):
                _add(iso, name, io.BytesIO(data), len(data), f"/F{index:07d}.;1")
            iso.add_directory("/WHEELS", rr_name="wheelhouse")
            for index, wheel in enumerate(wheels):
                source = opened.enter_context(wheel.open("rb"))
                _add(iso, wheel.name, source, wheel.stat().st_size, f"/WHEELS/F{index:07d}.;1")
            iso.write(str(path))
        except (PyCdlibException, OSError) as exc:
            raise ProvisionError(f"cannot make the cloud-init seed: {exc}") from exc


def _add(iso: Any, name: str, data: Any, size: int, iso_path: str) -> None:
    """A file under a made-up ISO 9660 name (8.3, upper case) and its own
    name as its Rock Ridge name, which is what Linux reads."""
    iso.add_fp(data, size, iso_path, rr_name=name)


def read_seed(path: Path) -> dict[str, bytes]:
    """A seed's files by their Rock Ridge paths: what a guest would see."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        found: dict[str, bytes] = {}
        for parent, _, names in iso.walk(rr_path="/"):
            for name in names:
                rr_path = f"{parent.rstrip('/')}/{name}"
                out = io.BytesIO()
                iso.get_file_from_iso_fp(out, rr_path=rr_path)
                found[rr_path.lstrip("/")] = out.getvalue()
        found["volume"] = iso.pvd.volume_identifier.rstrip(b" ")
        return found
    finally:
        iso.close()


def boot_image_path(boot_image: str, cwd: Path | None = None) -> Path:
    """The host's boot image: as given, a relative path from the directory
    `phalanx run` was started in; it must be a qcow2 file that exists."""
    path = (cwd or Path.cwd()) / Path(boot_image).expanduser()
    if not path.is_file():
        raise ProvisionError(f"boot_image {boot_image}: no such file")
    return path.resolve()


def drive_args(overlay: Path, seed_iso: Path) -> list[str]:
    """The overlay as the boot disk (SeaBIOS boots the first disk), the seed
    as a read-only disk after it."""
    return [
        "-drive", f"file={overlay},if=none,id=root,format=qcow2",
        "-device", "virtio-blk-pci,drive=root,bootindex=0",
        "-drive", f"file={seed_iso},if=none,id=seed,format=raw,readonly=on",
        "-device", "virtio-blk-pci,drive=seed,serial=cidata",
    ]  # fmt: skip


async def boot_image_args(
    boot_image: str,
    seed: Seed,
    private: Path,
    wheels: list[Path],
    instance_id: str,
    machine: list[str],
) -> list[str]:
    """A VM of a boot image: `machine` (QEMU, accel, RAM; no -kernel) with
    its overlay and its seed, both made in `private` (the VM's own)."""
    base = boot_image_path(boot_image)
    overlay = private / "root.qcow2"
    await make_overlay(base, overlay)
    seed_iso = private / "seed.iso"
    await asyncio.to_thread(make_seed, seed_iso, seed, instance_id, wheels)
    seed_iso.chmod(0o600)
    return [*machine, *drive_args(overlay, seed_iso)]


def summary(seed: Mapping[str, bytes]) -> dict[str, Any]:
    """A seed read back, for tests and debugging: its text files parsed."""
    user = seed["user-data"].decode()
    return {
        "volume": seed["volume"].decode(),
        "meta-data": json.loads(seed["meta-data"]),
        "user-data": json.loads(user.split("\n", 1)[1]),
        "network-config": json.loads(seed["network-config"]),
        "wheels": sorted(k.split("/", 1)[1] for k in seed if k.startswith("wheelhouse/")),
    }
