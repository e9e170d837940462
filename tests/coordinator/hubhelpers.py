"""In-process stand-ins for agents, for tests that feed a hub's links directly."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from phalanx.coordinator.agents import AgentLink
from phalanx.engine.session import StageOrder
from phalanx.tasks import Outcome
from phalanx.tasks.shell import ShellTask
from phalanx.wire.messages import (
    Ack,
    AgentMessage,
    CoordinatorMessage,
    KvSend,
    KvValue,
    KvWait,
    Ping,
    Pong,
    StageOutput,
    StageResult,
    StageStart,
    SyncArrive,
    SyncRelease,
)
from tests.eventually import eventually_async


class FakeConnection:
    """Records what the coordinator sends (when `keep`), and hands each
    message to `react` on the next turn of the loop, as a socket would."""

    def __init__(
        self, react: Callable[[CoordinatorMessage], object] | None = None, keep: bool = True
    ) -> None:
        self.sent: list[CoordinatorMessage] = []
        self.react = react
        self.keep = keep
        self.closed: tuple[int, str] | None = None

    def send(self, data: str) -> None:
        message = msgspec.convert(json.loads(data), CoordinatorMessage)
        if self.keep:
            self.sent.append(message)
        if self.react is not None:
            asyncio.get_running_loop().call_soon(self.react, message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)

    def of(self, kind: type) -> list[Any]:
        return [m for m in self.sent if isinstance(m, kind)]

    def acks(self) -> list[str]:
        """Every ack sent, alone or carried by a stage.start, in order."""
        refs: list[str] = []
        for m in self.sent:
            if isinstance(m, Ack):
                refs.append(m.ref)
            elif isinstance(m, StageStart):
                refs += m.acks
        return refs


class FakeAgent:
    """Answers pings, and for every stage: prints a line, sends key `k` with
    the stage id as its value, waits for `k`, meets the others at barrier
    `done`, then reports exit 0. It counts the values it got, and those
    that were not its own stage's (`foreign`)."""

    def __init__(self, link: AgentLink, keep: bool = False) -> None:
        self.link = link
        self.connection = FakeConnection(self.react, keep=keep)
        self.barriers: dict[str, str] = {}  # request id -> stage id
        self.waits: dict[str, str] = {}  # request id -> stage id
        self.got = 0
        self.foreign = 0

    def react(self, message: CoordinatorMessage) -> None:
        handle: Callable[[AgentMessage], object] = self.link.handle
        match message:
            case Ping(seq=seq):
                handle(Pong(seq=seq))
            case StageStart(stage_id=sid):
                handle(StageOutput(stage_id=sid, seq=1, data="hi\n"))
                handle(KvSend(stage_id=sid, key="k", value=sid))
                wait = uuid.uuid4().hex
                self.waits[wait] = sid
                handle(KvWait(stage_id=sid, key="k", request_id=wait))
                rid = uuid.uuid4().hex
                self.barriers[rid] = sid
                handle(SyncArrive(stage_id=sid, name="done", request_id=rid))
            case KvValue(request_id=rid, value=value):
                self.got += 1
                self.foreign += value != self.waits.pop(rid)
            case SyncRelease(request_id=rid):
                sid = self.barriers.pop(rid)
                handle(result(sid))


def order(stage_id: str, host: str, timeout: float = 30) -> StageOrder:
    return StageOrder(stage_id, host, ShellTask(script="true"), {}, timeout, scope=stage_id)


def result(stage_id: str, exit_code: int = 0) -> StageResult:
    now = datetime.now(UTC)
    return StageResult(
        stage_id=stage_id, outcome=Outcome(exit_code=exit_code), started_at=now, ended_at=now
    )


async def until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    await eventually_async(predicate, within=timeout, what="the hub's state")
