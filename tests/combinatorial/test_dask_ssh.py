"""The dask-ssh:// executor against a real sshd, started here on a free port
with generated keys. The scheduler and worker it starts run through ssh."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from phalanx.combinatorial import make_executor, run_tests
from tests.combinatorial import actions as a
from tests.combinatorial.test_dask import REPO, free_port, stop, wait_for_port
from tests.eventually import NotYet, eventually

SSHD = shutil.which("sshd") or next(
    (p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.access(p, os.X_OK)), None
)
START_TIMEOUT = 30.0


def keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30
    )
    return path.with_suffix(".pub").read_text().strip()


def marked_pids(mark: str) -> list[int]:
    """Processes whose environment carries `mark`: the ones sshd started for this test."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"PHALANX_TEST_MARK={mark}".encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def end_marked(mark: str, timeout: float = 10.0) -> None:
    """Remote dask processes run in sessions of their own under sshd: end them by pid."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in marked_pids(mark):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        with contextlib.suppress(NotYet):  # then SIGKILL
            eventually(lambda: not marked_pids(mark), within=timeout, what="marked pids ended")
            return


@pytest.fixture
def sshd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, str]]:
    if SSHD is None:
        reason = "no sshd on this machine (apt-get install openssh-server); .ci/run installs it"
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    host_pub = keygen(tmp_path / "host_ed25519")
    user_pub = keygen(home / ".ssh" / "id_ed25519")
    (tmp_path / "authorized_keys").write_text(user_pub + "\n")
    port = free_port()
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    mark = uuid.uuid4().hex
    config = tmp_path / "sshd_config"
    config.write_text(
        f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {tmp_path / "host_ed25519"}
AuthorizedKeysFile {tmp_path / "authorized_keys"}
PidFile {tmp_path / "sshd.pid"}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
# The remote workers import the test actions by name; the mark finds them at the end.
SetEnv PYTHONPATH={REPO} PHALANX_TEST_MARK={mark}
"""
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)],
        stdout=(tmp_path / "sshd.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(port, proc, START_TIMEOUT)
        # asyncssh (under dask's SSHCluster) takes keys and known hosts from ~/.ssh.
        monkeypatch.setenv("HOME", str(home))
        yield port, mark
    finally:
        stop(proc)
        end_marked(mark)


def test_walks_run_on_a_dask_ssh_cluster(
    sshd: tuple[int, str], caplog: pytest.LogCaptureFixture
) -> None:
    port, mark = sshd
    caplog.set_level(logging.INFO, logger="phalanx.combinatorial")
    order = [a.Logs, a.Append10, a.SerialAppend2, a.Append3]

    with make_executor(f"dask-ssh://127.0.0.1:{port}", dask_timeout=60) as ex:
        results = run_tests(order, state={}, gather_states=True, executor=ex)
        remote = set(marked_pids(mark))  # while the cluster is up

    assert results.executor == "dask"
    assert results.error_count == 0
    assert sorted(s["inner"] for s in results.states) == [
        list(c) for c in itertools.product(range(4), range(10), range(2), range(3))
    ]
    hello = [r for r in caplog.records if r.getMessage().startswith("hello from pid")]
    assert len(hello) == results.walk_count
    pids = {int(r.getMessage().split()[3]) for r in hello}
    # Every walk ran in a process that sshd started: it carries the sshd's mark.
    assert pids and pids <= remote
    assert os.getpid() not in pids
