"""The agents' fork server: what an agent forked by it looks like from the
outside (its session, its files, its command line, its namespaces), and
that no agent outlives the provider or a dead fork server for long."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from phalanx.coordinator.runs import open_coordinator
from phalanx.layout import agent_log
from phalanx.model import Cluster, Host
from phalanx.providers import agentenv, zygotestart
from phalanx.providers.base import AgentSpec
from phalanx.providers.local import LocalProvider, host_dir
from phalanx.providers.netns import NetnsProvider
from tests.processes import alive, gone
from tests.providers.test_netns import needs_netns

HOSTS = [Host(name="z1.fork.test"), Host(name="z2.fork.test")]


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])


def _cmdlines() -> list[bytes]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                lines.append((entry / "cmdline").read_bytes())
    return lines


async def test_a_forked_agent_is_its_own_session_with_its_log_and_no_token_on_any_command_line(
    tmp_path: Path,
) -> None:
    provider = LocalProvider(tmp_path / "hosts")
    async with open_coordinator(heartbeat_timeout=5) as coordinator:
        tokens = {h.name: coordinator.tokens.issue(h.name) for h in HOSTS}
        await provider.up([AgentSpec(h, coordinator.agent_url, tokens[h.name]) for h in HOSTS])
        agents = list(provider.agents)
        try:
            assert await coordinator.hub.wait_connected([h.name for h in HOSTS], 30) == []
            for host, agent in zip(HOSTS, agents, strict=True):
                pid = agent.process.pid
                assert os.getsid(pid) == pid and os.getpgid(pid) == pid
                assert os.readlink(f"/proc/{pid}/fd/0") == os.devnull
                log = agent_log(host_dir(tmp_path / "hosts", host.name))
                assert os.readlink(f"/proc/{pid}/fd/1") == str(log)
                assert os.readlink(f"/proc/{pid}/fd/2") == str(log)
                words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                assert b"phalanx.host" in words and host.name.encode() in words
            everything = b"\n".join(_cmdlines())
            assert not any(token.encode() in everything for token in tokens.values())
            coordinator.hub.shutdown([h.name for h in HOSTS])
        finally:
            await asyncio.wait_for(provider.down(), 30)
    assert provider.agents == []
    assert not any(alive(agent.process.pid) for agent in agents)
    # The fork server reported how each ended.
    assert all(agent.process.returncode is not None for agent in agents)


async def test_with_the_fork_server_killed_agents_still_end_at_down_and_it_comes_back_for_up(
    tmp_path: Path,
) -> None:
    provider = LocalProvider(tmp_path / "hosts")
    async with open_coordinator(heartbeat_timeout=5) as coordinator:
        tokens = {h.name: coordinator.tokens.issue(h.name) for h in HOSTS}
        await provider.up([AgentSpec(HOSTS[0], coordinator.agent_url, tokens[HOSTS[0].name])])
        assert provider._zygote is not None
        os.kill(provider._zygote.process.pid, signal.SIGKILL)
        await provider._zygote.process.wait()
        # A later `up` gets a fork server again.
        await provider.up([AgentSpec(HOSTS[1], coordinator.agent_url, tokens[HOSTS[1].name])])
        agents = list(provider.agents)
        try:
            assert await coordinator.hub.wait_connected([h.name for h in HOSTS], 30) == []
            # The first agent's end is noticed though its parent is gone.
            os.kill(agents[0].process.pid, signal.SIGKILL)
            await asyncio.wait_for(agents[0].process.wait(), 10)
        finally:
            await asyncio.wait_for(provider.down(lost=[HOSTS[1].name]), 30)
    assert not any(alive(agent.process.pid) for agent in agents)


async def test_agents_of_a_dead_fork_server_give_up_without_their_coordinator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agentenv, "GIVE_UP_AFTER", 1.0)
    provider = LocalProvider(tmp_path / "hosts")
    try:
        async with open_coordinator(heartbeat_timeout=5) as coordinator:
            tokens = {h.name: coordinator.tokens.issue(h.name) for h in HOSTS}
            await provider.up([AgentSpec(h, coordinator.agent_url, tokens[h.name]) for h in HOSTS])
            assert await coordinator.hub.wait_connected([h.name for h in HOSTS], 30) == []
            assert provider._zygote is not None
            os.kill(provider._zygote.process.pid, signal.SIGKILL)
        # The coordinator is gone: each agent gives up on its own.
        for agent in provider.agents:
            await asyncio.wait_for(agent.process.wait(), 20)
            assert await asyncio.to_thread(gone, agent.process.pid, 5)
    finally:
        await asyncio.wait_for(provider.down(), 30)


async def test_an_agent_that_cannot_enter_its_namespace_says_so_in_its_log(
    tmp_path: Path,
) -> None:
    missing = f"phx-absent-{os.urandom(3).hex()}"
    provider = LocalProvider(tmp_path / "hosts", namespace=lambda host: missing)
    await provider.up([AgentSpec(HOSTS[0], "ws://127.0.0.1:9/agent", "t")])
    try:
        assert await asyncio.wait_for(provider.agents[0].process.wait(), 30) == 2
    finally:
        await provider.down()
    text = agent_log(host_dir(tmp_path / "hosts", HOSTS[0].name)).read_text()
    assert "cannot enter the host's namespaces" in text and missing in text


@needs_netns
async def test_a_netns_agent_has_its_hosts_network_name_and_hosts_file(tmp_path: Path) -> None:
    cluster = Cluster(name="z", hosts=(Host(name="n1.fork.test"),))
    run_id = f"tz-{os.urandom(3).hex()}"
    provider = NetnsProvider(cluster, tmp_path / "hosts", run_id)
    try:
        await provider.open()
        assert provider.listen_address is not None
        async with open_coordinator(heartbeat_timeout=5) as coordinator:
            assert coordinator.also_listen is not None
            async with coordinator.also_listen(provider.listen_address) as port:
                url = f"ws://{provider.listen_address}:{port}/agent"
                host = cluster.hosts[0]
                await provider.up([AgentSpec(host, url, coordinator.tokens.issue(host.name))])
                (agent,) = provider._agents.agents
                pid = agent.process.pid
                try:
                    assert await coordinator.hub.wait_connected([host.name], 30) == []
                    namespace = provider.namespaces[host.name]
                    assert os.stat(f"/proc/{pid}/ns/net").st_ino == (
                        os.stat(f"/run/netns/{namespace}").st_ino
                    )
                    assert os.getsid(pid) == pid
                    seen = subprocess.run(
                        ["nsenter", "-t", str(pid), "-u", "-m", "-n",
                         "sh", "-c", "hostname; cat /etc/hosts; ls /sys/class/net"],
                        capture_output=True, text=True, check=True,
                    ).stdout.splitlines()  # fmt: skip
                    assert seen[0] == host.short_name
                    assert any(provider.ips[host.name] in line for line in seen)
                    assert "eth0" in seen
                    # The machine keeps its own name.
                    assert os.uname().nodename != host.name
                    coordinator.hub.shutdown([host.name])
                finally:
                    await asyncio.wait_for(provider.down(), 30)
        assert not alive(pid)
    finally:
        await provider.close()


async def test_agents_are_forked_by_the_prestarted_fork_server_which_ends_with_the_provider(
    tmp_path: Path,
) -> None:
    zygote = zygotestart.prestart(sys.executable)
    provider = LocalProvider(tmp_path / "hosts")
    try:
        async with open_coordinator(heartbeat_timeout=5) as coordinator:
            tokens = {h.name: coordinator.tokens.issue(h.name) for h in HOSTS}
            await provider.up([AgentSpec(h, coordinator.agent_url, tokens[h.name]) for h in HOSTS])
            agents = list(provider.agents)
            assert [_parent(agent.process.pid) for agent in agents] == [zygote, zygote]
            assert await coordinator.hub.wait_connected([h.name for h in HOSTS], 30) == []
            coordinator.hub.shutdown([h.name for h in HOSTS])
            await asyncio.wait_for(provider.down(), 30)
    finally:
        zygotestart.discard_prestarted()
        await asyncio.wait_for(provider.down(), 30)
    assert not alive(zygote)
    assert not any(alive(agent.process.pid) for agent in agents)
    assert all(agent.process.returncode == 0 for agent in agents)


def test_a_prestarted_fork_server_that_no_provider_takes_is_ended() -> None:
    zygote = zygotestart.prestart(sys.executable)
    assert zygotestart.prestart(sys.executable) == zygote  # one is enough
    assert alive(zygote)
    zygotestart.discard_prestarted()
    assert not alive(zygote)
