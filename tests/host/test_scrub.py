"""`forget_env`: a secret handed to a daemon in its environment is no
longer readable in /proc/PID/environ once the daemon forgot it, by the
daemon's own user as by its stages. A real process, read as another
process of the same user would read it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SECRET = "s3cr3t-agent-token-1234567890"
TIMEOUT = 30

CHILD = """
import os, sys
from phalanx.host.scrub import forget_env
forget_env(sys.argv[1])
print(repr(os.environ.get(sys.argv[1])), flush=True)
sys.stdin.read()  # alive until the test has looked
"""


def environ_of(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def forgetting(name: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """A process that forgot `name`, alive, and what its os.environ says of it."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, name],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    said = child.stdout.readline().strip()  # after forget_env: it printed once done
    return child, said


def test_a_forgotten_secret_is_not_in_proc_environ_nor_in_os_environ() -> None:
    env = {**os.environ, "PHALANX_TOKEN": SECRET, "NEIGHBOUR": "stays"}
    child, said = forgetting("PHALANX_TOKEN", env)
    try:
        assert said == "None"
        shown = environ_of(child.pid)
        assert SECRET.encode() not in shown
        # The other variables are untouched, in place.
        assert b"\0NEIGHBOUR=stays\0" in shown
        # The block keeps its size: the value is blanked, not moved.
        assert b"PHALANX_TOKEN=" + b"\0" * len(SECRET) in shown
    finally:
        child.communicate("", timeout=TIMEOUT)


def test_a_name_that_is_only_a_prefix_of_another_is_not_blanked_there() -> None:
    env = {**os.environ, "TOKEN": "short-secret", "TOKEN_FILE": "/etc/keep-me"}
    child, said = forgetting("TOKEN", env)
    try:
        assert said == "None"
        shown = environ_of(child.pid)
        assert b"short-secret" not in shown
        assert b"TOKEN_FILE=/etc/keep-me" in shown
    finally:
        child.communicate("", timeout=TIMEOUT)


def test_forgetting_a_name_that_is_not_there_changes_nothing() -> None:
    env = {**os.environ, "NEIGHBOUR": "stays"}
    child, said = forgetting("NOT_SET_HERE", env)
    try:
        assert said == "None"
        assert b"NEIGHBOUR=stays" in environ_of(child.pid)
    finally:
        child.communicate("", timeout=TIMEOUT)
