"""Records made while a host's agent is cut off from the coordinator reach
the case's history: the agent keeps each batch until its stage's result is
acked and resends it on the next connection, and the coordinator keeps
each batch once. A real run (provider local) whose agent reaches the
coordinator through a TCP relay this test cuts mid-stage and mends once
the stage has recorded, while cut off, two more operations."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from phalanx.coordinator.histories import Histories
from phalanx.coordinator.runs import RunOptions, run_local
from phalanx.events import Event, HostOutput
from phalanx.model import Case, Cluster, Host, Script, Status, Suite
from phalanx.providers.base import AgentSpec
from phalanx.providers.local import LocalProvider
from phalanx.wire.messages import OpRecord
from tests.eventually import eventually_async

HOST = "h1.resend.test"


class Relay:
    """Carries TCP connections to `target`; `cut` closes them all and stops
    listening (a reconnect is refused), `mend` listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.server: asyncio.Server | None = None
        self.carried: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def mend(self) -> None:
        self.server = await asyncio.start_server(self._carry, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.carried):
            writer.transport.abort()
        await self.server.wait_closed()
        self.server = None

    async def _carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer, up_writer}
        self.carried |= pair

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            for w in pair:
                w.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self.carried -= pair


# write 1 while connected; the test cuts the relay and says so by a file;
# write 2 and a read of 2 while cut off (phalanx-op goes on once the agent
# has each record); then a file says they are made, and the test mends.
STAGE = """\
phalanx-op --key x --process c1 write 1 -- true
echo recorded-connected
for i in $(seq 600); do [ -f {cut} ] && break; sleep 0.05; done
[ -f {cut} ] || exit 3
phalanx-op --key x --process c1 write 2 -- true
phalanx-op --key x --process c1 read -- echo 2
touch {recorded}
"""


async def test_records_made_while_the_agent_is_cut_off_are_in_the_case_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut_file, recorded = tmp_path / "cut", tmp_path / "recorded"
    relays: list[Relay] = []
    up = LocalProvider.up

    async def up_through_a_relay(self: LocalProvider, specs: list[AgentSpec]) -> None:
        # The agent's URL names the relay's port instead of the coordinator's.
        spec = specs[0]
        host_port = spec.url.split("//", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        relay = Relay((host, int(port)))
        await relay.mend()
        relays.append(relay)
        url = spec.url.replace(host_port, f"127.0.0.1:{relay.port}")
        await up(self, [AgentSpec(host=spec.host, url=url, token=spec.token)])

    monkeypatch.setattr(LocalProvider, "up", up_through_a_relay)
    tasks: list[asyncio.Task[None]] = []

    async def cut_then_mend() -> None:
        (relay,) = relays
        await relay.cut()
        cut_file.touch()
        await eventually_async(recorded.exists, within=60, what="the records made while cut off")
        await relay.mend()

    def on_event(event: Event) -> None:
        if isinstance(event, HostOutput) and b"recorded-connected" in event.data and not tasks:
            tasks.append(asyncio.get_running_loop().create_task(cut_then_mend()))

    suite = Suite(
        name="resend",
        cluster=Cluster(name="c", hosts=(Host(name=HOST),), provider="local"),
        cases=(
            Case(
                name="cut",
                stages={"run": Script(text=STAGE.format(cut=cut_file, recorded=recorded))},
                check="register",
            ),
        ),
        timeout=120,
    )
    # A heartbeat long enough that the cut agent is waited for, not lost.
    options = RunOptions(results=tmp_path / "results", heartbeat_timeout=60, connect_timeout=60)
    result, _ = await run_local(suite, options, [on_event])
    (cut_then_mended,) = tasks
    await cut_then_mended  # raised, if it did
    assert relays[0].connections >= 2  # the agent did come back

    assert result.status is Status.PASSED, result.reason
    case = result.case("cut")
    assert case is not None and case.history is not None
    ops = [(e.type, e.f, e.value) for e in case.history.events]
    assert ops == [
        ("invoke", "write", 1), ("ok", "write", 1),
        ("invoke", "write", 2), ("ok", "write", 2),
        ("invoke", "read", None), ("ok", "read", 2),
    ]  # fmt: skip
    assert case.history.valid is True


def test_the_coordinator_keeps_each_batch_once_and_none_after_the_case_is_taken() -> None:
    histories = Histories()
    write = [OpRecord(process="h1/c", type="invoke", f="write", value=1, time=1.0)]
    done = [OpRecord(process="h1/c", type="ok", f="write", value=1, time=2.0)]
    histories.add("cut", HOST, "b1", write)
    histories.add("cut", HOST, "b1", write)  # resent after a reconnect
    histories.add("cut", HOST, "b2", done)
    taken = histories.take("cut", {})
    assert taken is not None
    assert [(e.type, e.time) for e in taken.events] == [("invoke", 1.0), ("ok", 2.0)]
    histories.add("cut", HOST, "b2", done)  # a resend that comes after the case
    assert histories.take("cut", {}) is None and histories.records == {}
