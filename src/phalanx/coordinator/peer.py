"""Who is at the other end of a loopback connection, and which run's
capability it holds.

On loopback an address names no host: every process of the machine comes
from 127.0.0.1. The connection itself still has an owner: the kernel lists
the socket (/proc/net/tcp*, by its ports) with an inode, and the process
holding that inode among its open files is the client. A stage's processes
carry their run's capability in their environment (`PHALANX_SCRIPTS_URL`),
so the legacy XrdTest routes ask the client for it instead of trusting
the address. Linux only; the service reads other users' /proc as root (or
its agents run as its own user)."""

from __future__ import annotations

import contextlib
import os
from urllib.parse import urlsplit

SCRIPTS_ENV = b"PHALANX_SCRIPTS_URL="
ESTABLISHED = "01"


def _socket_inode(client_port: int, server_port: int) -> str | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) < 10 or fields[3] != ESTABLISHED:
                    continue
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if local_port == client_port and remote_port == server_port:
                    return fields[9]
    return None


def peer_pid(client_port: int, server_port: int) -> int | None:
    """The process holding the client end of a loopback TCP connection from
    `client_port` to `server_port`, or None."""
    inode = _socket_inode(client_port, server_port)
    if inode is None or inode == "0":
        return None
    target = f"socket:[{inode}]"
    me = os.getpid()
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{entry.name}/fd"):
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{entry.name}/fd/{fd}") == target:
                            return int(entry.name)
    return None


def capability_of(pid: int) -> tuple[str, str] | None:
    """(run id, key) of the run capability in the process's environment."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
    except OSError:
        return None
    for entry in environ.split(b"\0"):
        if entry.startswith(SCRIPTS_ENV):
            parts = urlsplit(entry[len(SCRIPTS_ENV) :].decode(errors="replace")).path.split("/")
            # /scripts/<run>/<key>
            if len(parts) >= 4 and parts[1] == "scripts":
                return parts[2], parts[3]
    return None


def loopback_capability(client_port: int, server_port: int) -> tuple[str, str] | None:
    pid = peer_pid(client_port, server_port)
    return capability_of(pid) if pid is not None else None


def is_loopback(address: str) -> bool:
    return (
        address.startswith("127.")
        or address in ("::1", "::ffff:127.0.0.1")
        or (address.startswith("::ffff:127."))
    )
