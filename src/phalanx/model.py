"""Plain data: what a suite is, what a run produced.

Loaders produce these objects, after checking every value against its file
and line (which a model library cannot report); the engine reads them;
reports and the web read the results. Nothing here does I/O.

They are stdlib dataclasses, not pydantic models: a `phalanx run` of a test
tree would otherwise spend a fifth of its time importing pydantic and
building schemas for data it never needs to validate. Where data crosses a
trust boundary (the wire, a results.json read back) pydantic validates it
into these classes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from phalanx import providernames as provider_names
from phalanx.plugins import Catalog

SUITE_STAGES = ("initialize", "finalize")
CASE_STAGES = ("initialize", "run", "finalize")
DEFAULT_STAGE_TIMEOUT = 600.0


class Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"  # the test said no
    ERROR = "error"  # the infrastructure failed
    SKIPPED = "skipped"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"

    @property
    def done(self) -> bool:
        return self not in (Status.PENDING, Status.RUNNING)

    @property
    def ok(self) -> bool:
        return self in (Status.PASSED, Status.SKIPPED)


# Worst first: how several host or stage statuses fold into one.
_SEVERITY = [
    Status.ERROR,
    Status.TIMEOUT,
    Status.FAILED,
    Status.CANCELLED,
    Status.RUNNING,
    Status.PENDING,
    Status.PASSED,
    Status.SKIPPED,
]


def worst(statuses: list[Status], empty: Status = Status.PASSED) -> Status:
    """The status that speaks for a group: an error outranks a failure, which
    outranks a pass; a group of only skips is skipped."""
    if not statuses:
        return empty
    return min(statuses, key=_SEVERITY.index)


def seconds(started: datetime | None, ended: datetime | None) -> float:
    """How long something took; 0 for what has not both started and ended."""
    if started is None or ended is None:
        return 0.0
    return max(0.0, (ended - started).total_seconds())


class AlertPolicy(StrEnum):
    SUITE = "SUITE"
    CASE = "CASE"
    NONE = "NONE"


@dataclass(frozen=True, kw_only=True, slots=True)
class Disk:
    name: str
    size: int  # bytes
    device: str = "vda"
    mount_point: str = "/data"
    cache: bool = True


@dataclass(frozen=True, kw_only=True, slots=True)
class Network:
    name: str | None = None
    ip: str | None = None
    netmask: str | None = None
    dhcp_range: tuple[str, str] | None = None
    bridge_name: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Link:
    """Conditions on a host's link to the cluster network (`tc netem`/`tbf`
    on its veth): what a WAN or a bad cable would do."""

    delay: float | None = None  # seconds, one way
    jitter: float | None = None  # seconds, around `delay`
    loss: float | None = None  # percent of packets dropped
    rate: int | None = None  # bits per second


@dataclass(frozen=True, kw_only=True, slots=True)
class SshAccess:
    """How phalanx logs in to a host of the `ssh` provider."""

    user: str | None = None  # None: the local user's name
    port: int = 22
    address: str | None = None  # None: the host's `ip`, else its name
    key_file: str | None = None  # None: the SSH agent's or the user's default keys
    known_hosts: str | None = None  # None: ~/.ssh/known_hosts; the host key is always checked


@dataclass(frozen=True, kw_only=True, slots=True)
class Healthcheck:
    """A compose service's healthcheck: `test` run in its container."""

    test: tuple[str, ...]  # argv, or ("sh", "-c", text) for CMD-SHELL
    interval: float = 1.0  # seconds between tries
    timeout: float = 30.0  # seconds one try may take
    retries: int = 60


@dataclass(frozen=True, kw_only=True, slots=True)
class PublishedPort:
    """A compose service's `ports:` entry (TCP): this machine's
    `host_ip:published` forwarded to the service's `target` port."""

    host_ip: str  # this machine's address to listen on; 0.0.0.0: all of them
    published: int
    target: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Service:
    """A container host's own process and settings, from a compose
    file's service (provider: podman): what compose would give it."""

    build: str | None = None  # a build context (a folder), relative paths resolved
    dockerfile: str | None = None
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    volumes: tuple[str, ...] = ()  # SOURCE:TARGET[:MODE], bind sources absolute
    healthcheck: Healthcheck | None = None
    healthy_before: tuple[str, ...] = ()  # depends_on … condition: service_healthy
    working_dir: str | None = None
    user: str | None = None
    ports: tuple[PublishedPort, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Host:
    name: str  # usually fully qualified: srv1.xrd.test
    ip: str | None = None
    roles: tuple[str, ...] = ()
    mac: str | None = None
    aliases: tuple[str, ...] = ()
    ram_size: str | None = None
    vcpus: int | None = None  # a VM's virtual CPUs (provider: qemu); None: 1
    arch: str | None = None
    boot_image: str | None = None
    disks: tuple[Disk, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    link: Link | None = None  # netns (and VM) hosts only
    ssh: SshAccess | None = None  # the `ssh` provider's hosts
    image: str | None = None  # a container host's image (provider: podman); None: the cluster's
    service: Service | None = None  # what a compose file's service adds to its host

    @property
    def short_name(self) -> str:
        return self.name.split(".", 1)[0]

    def answers_to(self, name: str) -> bool:
        return name in (self.name, self.short_name, *self.aliases)


@dataclass(frozen=True, kw_only=True, slots=True)
class Cluster:
    name: str
    hosts: tuple[Host, ...]
    network: Network | None = None
    source: Path | None = None
    # Who serves the hosts: `local` (an agent process per host, started for
    # the run), `netns` (the same, each in network, UTS and mount namespaces
    # of its own on a bridge), `ssh` (an agent started over SSH on a real
    # machine) or `agents` (remote agents connected under the hosts' names);
    # None: the runner's default (`phalanx run`: local, `phalanx serve`: agents).
    provider: str | None = None
    # Names every host resolves to the coordinator (netns hosts' /etc/hosts).
    # An XrdTest cluster gets its master's name, `master.xrd.test`.
    coordinator_aliases: tuple[str, ...] = ()
    # `case`: every VM is restored, before each case, to a snapshot taken
    # once they all booted (provider: qemu). None: no snapshots.
    revert: str | None = None
    # What a VM's root file system is (provider: qemu): `host` (this
    # machine's, read-only over 9p, under a tmpfs) or `disk` (an image of
    # its own, which QEMU can snapshot and migrate). None: `disk` when the
    # cluster reverts, else `host`.
    vm_root: str | None = None
    # Left up after its run, for the next run of this cluster (a qemu
    # cluster's VMs, as XrdTest's cluster activation kept them).
    keep: bool = False
    # A container host's image when it names none (provider: podman).
    image: str | None = None
    # The keys of the cluster's compose file phalanx does not honour, for
    # `phalanx validate` to name (services.NAME.KEY).
    unhonoured: tuple[str, ...] = ()

    def host(self, name: str) -> Host | None:
        return next((h for h in self.hosts if h.answers_to(name)), None)


PROVIDER_LOCAL = provider_names.PROVIDER_LOCAL
PROVIDER_NETNS = provider_names.PROVIDER_NETNS
PROVIDER_SSH = provider_names.PROVIDER_SSH
PROVIDER_AGENTS = provider_names.PROVIDER_AGENTS
PROVIDER_QEMU = provider_names.PROVIDER_QEMU
PROVIDER_PODMAN = provider_names.PROVIDER_PODMAN
# Who may serve a cluster's hosts (`provider:`, `--provider`): phalanx's own
# and installed plug-ins' (providers/registry.py loads them).
PROVIDERS = Catalog(
    "phalanx.providers",
    "provider",
    {
        name: f"phalanx.providers.builtin:{name}"
        for name in (
            PROVIDER_LOCAL,
            PROVIDER_NETNS,
            PROVIDER_SSH,
            PROVIDER_AGENTS,
            PROVIDER_QEMU,
            PROVIDER_PODMAN,
        )
    },
)
REVERTS = ("case",)
VM_ROOTS = ("host", "disk")
XRDTEST_MASTER = "master.xrd.test"  # what XrdTest's slaves called their master


@dataclass(frozen=True, kw_only=True, slots=True)
class Script:
    """A stage script's text, and where it came from (for messages)."""

    text: str
    origin: str = "inline"


CHECKS = ("register", "set", "counter")


@dataclass(frozen=True, kw_only=True, slots=True)
class Nemesis:
    """Faults during a case's run stage (`nemesis:`): every `every`
    seconds one of `faults` (as written: `partition-halves`, `kill etcd`)
    starts or heals, between the case's hosts; `seed` fixes the schedule."""

    every: float
    faults: tuple[str, ...]
    seed: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class Case:
    name: str
    kind: str = "scripts"
    stages: dict[str, Script] = field(default_factory=dict)
    timeout: float | None = None  # None: the suite's
    roles: tuple[str, ...] = ()  # empty: every host of the suite
    params: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()  # labels for selection, not @tag@ values
    options: dict[str, Any] = field(default_factory=dict)  # kind-specific
    path: Path | None = None
    description: str = ""
    check: str | None = None  # a model of CHECKS: the case's history must satisfy it
    nemesis: Nemesis | None = None


def named(case: str, names: Iterable[str]) -> bool:
    """Whether `-t` names pick the case `case` (itself, or a variant of it)."""
    return any(case == n or (case.startswith(n + "[") and case.endswith("]")) for n in names)


@dataclass(frozen=True, kw_only=True, slots=True)
class Suite:
    name: str
    cluster: Cluster
    cases: tuple[Case, ...]
    machines: tuple[str, ...] = ()  # empty: the whole cluster
    initialize: Script | None = None
    finalize: Script | None = None
    schedule: dict[str, str] | None = None  # cron fields, APScheduler names
    logs: tuple[str, ...] = ()
    alert_emails: tuple[str, ...] = ()
    alert_success: AlertPolicy = AlertPolicy.SUITE
    alert_failure: AlertPolicy = AlertPolicy.CASE
    webhooks: tuple[str, ...] = ()  # http(s) URLs that get a JSON POST per finished run
    timeout: float = DEFAULT_STAGE_TIMEOUT
    tags: dict[str, str] = field(default_factory=dict)  # @name@ values
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    path: Path | None = None
    # What runs a stage script without a shebang (`shell:`); None: `bash -e`.
    shell: tuple[str, ...] | None = None
    xrdtest: bool = False  # defined by an XrdTest `test_suite.py` (getTestSuite)

    @property
    def hosts(self) -> tuple[Host, ...]:
        if not self.machines:
            return self.cluster.hosts
        picked = [self.cluster.host(m) for m in self.machines]
        return tuple(h for h in picked if h is not None)

    def case(self, name: str) -> Case | None:
        return next((c for c in self.cases if c.name == name), None)

    def stage_timeout(self, case: Case | None) -> float:
        if case is not None and case.timeout is not None:
            return case.timeout
        return self.timeout

    def select(self, names: list[str]) -> Suite:
        """The same suite with only the named cases, in the suite's order. A
        name picks the case so named and its variants (`usb` picks
        `usb[tablet]`, `usb[mouse]`: load/variants.py)."""
        if not names:
            return self
        return replace(self, cases=tuple(c for c in self.cases if named(c.name, names)))


# --- results -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class HostResult:
    """One host's part of one stage: the one record of that fact, from the
    engine's judgement to the events, results.json, the store, the API and
    the web (each encodes it with `phalanx.codec`, none copies it field by
    field). `logs` are collected after the stage's barrier: empty in
    HostStageEnded, named in StageEnded and later."""

    host: str
    status: Status = Status.PENDING
    exit_code: int | None = None
    signal: int | None = None  # the signal that ended the host's process, if one did
    started_at: datetime | None = None
    ended_at: datetime | None = None
    output: str | None = None  # path relative to the run folder
    reason: str | None = None
    logs: tuple[str, ...] = ()  # paths relative to the run folder
    # What the host's runner reported, as it reported it (e.g. final_results):
    # the engine only passes it on, and nothing changes it.
    data: Any = None


@dataclass(frozen=True, kw_only=True, slots=True)
class HistoryEvent:
    """One record of a case's history (an operation's invocation or
    completion, or a nemesis's fault), on the coordinator's clock: `time`
    is the recording host's time less its measured offset."""

    process: str  # HOST/CLIENT, or `nemesis`
    type: str  # invoke, ok, fail, info
    f: str
    key: Any = None
    value: Any = None
    time: float = 0.0  # seconds since the epoch, the coordinator's clock
    host: str = ""  # whose agent sent it ("" : the coordinator's own)


@dataclass(frozen=True, kw_only=True, slots=True)
class HostClock:
    """How a host's clock stood against the coordinator's: `offset` (host
    less coordinator, seconds) from the ping whose round trip (`rtt`) was
    the shortest of `samples`; the error is at most half that round trip.
    `samples` 0: never measured (offset taken as 0)."""

    host: str
    offset: float = 0.0
    rtt: float | None = None
    samples: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class WindowOp:
    """An operation of a window that cannot be ordered."""

    process: str
    f: str
    value: Any = None
    output: Any = None
    call: float = 0.0
    ret: float | None = None  # None: never returned (info)
    required: bool = True
    text: str = ""  # as `phalanx check` prints it: `read → 1`


@dataclass(frozen=True, kw_only=True, slots=True)
class Window:
    key: Any
    reason: str
    ops: tuple[WindowOp, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class CaseHistory:
    """What a case's clients did on all its hosts, on one clock, and what
    its check (`check:`) said of it."""

    events: tuple[HistoryEvent, ...] = ()
    clocks: tuple[HostClock, ...] = ()
    file: str | None = None  # history.jsonl, relative to the run folder
    check: str | None = None  # the model checked against
    valid: bool | None = None  # None: not checked
    verdict: str | None = None  # `history not linearizable on key x`
    windows: tuple[Window, ...] = ()
    nemesis_error: str | None = None  # why the nemesis could not go on


@dataclass(kw_only=True, slots=True)
class StageResult:
    name: str
    status: Status = Status.PENDING
    hosts: list[HostResult] = field(default_factory=list)
    started_at: datetime | None = None
    ended_at: datetime | None = None

    def host(self, name: str) -> HostResult | None:
        return next((h for h in self.hosts if h.host == name), None)


@dataclass(kw_only=True, slots=True)
class CaseResult:
    name: str
    status: Status = Status.PENDING
    reason: str | None = None
    stages: list[StageResult] = field(default_factory=list)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    history: CaseHistory | None = None

    def stage(self, name: str) -> StageResult | None:
        return next((s for s in self.stages if s.name == name), None)


@dataclass(kw_only=True, slots=True)
class RunResult:
    run_id: str
    suite: str
    status: Status = Status.PENDING
    reason: str | None = None
    cluster: str | None = None
    hosts: list[str] = field(default_factory=list)
    stages: list[StageResult] = field(default_factory=list)  # suite initialize / finalize
    cases: list[CaseResult] = field(default_factory=list)
    started_at: datetime | None = None
    ended_at: datetime | None = None

    def case(self, name: str) -> CaseResult | None:
        return next((c for c in self.cases if c.name == name), None)

    def stage(self, name: str) -> StageResult | None:
        return next((s for s in self.stages if s.name == name), None)
