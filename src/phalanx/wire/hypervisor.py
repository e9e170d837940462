"""The hypervisor protocol: between `phalanx hypervisor` (the daemon on a VM
host) and the coordinator's hypervisor hub, one JSON object per WebSocket
message, checked here. Data only: a cluster crosses as its fields, checked
against `model.Cluster` on arrival.

The daemon says `hyper.hello` (its capacity) and answers `ping`s; the
coordinator sends requests (`cluster.open`, `cluster.up`, `cluster.down`,
`cluster.close`, `cluster.revert`, `cluster.resume`, `cluster.fault`), each
answered by one `reply` with the same `request_id`;
the daemon tells each VM's state as it changes (`vm.state`). Live
migration (`hypervisor/moving.py`): `cluster.migrate` beside itself; to
another hypervisor `vm.departure` (source), `vm.incoming` (destination),
`vm.send` (source), `vm.settle` (destination), each answered by a `reply`
whose `data` carries its result.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from phalanx.model import Cluster
from phalanx.wire.messages import Message, MessagePart, Name, Version
from phalanx.wire.messages import encode as encode  # one encoder for both protocols

# The clusters a daemon may say it holds, and a cluster key's length: far
# beyond what one machine runs, and small enough to keep and log.
MAX_HELD_CLUSTERS = 1024
ClusterKey = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]

HYPERVISOR_PROTOCOL = 1
VM_STATES = ("booting", "running", "off", "lost")


class Capacity(MessagePart, frozen=True, kw_only=True):
    cpus: int
    ram_mb: int
    kvm: bool
    accel_reason: Annotated[str, msgspec.Meta(max_length=1024)] = ""


# --- daemon → coordinator ------------------------------------------------------


class HyperHello(Message, tag="hyper.hello", frozen=True, kw_only=True):
    version: int
    name: Name
    phalanx_version: Version = ""
    capacity: Capacity
    # The coordinator is on this machine: its VMs may sit on a bridge here
    # that the coordinator also listens on. Else they reach it by NAT.
    local: bool = False
    # The keys of the clusters it holds (after a reconnect): the coordinator
    # closes those it no longer knows.
    clusters: Annotated[list[ClusterKey], msgspec.Meta(max_length=MAX_HELD_CLUSTERS)] = []


class Reply(Message, tag="reply", frozen=True, kw_only=True):
    request_id: str
    error: str | None = None  # why the request failed (a ProvisionError's text)
    listen_address: str | None = None  # cluster.open's
    addresses: dict[str, str] = {}
    diskmounts: dict[str, str] = {}
    # cluster.open's: whether the cluster takes `cluster.fault` (its VMs are
    # on a bridge); False from a daemon that predates it.
    faults: bool = False
    data: dict[str, Any] = {}  # a migration request's result


class VmState(Message, tag="vm.state", frozen=True, kw_only=True):
    cluster: str  # the key the coordinator gave the cluster
    host: str
    state: Literal["booting", "running", "off", "lost"]
    pid: int | None = None  # QEMU's


class HyperPong(Message, tag="pong", frozen=True, kw_only=True):
    seq: int


# --- coordinator → daemon ------------------------------------------------------


class ClusterOpen(Message, tag="cluster.open", frozen=True, kw_only=True):
    request_id: str
    cluster: str  # the key: one open cluster on this hypervisor
    run_id: str
    definition: dict[str, Any]  # a model.Cluster's fields (`cluster_fields`)


class VmSpec(MessagePart, frozen=True, kw_only=True):
    host: str
    url: str
    token: str  # a secret: never logged


class ClusterUp(Message, tag="cluster.up", frozen=True, kw_only=True):
    request_id: str
    cluster: str
    vms: list[VmSpec]


class ClusterDown(Message, tag="cluster.down", frozen=True, kw_only=True):
    request_id: str
    cluster: str
    lost: list[str] = []


class ClusterClose(Message, tag="cluster.close", frozen=True, kw_only=True):
    request_id: str
    cluster: str


class ClusterRevert(Message, tag="cluster.revert", frozen=True, kw_only=True):
    """Every VM of the cluster back to its snapshot (`revert: case`)."""

    request_id: str
    cluster: str


class ClusterResume(Message, tag="cluster.resume", frozen=True, kw_only=True):
    """After cluster.revert: the guests start their agents."""

    request_id: str
    cluster: str


class ClusterFault(Message, tag="cluster.fault", frozen=True, kw_only=True):
    """A network fault between the cluster's VMs (`phalanx-net`), made by
    the hypervisor that runs them; the reply's error says why it was not."""

    request_id: str
    cluster: str
    action: Literal["partition", "isolate", "slow", "heal"]
    groups: list[list[str]] = []  # partition's
    host: str = ""  # isolate's and slow's
    delay: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0  # slow's, in seconds


# --- live migration -----------------------------------------------------------


class DriveFields(MessagePart, frozen=True, kw_only=True):
    id: str
    file: str
    virtual_size: int
    backing: bool


class DepartureFields(MessagePart, frozen=True, kw_only=True):
    """`hypervisor.moving.Departure`'s fields."""

    hypervisor: str
    run_id: str
    host: str
    args: list[str]
    private: str
    accel: str
    root_hash: str
    drives: list[DriveFields]
    bridge: str | None = None
    tap: str | None = None
    record: dict[str, Any] = {}
    slowed: bool = False


class ReceivingFields(MessagePart, frozen=True, kw_only=True):
    """`machine.Receiving`'s fields: where the destination takes the guest."""

    uri: str
    exports: dict[str, str]
    whole: list[str] = []  # drives to be copied whole


class ClusterMigrate(Message, tag="cluster.migrate", frozen=True, kw_only=True):
    """A VM to a new QEMU on the same hypervisor; the reply's data is the
    migration's record."""

    request_id: str
    cluster: str
    host: str
    mode: Literal["tcp", "unix"] = "tcp"
    timeout: Annotated[float, msgspec.Meta(gt=0, le=3600)]


class VmDeparture(Message, tag="vm.departure", frozen=True, kw_only=True):
    """Source: what the destination needs (the reply's data: DepartureFields)."""

    request_id: str
    cluster: str
    host: str


class VmIncoming(Message, tag="vm.incoming", frozen=True, kw_only=True):
    """Destination: a QEMU waiting for the guest (the reply's data: ReceivingFields)."""

    request_id: str
    cluster: str
    definition: dict[str, Any]  # the cluster's fields: the host's own among them
    departure: DepartureFields


class VmSend(Message, tag="vm.send", frozen=True, kw_only=True):
    """Source: mirror, migrate, switch over (the reply's data: the record)."""

    request_id: str
    cluster: str
    host: str
    to: ReceivingFields
    timeout: Annotated[float, msgspec.Meta(gt=0, le=3600)]
    where: str = ""  # the destination's name, for the record


class VmSettle(Message, tag="vm.settle", frozen=True, kw_only=True):
    """Destination: until the guest runs (`migration`: the source's record),
    or, `migration` None, the waiting QEMU abandoned."""

    request_id: str
    cluster: str
    host: str
    timeout: Annotated[float, msgspec.Meta(gt=0, le=3600)]
    migration: dict[str, Any] | None = None


class HyperPing(Message, tag="ping", frozen=True, kw_only=True):
    seq: int


DaemonMessage = HyperHello | Reply | VmState | HyperPong
HubMessage = (
    ClusterOpen
    | ClusterUp
    | ClusterDown
    | ClusterClose
    | ClusterRevert
    | ClusterResume
    | ClusterFault
    | ClusterMigrate
    | VmDeparture
    | VmIncoming
    | VmSend
    | VmSettle
    | HyperPing
)


@functools.cache
def _daemon() -> msgspec.json.Decoder[DaemonMessage]:
    return msgspec.json.Decoder(DaemonMessage)


@functools.cache
def _hub() -> msgspec.json.Decoder[HubMessage]:
    return msgspec.json.Decoder(HubMessage)


def parse_daemon_message(raw: str | bytes) -> DaemonMessage:
    """Raises one of wire.messages.MessageErrors on anything that is not a
    valid message."""
    return _daemon().decode(raw)


def parse_hub_message(raw: str | bytes) -> HubMessage:
    return _hub().decode(raw)


def _path_in(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(f"{kind} is not a cluster's field type")


def cluster_fields(cluster: Cluster) -> dict[str, Any]:
    """The cluster's fields as JSON has them (lists for its tuples, paths as
    text): what arrives compares equal to what left."""
    fields: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(cluster, enc_hook=str))
    fields.pop("source", None)  # a path on the coordinator's machine, of no use here
    return fields


def cluster_of(fields: dict[str, Any]) -> Cluster:
    """Raises wire.messages.InvalidMessage when the fields are not a cluster's."""
    return msgspec.convert(fields, Cluster, dec_hook=_path_in)
