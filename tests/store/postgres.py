"""A real PostgreSQL server for the tests: Debian's binaries, a cluster made
with `initdb` in a temporary folder, started with `pg_ctl` on a free local
port, stopped and removed at the end. PostgreSQL refuses to run as root, so
as root the server runs as the `postgres` user (or `nobody`).

Each test gets a database of its own (`new_database`), so tests share the
server's start-up (about a second) but no data.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

INSTALL_HINT = "PostgreSQL is not installed: apt-get install postgresql; .ci/run installs it"
USER = "phalanx"


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl: Debian keeps them off PATH."""

    def version(folder: Path) -> int:
        name = folder.parent.name
        return int(name) if name.isdigit() else 0

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    if (found := shutil.which("pg_ctl")) is not None:
        candidates.append(Path(found).resolve().parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _runner() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    pytest.skip("running as root and there is no postgres or nobody user to run PostgreSQL as")


class PostgresServer:
    def __init__(self, bin_dir: Path, *, durable: bool = False) -> None:
        """`durable`: fsync on, as a real server runs (a benchmark's);
        the tests' server skips it."""
        self.bin = bin_dir
        self.durable = durable
        self.runner = _runner()
        self.root = Path(tempfile.mkdtemp(prefix="phalanx-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._names = itertools.count()
        if self.runner is not None:
            os.chown(self.root, *self.runner)

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        user = group = None
        if self.runner is not None:
            user, group = self.runner
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
            user=user,
            group=group,
            cwd=self.root,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
        )

    def start(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            USER,
            "--auth=trust",
            "--no-locale",
            "-E",
            "UTF8",
        )
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
            timeout=90,
        )

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database on the server; its URL."""
        name = f"test{next(self._names)}"
        self._run(
            str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name
        )
        return self.url(name)


def postgres_server() -> Iterator[PostgresServer]:
    """The body of the session fixture (see conftest)."""
    bin_dir = binaries()
    if bin_dir is None:
        pytest.skip(INSTALL_HINT)
    server = PostgresServer(bin_dir)
    try:
        server.start()
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(server.root, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {exc.stderr or exc.stdout}")
    try:
        yield server
    finally:
        server.stop()
