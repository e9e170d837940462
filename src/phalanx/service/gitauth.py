"""Credentials for a definitions repo's git remote, kept out of where other
processes and files can see them.

A URL with credentials (`https://user:token@host/repo.git`) is split once:
git is only ever given the URL without them, so neither its command line
(which every process on the machine can read in /proc) nor the checkout's
`.git/config` holds them. The credentials reach git through `GIT_ASKPASS`:
a small script, itself holding no secret, that answers git's prompts from
its environment. Credential helpers are switched off for these commands,
so no configured helper stores them on disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

USER_ENV = "PHALANX_GIT_USERNAME"
PASSWORD_ENV = "PHALANX_GIT_PASSWORD"
ASKPASS = f"""#!/bin/sh
# git's askpass for phalanx serve: answers from the environment git was given.
case "$1" in
  Username*) printf '%s\\n' "${USER_ENV}" ;;
  *) printf '%s\\n' "${PASSWORD_ENV}" ;;
esac
"""
# Every command: no credential helper (one could store what askpass gave).
NO_HELPERS = ("-c", "credential.helper=")


@dataclass(frozen=True)
class Remote:
    url: str  # without credentials: what git's argv and .git/config get
    user: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def has_credentials(self) -> bool:
        return self.user is not None or self.password is not None


def split_credentials(url: str) -> Remote:
    """`url` without its user and password, and them apart. A URL that is
    not a URL (a local path, scp-like `host:path`) is kept as it is."""
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
        port = parts.port
    except ValueError:
        return Remote(url)
    if user is None and password is None:
        return Remote(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port is not None:
        host += f":{port}"
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return Remote(clean, user, password)


def askpass_env(remote: Remote, folder: Path) -> dict[str, str]:
    """What git's environment needs for `remote`'s credentials: the askpass
    script (written in `folder` once, no secret in it) and the answers."""
    if not remote.has_credentials:
        return {"GIT_ASKPASS": "true"}  # no prompt can hang: an auth failure fails
    script = folder / "askpass.sh"
    if not script.exists() or script.read_text() != ASKPASS:
        folder.mkdir(parents=True, exist_ok=True)
        temporary = script.with_suffix(".tmp")
        temporary.write_text(ASKPASS)
        os.chmod(temporary, 0o700)
        temporary.replace(script)
    return {
        "GIT_ASKPASS": str(script),
        USER_ENV: remote.user or "",
        PASSWORD_ENV: remote.password or "",
    }
