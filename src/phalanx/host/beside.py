"""An agent beside a container's processes: forked by the fork server
(host/zygote.py) into a running container's namespaces, so that a container
host costs the engine's `run` and a fork, not a Python that imports the
agent's libraries in every container.

The agent keeps this machine's files (its Python and the libraries it may
still import), but is in the container's process, network, UTS, IPC and
cgroup namespaces and in its cgroups, with a /proc of the container's
processes: its pids, `hostname`, addresses and resource limits are the
container's. What runs *for* a stage runs inside: each stage process enters
the container's mount namespace (`nsenter`) in its working directory, as
`podman exec` would, and the Python that phalanx's own commands run with
is the container's (the agent's venv for the image's interpreter, mounted
by the provider). Files the agent itself reads for a stage (its logs) are
read through the container's root.

The agent's working directory is on this machine, bind-mounted into the
container at the same path (and its local socket's folder too), so every
path it hands a stage means the same file on both sides."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# In the agent's own /proc (the container's processes), the container's first process.
ROOT = "/proc/1/root"
MOUNTS = "/proc/1/ns/mnt"


@dataclass(frozen=True)
class Container:
    python: str  # the container's Python with phalanx importable (the agent's venv in it)
    site: str  # where phalanx is inside: the PYTHONPATH another interpreter needs
    nsenter: str  # this machine's, run by the agent for every stage process
    user: tuple[int, int] | None = None  # uid, gid of the stages (a compose service's `user`)


_current: Container | None = None


def settle(container: Container | None) -> None:
    """This process is an agent beside `container` (called once, by the
    fork server's child, before the agent starts); None: it is not."""
    global _current
    _current = container


def current() -> Container | None:
    return _current


def stage_uid() -> int:
    """Whose the stages' processes are: the container's user, else this process's."""
    if _current is not None and _current.user is not None:
        return _current.user[0]
    return os.getuid()


def find_nsenter() -> str:
    found = shutil.which("nsenter")
    if found is None:
        raise FileNotFoundError("nsenter (util-linux) is not on PATH")
    return found


def python() -> str:
    """The Python that phalanx's own commands and test children run with
    on this host: the container's, else the agent's."""
    return _current.python if _current is not None else sys.executable


def phalanx_path() -> str:
    """The folder another interpreter of this host imports phalanx from."""
    if _current is not None:
        return _current.site
    import phalanx

    return str(Path(phalanx.__file__).resolve().parent.parent)


def command(argv: Sequence[str], cwd: str | Path) -> list[str]:
    """`argv` as it starts for a stage: inside the container (its mount
    namespace, `cwd` there, the stages' user) when the agent is beside one."""
    if _current is None:
        return list(argv)
    enter = [_current.nsenter, f"--mount={MOUNTS}", f"--wd={ROOT}{cwd}"]
    if _current.user is not None:
        uid, gid = _current.user
        enter += [f"--setuid={uid}", f"--setgid={gid}"]
    return [*enter, "--", *argv]


def path(name: str) -> str:
    """A stage's absolute path as the agent reaches it (through the
    container's root when it is beside one)."""
    if _current is None or not os.path.isabs(name):
        return name
    return ROOT + name
