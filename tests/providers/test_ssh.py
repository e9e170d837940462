"""The ssh provider against a real OpenSSH server (tests/providers/sshd.py:
in a network namespace of its own, with no route to any package index, and
a user of its own whose home is not this machine's). Needs root, `ip
netns` and sshd; skipped otherwise.

The agent's wheelhouse is built once for the session into a temp cache
(pip download: about 5-10 s with a warm pip cache).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from phalanx.coordinator.runs import open_coordinator
from phalanx.model import Host
from phalanx.providers import wheelhouse as wh
from phalanx.providers.base import AgentSpec, ProvisionError
from phalanx.providers.pythons import choose_python
from phalanx.providers.ssh import SshProvider, cache_dir
from tests.providers.sshd import IP, Remote, run, skip_reason, throwaway_sshd

LOCAL = wh.Target(sys.version_info[:2], platform.machine())


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """XDG_CACHE_HOME with the wheelhouse for this machine's Python built in
    it. The remote runs the system's python3: where its version is not this
    one, the provider builds the wheelhouse it needs into the same cache."""
    xdg = tmp_path_factory.mktemp("xdg")
    started = time.monotonic()
    house = wh.wheelhouse(LOCAL, xdg / "phalanx" / "wheelhouse")
    print(f"wheelhouse built in {time.monotonic() - started:.1f}s: {house.path}")
    return xdg


@pytest.fixture(scope="module")
def remote() -> Iterator[Remote]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with throwaway_sshd() as made:
        yield made


# Two hosts of the cluster on one machine and one account: one install.
HOSTS = ("far.ssh.test", "near.ssh.test")


def _write_suite(tmp_path: Path, remote: Remote) -> Path:
    repo = tmp_path / "repo"
    (repo / "clusters").mkdir(parents=True)
    (repo / "clusters" / "lab_ssh.yaml").write_text(
        """\
name: lab_ssh
provider: ssh
hosts:
"""
        + "".join(
            f"""\
  - name: {name}
    ssh:
      address: {remote.address}
      user: {remote.user}
      port: {remote.port}
      key_file: {remote.key}
      known_hosts: {remote.known_hosts}
"""
            for name in HOSTS
        )
    )
    suite = repo / "test-suites" / "where"
    (suite / "tc" / "where").mkdir(parents=True)
    (suite / "suite.yaml").write_text("cluster: lab_ssh\ntests: [where]\n")
    (suite / "tc" / "where" / "run.sh").write_text(
        '#!/bin/sh\necho "addresses: $(hostname -I)"\necho "user: $(id -un)"\necho "home: $HOME"\n'
        # Left running on purpose: it must not outlive the run.
        "setsid sleep 300 </dev/null >/dev/null 2>&1 &\n"
    )
    return suite


def _agent_logs(run_folder: Path) -> str:
    return "\n".join(
        f"{log}:\n{log.read_text(errors='replace')}"
        for log in sorted(run_folder.glob("hosts/*/.phalanx/agent.log"))
    )


def _phalanx_run(suite: Path, results: Path, wheel_cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(wheel_cache)}
    return subprocess.run(
        [sys.executable, "-m", "phalanx", "run", str(suite), "--plain", "--results", str(results),
         "--connect-timeout", "60"],
        capture_output=True, text=True, timeout=300, env=env, cwd=results.parent,
    )  # fmt: skip


def test_a_suite_runs_on_the_ssh_host_installed_cold_then_warm(
    remote: Remote, wheel_cache: Path, tmp_path: Path
) -> None:
    suite = _write_suite(tmp_path, remote)
    local_cache = Path.home() / cache_dir()
    local_before = local_cache.exists() and sorted(p.name for p in local_cache.iterdir())

    first = _phalanx_run(suite, tmp_path / "first", wheel_cache)
    assert first.returncode == 0, first.stdout + first.stderr
    (run_folder,) = (tmp_path / "first").iterdir()
    for host in HOSTS:
        output = (run_folder / "cases" / "where" / "run" / f"{host}.log").read_text()
        # The stage ran on the remote: the namespace's address, the remote's user and home.
        assert f"addresses: {remote.address}" in output
        assert f"user: {remote.user}" in output
        assert f"home: {remote.home}" in output
        # The agent's own log came back into the run folder.
        assert (run_folder / "hosts" / host / ".phalanx" / "agent.log").exists()
    # Installed once, from the wheelhouse, with no index: the remote cannot reach one.
    (install_log,) = (run_folder / "hosts").glob("*/install.log")
    assert " --no-index " in install_log.read_text()
    assert " --find-links " in install_log.read_text()
    installed = remote.home / cache_dir()
    assert (installed / "venv" / "bin" / "python").exists()
    assert not (installed / "wheels").exists()
    marker = (installed / "installed").read_text().split()
    # The remote's own Python decides the wheelhouse: here, the system's python3.
    (key,) = marker
    assert (
        wheel_cache / "phalanx" / "wheelhouse" / key / f"phalanx-{wh.version()}-py3-none-any.whl"
    ).is_file()
    marker_time = (installed / "installed").stat().st_mtime_ns
    # Nothing left on the remote but the cache: no process, no working folder.
    assert remote.wait_no_processes() == [], _agent_logs(run_folder)
    assert not [
        p for p in Path(tempfile.gettempdir()).glob("phalanx-agent-*") if p.owner() == remote.user
    ]
    assert sorted(p.name for p in remote.home.iterdir()) == [".cache", ".ssh"]
    assert [p.name for p in (remote.home / ".cache").iterdir()] == ["phalanx"]
    # The remote's cache is its own home's, not this machine's.
    assert (local_cache.exists() and sorted(p.name for p in local_cache.iterdir())) == local_before

    second = _phalanx_run(suite, tmp_path / "second", wheel_cache)
    assert second.returncode == 0, second.stdout + second.stderr
    (run_folder,) = (tmp_path / "second").iterdir()
    # Warm: no copy, no install.
    assert list((run_folder / "hosts").glob("*/install.log")) == []
    assert (installed / "installed").stat().st_mtime_ns == marker_time
    for host in HOSTS:
        output = (run_folder / "cases" / "where" / "run" / f"{host}.log").read_text()
        assert f"addresses: {remote.address}" in output
    assert remote.wait_no_processes() == [], _agent_logs(run_folder)


def test_the_remote_reaches_no_package_index(remote: Remote) -> None:
    probe = "import socket; socket.create_connection(('151.101.0.223', 443), timeout=3)"
    done = subprocess.run(
        [IP or "ip", "netns", "exec", remote.netns, sys.executable, "-c", probe],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode != 0
    assert "unreachable" in done.stderr


async def _up(provider: SshProvider, *hosts: Host) -> None:
    async with open_coordinator(heartbeat_timeout=5) as coordinator:
        specs = [
            AgentSpec(h, coordinator.agent_url, coordinator.tokens.issue(h.name)) for h in hosts
        ]
        try:
            await provider.up(specs)
        finally:
            await asyncio.wait_for(provider.down(), 30)


async def test_the_agent_comes_back_through_ssh_with_its_token_off_the_command_line(
    remote: Remote, wheel_cache: Path, tmp_path: Path
) -> None:
    """One agent brought up by the provider itself: it connects through a
    reverse forward to loopback, its token is on no command line; killed
    with -9, `down` still ends what its stage left and its folder."""
    provider = SshProvider(tmp_path, "r2", wheel_cache=wheel_cache / "phalanx" / "wheelhouse")
    host = remote.host()
    assert provider.addresses([host]) == {host.name: remote.address}
    async with open_coordinator(heartbeat_timeout=5) as coordinator:
        token = coordinator.tokens.issue(host.name)
        try:
            await provider.up([AgentSpec(host, coordinator.agent_url, token)])
            assert await coordinator.hub.wait_connected([host.name], 60) == []
            agent = provider.remotes[host.name]
            assert agent.pid is not None and agent.workdir is not None
            command_line = Path(f"/proc/{agent.pid}/cmdline").read_bytes().split(b"\0")
            assert token.encode() not in b" ".join(command_line)
            url = command_line[command_line.index(b"--coordinator") + 1].decode()
            assert url.startswith("ws://127.0.0.1:") and url.endswith("/agent")
            # The forward's port on the remote: the coordinator's own, free there.
            assert agent.listener is not None
            assert (
                url == f"ws://127.0.0.1:{agent.listener.get_port()}/agent" == coordinator.agent_url
            )
            assert Path(agent.workdir).owner() == remote.user
            assert Path(agent.workdir).name.startswith("phalanx-agent-r2-")
            # What a stage left running, as the agent's ledger would name it.
            leftover = subprocess.Popen(
                ["setpriv", f"--reuid={remote.user}", f"--regid={remote.user}", "--clear-groups",
                 "sleep", "300"],
                start_new_session=True,
            )  # fmt: skip
            ledger = Path(agent.workdir) / ".phalanx" / "groups"
            ledger.parent.mkdir(parents=True, exist_ok=True)
            with ledger.open("a") as f:
                f.write(f"{leftover.pid}\n")
            os.kill(agent.pid, signal.SIGKILL)
        finally:
            await asyncio.wait_for(provider.down({host.name}), 30)
    assert leftover.wait(timeout=10) == -signal.SIGKILL
    assert not Path(agent.workdir).exists()
    assert remote.wait_no_processes() == []


async def test_a_key_the_remote_does_not_know_is_refused_naming_the_host(
    remote: Remote, wheel_cache: Path, tmp_path: Path
) -> None:
    provider = SshProvider(tmp_path, "r1", wheel_cache=wheel_cache / "phalanx" / "wheelhouse")
    host = remote.host(key_file=str(remote.other_key))
    with pytest.raises(ProvisionError) as caught:
        await _up(provider, host)
    message = str(caught.value)
    assert message.startswith("ssh hosts not brought up (far.ssh.test): far.ssh.test: ")
    assert message.endswith(
        f"{remote.address}:{remote.port} refused the login as '{remote.user}' "
        f"with {remote.other_key}"
    )
    assert remote.wait_no_processes() == []


async def test_a_host_key_other_than_the_known_one_is_refused(
    remote: Remote, wheel_cache: Path, tmp_path: Path
) -> None:
    provider = SshProvider(tmp_path, "r1", wheel_cache=wheel_cache / "phalanx" / "wheelhouse")
    host = remote.host(known_hosts=str(remote.wrong_known_hosts))
    with pytest.raises(ProvisionError) as caught:
        await _up(provider, host)
    message = str(caught.value)
    assert (
        f"far.ssh.test: the host key of {remote.address}:{remote.port} "
        f"does not match {remote.wrong_known_hosts}"
    ) in message
    assert "never accepts an unknown host key" in message
    # Not even logged in: the remote saw no session of the user.
    assert not (remote.home / ".cache").exists() or remote.wait_no_processes() == []


async def test_every_failed_host_is_named_in_one_error(
    remote: Remote, wheel_cache: Path, tmp_path: Path
) -> None:
    """An unreachable host and one with no known_hosts file beside a good
    one: one error names both; the good one is logged out again."""
    provider = SshProvider(
        tmp_path, "r1", wheel_cache=wheel_cache / "phalanx" / "wheelhouse", connect_timeout=5
    )
    closed = remote.host("closed.ssh.test", port=remote.port + 1)
    nowhere = remote.host("nowhere.ssh.test", known_hosts=str(tmp_path / "none"))
    with pytest.raises(ProvisionError) as caught:
        await _up(provider, closed, remote.host("good.ssh.test"), nowhere)
    message = str(caught.value)
    assert message.startswith(
        "ssh hosts not brought up (closed.ssh.test, nowhere.ssh.test): "
        f"closed.ssh.test: cannot reach {remote.address}:{remote.port + 1}: "
    )
    assert f"; nowhere.ssh.test: no known_hosts file {tmp_path / 'none'} " in message
    assert "good.ssh.test" not in message
    assert provider.remotes == {}
    assert remote.wait_no_processes() == []


async def test_a_remote_without_python_is_named(remote: Remote, tmp_path: Path) -> None:
    provider = SshProvider(tmp_path, "r1")
    host = remote.host("bare.ssh.test", port=remote.no_python_port)
    with pytest.raises(ProvisionError) as caught:
        await _up(provider, host)
    assert str(caught.value).endswith("bare.ssh.test: no Python >= 3.11 (no python3 at all)")
    assert remote.wait_no_processes() == []


def test_the_wheelhouse_holds_what_every_host_module_imports(
    wheel_cache: Path, tmp_path: Path
) -> None:
    """The agent's requirement list is complete: every module of
    phalanx.host imports in a venv made from the wheelhouse alone."""
    house = wheel_cache / "phalanx" / "wheelhouse" / wh.key_for(LOCAL)
    names = sorted(p.name for p in house.iterdir())
    assert not any(
        n.startswith(("fastapi", "sqlalchemy", "rich", "dask", "asyncssh")) for n in names
    )
    pip = next(house.glob("pip-*.whl"))
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, f"{pip}/pip", "install", "--quiet", "--no-index", "--find-links", str(house),
         "phalanx"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    probe = (
        "import importlib, json, pkgutil, sys, phalanx.host\n"
        "for m in pkgutil.walk_packages(phalanx.host.__path__, 'phalanx.host.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(json.dumps(phalanx.host.__file__))\n"
    )
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout).startswith(str(venv))


def test_the_agent_requirements_come_with_phalanx_own_version_bounds() -> None:
    requirements = wh.agent_requirements()
    assert [r.split(">")[0].lower() for r in requirements] == [
        n.lower() for n in wh.AGENT_REQUIREMENTS
    ]
    assert all(">=" in r for r in requirements)


def test_the_remote_python_is_the_first_usable_one() -> None:
    listing = (
        "cpython 3.9 x86_64 /usr/bin/python3\n"
        "cpython 3.12 x86_64 /usr/bin/python3.12\n"
        "cpython 3.11 x86_64 /usr/bin/python3.11\n"
    )
    chosen = choose_python(listing)
    assert not isinstance(chosen, str)
    assert (chosen.path, chosen.version) == ("/usr/bin/python3.12", (3, 12))
    assert choose_python("cpython 3.9 x86_64 /usr/bin/python3\n") == (
        "no Python >= 3.11 (found /usr/bin/python3 (3.9))"
    )
    assert choose_python("") == "no Python >= 3.11 (no python3 at all)"


FETCH = """\
#!/bin/sh
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 20 "$@"; }
url="@proto@://@coordinator@:@port@/showScript/utils/data.txt"
echo "stage: $(code "$url")"
echo "text: $(curl -s --max-time 20 "$url")"
echo "download: $(code "@proto@://@coordinator@:@port@/downloadScript/utils/data.txt")"
echo "keyed: $(code "$PHALANX_SCRIPTS_URL/utils/data.txt")"
echo "clean environment: $(env -i PATH="$PATH" curl -s -o /dev/null -w '%{http_code}' --max-time 20 "$url")"
# Another user's process on this host, started outside the run, fetches now.
echo "$url" > @meet@/url.$$ && mv @meet@/url.$$ @meet@/url  # both hosts write it
for _ in $(seq 300); do [ -s @meet@/code ] && break; sleep 0.1; done
echo "another user: $(cat @meet@/code)"
"""
# The other user's side: root in the host's namespace, waiting for the url.
OUTSIDER = """\
for _ in $(seq 600); do [ -s "$1/url" ] && break; sleep 0.1; done
curl -s -o /dev/null -w '%{http_code}' --max-time 20 "$(cat "$1/url")" > "$1/code.tmp"
mv "$1/code.tmp" "$1/code"
"""


def test_an_ssh_hosts_stage_fetches_suite_files_as_xrdtest_did_and_no_other_process_there(
    remote: Remote, wheel_cache: Path, tmp_path: Path
) -> None:
    """/showScript from an ssh host: the host's agent names the process at
    the client end; only the run's stages hold its capability."""
    suite = _write_suite(tmp_path, remote)
    (suite.parents[1] / "utils").mkdir()
    (suite.parents[1] / "utils" / "data.txt").write_text("from the repo\n")
    # Not under pytest's temp folders: those are closed to other users.
    meet = Path(tempfile.mkdtemp(prefix="phxt-meet-"))
    try:
        meet.chmod(0o777)
        (suite / "tc" / "where" / "run.sh").write_text(FETCH.replace("@meet@", str(meet)))
        outsider = subprocess.Popen(
            [IP or "ip", "netns", "exec", remote.netns, "sh", "-c", OUTSIDER, "sh", str(meet)],
            start_new_session=True,
        )  # fmt: skip
        try:
            done = _phalanx_run(suite, tmp_path / "results", wheel_cache)
        finally:
            if outsider.poll() is None:
                os.killpg(outsider.pid, signal.SIGKILL)
            outsider.wait(30)
    finally:
        shutil.rmtree(meet, ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr
    (run_folder,) = (tmp_path / "results").iterdir()
    for host in HOSTS:  # the second host's forward is on another port: the first's serves both
        output = (run_folder / "cases" / "where" / "run" / f"{host}.log").read_text()
        assert output.splitlines() == [
            "stage: 200", "text: from the repo", "download: 200", "keyed: 200",
            "clean environment: 403", "another user: 403",
        ], output  # fmt: skip
