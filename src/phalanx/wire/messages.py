"""The agent protocol: one JSON object per WebSocket message, validated here.

Every message has a `type`; `hello` carries the protocol version. Data only:
no pickle, and no code crosses the wire except the scripts and test files of
the definitions a run uses.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from datetime import datetime
from typing import Annotated, Any, Literal

import pydantic.dataclasses
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_serializer,
    model_validator,
)

from phalanx import __version__
from phalanx.plugins import PluginError, UnknownPlugin
from phalanx.tasks import Outcome, Task, to_json
from phalanx.tasks.registry import TASKS

# 2: stage.output carries bytes as latin-1 text (1 sent text decoded as UTF-8).
# 3: stage.start names its scope (2 left the agent to cut it out of the stage id).
# 4: pong carries the agent's clock; history.ops (operations recorded in a
#    stage); process.signal / process.signalled (a nemesis's pause and kill);
#    stage.start carries the acks of results recorded since the last one.
# 5: peer.ask / peer.held (the agent vouches for a connection's owner on its
#    host: whose run capability it holds).
PROTOCOL_VERSION = 5

# What a hello may carry. It is kept and shown on every agents page, so a
# hostile or broken agent must not make it a megabyte: a host name is at most
# 253 characters (RFC 1123), a version or a label's key a short word, a label's
# value a line.
MAX_NAME = 253
MAX_VERSION = 64
MAX_LABELS = 32
MAX_LABEL_KEY = 64
MAX_LABEL_VALUE = 256

Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
Version = Annotated[str, StringConstraints(max_length=MAX_VERSION)]
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LABEL_KEY)]
LabelValue = Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE)]
Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=MAX_LABELS)]
# Stages and scopes an agent says it holds after a reconnect.
MAX_HELD = 1024
HeldRef = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Held = Annotated[list[HeldRef], Field(max_length=MAX_HELD)]


class _Message(BaseModel):
    # Each model's validator is built on its first use, not at import: an
    # agent never needs most of them, and under TCG (a VM's agent) building
    # them all took seconds of its start.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


# --- agent → coordinator -------------------------------------------------------


class Hello(_Message):
    type: Literal["hello"] = "hello"
    version: int
    host: Name
    agent_version: Version = ""
    pid: int | None = None
    # `phalanx agent --label KEY=VALUE`, shown with the agent. Optional:
    # an agent without labels sends none, so an older coordinator (whose
    # hello forbids unknown fields) still admits it.
    labels: Labels = Field(default_factory=dict)
    # What it still runs from before this connection: its running stages'
    # ids and the scopes (`run:index:case`) whose processes it holds. The
    # coordinator ends those of runs that are over (it was restarted, or
    # the run ended while the agent was away). Optional, as labels are.
    running: Held = Field(default_factory=list)
    scopes: Held = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _without_empty_labels(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for optional in ("labels", "running", "scopes"):
            if not data.get(optional):
                data.pop(optional, None)
        return data


class StageOutput(_Message):
    """A piece of a stage's output: the bytes the program wrote, each as the
    character of the same number (latin-1), so the agent never decodes and
    the coordinator gets them back with `.encode("latin-1")`. Text, unlike
    base64: plain ASCII output (the usual) crosses at its own size and reads
    as itself in a frame dump; only bytes above 0x7f cost two and control
    bytes six."""

    type: Literal["stage.output"] = "stage.output"
    stage_id: str
    seq: int
    data: str

    @property
    def content(self) -> bytes:
        # A character above 0xff can only come from a broken or foreign
        # agent: it becomes `?` rather than an error in the coordinator's loop.
        return self.data.encode("latin-1", errors="replace")


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


class NetFault(_Message):
    """A stage asks for a network fault (`phalanx-net`, `phalanx.net`): one
    action, with exactly the fields that action takes. Answered by `net.done`."""

    type: Literal["net.fault"] = "net.fault"
    request_id: str
    stage_id: str
    action: Literal["partition", "isolate", "slow", "heal"]
    groups: list[list[str]] | None = None  # partition
    host: str | None = None  # isolate, slow
    delay: float | None = None  # slow, in seconds

    @model_validator(mode="after")
    def _fields_of_action(self) -> NetFault:
        takes = {
            "partition": {"groups"},
            "isolate": {"host"},
            "slow": {"host", "delay"},
            "heal": set(),
        }[self.action]
        given = {name for name in ("groups", "host", "delay") if getattr(self, name) is not None}
        if given != takes:
            wanted = ", ".join(sorted(takes)) or "nothing else"
            raise ValueError(f"net.fault {self.action} takes {wanted}")
        if self.groups is not None and not all(self.groups):
            raise ValueError("net.fault partition: a group is empty")
        if self.delay is not None and not (0 <= self.delay < 3600):
            raise ValueError("net.fault slow: the delay is not between 0 and an hour")
        return self


class VmMigrate(_Message):
    """A stage asks for a VM's live migration (`phalanx-vm migrate`,
    `phalanx.vm.migrate`): `host` (None: the asking host) to a new QEMU on
    its hypervisor, or on the hypervisor `to`. Answered by `vm.migrated`."""

    type: Literal["vm.migrate"] = "vm.migrate"
    request_id: str
    stage_id: str
    host: str | None = None
    to: str | None = None
    mode: Literal["tcp", "unix"] = "tcp"
    timeout: float = Field(default=120.0, gt=0, le=3600)


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
    # The agent's wall clock when it answered (seconds since the epoch): with
    # the ping's round trip, how far its clock is from the coordinator's.
    clock: float | None = None


MAX_OPS = 4096  # records in one history.ops message


class OpRecord(_Message):
    """One record `phalanx-op` or `phalanx.history.op` made, on its host's
    clock."""

    process: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME * 2)]
    type: Literal["invoke", "ok", "fail", "info"]
    f: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    key: Any = None
    value: Any = None
    time: float


class HistoryOps(_Message):
    """Operations a stage recorded: they go into its case's history."""

    type: Literal["history.ops"] = "history.ops"
    stage_id: str
    records: Annotated[list[OpRecord], Field(max_length=MAX_OPS)]


class ProcessSignalled(_Message):
    """The answer to a `process.signal`: the processes signalled, or why not."""

    type: Literal["process.signalled"] = "process.signalled"
    request_id: str
    pids: list[int] = Field(default_factory=list)
    error: str | None = None


class PeerHeld(_Message):
    """The answer to a `peer.ask`: the run capability (run id, key) in the
    environment of the process on this host holding that connection; None
    when no process of this agent's reach holds it, or holds none."""

    type: Literal["peer.held"] = "peer.held"
    request_id: str
    run_id: Annotated[str, StringConstraints(max_length=1024)] | None = None
    key: Annotated[str, StringConstraints(max_length=1024)] | None = None


# --- both ways -------------------------------------------------------------------


class Ack(_Message):
    """Receipt of a message that must not be lost: a stage.result (coordinator
    → agent, after the result is written) or a stage.start (agent → coordinator)."""

    type: Literal["ack"] = "ack"
    ref: str


# --- coordinator → agent -------------------------------------------------------


class TaskSpec(_Message):
    """A task on the wire: its type, that type's version, and its fields.

    The payload is checked only by the agent, against the task type it
    knows, so that an agent of another phalanx version can say what it
    cannot run (as the stage's error) instead of dropping the message."""

    type: str  # the agent-side runner: "shell", ...
    version: int = 1  # of the task type; coordinators before versions sent 1's
    payload: dict[str, Any] = Field(default_factory=dict)


class StageStart(_Message):
    type: Literal["stage.start"] = "stage.start"
    stage_id: str  # opaque: unique in the run, never taken apart
    scope: str  # the case it belongs to (what `scope.end` names when the case is over)
    task: TaskSpec
    env: dict[str, str] = Field(default_factory=dict)
    timeout: float
    logs: list[str] = Field(default_factory=list)  # snapshot now, collect later
    # Cases over: end what their stages left running before this one starts
    # (a `scope.end` carried along, saving a message per case).
    end_scopes: list[str] = Field(default_factory=list)
    # Results recorded since the last message to this agent: an `ack` each,
    # carried along (a message and a wake-up of the agent less per stage).
    acks: list[str] = Field(default_factory=list)


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


class NetDone(_Message):
    """The answer to a `net.fault`: done, or why not (`error`)."""

    type: Literal["net.done"] = "net.done"
    request_id: str
    error: str | None = None


class VmMigrated(_Message):
    """The answer to a `vm.migrate`: what was done (`detail`), or why not
    (`error`)."""

    type: Literal["vm.migrated"] = "vm.migrated"
    request_id: str
    error: str | None = None
    detail: str = ""


class Ping(_Message):
    type: Literal["ping"] = "ping"
    seq: int


class ProcessSignal(_Message):
    """A nemesis pauses (STOP), resumes (CONT) or kills (KILL) the processes
    named `name` that a case's stages started on this host (`scope`)."""

    type: Literal["process.signal"] = "process.signal"
    request_id: str
    scope: str
    name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    signal: Literal["STOP", "CONT", "KILL"]


class PeerAsk(_Message):
    """Who on this host holds the client end of a TCP connection from local
    port `client_port` to remote port `server_port`, and which run's
    capability it holds (a stage fetching suite files: coordinator/scripts.py)."""

    type: Literal["peer.ask"] = "peer.ask"
    request_id: str
    client_port: Annotated[int, Field(ge=1, le=65535)]
    server_port: Annotated[int, Field(ge=1, le=65535)]


class ScopeEnd(_Message):
    """A case (`run:index:case`) is over on every host: end what its stages
    left running, escapees included, before the next stage starts."""

    type: Literal["scope.end"] = "scope.end"
    scope: str


class Shutdown(_Message):
    """The run is over: end every stage process group and exit."""

    type: Literal["shutdown"] = "shutdown"


AgentMessage = Annotated[
    Hello
    | StageOutput
    | StageResult
    | SyncArrive
    | KvSend
    | KvWait
    | NetFault
    | VmMigrate
    | LogsResult
    | Pong
    | HistoryOps
    | ProcessSignalled
    | PeerHeld
    | Ack,
    Field(discriminator="type"),
]
CoordinatorMessage = Annotated[
    StageStart
    | StageCancel
    | LogsCollect
    | SyncRelease
    | KvValue
    | NetDone
    | VmMigrated
    | Ping
    | ProcessSignal
    | PeerAsk
    | Ack
    | ScopeEnd
    | Shutdown,
    Field(discriminator="type"),
]


# Made on first use: an agent parses only the coordinator's messages, a
# coordinator only the agents'.
@functools.cache
def _agent_adapter() -> TypeAdapter[AgentMessage]:
    return TypeAdapter(AgentMessage)


@functools.cache
def _coordinator_adapter() -> TypeAdapter[CoordinatorMessage]:
    return TypeAdapter(CoordinatorMessage)


def prepare_agent_side() -> None:
    """Build now what an agent uses on every connection: the parser of the
    coordinator's messages and the models it sends. The first build also
    loads pydantic's schema machinery and looks its plug-ins up (a tenth of
    a second): the agents' fork server pays it once, before it forks."""
    _coordinator_adapter()
    for model in typing.get_args(typing.get_args(AgentMessage)[0]):
        model.model_rebuild()


def prepare_coordinator_side() -> None:
    """`prepare_agent_side`'s mirror, for a coordinator waiting for its
    first agent."""
    _agent_adapter()
    for model in typing.get_args(typing.get_args(CoordinatorMessage)[0]):
        model.model_rebuild()


def parse_agent_message(raw: str | bytes) -> AgentMessage:
    """Raises pydantic.ValidationError on anything that is not a valid message."""
    return _agent_adapter().validate_json(raw)


def parse_coordinator_message(raw: str | bytes) -> CoordinatorMessage:
    return _coordinator_adapter().validate_json(raw)


def encode(message: _Message) -> str:
    return message.model_dump_json()


class TaskRefused(ValueError):
    """This agent cannot run the task it was sent; the message says why."""


def task_spec(task: Task) -> TaskSpec:
    return TaskSpec(type=task.type, version=task.version, payload=to_json(task))


def task_of(spec: TaskSpec) -> Task:
    """The task `spec` carries, checked against this agent's own task type:
    unknown keys, missing ones and wrong types are refused, as is another
    version of the type. Raises TaskRefused."""
    agent = f"this agent (phalanx {__version__})"
    try:
        cls = TASKS.get(spec.type)
    except UnknownPlugin:
        known = ", ".join(TASKS.names())
        raise TaskRefused(
            f"{agent} has no runner for task type {spec.type!r} (it runs {known})"
        ) from None
    except PluginError as exc:
        raise TaskRefused(f"{agent} cannot run {spec.type} tasks: {exc}") from None
    if spec.version != cls.version:
        raise TaskRefused(
            f"{agent} runs {cls.type} tasks version {cls.version}; "
            f"the coordinator sent version {spec.version}"
        )
    try:
        # Through JSON: strict checks there still take a list for a tuple.
        return _checked(cls.type, json.dumps(spec.payload))
    except ValidationError as exc:
        problems = "; ".join(_problem(error) for error in exc.errors())
        raise TaskRefused(
            f"{agent} cannot run this {cls.type} task (version {cls.version}): {problems}"
        ) from None


# A lockstep suite sends the same task stage after stage (tasks are frozen):
# checked once, not at every barrier.
@functools.lru_cache(maxsize=64)
def _checked(task_type: str, payload: str) -> Task:
    cls = TASKS.get(task_type)
    checked = _validator(cls).validate_json(payload)
    # The validator's class is a pydantic subclass: hand on the task type itself.
    return cls(**{f.name: getattr(checked, f.name) for f in dataclasses.fields(cls)})


_validators: dict[type[Task], TypeAdapter[Any]] = {}


def _validator(cls: type[Task]) -> TypeAdapter[Any]:
    """A strict check of `cls`, made on first use (the agent needs few)."""
    if cls not in _validators:
        strict = pydantic.dataclasses.dataclass(
            cls, config=ConfigDict(extra="forbid", strict=True), frozen=True
        )
        _validators[cls] = TypeAdapter(strict)
    return _validators[cls]


def _problem(error: Any) -> str:
    field = ".".join(str(part) for part in error["loc"]) or "payload"
    kinds = {"unexpected_keyword_argument": "unknown key", "missing": "missing"}
    return f"{field}: {kinds.get(error['type'], error['msg'])}"
