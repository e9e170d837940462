"""The agent protocol: one JSON object per WebSocket message, validated here.

Every message has a `type`; `hello` carries the protocol version. Data only:
no pickle, and no code crosses the wire except the scripts and test files of
the definitions a run uses.

The messages are msgspec structs, checked as they are decoded (types,
lengths, literals, unknown fields refused, each message's own rules in its
`__post_init__`). msgspec rather than pydantic, which the rest of the trust
boundaries use: every process of a run pays for its wire at start (the
coordinator and each agent, one per host or container), and pydantic's
models cost ~0.15 s of CPU to import and build there; these cost a few
milliseconds, and decode faster.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from phalanx import __version__
from phalanx.plugins import PluginError, UnknownPlugin
from phalanx.tasks import Outcome, Task, to_json
from phalanx.tasks.registry import TASKS

# 2: stage.output carries bytes as latin-1 text (1 sent text decoded as UTF-8).
# 3: stage.start names its scope (2 left the agent to cut it out of the stage id).
# 4: pong carries the agent's clock; history.ops (operations recorded in a
#    stage); process.signal / process.signalled (a nemesis's pause and kill);
#    stage.start carries the acks of results recorded since the last one.
# 5: history.ops carries a batch id (resent after a reconnect until the
#    stage's result is acked); peer.ask / peer.held (the agent vouches for a
#    connection's owner on its host: whose run capability it holds).
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

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
Version = Annotated[str, msgspec.Meta(max_length=MAX_VERSION)]
LabelKey = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LABEL_KEY)]
LabelValue = Annotated[str, msgspec.Meta(max_length=MAX_LABEL_VALUE)]
Labels = Annotated[dict[LabelKey, LabelValue], msgspec.Meta(max_length=MAX_LABELS)]
# Stages and scopes an agent says it holds after a reconnect.
MAX_HELD = 1024
HeldRef = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
Held = Annotated[list[HeldRef], msgspec.Meta(max_length=MAX_HELD)]

# What a message that is not one raises: malformed JSON, or JSON that is not
# a valid message (a wrong type, an unknown field, a broken rule).
InvalidMessage = msgspec.ValidationError
MessageErrors = (msgspec.ValidationError, msgspec.DecodeError)


class MessagePart(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """A part of a message: checked as the message is."""


class Message(MessagePart, frozen=True, tag_field="type"):
    """A message: its class's `tag` is its `type` on the wire. Fields left at
    their defaults are not sent (an agent without labels sends none, so an
    older coordinator, which refuses unknown fields, still admits it)."""

    @property
    def type(self) -> str:
        tag = self.__struct_config__.tag
        assert isinstance(tag, str)
        return tag


# --- agent → coordinator -------------------------------------------------------


class Hello(Message, tag="hello", frozen=True, kw_only=True):
    version: int
    host: Name
    agent_version: Version = ""
    pid: int | None = None
    # `phalanx agent --label KEY=VALUE`, shown with the agent. Optional:
    # left empty it is not sent (see Message).
    labels: Labels = {}
    # What it still runs from before this connection: its running stages'
    # ids and the scopes (`run:index:case`) whose processes it holds. The
    # coordinator ends those of runs that are over (it was restarted, or
    # the run ended while the agent was away). Optional, as labels are.
    running: Held = []
    scopes: Held = []


class StageOutput(Message, tag="stage.output", frozen=True, kw_only=True):
    """A piece of a stage's output: the bytes the program wrote, each as the
    character of the same number (latin-1), so the agent never decodes and
    the coordinator gets them back with `.encode("latin-1")`. Text, unlike
    base64: plain ASCII output (the usual) crosses at its own size and reads
    as itself in a frame dump; only bytes above 0x7f cost two and control
    bytes six."""

    stage_id: str
    seq: int
    data: str

    @property
    def content(self) -> bytes:
        # A character above 0xff can only come from a broken or foreign
        # agent: it becomes `?` rather than an error in the coordinator's loop.
        return self.data.encode("latin-1", errors="replace")


class StageResult(Message, tag="stage.result", frozen=True, kw_only=True):
    """How a task ended. Kept in the agent's outbox until acked."""

    stage_id: str
    outcome: Outcome
    started_at: datetime
    ended_at: datetime


class SyncArrive(Message, tag="sync.arrive", frozen=True, kw_only=True):
    request_id: str
    stage_id: str
    name: str


class KvSend(Message, tag="kv.send", frozen=True, kw_only=True):
    stage_id: str
    key: str
    value: str = ""


class KvWait(Message, tag="kv.wait", frozen=True, kw_only=True):
    request_id: str
    stage_id: str
    key: str


class NetFault(Message, tag="net.fault", frozen=True, kw_only=True):
    """A stage asks for a network fault (`phalanx-net`, `phalanx.net`): one
    action, with exactly the fields that action takes. Answered by `net.done`."""

    request_id: str
    stage_id: str
    action: Literal["partition", "isolate", "slow", "heal"]
    groups: list[list[str]] | None = None  # partition
    host: str | None = None  # isolate, slow
    delay: float | None = None  # slow, in seconds

    def __post_init__(self) -> None:
        # Raised while decoding, a ValueError is the message's invalidity.
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


class VmMigrate(Message, tag="vm.migrate", frozen=True, kw_only=True):
    """A stage asks for a VM's live migration (`phalanx-vm migrate`,
    `phalanx.vm.migrate`): `host` (None: the asking host) to a new QEMU on
    its hypervisor, or on the hypervisor `to`. Answered by `vm.migrated`."""

    request_id: str
    stage_id: str
    host: str | None = None
    to: str | None = None
    mode: Literal["tcp", "unix"] = "tcp"
    timeout: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 120.0


class LogFile(MessagePart, frozen=True, kw_only=True):
    path: str  # as the suite named it, tags applied
    content_b64: str = ""
    truncated: bool = False
    missing: bool = False


class LogsResult(Message, tag="logs.result", frozen=True, kw_only=True):
    request_id: str
    files: list[LogFile]


class Pong(Message, tag="pong", frozen=True, kw_only=True):
    seq: int
    # The agent's wall clock when it answered (seconds since the epoch): with
    # the ping's round trip, how far its clock is from the coordinator's.
    clock: float | None = None


MAX_OPS = 4096  # records in one history.ops message


class OpRecord(MessagePart, frozen=True, kw_only=True):
    """One record `phalanx-op` or `phalanx.history.op` made, on its host's
    clock."""

    process: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME * 2)]
    type: Literal["invoke", "ok", "fail", "info"]
    f: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    key: Any = None
    value: Any = None
    time: float


class HistoryOps(Message, tag="history.ops", frozen=True, kw_only=True):
    """Operations a stage recorded: they go into its case's history. The
    agent resends a batch after a reconnect until its stage's result is
    acked, so the coordinator keeps each `batch` once."""

    stage_id: str
    batch: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    records: Annotated[list[OpRecord], msgspec.Meta(max_length=MAX_OPS)]


class ProcessSignalled(Message, tag="process.signalled", frozen=True, kw_only=True):
    """The answer to a `process.signal`: the processes signalled, or why not."""

    request_id: str
    pids: list[int] = []
    error: str | None = None


class PeerHeld(Message, tag="peer.held", frozen=True, kw_only=True):
    """The answer to a `peer.ask`: the run capability (run id, key) in the
    environment of the process on this host holding that connection; None
    when no process of this agent's reach holds it, or holds none."""

    request_id: str
    run_id: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    key: Annotated[str, msgspec.Meta(max_length=1024)] | None = None


# --- both ways -------------------------------------------------------------------


class Ack(Message, tag="ack", frozen=True, kw_only=True):
    """Receipt of a message that must not be lost: a stage.result (coordinator
    → agent, after the result is written) or a stage.start (agent → coordinator)."""

    ref: str


# --- coordinator → agent -------------------------------------------------------


class TaskSpec(MessagePart, frozen=True, kw_only=True):
    """A task on the wire: its type, that type's version, and its fields.

    The payload is checked only by the agent, against the task type it
    knows, so that an agent of another phalanx version can say what it
    cannot run (as the stage's error) instead of dropping the message."""

    type: str  # the agent-side runner: "shell", ...
    version: int = 1  # of the task type; coordinators before versions sent 1's
    payload: dict[str, Any] = {}


class StageStart(Message, tag="stage.start", frozen=True, kw_only=True):
    stage_id: str  # opaque: unique in the run, never taken apart
    scope: str  # the case it belongs to (what `scope.end` names when the case is over)
    task: TaskSpec
    env: dict[str, str] = {}
    timeout: float
    logs: list[str] = []  # snapshot now, collect later
    # Cases over: end what their stages left running before this one starts
    # (a `scope.end` carried along, saving a message per case).
    end_scopes: list[str] = []
    # Results recorded since the last message to this agent: an `ack` each,
    # carried along (a message and a wake-up of the agent less per stage).
    acks: list[str] = []


class StageCancel(Message, tag="stage.cancel", frozen=True, kw_only=True):
    stage_id: str


class LogsCollect(Message, tag="logs.collect", frozen=True, kw_only=True):
    request_id: str
    stage_id: str


class SyncRelease(Message, tag="sync.release", frozen=True, kw_only=True):
    request_id: str


class KvValue(Message, tag="kv.value", frozen=True, kw_only=True):
    request_id: str
    key: str
    value: str


class NetDone(Message, tag="net.done", frozen=True, kw_only=True):
    """The answer to a `net.fault`: done, or why not (`error`)."""

    request_id: str
    error: str | None = None


class VmMigrated(Message, tag="vm.migrated", frozen=True, kw_only=True):
    """The answer to a `vm.migrate`: what was done (`detail`), or why not
    (`error`)."""

    request_id: str
    error: str | None = None
    detail: str = ""


class Ping(Message, tag="ping", frozen=True, kw_only=True):
    seq: int


class ProcessSignal(Message, tag="process.signal", frozen=True, kw_only=True):
    """A nemesis pauses (STOP), resumes (CONT) or kills (KILL) the processes
    named `name` that a case's stages started on this host (`scope`)."""

    request_id: str
    scope: str
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    signal: Literal["STOP", "CONT", "KILL"]


class PeerAsk(Message, tag="peer.ask", frozen=True, kw_only=True):
    """Who on this host holds the client end of a TCP connection from local
    port `client_port` to remote port `server_port`, and which run's
    capability it holds (a stage fetching suite files: coordinator/scripts.py)."""

    request_id: str
    client_port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    server_port: Annotated[int, msgspec.Meta(ge=1, le=65535)]


class ScopeEnd(Message, tag="scope.end", frozen=True, kw_only=True):
    """A case (`run:index:case`) is over on every host: end what its stages
    left running, escapees included, before the next stage starts."""

    scope: str


class Shutdown(Message, tag="shutdown", frozen=True, kw_only=True):
    """The run is over: end every stage process group and exit."""


AgentMessage = (
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
    | Ack
)
CoordinatorMessage = (
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
    | Shutdown
)


# Made on first use: an agent parses only the coordinator's messages, a
# coordinator only the agents'.
@functools.cache
def _agent_decoder() -> msgspec.json.Decoder[AgentMessage]:
    return msgspec.json.Decoder(AgentMessage)


@functools.cache
def _coordinator_decoder() -> msgspec.json.Decoder[CoordinatorMessage]:
    return msgspec.json.Decoder(CoordinatorMessage)


_encoder = msgspec.json.Encoder()


def prepare_agent_side() -> None:
    """Build now the parser of the coordinator's messages an agent uses on
    every connection: the agents' fork server does it once, before it forks."""
    _coordinator_decoder()


def prepare_coordinator_side() -> None:
    """`prepare_agent_side`'s mirror, for a coordinator waiting for its
    first agent."""
    _agent_decoder()


def parse_agent_message(raw: str | bytes) -> AgentMessage:
    """Raises one of MessageErrors on anything that is not a valid message."""
    return _agent_decoder().decode(raw)


def parse_coordinator_message(raw: str | bytes) -> CoordinatorMessage:
    """Raises one of MessageErrors on anything that is not a valid message."""
    return _coordinator_decoder().decode(raw)


M = TypeVar("M", bound=MessagePart)


def checked(cls: type[M], fields: dict[str, Any]) -> M:
    """`cls` from `fields` a program handed over (not JSON from the wire),
    checked as a decoded message is. Raises InvalidMessage."""
    return msgspec.convert(fields, cls)


def parse_part(cls: type[M], raw: str | bytes) -> M:
    """`cls` from its JSON (a line a program wrote, not a wire message).
    Raises one of MessageErrors."""
    return msgspec.json.decode(raw, type=cls)


def fields_of(part: MessagePart) -> dict[str, Any]:
    """`part`'s fields as JSON's types (nested parts too); fields left at
    their defaults are left out, as on the wire."""
    fields: dict[str, Any] = msgspec.to_builtins(part)
    return fields


def encode(message: MessagePart) -> str:
    return _encoder.encode(message).decode()


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
        return _checked(cls.type, _encoder.encode(spec.payload))
    except msgspec.ValidationError as exc:
        raise TaskRefused(
            f"{agent} cannot run this {cls.type} task (version {cls.version}): {_problem(exc)}"
        ) from None
    except _Unknown as exc:
        raise TaskRefused(
            f"{agent} cannot run this {cls.type} task (version {cls.version}): {exc}: unknown key"
        ) from None


class _Unknown(ValueError):
    """A payload's key its task type has no field for."""


# A lockstep suite sends the same task stage after stage (tasks are frozen):
# checked once, not at every barrier.
@functools.lru_cache(maxsize=64)
def _checked(task_type: str, payload: bytes) -> Task:
    decoder, fields = _decoder(task_type)
    # A dataclass decodes with unknown keys ignored; a payload with one
    # comes from another version and must say so.
    for key in msgspec.json.decode(payload):
        if key not in fields:
            raise _Unknown(key)
    task: Task = decoder.decode(payload)
    return task


@functools.cache
def _decoder(task_type: str) -> tuple[msgspec.json.Decoder[Any], frozenset[str]]:
    """A strict decoder of the task type's class (no "1" for 1), made on
    first use (an agent needs few), and its fields."""
    cls = TASKS.get(task_type)
    return (
        msgspec.json.Decoder(cls, strict=True),
        frozenset(f.name for f in dataclasses.fields(cls)),
    )


_MISSING = re.compile(r"Object missing required field `([^`]+)`")


def _problem(exc: msgspec.ValidationError) -> str:
    """`field.0.name: what is wrong` from msgspec's `what - at `$.field[0].name``."""
    text, _, at = str(exc).partition(" - at `")
    path = at.rstrip("`").removeprefix("$").lstrip(".")
    path = re.sub(r"\[(\d+)\]", r".\1", path).lstrip(".")
    missing = _MISSING.fullmatch(text)
    if missing:
        return ".".join(p for p in (path, missing.group(1)) if p) + ": missing"
    return f"{path or 'payload'}: {text}"
