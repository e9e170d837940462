"""The coordinator's hypervisor hub over real sockets, with real daemons
whose capacity is given (no VM needed): a token is checked, a cluster goes
to the hypervisor with the most free RAM that has enough, none fitting is
an error that says so, and a daemon that goes away is lost within the
heartbeat timeout, dropping its clusters' agents with its name."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.applications import Starlette

from phalanx.coordinator.agents import AgentHub
from phalanx.coordinator.app import daemon_route
from phalanx.coordinator.auth import TokenBook
from phalanx.coordinator.hypervisors import Hypervisors
from phalanx.coordinator.server import serving
from phalanx.host.connection import EXIT_REFUSED
from phalanx.hypervisor.core import Measured
from phalanx.hypervisor.daemon import HypervisorDaemon
from phalanx.model import Cluster, Host
from phalanx.providers.base import ProvisionError
from tests.eventually import eventually_async

TOKENS = {"tok-a": "hv-a", "tok-b": "hv-b"}
HEARTBEAT = 1.0


def cluster(name: str, *rams: str) -> Cluster:
    return Cluster(
        name=name,
        hosts=tuple(Host(name=f"h{i}.{name}.test", ram_size=r) for i, r in enumerate(rams)),
        provider="qemu",
    )


@contextlib.asynccontextmanager
async def hub() -> AsyncIterator[tuple[Hypervisors, AgentHub, str]]:
    book = TokenBook()
    agents = AgentHub(book, heartbeat_timeout=HEARTBEAT)
    hypervisors = Hypervisors(
        agents, book, verify=lambda token: TOKENS.get(token or ""), heartbeat_timeout=HEARTBEAT
    )
    app = Starlette(routes=[daemon_route("/hypervisor", hypervisors.serve)])
    async with serving(app, "127.0.0.1", 0) as port:
        agents.start()
        hypervisors.start()
        try:
            yield hypervisors, agents, f"http://127.0.0.1:{port}"
        finally:
            await hypervisors.stop()
            await agents.stop()


def daemon(url: str, name: str, token: str, ram_mb: int, tmp: Path) -> HypervisorDaemon:
    return HypervisorDaemon(
        url,
        name,
        token,
        tmp / name,
        measured=Measured(cpus=2, ram_mb=ram_mb, kvm=False, accel_reason="given"),
        give_up_after=5,
    )


async def connected(hypervisors: Hypervisors, *names: str) -> None:

    def all_connected() -> bool:
        return all((r := hypervisors.remotes.get(n)) is not None and r.connected for n in names)

    await eventually_async(all_connected, within=20, what=f"{names} connected")


async def vanish(task: asyncio.Task[int]) -> None:
    """A daemon gone as a killed process goes: no goodbye on its socket."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_a_wrong_token_is_refused_and_the_daemon_exits(tmp_path: Path) -> None:
    async with hub() as (hypervisors, _, url):
        refused = daemon(url, "hv-a", "not-a-token", 1000, tmp_path)
        assert await asyncio.wait_for(refused.run(), 20) == EXIT_REFUSED
        wrong_name = daemon(url, "hv-z", "tok-a", 1000, tmp_path)  # hv-a's token
        assert await asyncio.wait_for(wrong_name.run(), 20) == EXIT_REFUSED
        assert hypervisors.remotes == {}


async def test_a_second_daemon_under_a_live_name_is_refused_as_a_second_agent_would_be(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with hub() as (hypervisors, _, url):
        first = daemon(url, "hv-a", "tok-a", 1000, tmp_path)
        task = asyncio.create_task(first.run())
        try:
            await connected(hypervisors, "hv-a")
            remote = hypervisors.remotes["hv-a"]
            second = daemon(url, "hv-a", "tok-a", 2000, tmp_path / "second")
            assert await asyncio.wait_for(second.run(), 20) == EXIT_REFUSED
            assert "a hypervisor named hv-a is already connected" in caplog.text
            # The first goes on as it was, under the same link.
            assert hypervisors.remotes["hv-a"] is remote and remote.connected
            assert remote.ram_mb == 1000
        finally:
            first.stop()
            await asyncio.wait_for(task, 20)


async def test_clusters_go_where_most_ram_is_free_and_none_fitting_says_so(tmp_path: Path) -> None:
    async with hub() as (hypervisors, _, url):
        daemons = [
            daemon(url, "hv-a", "tok-a", 1000, tmp_path),
            daemon(url, "hv-b", "tok-b", 2000, tmp_path),
        ]
        tasks = [asyncio.create_task(d.run()) for d in daemons]
        try:
            await connected(hypervisors, "hv-a", "hv-b")
            remotes = hypervisors.remotes
            assert (remotes["hv-b"].cpus, remotes["hv-b"].ram_mb) == (2, 2000)
            first = hypervisors.provider(cluster("c1", "512M", "512M"), "run1", tmp_path)
            assert first.hypervisor.name == "hv-b"  # 2000 free against 1000
            second = hypervisors.provider(cluster("c2", "600M"), "run2", tmp_path)
            assert second.hypervisor.name == "hv-a"  # now 1000 against 976
            with pytest.raises(ProvisionError) as refused:
                hypervisors.provider(cluster("c3", "1G"), "run3", tmp_path)
            assert str(refused.value) == (
                "no hypervisor has 1024 MB free for cluster c3 (hv-a 400 MB free, hv-b 976 MB free)"
            )
            await first.close()  # the run ended: its RAM is free again
            third = hypervisors.provider(cluster("c3", "1G"), "run3", tmp_path)
            assert third.hypervisor.name == "hv-b"
            views = {v.name: v for v in hypervisors.views()}
            assert views["hv-b"].free_mb == 976 and views["hv-b"].connected
            assert [c.cluster for c in views["hv-b"].clusters] == ["c3"]
        finally:
            for d in daemons:
                d.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 20)


async def test_a_daemon_gone_is_lost_within_the_heartbeat_timeout_with_its_agents(
    tmp_path: Path,
) -> None:
    async with hub() as (hypervisors, agents, url):
        one = daemon(url, "hv-a", "tok-a", 4000, tmp_path)
        task = asyncio.create_task(one.run())
        await connected(hypervisors, "hv-a")
        hypervisors.provider(cluster("c1", "256M"), "run1", tmp_path)
        link = agents.link("h0.c1.test")
        await vanish(task)
        await eventually_async(
            lambda: hypervisors.remotes["hv-a"].lost is not None,
            within=HEARTBEAT * 4,
            what="hv-a lost",
        )
        assert link.lost == "hypervisor hv-a lost: disconnected for 1s"
        view = hypervisors.views()[0]
        assert (view.name, view.connected, view.lost) == ("hv-a", False, "disconnected for 1s")
        with pytest.raises(ProvisionError, match="hypervisor hv-a is disconnected for 1s"):
            await hypervisors.remotes["hv-a"].up_cluster("run1", [])


async def test_a_daemon_back_within_the_heartbeat_timeout_keeps_its_clusters(
    tmp_path: Path,
) -> None:
    async with hub() as (hypervisors, agents, url):
        first = asyncio.create_task(daemon(url, "hv-a", "tok-a", 4000, tmp_path).run())
        await connected(hypervisors, "hv-a")
        remote = hypervisors.remotes["hv-a"]
        provider = hypervisors.provider(cluster("c1", "256M"), "run1", tmp_path)
        await vanish(first)
        again = daemon(url, "hv-a", "tok-a", 4000, tmp_path)
        second = asyncio.create_task(again.run())
        try:
            await connected(hypervisors, "hv-a")
            await asyncio.sleep(HEARTBEAT * 2)
            assert hypervisors.remotes["hv-a"] is remote is provider.hypervisor
            assert remote.lost is None and list(remote.assigned) == ["run1"]
            assert agents.link("h0.c1.test").lost is None
        finally:
            again.stop()
            await asyncio.wait_for(second, 20)


class _Quiet:
    """A VM's agent connection as the hub holds it; its VM went first."""

    def send(self, text: str) -> None:
        pass

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass


async def test_a_vms_agent_gone_with_its_hypervisor_is_lost_under_the_hypervisors_name(
    tmp_path: Path,
) -> None:
    async with hub() as (hypervisors, agents, url):
        one = daemon(url, "hv-a", "tok-a", 4000, tmp_path)
        task = asyncio.create_task(one.run())
        await connected(hypervisors, "hv-a")
        hypervisors.provider(cluster("c1", "256M"), "run1", tmp_path)
        link = agents.link("h0.c1.test")
        quiet = _Quiet()
        link.attach(quiet)
        # The VM's connection drops a little before its hypervisor's: on its
        # own clock the agent would be lost first, as a bare disconnect.
        link.detach(quiet)
        await asyncio.sleep(HEARTBEAT / 3)
        await vanish(task)
        await eventually_async(
            lambda: link.lost is not None, within=HEARTBEAT * 4, what="the link lost"
        )
        assert link.lost == "hypervisor hv-a lost: disconnected for 1s"
