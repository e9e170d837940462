"""One run's hosts, as the engine sees them (its `Fleet`): stage dispatch
and the rendezvous.

The hub's links outlive runs; a `RunFleet` lives exactly as long as one run.
It claims the run's hosts on the hub (a host belongs to one live run at a
time), and owns everything of that run: the stages sent and not yet
answered, which results were applied, and the run's own `Rendezvous`, so
barriers and key/values of concurrent runs never meet even where their
names and kv scopes are the same. Closing it releases the hosts and drops
all of that at once.

Beside it plug in what a run's stages may ask of its provider: network
faults and their healing (`faults.py`), live migration (`migration.py`),
and hosts put back before each case (`revert.py`). A stage's own requests
are answered once each through its host's link (`DaemonLink.answer`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from phalanx.coordinator import nemesis as nemeses
from phalanx.coordinator.agents import AgentHub, AgentLink
from phalanx.coordinator.daemons import Unanswered, new_request_id
from phalanx.coordinator.faults import RunFaults
from phalanx.coordinator.histories import Histories
from phalanx.coordinator.migration import NO_MIGRATION, RunMigrations
from phalanx.coordinator.revert import CaseRevert
from phalanx.engine.rendezvous import Answer, Rendezvous
from phalanx.engine.session import CollectedLog, StageOrder, StageReport, StageScope
from phalanx.events import Event, HostResumed, HostWaiting
from phalanx.history.nemesis import Step
from phalanx.model import CaseHistory, Nemesis
from phalanx.providers.base import FaultError, Migrating, NetworkFaults
from phalanx.tasks import Outcome
from phalanx.wire.messages import (
    AgentMessage,
    HistoryOps,
    KvSend,
    KvValue,
    KvWait,
    LogsCollect,
    LogsResult,
    MessagePart,
    NetFault,
    ProcessSignal,
    ProcessSignalled,
    ScopeEnd,
    StageCancel,
    StageOutput,
    StageResult,
    StageStart,
    SyncArrive,
    SyncRelease,
    VmMigrate,
    task_spec,
)

LOGS_TIMEOUT = 60.0

log = logging.getLogger("phalanx.coordinator")

# Given a stage id and a host whose result was just applied: an awaitable
# that is done once the record the engine makes of it is safe (a database
# has it), or None when nothing keeps records. The agent is acked after it.
Durable = Callable[[str, str], Awaitable[None] | None]


def _now() -> datetime:
    return datetime.now(UTC)


def _not_kept(stage_id: str, host: str) -> None:
    pass


def _no_emit(event: Event) -> None:
    pass


@dataclass
class _Pending:
    order: StageOrder
    future: asyncio.Future[StageReport]
    on_output: Callable[[bytes], None]
    sent_at: datetime
    end_scopes: tuple[str, ...] = ()  # sent with it: a resend must carry them too


class RunHost:
    """One host in one run: the engine's `HostSession`."""

    def __init__(self, fleet: RunFleet, name: str) -> None:
        self.fleet = fleet
        self.name = name
        self.pending: dict[str, _Pending] = {}
        self.ordered: set[str] = set()  # stage ids sent to this host in this run
        self.scopes: set[str] = set()  # the scopes of those stages (their cases)
        self.cancelled: set[str] = set()  # of those, the ones cancelled while pending
        self.applied: set[str] = set()
        # Cases over whose leftovers this host has not been told to end yet:
        # they go with its next stage.start (a message of their own cost about
        # a millisecond per case at 8 hosts), or on their own when the next
        # stage is not this host's, or when the run ends.
        self.scopes_to_end: list[str] = []

    @property
    def link(self) -> AgentLink:
        return self.fleet.hub.link(self.name)

    # --- HostSession ----------------------------------------------------------------

    async def run_stage(self, order: StageOrder, on_output: Callable[[bytes], None]) -> StageReport:
        sent_at = _now()
        # After a case that broke the network: not before it is whole again.
        if (unhealed := await self.fleet.network.healed()) is not None:
            return StageReport(Outcome(error=unhealed), sent_at, _now())
        # A case on reverted hosts: not before they are back (`revert: case`).
        if (unreverted := await self.fleet.revert.reverted()) is not None:
            return StageReport(Outcome(error=unreverted), sent_at, _now())
        link = self.link
        if link.lost is not None and link.connection is None:
            return _lost_report(sent_at, link.lost)
        future: asyncio.Future[StageReport] = asyncio.get_running_loop().create_future()
        ends, self.scopes_to_end = tuple(self.scopes_to_end), []
        self.pending[order.stage_id] = _Pending(order, future, on_output, sent_at, ends)
        self.ordered.add(order.stage_id)
        self.scopes.add(order.scope)
        link.send(_start_message(order, ends, link.take_acks()))
        # The agent enforces the timeout and reports it; this one only guards
        # against an agent that neither reports nor misses a heartbeat. A
        # timer on the future itself, not wait_for(shield()): each of those
        # layers cost a turn of the loop between the result and the barrier.
        guard = order.timeout + 2 * self.fleet.hub.heartbeat_timeout + 5

        def overdue() -> None:
            if not future.done():
                self.link.send(StageCancel(stage_id=order.stage_id))
                future.set_result(
                    _lost_report(sent_at, f"the agent did not report within {guard:g}s")
                )

        timer = asyncio.get_running_loop().call_later(guard, overdue)
        try:
            return await future
        finally:
            timer.cancel()
            self.pending.pop(order.stage_id, None)
            self.cancelled.discard(order.stage_id)

    def flush_scope_ends(self) -> None:
        """Tell the agent now to end what past cases left (it has no stage
        of this run coming to carry the word)."""
        link = self.fleet.hub.links.get(self.name)  # a forgotten link stays forgotten
        if link is not None:
            for scope in self.scopes_to_end:
                link.send(ScopeEnd(scope=scope))
        self.scopes_to_end.clear()

    def cancel(self, stage_id: str) -> None:
        if stage_id in self.pending:
            self.cancelled.add(stage_id)
            self.link.send(StageCancel(stage_id=stage_id))

    async def collect_logs(self, stage_id: str) -> list[CollectedLog]:
        request = LogsCollect(request_id=new_request_id(), stage_id=stage_id)
        try:
            reply = await self.link.request(request, LogsResult, LOGS_TIMEOUT)
        except Unanswered:
            return []
        return [
            CollectedLog(f.path, base64.b64decode(f.content_b64), f.truncated, f.missing)
            for f in reply.files
        ]

    # --- what the link hands over ----------------------------------------------------------

    def resend(self) -> None:
        # A stage.start sent while the agent was away may never have arrived;
        # the agent ignores one it already has.
        link = self.link
        for stage_id, pending in self.pending.items():
            link.send(_start_message(pending.order, pending.end_scopes))
            if stage_id in self.cancelled:
                link.send(StageCancel(stage_id=stage_id))

    def result(self, message: StageResult) -> Awaitable[None] | None:
        """Apply a result once (a resend is only acked); what to await
        before the ack: the engine's record of it made safe (`durable`)."""
        stage_id = message.stage_id
        if stage_id not in self.ordered or stage_id in self.applied:
            return None
        self.applied.add(stage_id)
        self._apply(message)
        return self.fleet.durable(stage_id, self.name)

    def _apply(self, message: StageResult) -> None:
        stage_id = message.stage_id
        pending = self.pending.get(stage_id)
        if pending is not None and not pending.future.done():
            pending.future.set_result(
                StageReport(message.outcome, message.started_at, message.ended_at)
            )
        self.fleet.deliver(self.fleet.rendezvous.host_done(stage_id, self.name))

    def lose(self, reason: str) -> None:
        for stage_id, pending in list(self.pending.items()):
            if not pending.future.done():
                pending.future.set_result(_lost_report(pending.sent_at, reason))
            self.fleet.deliver(self.fleet.rendezvous.host_done(stage_id, self.name))


class RunFleet:
    """The engine's `Fleet` for one run; use it as a context manager (or
    call `close`) so its hosts are released when the run ends."""

    def __init__(
        self,
        hub: AgentHub,
        run_id: str,
        hosts: Iterable[str],
        *,
        durable: Durable | None = None,
        emit: Callable[[Event], None] | None = None,
        faults: NetworkFaults | None = None,
        names: Mapping[str, str] | None = None,
        no_faults: str = "network faults need hosts with a network of their own",
        before_case: Callable[[], Awaitable[str | None]] | None = None,
        migrator: Migrating | None = None,
        no_migration: str = NO_MIGRATION,
    ) -> None:
        """`faults`: how this run's network is broken on demand (None: it
        cannot be, and a request is refused with `no_faults`); `names`:
        every name a host answers to (short name, aliases) → its name;
        `before_case`: what puts the hosts back as they were before a case
        (`revert: case`: VMs restored to a snapshot), awaited before the
        first stage of each case once anything has run; its error (None: it
        worked) is that case's stages' error; `migrator`: what moves this
        run's VMs live (None: a request is refused with `no_migration`)."""
        self.hub = hub
        self.run_id = run_id
        self.durable: Durable = durable or _not_kept
        self.emit = emit or _no_emit  # HostWaiting / HostResumed, for the board
        # (host, request id) -> the stage id, case and stage of a host
        # waiting in phalanx-sync or phalanx-wait
        self.waiting: dict[tuple[str, str], tuple[str, str | None, str]] = {}
        self.rendezvous = Rendezvous()
        self.hosts = {name: RunHost(self, name) for name in hosts}
        self.closed = False
        names = {name: name for name in self.hosts} | dict(names or {})
        self.names = names
        self.network = RunFaults(faults, no_faults, names, self._asking)
        self.migrations = RunMigrations(migrator, no_migration, names, self._asking)
        self.revert = CaseRevert(before_case)
        # The tasks answering a stage's requests (`phalanx-net`, `phalanx-vm`).
        self.request_tasks: set[asyncio.Task[None]] = set()
        # Operation histories, per case; which case a stage and a scope are.
        self.histories = Histories()
        self.stage_cases: dict[str, str] = {}
        self.case_scopes: dict[str, str] = {}
        hub.claim(self, self.hosts)

    def __enter__(self) -> RunFleet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for host in self.hosts.values():
            host.flush_scope_ends()
        self.hub.release(self)
        # Only an engine that was interrupted leaves stages waiting.
        for host in self.hosts.values():
            host.lose("the run ended")
        self.hosts.clear()
        self.waiting.clear()
        for task in self.request_tasks:
            task.cancel()
        self.revert.close()
        self.rendezvous = Rendezvous()

    # --- Fleet --------------------------------------------------------------------

    def session(self, host: str) -> RunHost:
        return self.hosts[host]

    def begin_case(self, case: str, scope: str) -> None:
        self.case_scopes[case] = scope
        self.revert.begin_case()

    def begin_stage(self, scope: StageScope) -> None:
        self.revert.begin_stage()
        if scope.case is not None:
            self.stage_cases[scope.stage_id] = scope.case
        self.rendezvous.begin_stage(scope.stage_id, scope.hosts, scope.kv_scope)
        for name, host in self.hosts.items():
            if name not in scope.hosts:
                host.flush_scope_ends()

    def end_stage(self, stage_id: str) -> None:
        self.rendezvous.end_stage(stage_id)
        for key in [k for k, where in self.waiting.items() if where[0] == stage_id]:
            del self.waiting[key]

    def end_scope(self, scope: str) -> None:
        for host in self.hosts.values():
            host.scopes_to_end.append(scope)
        self.network.heal_soon()

    def _asking(self, host: str, stage_id: str) -> bool:
        """Whether `host`'s stage `stage_id` still runs (its requests stand)."""
        run_host = self.hosts.get(host)
        return run_host is not None and stage_id in run_host.pending

    def _answer(
        self, host: str, request_id: str, make: Callable[[], Coroutine[Any, Any, MessagePart]]
    ) -> None:
        """Answer a stage's request once (a resend after a reconnect is
        sent the same answer), on its host's link."""
        if (task := self.hub.link(host).answer(request_id, make)) is not None:
            self.request_tasks.add(task)
            task.add_done_callback(self.request_tasks.discard)

    async def heal_faults(self) -> str | None:
        """At the run's end: heal whatever still holds; why not, or None."""
        return await self.network.heal_all()

    # --- operation histories and the nemesis ------------------------------------------

    def history(self, case: str) -> CaseHistory | None:
        """The case's history from every host, on this coordinator's clock."""
        clocks = {h: link.clock for h in self.hosts if (link := self.hub.links.get(h))}
        return self.histories.take(case, clocks)

    def nemesis(
        self, case: str, hosts: Sequence[str], spec: Nemesis, duration: float
    ) -> AbstractAsyncContextManager[None]:
        target = _Target(self, self.case_scopes.get(case, ""))
        return nemeses.during(self.histories, case, hosts, spec, duration, target)

    def deliver(self, answers: list[Answer]) -> None:
        for answer in answers:
            if answer.host not in self.hosts:
                continue
            if (where := self.waiting.pop((answer.host, answer.request_id), None)) is not None:
                self.emit(HostResumed(where[1], where[2], answer.host))
            link = self.hub.link(answer.host)
            if answer.key is None:
                link.send(SyncRelease(request_id=answer.request_id))
            else:
                link.send(KvValue(request_id=answer.request_id, key=answer.key, value=answer.value))

    # --- Holder: what the hub's links hand over ---------------------------------------------

    def on_message(self, host: str, message: AgentMessage) -> Awaitable[None] | None:
        run_host = self.hosts.get(host)
        if run_host is None:
            return None
        match message:
            case StageOutput(stage_id=stage_id):
                if pending := run_host.pending.get(stage_id):
                    pending.on_output(message.content)
            case StageResult():
                return run_host.result(message)
            case SyncArrive(stage_id=stage_id, name=name, request_id=rid):
                answers = self.rendezvous.arrive(stage_id, host, name, rid)
                self._wait(run_host, stage_id, rid, f"phalanx-sync {name}", answers)
                self.deliver(answers)
            case KvSend(stage_id=stage_id, key=key, value=value):
                self.deliver(self.rendezvous.send(stage_id, key, value))
            case KvWait(stage_id=stage_id, key=key, request_id=rid):
                answers = self.rendezvous.wait(stage_id, host, key, rid)
                self._wait(run_host, stage_id, rid, f"phalanx-wait {key}", answers)
                self.deliver(answers)
            case NetFault():
                self._answer(host, message.request_id, lambda: self.network.answer(host, message))
            case VmMigrate():
                # A guest on user-mode networking that moved itself reconnects
                # (its TCP connections do not carry over) and resends this.
                answer = self.migrations.answer
                self._answer(host, message.request_id, lambda: answer(host, message))
            case HistoryOps(stage_id=stage_id):
                if (case := self.stage_cases.get(stage_id)) is not None:
                    self.histories.add(case, host, message.batch, message.records)
        return None

    def _wait(
        self, run_host: RunHost, stage_id: str, rid: str, what: str, answers: list[Answer]
    ) -> None:
        """A host waits, unless its answer is already here (the last to arrive)."""
        pending = run_host.pending.get(stage_id)
        key = (run_host.name, rid)
        if pending is None or key in self.waiting:
            return  # a stage already over, or a request resent after a reconnect
        if any((a.host, a.request_id) == key for a in answers):
            return
        order = pending.order
        self.waiting[key] = (stage_id, order.case, order.stage)
        self.emit(HostWaiting(order.case, order.stage, run_host.name, what))

    def on_attach(self, host: str) -> None:
        if (run_host := self.hosts.get(host)) is not None:
            run_host.resend()

    def known(self, host: str) -> frozenset[str]:
        if (run_host := self.hosts.get(host)) is None:
            return frozenset()
        return frozenset(run_host.ordered | run_host.scopes)

    def on_lost(self, host: str, reason: str) -> None:
        if (run_host := self.hosts.get(host)) is not None:
            run_host.lose(reason)


class _Target:
    """The fleet as a nemesis sees it: one case's scope."""

    def __init__(self, fleet: RunFleet, scope: str) -> None:
        self.fleet = fleet
        self.scope = scope

    async def break_network(self, step: Step) -> None:
        await self.fleet.network.break_network(step)

    async def heal_network(self) -> None:
        await self.fleet.network.heal_network()

    async def signal(self, host: str, name: str, signal: nemeses.Signal) -> list[int]:
        """STOP, CONT or KILL the case's processes `name` on `host`."""
        link = self.fleet.hub.links.get(self.fleet.names.get(host, host))
        if link is None or link.connection is None:
            raise FaultError(f"cannot signal {name} on {host}: its agent is not connected")
        rid = new_request_id()
        request = ProcessSignal(request_id=rid, scope=self.scope, name=name, signal=signal)
        try:
            answer = await link.request(request, ProcessSignalled, nemeses.FAULT_TIMEOUT)
        except Unanswered as exc:
            raise FaultError(f"cannot signal {name} on {host}: {exc}") from None
        if answer.error is not None:
            raise FaultError(f"cannot signal {name} on {host}: {answer.error}")
        return answer.pids


def _lost_report(started: datetime, reason: str) -> StageReport:
    return StageReport(Outcome(error=f"agent lost: {reason}"), started, _now())


def _start_message(
    order: StageOrder, end_scopes: tuple[str, ...] = (), acks: list[str] | None = None
) -> StageStart:
    return StageStart(
        stage_id=order.stage_id,
        scope=order.scope,
        task=task_spec(order.task),
        env=order.env,
        timeout=order.timeout,
        logs=list(order.logs),
        end_scopes=list(end_scopes),
        acks=acks or [],
    )
