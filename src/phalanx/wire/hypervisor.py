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

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

from phalanx.model import Cluster
from phalanx.wire.messages import MAX_NAME, MAX_VERSION

# The clusters a daemon may say it holds, and a cluster key's length: far
# beyond what one machine runs, and small enough to keep and log.
MAX_HELD_CLUSTERS = 1024
ClusterKey = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
Version = Annotated[str, StringConstraints(max_length=MAX_VERSION)]

HYPERVISOR_PROTOCOL = 1
VM_STATES = ("booting", "running", "off", "lost")


class _Message(BaseModel):
    # Built on first use, as wire/messages.py's: `phalanx serve` imports these
    # at start, before it answers /healthz, and most wait for a hypervisor.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Capacity(_Message):
    cpus: int
    ram_mb: int
    kvm: bool
    accel_reason: Annotated[str, StringConstraints(max_length=1024)] = ""


# --- daemon → coordinator ------------------------------------------------------


class HyperHello(_Message):
    type: Literal["hyper.hello"] = "hyper.hello"
    version: int
    name: Name
    phalanx_version: Version = ""
    capacity: Capacity
    # The coordinator is on this machine: its VMs may sit on a bridge here
    # that the coordinator also listens on. Else they reach it by NAT.
    local: bool = False
    # The keys of the clusters it holds (after a reconnect): the coordinator
    # closes those it no longer knows.
    clusters: list[ClusterKey] = Field(default_factory=list, max_length=MAX_HELD_CLUSTERS)


class Reply(_Message):
    type: Literal["reply"] = "reply"
    request_id: str
    error: str | None = None  # why the request failed (a ProvisionError's text)
    listen_address: str | None = None  # cluster.open's
    addresses: dict[str, str] = Field(default_factory=dict)
    diskmounts: dict[str, str] = Field(default_factory=dict)
    # cluster.open's: whether the cluster takes `cluster.fault` (its VMs are
    # on a bridge); False from a daemon that predates it.
    faults: bool = False
    data: dict[str, Any] = Field(default_factory=dict)  # a migration request's result


class VmState(_Message):
    type: Literal["vm.state"] = "vm.state"
    cluster: str  # the key the coordinator gave the cluster
    host: str
    state: Literal["booting", "running", "off", "lost"]
    pid: int | None = None  # QEMU's


class HyperPong(_Message):
    type: Literal["pong"] = "pong"
    seq: int


# --- coordinator → daemon ------------------------------------------------------


class ClusterOpen(_Message):
    type: Literal["cluster.open"] = "cluster.open"
    request_id: str
    cluster: str  # the key: one open cluster on this hypervisor
    run_id: str
    definition: dict[str, Any]  # a model.Cluster's fields (`cluster_fields`)


class VmSpec(_Message):
    host: str
    url: str
    token: str  # a secret: never logged


class ClusterUp(_Message):
    type: Literal["cluster.up"] = "cluster.up"
    request_id: str
    cluster: str
    vms: list[VmSpec]


class ClusterDown(_Message):
    type: Literal["cluster.down"] = "cluster.down"
    request_id: str
    cluster: str
    lost: list[str] = Field(default_factory=list)


class ClusterClose(_Message):
    type: Literal["cluster.close"] = "cluster.close"
    request_id: str
    cluster: str


class ClusterRevert(_Message):
    """Every VM of the cluster back to its snapshot (`revert: case`)."""

    type: Literal["cluster.revert"] = "cluster.revert"
    request_id: str
    cluster: str


class ClusterResume(_Message):
    """After cluster.revert: the guests start their agents."""

    type: Literal["cluster.resume"] = "cluster.resume"
    request_id: str
    cluster: str


class ClusterFault(_Message):
    """A network fault between the cluster's VMs (`phalanx-net`), made by
    the hypervisor that runs them; the reply's error says why it was not."""

    type: Literal["cluster.fault"] = "cluster.fault"
    request_id: str
    cluster: str
    action: Literal["partition", "isolate", "slow", "heal"]
    groups: list[list[str]] = Field(default_factory=list)  # partition's
    host: str = ""  # isolate's and slow's
    delay: float = Field(default=0.0, ge=0.0)  # slow's, in seconds


# --- live migration -----------------------------------------------------------


class DriveFields(_Message):
    id: str
    file: str
    virtual_size: int
    backing: bool


class DepartureFields(_Message):
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
    record: dict[str, Any] = Field(default_factory=dict)
    slowed: bool = False


class ReceivingFields(_Message):
    """`machine.Receiving`'s fields: where the destination takes the guest."""

    uri: str
    exports: dict[str, str]
    whole: list[str] = Field(default_factory=list)  # drives to be copied whole


class ClusterMigrate(_Message):
    """A VM to a new QEMU on the same hypervisor; the reply's data is the
    migration's record."""

    type: Literal["cluster.migrate"] = "cluster.migrate"
    request_id: str
    cluster: str
    host: str
    mode: Literal["tcp", "unix"] = "tcp"
    timeout: float = Field(gt=0, le=3600)


class VmDeparture(_Message):
    """Source: what the destination needs (the reply's data: DepartureFields)."""

    type: Literal["vm.departure"] = "vm.departure"
    request_id: str
    cluster: str
    host: str


class VmIncoming(_Message):
    """Destination: a QEMU waiting for the guest (the reply's data: ReceivingFields)."""

    type: Literal["vm.incoming"] = "vm.incoming"
    request_id: str
    cluster: str
    definition: dict[str, Any]  # the cluster's fields: the host's own among them
    departure: DepartureFields


class VmSend(_Message):
    """Source: mirror, migrate, switch over (the reply's data: the record)."""

    type: Literal["vm.send"] = "vm.send"
    request_id: str
    cluster: str
    host: str
    to: ReceivingFields
    timeout: float = Field(gt=0, le=3600)
    where: str = ""  # the destination's name, for the record


class VmSettle(_Message):
    """Destination: until the guest runs (`migration`: the source's record),
    or, `migration` None, the waiting QEMU abandoned."""

    type: Literal["vm.settle"] = "vm.settle"
    request_id: str
    cluster: str
    host: str
    timeout: float = Field(gt=0, le=3600)
    migration: dict[str, Any] | None = None


class HyperPing(_Message):
    type: Literal["ping"] = "ping"
    seq: int


DaemonMessage = Annotated[HyperHello | Reply | VmState | HyperPong, Field(discriminator="type")]
HubMessage = Annotated[
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
    | HyperPing,
    Field(discriminator="type"),
]

_daemon: TypeAdapter[DaemonMessage] = TypeAdapter(DaemonMessage)
_hub: TypeAdapter[HubMessage] = TypeAdapter(HubMessage)
_cluster: TypeAdapter[Cluster] = TypeAdapter(Cluster)


def parse_daemon_message(raw: str | bytes) -> DaemonMessage:
    """Raises pydantic.ValidationError on anything that is not a valid message."""
    return _daemon.validate_json(raw)


def parse_hub_message(raw: str | bytes) -> HubMessage:
    return _hub.validate_json(raw)


def encode(message: _Message) -> str:
    return message.model_dump_json()


def cluster_fields(cluster: Cluster) -> dict[str, Any]:
    fields: dict[str, Any] = _cluster.dump_python(cluster, mode="json")
    fields.pop("source", None)  # a path on the coordinator's machine, of no use here
    return fields


def cluster_of(fields: dict[str, Any]) -> Cluster:
    """Raises pydantic.ValidationError when the fields are not a cluster's."""
    return _cluster.validate_python(fields)
