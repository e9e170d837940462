"""A throwaway OpenSSH server for the ssh provider's tests and benchmark.

It runs inside a network namespace made for it (its own address on a veth
pair, no route anywhere else: no package index is reachable from it),
with its own host key, and logs in a user made for it, whose home is a
fresh folder: the remote's ~/.cache/phalanx is not this machine's. Needs
root, `ip netns` (iproute2), sshd (openssh-server) and useradd.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from phalanx.model import Host, SshAccess
from tests.eventually import NotYet, eventually

SSHD = shutil.which("sshd") or next(
    (p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.access(p, os.X_OK)), None
)
IP = shutil.which("ip")
START_TIMEOUT = 30.0
NO_PYTHON = 1000  # the port of the server's second face: port + this


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a network namespace, a user and sshd of its own)"
    if IP is None or subprocess.run([IP, "netns", "list"], capture_output=True).returncode:
        return "needs `ip netns` (iproute2)"
    if SSHD is None or shutil.which("useradd") is None:
        return "needs sshd (openssh-server) and useradd"
    return None


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=30)


def keygen(path: Path) -> str:
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path))
    return path.with_suffix(".pub").read_text().strip()


@dataclass(frozen=True)
class Remote:
    """The sshd in its namespace, and what a client needs to log in."""

    netns: str
    address: str
    port: int
    no_python_port: int  # the same server, where the login finds no python3 on its PATH
    user: str
    home: Path
    key: Path  # authorized
    other_key: Path  # not authorized
    known_hosts: Path
    wrong_known_hosts: Path  # the right address with another host key

    def host(self, name: str = "far.ssh.test", **changes: object) -> Host:
        access: dict[str, object] = {
            "user": self.user,
            "port": self.port,
            "address": self.address,
            "key_file": str(self.key),
            "known_hosts": str(self.known_hosts),
            **changes,
        }
        return Host(name=name, ssh=SshAccess(**access))  # type: ignore[arg-type]

    def processes(self) -> list[str]:
        """The test user's processes (pid and command line): whatever sshd
        or an agent left."""
        uid = pwd.getpwnam(self.user).pw_uid
        found = []
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if not entry.name.isdigit() or entry.stat().st_uid != uid:
                    continue
                if (entry / "stat").read_text().rpartition(")")[2].split()[0] == "Z":
                    # Dead already. sshd runs under this test process, which
                    # may have become a child subreaper (an in-process tree
                    # run), so the orphans of the remote's sessions are its
                    # own to reap.
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(int(entry.name), os.WNOHANG)
                    continue
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                found.append(f"{entry.name} {command.decode(errors='replace').strip()}")
        return found

    def wait_no_processes(self, timeout: float = 15.0) -> list[str]:
        with contextlib.suppress(NotYet):  # the caller shows what is left
            eventually(lambda: not self.processes(), within=timeout, what="no processes left")
        return self.processes()


@contextlib.contextmanager
def throwaway_sshd() -> Iterator[Remote]:
    """An sshd in a namespace of its own, and a user of its own to log in
    as; all of it removed at the end (only what was made here)."""
    tag = secrets.token_hex(3)
    netns, outside, inside = f"phxt-ssh-{tag}", f"phs{tag}a", f"phs{tag}b"
    subnet = f"10.251.{secrets.randbelow(250) + 1}"
    user = f"phxt{tag}"
    port = 2200 + secrets.randbelow(600)
    # Not under pytest's temp folders: those are closed to other users.
    base = Path(tempfile.mkdtemp(prefix=f"phxt-ssh-{tag}-"))
    base.chmod(0o755)
    home = base / "home"
    made: list[str] = []
    sshd: subprocess.Popen[bytes] | None = None
    try:
        run(IP or "ip", "netns", "add", netns)
        made.append("netns")
        run(IP or "ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        made.append("link")
        run(IP or "ip", "link", "set", inside, "netns", netns)
        run(IP or "ip", "addr", "add", f"{subnet}.1/24", "dev", outside)
        run(IP or "ip", "link", "set", outside, "up")
        inns = [IP or "ip", "netns", "exec", netns]
        run(*inns, "ip", "addr", "add", f"{subnet}.2/24", "dev", inside)
        run(*inns, "ip", "link", "set", inside, "up")
        run(*inns, "ip", "link", "set", "lo", "up")

        run("useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh", user)
        made.append("user")
        run("usermod", "-p", "*", user)  # no password, but not a locked account
        (home / ".ssh").mkdir(parents=True)
        key, other_key = base / "id_ed25519", base / "other_ed25519"
        (home / ".ssh" / "authorized_keys").write_text(keygen(key) + "\n")
        keygen(other_key)
        shutil.chown(home, user, user)
        for path in (home / ".ssh", home / ".ssh" / "authorized_keys"):
            shutil.chown(path, user, user)
        host_pub = keygen(base / "host_ed25519")
        other_pub = keygen(base / "other_host_ed25519")
        known, wrong = base / "known_hosts", base / "wrong_known_hosts"
        known.write_text(
            f"[{subnet}.2]:{port} {host_pub}\n[{subnet}.2]:{port + NO_PYTHON} {host_pub}\n"
        )
        wrong.write_text(f"[{subnet}.2]:{port} {other_pub}\n")
        config = base / "sshd_config"
        config.write_text(
            f"""\
Port {port}
Port {port + NO_PYTHON}
ListenAddress {subnet}.2
HostKey {base / "host_ed25519"}
PidFile {base / "sshd.pid"}
AuthorizedKeysFile .ssh/authorized_keys
AllowUsers {user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
AllowTcpForwarding yes
Subsystem sftp internal-sftp
Match LocalPort {port + NO_PYTHON}
    SetEnv PATH=/nonexistent
"""
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        sshd = subprocess.Popen(
            [*inns, SSHD or "sshd", "-D", "-e", "-f", str(config)],
            stdout=(base / "sshd.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_for_port(f"{subnet}.2", port, sshd, base / "sshd.log")
        yield Remote(
            netns, f"{subnet}.2", port, port + NO_PYTHON, user, home, key, other_key, known, wrong
        )
    finally:
        if sshd is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sshd.pid, signal.SIGTERM)
            sshd.wait(timeout=10)
        if "user" in made:
            uid = pwd.getpwnam(user).pw_uid
            for entry in Path("/proc").iterdir():
                with contextlib.suppress(OSError):
                    if entry.name.isdigit() and entry.stat().st_uid == uid:
                        os.kill(int(entry.name), signal.SIGKILL)
            subprocess.run(["userdel", user], capture_output=True, timeout=30)
        if "link" in made:
            subprocess.run([IP or "ip", "link", "del", outside], capture_output=True, timeout=30)
        if "netns" in made:
            subprocess.run([IP or "ip", "netns", "del", netns], capture_output=True, timeout=30)
        shutil.rmtree(base, ignore_errors=True)


def _wait_for_port(address: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=1):
            return True
        return False

    try:
        eventually(listening, within=START_TIMEOUT, what=f"sshd listening on {address}:{port}")
    except NotYet:
        raise RuntimeError(f"sshd did not listen on {address}:{port}: {log.read_text()}") from None
