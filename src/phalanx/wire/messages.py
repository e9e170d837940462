"""The agent protocol: one JSON object per WebSocket message, validated here.

Every message has a `type`; `hello` carries the protocol version. Data only:
no pickle, and no code crosses the wire except the scripts and test files of
the definitions a run uses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from phalanx.tasks import Outcome, Task

PROTOCOL_VERSION = 1


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- agent → coordinator -------------------------------------------------------


class Hello(_Message):
    type: Literal["hello"] = "hello"
    version: int
    host: str
    agent_version: str = ""
    pid: int | None = None


class StageOutput(_Message):
    type: Literal["stage.output"] = "stage.output"
    stage_id: str
    seq: int
    data: str


class StageResult(_Message):
    """How a task ended. Kept in the agent's outbox until acked."""

    type: Literal["stage.result"] = "stage.result"
    stage_id: str
    outcome: Outcome
    started_at: datetime
    ended_at: datetime


class SyncArrive(_Message):
    type: Literal["sync.arrive"] = "sync.arrive"
    request_id: str
    stage_id: str
    name: str


class KvSend(_Message):
    type: Literal["kv.send"] = "kv.send"
    stage_id: str
    key: str
    value: str = ""


class KvWait(_Message):
    type: Literal["kv.wait"] = "kv.wait"
    request_id: str
    stage_id: str
    key: str


class LogFile(_Message):
    path: str  # as the suite named it, tags applied
    content_b64: str = ""
    truncated: bool = False
    missing: bool = False


class LogsResult(_Message):
    type: Literal["logs.result"] = "logs.result"
    request_id: str
    files: list[LogFile]


class Pong(_Message):
    type: Literal["pong"] = "pong"
    seq: int


# --- both ways -------------------------------------------------------------------


class Ack(_Message):
    """Receipt of a message that must not be lost: a stage.result (coordinator
    → agent, after the result is written) or a stage.start (agent → coordinator)."""

    type: Literal["ack"] = "ack"
    ref: str


# --- coordinator → agent -------------------------------------------------------


class TaskSpec(_Message):
    type: str  # the agent-side runner: "shell", ...
    payload: dict[str, Any] = Field(default_factory=dict)


class StageStart(_Message):
    type: Literal["stage.start"] = "stage.start"
    stage_id: str
    task: TaskSpec
    env: dict[str, str] = Field(default_factory=dict)
    timeout: float
    logs: list[str] = Field(default_factory=list)  # snapshot now, collect later


class StageCancel(_Message):
    type: Literal["stage.cancel"] = "stage.cancel"
    stage_id: str


class LogsCollect(_Message):
    type: Literal["logs.collect"] = "logs.collect"
    request_id: str
    stage_id: str


class SyncRelease(_Message):
    type: Literal["sync.release"] = "sync.release"
    request_id: str


class KvValue(_Message):
    type: Literal["kv.value"] = "kv.value"
    request_id: str
    key: str
    value: str


class Ping(_Message):
    type: Literal["ping"] = "ping"
    seq: int


class Shutdown(_Message):
    """The run is over: end every stage process group and exit."""

    type: Literal["shutdown"] = "shutdown"


AgentMessage = Annotated[
    Hello | StageOutput | StageResult | SyncArrive | KvSend | KvWait | LogsResult | Pong | Ack,
    Field(discriminator="type"),
]
CoordinatorMessage = Annotated[
    StageStart | StageCancel | LogsCollect | SyncRelease | KvValue | Ping | Ack | Shutdown,
    Field(discriminator="type"),
]

_agent_adapter: TypeAdapter[AgentMessage] = TypeAdapter(AgentMessage)
_coordinator_adapter: TypeAdapter[CoordinatorMessage] = TypeAdapter(CoordinatorMessage)


def parse_agent_message(raw: str | bytes) -> AgentMessage:
    """Raises pydantic.ValidationError on anything that is not a valid message."""
    return _agent_adapter.validate_json(raw)


def parse_coordinator_message(raw: str | bytes) -> CoordinatorMessage:
    return _coordinator_adapter.validate_json(raw)


def encode(message: _Message) -> str:
    return message.model_dump_json()


def task_spec(task: Task) -> TaskSpec:
    return TaskSpec(type=task.type, payload=task.payload)


def task_of(spec: TaskSpec) -> Task:
    return Task(spec.type, spec.payload)
