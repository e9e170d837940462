"""One run's hosts, as the engine sees them (its `Fleet`).

The hub's links outlive runs; a `RunFleet` lives exactly as long as one run.
It claims the run's hosts on the hub (a host belongs to one live run at a
time), and owns everything of that run: the stages sent and not yet
answered, which results were applied, the journal, and the run's own
`Rendezvous`, so barriers and key/values of concurrent runs never meet even
where their names and kv scopes are the same. Closing it releases the hosts
and drops all of that at once.

It also applies the network faults its stages ask for (`phalanx-net`)
through the provider's `NetworkFaults`, and heals them when a case ends and
when the run does: a case's next stage is sent only once the network is
whole again. And it has the provider migrate the VMs its stages ask to move
(`phalanx-vm migrate`), one at a time, through its `Migrating`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

from phalanx.coordinator import nemesis as nemeses
from phalanx.coordinator.agents import AgentHub, AgentLink
from phalanx.coordinator.histories import Histories
from phalanx.engine.rendezvous import Answer, Rendezvous
from phalanx.engine.session import CollectedLog, StageOrder, StageReport, StageScope
from phalanx.events import Event, HostResumed, HostWaiting
from phalanx.history.nemesis import Step, parse_fault, schedule
from phalanx.model import CaseHistory, Nemesis
from phalanx.providers.base import FaultError, Migrated, Migrating, NetworkFaults, ProvisionError
from phalanx.tasks import Outcome
from phalanx.wire.messages import (
    AgentMessage,
    HistoryOps,
    KvSend,
    KvValue,
    KvWait,
    LogsCollect,
    LogsResult,
    NetDone,
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
    VmMigrated,
    task_spec,
)

LOGS_TIMEOUT = 60.0
FAULT_TIMEOUT = 120.0  # seconds to make or heal one network fault
MIGRATION_MARGIN = 30.0  # past a migration's own timeout: the provider's cleanup after one
NO_MIGRATION = "live migration needs VMs (provider: qemu); this run's hosts are not VMs"

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
        self.log_requests: dict[str, asyncio.Future[list[CollectedLog]]] = {}
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
        if (unhealed := await self.fleet.healed()) is not None:
            return StageReport(Outcome(error=unhealed), sent_at, _now())
        # A case on reverted hosts: not before they are back (`revert: case`).
        if (unreverted := await self.fleet.reverted()) is not None:
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
        link = self.link
        if link.connection is None:
            return []
        rid = uuid.uuid4().hex
        future: asyncio.Future[list[CollectedLog]] = asyncio.get_running_loop().create_future()
        self.log_requests[rid] = future
        link.send(LogsCollect(request_id=rid, stage_id=stage_id))
        try:
            return await asyncio.wait_for(future, LOGS_TIMEOUT)
        except TimeoutError:
            return []
        finally:
            self.log_requests.pop(rid, None)

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

    def logs(self, message: LogsResult) -> None:
        future = self.log_requests.get(message.request_id)
        if future is not None and not future.done():
            future.set_result(
                [
                    CollectedLog(f.path, base64.b64decode(f.content_b64), f.truncated, f.missing)
                    for f in message.files
                ]
            )

    def lose(self, reason: str) -> None:
        for stage_id, pending in list(self.pending.items()):
            if not pending.future.done():
                pending.future.set_result(_lost_report(pending.sent_at, reason))
            self.fleet.deliver(self.fleet.rendezvous.host_done(stage_id, self.name))
        for future in self.log_requests.values():
            if not future.done():
                future.set_result([])


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
        self.faults = faults
        self.no_faults = no_faults
        self.names = {name: name for name in self.hosts} | dict(names or {})
        self.faulted = False  # a fault may hold: heal at the end of the case
        self.healing: asyncio.Future[str | None] | None = None  # why not healed, or None
        self.fault_lock = asyncio.Lock()  # one change of the network at a time
        # A stage's requests (`phalanx-net`, `phalanx-vm`), each answered once:
        # (host, request id) → the answer, or making it.
        self.request_tasks: set[asyncio.Task[None]] = set()
        self.answers: dict[tuple[str, str], NetDone | VmMigrated] = {}
        self.answering: set[tuple[str, str]] = set()
        self.before_case = before_case
        self.reverting: asyncio.Future[str | None] | None = None
        self.stages_begun = False  # any stage of the run, suite stages included
        self.migrator = migrator
        self.no_migration = no_migration
        self.migration_lock = asyncio.Lock()  # one migration at a time
        # Operation histories, per case; which case a stage and a scope are.
        self.histories = Histories()
        self.stage_cases: dict[str, str] = {}
        self.case_scopes: dict[str, str] = {}
        # A nemesis's signals awaiting their answer: request id → (host, answer).
        self.signals: dict[str, tuple[str, asyncio.Future[ProcessSignalled]]] = {}
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
        if self.reverting is not None:
            self.reverting.cancel()
        self.rendezvous = Rendezvous()

    # --- Fleet --------------------------------------------------------------------

    def session(self, host: str) -> RunHost:
        return self.hosts[host]

    def begin_case(self, case: str, scope: str) -> None:
        self.case_scopes[case] = scope
        # The hosts go back as they were before the case once anything has
        # run on them (`revert: case`): the case's first stage waits for it.
        if self.before_case is not None and self.stages_begun:
            self.reverting = asyncio.ensure_future(self.before_case())

    def begin_stage(self, scope: StageScope) -> None:
        self.stages_begun = True
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
        self._heal_soon()

    # --- network faults -----------------------------------------------------------------

    def _heal_soon(self) -> None:
        """Heal what this run's stages broke; the next stage waits for it."""
        if self.faults is None or not self.faulted:
            return
        if self.healing is not None and not self.healing.done():
            return  # under way, and it takes the lock after any fault being made
        self.healing = asyncio.ensure_future(self._heal(self.faults))

    async def _heal(self, faults: NetworkFaults) -> str | None:
        async with self.fault_lock:
            try:
                await asyncio.wait_for(faults.heal(), FAULT_TIMEOUT)
            except (FaultError, TimeoutError) as exc:
                reason = str(exc) or f"no answer within {FAULT_TIMEOUT:g}s"
            except Exception as exc:  # the provider's bug: the run goes on, the stage says why
                log.exception("healing the network failed")
                reason = f"{type(exc).__name__}: {exc}"
            else:
                self.faulted = False
                return None
        return f"the network faults of the last case could not be healed: {reason}"

    async def reverted(self) -> str | None:
        """Once the hosts are back as before the case (`before_case`): None,
        or why not."""
        if self.reverting is None:
            return None
        return await asyncio.shield(self.reverting)

    async def healed(self) -> str | None:
        """Wait for a heal under way; None once the network is whole (or
        there is nothing to heal), else why it is not."""
        healing = self.healing
        if healing is None:
            return None
        reason = await asyncio.shield(healing)
        if reason is not None and self.healing is healing and not self.faulted:
            self.healing = None  # healed since, by a `phalanx-net heal`
            return None
        return reason

    async def heal_faults(self) -> str | None:
        """At the run's end: heal whatever still holds; why not, or None."""
        self._heal_soon()
        reason = await self.healed()
        if reason is not None:
            log.warning("%s", reason)
        return reason

    def _answer_once(
        self,
        host: str,
        request_id: str,
        answer: Callable[[], Awaitable[NetDone | VmMigrated]],
    ) -> None:
        """Answer a stage's request, once: the same request resent after a
        reconnect (a guest that moved itself, a dropped connection) waits
        for that answer, or is sent it again."""
        key = (host, request_id)
        if key in self.answering:
            return  # answered when made
        if (done := self.answers.get(key)) is not None:
            self.hub.link(host).send(done)
            return
        self.answering.add(key)
        task = asyncio.ensure_future(self._answer(host, key, answer))
        self.request_tasks.add(task)
        task.add_done_callback(self.request_tasks.discard)

    async def _answer(
        self,
        host: str,
        key: tuple[str, str],
        answer: Callable[[], Awaitable[NetDone | VmMigrated]],
    ) -> None:
        done = await answer()
        self.answers[key] = done
        self.answering.discard(key)
        # The asking host's link now, which may have reconnected meanwhile.
        if (link := self.hub.links.get(host)) is not None:
            link.send(done)

    def _net_fault(self, host: str, message: NetFault) -> None:
        self._answer_once(host, message.request_id, lambda: self._answer_fault(host, message))

    async def _answer_fault(self, host: str, message: NetFault) -> NetDone:
        try:
            error = await self._make_fault(host, message)
        except (FaultError, TimeoutError) as exc:
            error = str(exc) or f"no answer within {FAULT_TIMEOUT:g}s"
        except Exception as exc:  # the provider's bug: the stage is told, the run goes on
            log.exception("a network fault failed")
            error = f"{type(exc).__name__}: {exc}"
        return NetDone(request_id=message.request_id, error=error)

    async def _make_fault(self, host: str, message: NetFault) -> str | None:
        """Apply one fault; None when it holds, else why not."""
        faults = self.faults
        if faults is None:
            return self.no_faults
        asked = [name for group in message.groups or [] for name in group]
        asked += [message.host] if message.host is not None else []
        unknown = [name for name in asked if name not in self.names]
        if unknown:
            known = ", ".join(sorted(self.hosts))
            return f"no host {unknown[0]!r} in this run (its hosts: {known})"
        target = self.names[message.host] if message.host is not None else ""
        async with self.fault_lock:
            run_host = self.hosts.get(host)
            if run_host is None or message.stage_id not in run_host.pending:
                return "the stage that asked for it is over"
            if message.action == "heal":
                await asyncio.wait_for(faults.heal(), FAULT_TIMEOUT)
                self.faulted = False
                return None
            self.faulted = True  # before: a fault half made is healed too
            match message.action:
                case "partition":
                    groups = [[self.names[n] for n in group] for group in message.groups or []]
                    await asyncio.wait_for(faults.partition(groups), FAULT_TIMEOUT)
                case "isolate":
                    await asyncio.wait_for(faults.isolate(target), FAULT_TIMEOUT)
                case "slow":
                    delay = message.delay or 0.0
                    await asyncio.wait_for(faults.slow(target, delay), FAULT_TIMEOUT)
        return None

    # --- operation histories and the nemesis ------------------------------------------

    def history(self, case: str) -> CaseHistory | None:
        """The case's history from every host, on this coordinator's clock."""
        clocks = {h: link.clock for h in self.hosts if (link := self.hub.links.get(h))}
        return self.histories.take(case, clocks)

    @contextlib.asynccontextmanager
    async def nemesis(
        self, case: str, hosts: Sequence[str], spec: Nemesis, duration: float
    ) -> AsyncIterator[None]:
        """Run the case's nemesis while the body runs; when it ends, however
        it ends, the network is healed and paused processes resumed."""
        try:
            steps = schedule(
                [parse_fault(f) for f in spec.faults], list(hosts), spec.every, spec.seed, duration
            )
        except ValueError as exc:
            self.histories.nemesis_failed(case, str(exc))
            yield
            return
        scope = self.case_scopes.get(case, "")

        def record(f: str, what: str) -> None:
            self.histories.fault(case, f, what, time.time())

        run = nemeses.NemesisRun(steps, _Target(self, scope), record)
        task = asyncio.ensure_future(run.run())
        try:
            yield
        finally:
            failed = await nemeses.stop(task)
            if failed is not None:
                self.histories.nemesis_failed(case, str(failed) or type(failed).__name__)
            if (unrestored := await run.restore()) is not None:
                self.histories.nemesis_failed(case, unrestored)

    async def signal_processes(
        self, host: str, scope: str, name: str, sig: nemeses.Signal
    ) -> list[int]:
        """STOP, CONT or KILL the case's processes `name` on `host`."""
        link = self.hub.links.get(self.names.get(host, host))
        if link is None or link.connection is None:
            raise FaultError(f"cannot signal {name} on {host}: its agent is not connected")
        rid = uuid.uuid4().hex
        future: asyncio.Future[ProcessSignalled] = asyncio.get_running_loop().create_future()
        self.signals[rid] = (link.name, future)
        try:
            link.send(ProcessSignal(request_id=rid, scope=scope, name=name, signal=sig))
            answer = await asyncio.wait_for(future, nemeses.FAULT_TIMEOUT)
        finally:
            self.signals.pop(rid, None)
        if answer.error is not None:
            raise FaultError(f"cannot signal {name} on {host}: {answer.error}")
        return answer.pids

    async def break_network(self, step: Step) -> None:
        if self.faults is None:
            raise FaultError(self.no_faults)
        async with self.fault_lock:
            self.faulted = True
            if step.groups:
                groups = [[self.names[n] for n in group] for group in step.groups]
                await self.faults.partition(groups)
            elif step.fault.kind == "isolate-random":
                await self.faults.isolate(self.names[step.host])
            else:
                await self.faults.slow(self.names[step.host], step.delay)

    async def heal_network(self) -> None:
        if self.faults is None:
            raise FaultError(self.no_faults)
        async with self.fault_lock:
            await self.faults.heal()
            self.faulted = False

    # --- live migration ---------------------------------------------------------------

    def _vm_migrate(self, host: str, message: VmMigrate) -> None:
        # A guest on user-mode networking that moved itself reconnects (its
        # TCP connections do not carry over) and resends the request.
        self._answer_once(host, message.request_id, lambda: self._answer_migration(host, message))

    async def _answer_migration(self, host: str, message: VmMigrate) -> VmMigrated:
        try:
            answer = VmMigrated(
                request_id=message.request_id, detail=await self._migrate(host, message)
            )
        except (ProvisionError, FaultError) as exc:
            answer = VmMigrated(request_id=message.request_id, error=str(exc))
        except TimeoutError:
            answer = VmMigrated(
                request_id=message.request_id,
                error=f"the migration did not end within {message.timeout + MIGRATION_MARGIN:g}s",
            )
        except Exception as exc:  # the provider's bug: the stage is told, the run goes on
            log.exception("a migration failed")
            answer = VmMigrated(request_id=message.request_id, error=f"{type(exc).__name__}: {exc}")
        return answer

    async def _migrate(self, host: str, message: VmMigrate) -> str:
        """Move one VM; what was done (ProvisionError: why not)."""
        if self.migrator is None:
            raise ProvisionError(self.no_migration)
        asked = message.host if message.host is not None else host
        target = self.names.get(asked)
        if target is None:
            known = ", ".join(sorted(self.hosts))
            raise ProvisionError(f"no host {asked!r} in this run (its hosts: {known})")
        async with self.migration_lock:
            run_host = self.hosts.get(host)
            if run_host is None or message.stage_id not in run_host.pending:
                raise ProvisionError("the stage that asked for it is over")
            done = await asyncio.wait_for(
                self.migrator.migrate_vm(
                    target, to=message.to, mode=message.mode, timeout=message.timeout
                ),
                message.timeout + MIGRATION_MARGIN,
            )
        return describe(done)

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
            case LogsResult():
                run_host.logs(message)
            case NetFault():
                self._net_fault(host, message)
            case VmMigrate():
                self._vm_migrate(host, message)
            case HistoryOps(stage_id=stage_id):
                if (case := self.stage_cases.get(stage_id)) is not None:
                    self.histories.add(case, host, message.batch, message.records)
            case ProcessSignalled(request_id=rid):
                if (asked := self.signals.get(rid)) is not None and not asked[1].done():
                    asked[1].set_result(message)
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
        for rid, (asked, future) in self.signals.items():
            if asked == host and not future.done():
                future.set_result(ProcessSignalled(request_id=rid, error=f"agent lost: {reason}"))


class _Target:
    """The fleet as a nemesis sees it: one case's scope."""

    def __init__(self, fleet: RunFleet, scope: str) -> None:
        self.fleet = fleet
        self.scope = scope

    async def break_network(self, step: Step) -> None:
        await self.fleet.break_network(step)

    async def heal_network(self) -> None:
        await self.fleet.heal_network()

    async def signal(self, host: str, name: str, signal: nemeses.Signal) -> list[int]:
        return await self.fleet.signal_processes(host, self.scope, name, signal)


def describe(done: Migrated) -> str:
    """A migration as the stage that asked for it is told."""
    where = f"to hypervisor {done.hypervisor}" if done.moved else f"on {done.hypervisor}"
    downtime = f", QEMU downtime {done.downtime_ms} ms" if done.downtime_ms is not None else ""
    return f"{done.host} migrated {where} in {done.seconds:.2f}s{downtime}"


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
