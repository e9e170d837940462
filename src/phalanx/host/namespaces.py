"""Entering a host's namespaces from inside a process: a netns host's, as
`ip netns exec NS unshare --uts -- hostname NAME` does from the outside
(`enter`), or a running container's (`join_container`, see host/beside.py):
the agent forked by the zygote (host/zygote.py) calls one before it runs.

Python 3.11 has no os.setns nor os.unshare: libc's, through ctypes. Linux
only; the caller must be single-threaded (setns into a mount namespace and
unshare of one refuse a threaded process)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
from pathlib import Path

NETNS_RUN_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
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


# The container's own limits, as its processes have them (the engine sets nofile and nproc).
_LIMITS = ("RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CORE", "RLIMIT_MEMLOCK", "RLIMIT_STACK")


def join_container(pid: int) -> None:
    """Become a process of the container whose first process is `pid` (as
    this machine numbers it): in its cgroups and its PID, network, UTS, IPC
    and cgroup namespaces, with its limits, in a mount namespace of this
    process's own whose /proc shows the container's processes.

    A process cannot change its own PID namespace, only its children's: this
    one forks, and returns in the child. The parent stays outside, waits for
    it and ends as it ended (its pid is the one the caller was told)."""
    libc = _libc()
    names = {"pid": CLONE_NEWPID, "net": CLONE_NEWNET, "uts": CLONE_NEWUTS,
             "ipc": CLONE_NEWIPC, "cgroup": CLONE_NEWCGROUP}  # fmt: skip
    fds = {}
    try:
        for name in names:
            try:
                fds[name] = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise NamespaceError(exc.errno, f"container process {pid}: {exc.strerror}") from exc
        _check(libc.setns(fds["pid"], CLONE_NEWPID), "setns into the container's PID namespace")
        child = os.fork()
        if child != 0:
            _wait_for(child)
        _join_cgroups(pid)
        for name, flag in names.items():
            if name != "pid":
                _check(libc.setns(fds[name], flag), f"setns into the container's {name} namespace")
    finally:
        for fd in fds.values():
            os.close(fd)
    for name in _LIMITS:
        with contextlib.suppress(OSError, ValueError):
            limit = getattr(resource, name)
            resource.setrlimit(limit, resource.prlimit(pid, limit))
    _check(libc.unshare(CLONE_NEWNS), "unshare a mount namespace")
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / rprivate")
    # This process's pids are the container's: so must /proc's be.
    _check(libc.mount(b"proc", b"/proc", b"proc", 0, None), "mount the container's /proc")


def _wait_for(child: int) -> None:
    """The parent's part: end as the child ends; a signal to this process's
    group reaches the child too."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            os._exit(1)
    code = os.waitstatus_to_exitcode(status)
    os._exit(128 - code if code < 0 else code)


def _join_cgroups(pid: int) -> None:
    """Into each cgroup of the container's first process."""
    cgroups = Path(f"/proc/{pid}/cgroup").read_text()
    for procs in cgroup_procs(cgroups, Path("/proc/self/mountinfo").read_text()):
        try:
            procs.write_text("0")
        except OSError as exc:
            raise NamespaceError(
                exc.errno, f"join the container's cgroup {procs}: {exc.strerror}"
            ) from exc


def cgroup_procs(cgroups: str, mountinfo: str) -> list[Path]:
    """The `cgroup.procs` files that put a process into the cgroups a
    /proc/PID/cgroup text names (every v1 hierarchy, and the unified one),
    through the cgroup mounts a /proc/self/mountinfo text shows; a
    hierarchy mounted nowhere is left out."""
    mounts: dict[str, tuple[str, str]] = {}  # controllers ("" unified) -> root, mount point
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        fstype, options = fields[dash + 1], fields[dash + 3].split(",")
        root, mountpoint = fields[3], fields[4]
        if fstype == "cgroup2":
            mounts.setdefault("", (root, mountpoint))
        elif fstype == "cgroup":
            names = [o for o in options if o not in _MOUNT_OPTIONS and "=" not in o]
            names += [o for o in options if o.startswith("name=")]
            mounts.setdefault(",".join(sorted(names)), (root, mountpoint))
    found = []
    for line in cgroups.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        key = "" if hierarchy == "0" else ",".join(sorted(controllers.split(",")))
        if key not in mounts:
            continue
        root, mountpoint = mounts[key]
        inner = os.path.relpath(path, root) if root != "/" else path.lstrip("/")
        found.append(Path(mountpoint, "" if inner == "." else inner, "cgroup.procs"))
    return found


_MOUNT_OPTIONS = {"rw", "ro", "noprefix", "clone_children", "xattr", "nsdelegate", "cpuset_v2_mode"}
