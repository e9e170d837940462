"""The local provider on its own: real agent processes against a real
coordinator endpoint, brought up and taken down without an engine."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest

from phalanx.coordinator.runs import open_coordinator
from phalanx.host.process import ledger_path
from phalanx.model import Host
from phalanx.providers.base import AgentSpec, ProvisionError
from phalanx.providers.local import LocalProvider, host_dir
from tests.processes import alive

HOSTS = [Host(name="a1.local.test"), Host(name="a2.local.test")]


async def test_every_host_gets_a_connected_agent_in_its_own_folder_and_down_ends_them(
    tmp_path: Path,
) -> None:
    provider = LocalProvider(tmp_path / "hosts")
    assert provider.addresses(HOSTS) == {h.name: "127.0.0.1" for h in HOSTS}
    assert provider.diskmounts(HOSTS[0]) == ""
    async with open_coordinator(heartbeat_timeout=5) as coordinator:
        tokens = {h.name: coordinator.tokens.issue(h.name) for h in HOSTS}
        await provider.up([AgentSpec(h, coordinator.agent_url, tokens[h.name]) for h in HOSTS])
        pids = [agent.process.pid for agent in provider.agents]
        try:
            missing = await coordinator.hub.wait_connected([h.name for h in HOSTS], 30)
            assert missing == []
            for host, pid in zip(HOSTS, pids, strict=True):
                assert host_dir(tmp_path / "hosts", host.name).is_dir()
                # The token reaches the agent in its environment, never on its
                # command line, where any user on the machine could read it.
                command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
                assert tokens[host.name].encode() not in command_line
                assert host.name.encode() in command_line
            coordinator.hub.shutdown([h.name for h in HOSTS])
        finally:
            await asyncio.wait_for(provider.down(), 30)
    assert provider.agents == []
    assert not any(alive(pid) for pid in pids)


async def test_down_ends_what_a_killed_agent_left_running(tmp_path: Path) -> None:
    """An agent killed with -9 cannot end its stages' groups; the ledger it
    kept names them, and `down` ends them."""
    provider = LocalProvider(tmp_path / "hosts")
    host = HOSTS[0]
    async with open_coordinator(heartbeat_timeout=5) as coordinator:
        token = coordinator.tokens.issue(host.name)
        await provider.up([AgentSpec(host, coordinator.agent_url, token)])
        try:
            assert await coordinator.hub.wait_connected([host.name], 30) == []
            # A stage's process group, as the agent records it in its ledger.
            leftover = subprocess.Popen(["sleep", "600"], start_new_session=True)
            ledger = ledger_path(host_dir(tmp_path / "hosts", host.name))
            ledger.parent.mkdir(parents=True, exist_ok=True)
            with ledger.open("a") as f:
                f.write(f"{leftover.pid}\n")
            os.kill(provider.agents[0].process.pid, signal.SIGKILL)
        finally:
            await asyncio.wait_for(provider.down(), 30)
    assert leftover.wait(timeout=10) == -signal.SIGKILL


async def test_an_agent_that_cannot_start_is_a_provisioning_error_naming_the_host(
    tmp_path: Path,
) -> None:
    provider = LocalProvider(tmp_path / "hosts", python=str(tmp_path / "no-python"))
    with pytest.raises(ProvisionError, match=r"cannot start the agent of a1\.local\.test"):
        await provider.up([AgentSpec(HOSTS[0], "ws://127.0.0.1:9/agent", "t")])
    await provider.down()
