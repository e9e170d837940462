"""Entering a netns host's namespaces from inside a process, as `ip netns
exec NS unshare --uts -- hostname NAME` does from the outside: the agent
forked by the zygote (host/zygote.py) calls `enter` before it runs.

Python 3.11 has no os.setns nor os.unshare: libc's, through ctypes. Linux
only; the caller must be single-threaded (setns into a mount namespace and
unshare of one refuse a threaded process)."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

NETNS_RUN_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2


class NamespaceError(OSError):
    """A step of entering a host's namespaces failed: which, and why."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise NamespaceError(errno, f"{what}: {os.strerror(errno)}")


def enter(namespace: str, hostname: str) -> None:
    """Join the named network namespace, take mount and UTS namespaces of
    this process's own with the namespace's /etc/netns files over /etc and
    /sys showing its interfaces, and name the host."""
    libc = _libc()
    try:
        fd = os.open(NETNS_RUN_DIR / namespace, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise NamespaceError(exc.errno, f"network namespace {namespace}: {exc.strerror}") from exc
    try:
        _check(libc.setns(fd, CLONE_NEWNET), f"setns into network namespace {namespace}")
    finally:
        os.close(fd)
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare mount and UTS namespaces")
    # Our mounts must not propagate back to the machine's namespace.
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / rprivate")
    # /sys as the namespace sees it (its interfaces), as `ip netns exec`
    # does; like it, go on without when /sys cannot be remounted.
    if libc.umount2(b"/sys", MNT_DETACH) == 0:
        libc.mount(namespace.encode(), b"/sys", b"sysfs", 0, None)
    etc = ETC_NETNS / namespace
    if etc.is_dir():
        for entry in sorted(etc.iterdir()):
            target = Path("/etc") / entry.name
            _check(
                libc.mount(bytes(entry), bytes(target), None, MS_BIND, None),
                f"bind-mount {entry} over {target}",
            )
    name = hostname.encode()
    _check(libc.sethostname(name, ctypes.c_size_t(len(name))), f"sethostname {hostname}")
