"""What a phalanx VM's guest is told: its environment (`vm.env`) and the
seed folder it reads at boot, and the coordinator's address as it reaches
it on QEMU's user-mode network."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

GUEST_ADDRESS = "10.0.2.15/24"  # QEMU user-mode networking's fixed plan
GATEWAY = "10.0.2.2"  # ...where the guest reaches this machine's loopback
DNS = "10.0.2.3"
GUEST_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
GUEST_WORKDIR = "/var/lib/phalanx/agent"
GIVE_UP_AFTER = 30.0  # an agent whose coordinator is gone stops, and its VM with it


def guest_url(url: str) -> str:
    """The coordinator's endpoint as a guest on user-mode networking reaches
    it: this machine's loopback is the gateway's address there."""
    parts = urlsplit(url)
    hostname = parts.hostname or ""
    if hostname in ("localhost", "::1") or hostname.startswith("127."):
        netloc = GATEWAY + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


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
