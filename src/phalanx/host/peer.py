"""Who is at the other end of a TCP connection, and which run's capability
it holds.

An address names no one on a machine shared by many processes: every
process of the coordinator's machine comes from 127.0.0.1, and every process
of a host from the host's address. The connection itself still has an
owner: the kernel lists the socket (/proc/net/tcp*, by its ports) with an
inode, and the process holding that inode among its open files is the
client. A stage's processes carry their run's capability in their
environment (`PHALANX_SCRIPTS_URL`), so the legacy XrdTest routes ask for
it instead of trusting the address: the coordinator looks on its own
machine (loopback, netns and container hosts), and an agent looks on its
host when the coordinator asks it (`peer.ask`: ssh hosts and VMs). Linux
only; other users' /proc is read as root, or as the stages' own user.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from urllib.parse import urlsplit

SCRIPTS_ENV = b"PHALANX_SCRIPTS_URL="
ESTABLISHED = "01"


def _socket_inode(
    client_port: int, server_port: int, proc: str = "/proc", address: str | None = None
) -> str | None:
    """The inode of the client's socket in the tables of `proc`'s network
    namespace (`address`: the client's own, in the kernel's hex; None: any)."""
    for table in (f"{proc}/net/tcp", f"{proc}/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) < 10 or fields[3] != ESTABLISHED:
                    continue
                local, local_port_hex = fields[1].rsplit(":", 1)
                local_port = int(local_port_hex, 16)
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if address is not None and local.upper() not in (address, _V4_IN_V6 + address):
                    continue
                if local_port == client_port and remote_port == server_port:
                    return fields[9]
    return None


# How /proc/net/tcp6 writes an IPv4 address mapped into IPv6, before it.
_V4_IN_V6 = "0000000000000000FFFF0000"


def _kernel_hex(address: str) -> str | None:
    """`address` as /proc/net/tcp* writes it (32-bit words in host order;
    little-endian here), or None if it is no address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    packed = ip.packed
    return "".join(packed[i : i + 4][::-1].hex() for i in range(0, len(packed), 4)).upper()


def _namespaces() -> list[str]:
    """One process's /proc folder for each network namespace of this machine."""
    seen: set[str] = set()
    found = []
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                namespace = os.readlink(f"/proc/{entry.name}/ns/net")
                if namespace not in seen:
                    seen.add(namespace)
                    found.append(f"/proc/{entry.name}")
    return found


def _holder(inode: str) -> int | None:
    """The process that holds socket `inode` among its open files."""
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


def local_peer(address: str, client_port: int, server_port: int) -> int | None:
    """The process of this machine, in any network namespace (a netns or
    container host's), that holds the client end of a TCP connection from
    `address`:`client_port` to `server_port`; None: the client is on
    another machine (or gone)."""
    wanted = _kernel_hex(address)
    if wanted is None:
        return None
    for proc in _namespaces():
        inode = _socket_inode(client_port, server_port, proc, wanted)
        if inode is not None and inode != "0":
            return _holder(inode)
    return None


def peer_pid(client_port: int, server_port: int) -> int | None:
    """The process holding the client end of a loopback TCP connection from
    `client_port` to `server_port`, or None."""
    inode = _socket_inode(client_port, server_port)
    if inode is None or inode == "0":
        return None
    return _holder(inode)


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


def connection_capability(client_port: int, server_port: int) -> tuple[str, str] | None:
    """(run id, key) held by the process of this network namespace at the
    client end of a connection from `client_port` to `server_port`."""
    pid = peer_pid(client_port, server_port)
    return capability_of(pid) if pid is not None else None


def is_loopback(address: str) -> bool:
    return (
        address.startswith("127.")
        or address in ("::1", "::ffff:127.0.0.1")
        or (address.startswith("::ffff:127."))
    )
