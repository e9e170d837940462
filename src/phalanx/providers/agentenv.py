"""What `phalanx serve` gives the local agents it starts, and so their
stages: an environment, a user and a place to work.

The environment is a short, documented list taken from the service's own,
and nothing else. The service's environment carries its configuration and its
secrets (`PHALANX_SMTP__PASSWORD`, database URLs, cloud credentials);
anything a stage can see, a definition author can print into output every
viewer reads. `phalanx run` keeps passing the caller's whole environment:
there the caller and the definition author are the same person.

The user: a service running as root runs its local agents as another user
(`local_agent_user`, `nobody` by default), so that a stage can neither read
nor write the service's data folder (its database holds the users and
tokens), nor read the service's own /proc. The place: a folder of that
user's outside the data folder, made per run.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# What programs need to behave as on a login shell; nothing names a secret.
KEPT = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
# The service's own CA certificate: its local agents verify its wss:// with it.
KEPT_PHALANX = ("PHALANX_AGENT_CA",)
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def minimal_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The agents' environment drawn from the service's `environ`."""
    env = {k: environ[k] for k in (*KEPT, *KEPT_PHALANX) if k in environ}
    env.setdefault("PATH", DEFAULT_PATH)
    return env


@dataclass(frozen=True)
class AgentUser:
    """Who the local agents run as, when not the service's own user."""

    name: str
    uid: int
    gid: int


class UnusableUser(Exception):
    """The agents cannot run as the user asked for; the message says why."""


def agent_user(name: str, python: str = sys.executable) -> AgentUser | None:
    """The user `name` for the local agents, when this process may switch
    to it (it runs as root); None otherwise, or for "" (not asked for).
    Raises UnusableUser for a user the system does not know, or who cannot
    start an agent with `python` (an interpreter under root's home)."""
    if not name or os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise UnusableUser(f"no user {name!r} on this system") from None
    user = AgentUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
    try:
        subprocess.run(
            [python, "-c", "import phalanx.host.zygote"],
            user=user.uid, group=user.gid, extra_groups=[], cwd="/",
            env=minimal_env(os.environ), capture_output=True, timeout=60, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        why = getattr(exc, "stderr", b"") or b""
        last = why.decode(errors="replace").strip().splitlines()[-1:] or [str(exc)]
        raise UnusableUser(
            f"user {name!r} cannot start an agent with {python}: {last[0]}"
        ) from None
    return user


def own_folder(path: Path, user: AgentUser | None) -> None:
    """Make `path` (and its parents) a folder only `user` (or, without one,
    this process's user) may use."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if user is not None:
        os.chown(path, user.uid, user.gid)
    os.chmod(path, 0o700)


GIVE_UP_AFTER = 30.0  # an orphaned agent stops looking for its coordinator


def agent_argv(url: str, name: str, workdir: Path) -> list[str]:
    """The arguments of `python -m phalanx.host` for a host's agent that a
    provider forks on this machine (local, netns and container hosts)."""
    return [
        "--coordinator", url,
        "--name", name,
        "--workdir", str(workdir),
        "--give-up", f"{GIVE_UP_AFTER:g}",
    ]  # fmt: skip
