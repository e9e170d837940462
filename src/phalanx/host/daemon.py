"""`phalanx agent`: the daemon on a host under test.

It connects out to the coordinator (one WebSocket; reconnects with capped
exponential backoff and jitter), authenticates with its bearer token, runs
the stages it is sent, streams their output, and keeps every result in an
outbox until the coordinator acknowledges it. Stages reach it through a
local socket for `phalanx-sync`, `phalanx-send`, `phalanx-wait` and
`phalanx-net` and `phalanx-vm`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import ssl
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from phalanx import __version__
from phalanx.host import beside, commandfiles, signals
from phalanx.host.connection import keep_connected, refusal
from phalanx.host.context import RunnerContext, new_signal, set_signal
from phalanx.host.logs import LogWatch
from phalanx.host.peer import connection_capability
from phalanx.host.process import (
    SCOPE_MARK,
    GroupLedger,
    become_subreaper,
    end_marked,
    end_processes,
    end_scope,
    escapees,
    ledger_path,
    scope_left,
)
from phalanx.host.runners import execute
from phalanx.host.workdir import WORKDIR_MARK, socket_dir
from phalanx.tags import XRDTEST_FUNCTIONS
from phalanx.tasks import Outcome
from phalanx.wire.messages import (
    MAX_HELD,
    PROTOCOL_VERSION,
    Ack,
    CoordinatorMessage,
    Hello,
    HistoryOps,
    InvalidMessage,
    KvSend,
    KvValue,
    KvWait,
    LogsCollect,
    LogsResult,
    MessageErrors,
    NetDone,
    NetFault,
    PeerAsk,
    PeerHeld,
    Ping,
    Pong,
    ProcessSignal,
    ProcessSignalled,
    ScopeEnd,
    Shutdown,
    StageCancel,
    StageOutput,
    StageResult,
    StageStart,
    SyncArrive,
    SyncRelease,
    TaskRefused,
    VmMigrate,
    VmMigrated,
    checked,
    encode,
    parse_coordinator_message,
    task_of,
)

log = logging.getLogger("phalanx.agent")

TOKEN_ENV = "PHALANX_AGENT_TOKEN"
WATCHES_KEPT = 64  # log watches of stages whose logs were not collected yet
# The in-stage commands (`phalanx-NAME` on a stage's PATH) and their modules.
COMMANDS = {
    "sync": "phalanx.host.syncclient",
    "send": "phalanx.host.syncclient",
    "wait": "phalanx.host.syncclient",
    "net": "phalanx.host.netclient",
    "vm": "phalanx.host.vmclient",
    "op": "phalanx.host.opclient",
    "nemesis": "phalanx.host.nemesisclient",
}
# The coordinator resends a stage.start only for a stage it still waits on,
# i.e. one this agent started moments ago, in a reconnect that raced with
# its result; a stage whose result is still unacked is known by the outbox.
# So only recent stages need recognising, and an agent that serves run after
# run for months must not remember every stage it ever ran.
FINISHED_REMEMBERED = 4096
# Output goes out per stage in messages of at most this many bytes, small
# writes gathered for up to OUTPUT_GATHER seconds: a program printing a
# byte at a time costs a message per gather, not per byte.
OUTPUT_MESSAGE_MAX = 256 * 1024
OUTPUT_GATHER = 0.02
# Bytes queued for the coordinator above which stages stop reading their
# programs' output, and below which they read again: the agent's memory
# stays bounded however fast a program writes.
BACKLOG_HIGH = 4 * 1024 * 1024
BACKLOG_LOW = 1024 * 1024


@dataclass
class _Stage:
    message: StageStart
    cancelled: asyncio.Future[None] = field(default_factory=new_signal)
    seq: int = 0
    task: asyncio.Task[None] | None = None
    output: bytearray = field(default_factory=bytearray)  # not yet sent
    gather: asyncio.TimerHandle | None = None
    # Scope ends ordered before this stage: it starts once they are done.
    after: tuple[asyncio.Task[None], ...] = ()


@dataclass
class _Request:
    message: SyncArrive | KvWait | NetFault | VmMigrate
    future: asyncio.Future[tuple[bool, str]]  # ok, and the value or why not


class RecentIds:
    """A set that keeps only the `limit` most recently added ids."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, item: str) -> None:
        self._ids[item] = None
        self._ids.move_to_end(item)
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)

    def __contains__(self, item: object) -> bool:
        return item in self._ids

    def __len__(self) -> int:
        return len(self._ids)


class Agent:
    def __init__(
        self,
        url: str,
        host: str,
        token: str,
        workdir: Path,
        *,
        backoff_max: float = 5.0,
        give_up_after: float | None = None,
        xrdtest_functions: Path | None = None,  # installed copy; None: the agent's own
        ssl_context: ssl.SSLContext | None = None,
        labels: dict[str, str] | None = None,
        enter_workdir: bool = False,
    ) -> None:
        """`enter_workdir`: make the workdir this process's working
        directory (a daemon of its own, not a test's agent): stages then
        start by posix_spawn, which cannot change the child's."""
        self.url = url
        self.enter_workdir = enter_workdir
        self.labels = dict(labels or {})
        self.ssl_context = ssl_context  # wss:// trusting this (`--ca`); None: the system's
        self.host = host
        self.token = token
        self.workdir = workdir
        self.backoff_max = backoff_max
        self.give_up_after = give_up_after
        self.state_dir = workdir / ".phalanx"
        self.scratch_root = self.state_dir / "stages"  # made once: a Path costs on every barrier
        self.xrdtest_functions = xrdtest_functions or self.state_dir / "xrdtest_functions.sh"
        self.ledger = GroupLedger(ledger_path(workdir))
        self.running: dict[str, _Stage] = {}
        self.finished = RecentIds(FINISHED_REMEMBERED)
        self.outbox: dict[str, StageResult] = {}
        # A running stage's history batches, kept until its result is acked:
        # a record made while the connection is down goes out on the next.
        # Kept encoded (a few hundred bytes each): a long stage makes many.
        self.history_out: dict[str, list[str]] = {}
        self.watches: dict[str, LogWatch] = {}
        self.requests: dict[str, _Request] = {}
        self.queue: asyncio.Queue[str] | None = None
        self.queued = 0  # bytes in the queue, not yet sent
        self.backlog: asyncio.Future[None] | None = None  # done when `queued` is low again
        self.stopping = asyncio.Event()
        self.refused: str | None = None
        self.background: set[asyncio.Task[None]] = set()
        self.scope_ends: set[asyncio.Task[None]] = set()
        self._socket_dir = socket_dir(workdir)
        self.socket_path = self._socket_dir / "agent.sock"
        self.base_env = self._base_env()

    # --- lifetime -------------------------------------------------------------

    async def run(self) -> int:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.enter_workdir:
            os.chdir(self.workdir)
        self._socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)  # left by an agent that was killed
        # Processes that leave their stage's group (setsid, a double fork)
        # are re-parented here, not to init: found and ended with their scope.
        become_subreaper()
        self._install_commands()
        server = await asyncio.start_unix_server(self._local_client, path=str(self.socket_path))
        try:
            return await self._connect_loop()
        finally:
            server.close()
            for stage in self.running.values():
                if stage.task is not None:
                    stage.task.cancel()
            self.ledger.kill_all()
            # The run's end is every scope's: what left the groups goes too.
            await end_marked(WORKDIR_MARK, str(self.workdir), grace=0)
            await end_processes(escapees(), grace=0)
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    async def _connect_loop(self) -> int:
        async def session(ws: ClientConnection) -> str | None:
            await self._session(ws)
            return self.refused

        return await keep_connected(
            self.url,
            self.token,
            session,
            self.stopping,
            log,
            backoff_max=self.backoff_max,
            give_up_after=self.give_up_after,
            ssl_context=self.ssl_context,
        )

    async def _session(self, ws: ClientConnection) -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self.queue = queue
        self._set_queued(0)
        self.send(
            Hello(
                version=PROTOCOL_VERSION,
                host=self.host,
                agent_version=__version__,
                pid=os.getpid(),
                labels=self.labels,
                running=list(self.running)[:MAX_HELD],
                scopes=list(
                    dict.fromkeys(
                        [*(s.message.scope for s in self.running.values()), *self.ledger.scopes]
                    )
                )[:MAX_HELD],
            )
        )
        # What the last connection may have lost: history records and results
        # not yet acked (records first: no record comes after its stage's
        # result), and requests not yet answered (the coordinator
        # deduplicates all three).
        for batches in self.history_out.values():
            for data in batches:
                self._queue(data)
        for result in self.outbox.values():
            self.send(result)
        for request in self.requests.values():
            self.send(request.message)
        writer = asyncio.create_task(self._writer(ws, queue))
        try:
            async for raw in ws:
                try:
                    message = parse_coordinator_message(raw)
                except MessageErrors as exc:
                    log.warning("ignoring a malformed message: %s", str(exc)[:200])
                    continue
                await self._dispatch(message)
                if self.stopping.is_set():
                    break
        except ConnectionClosed as exc:
            self.refused = refusal(exc)
        finally:
            self.queue = None
            self._set_queued(0)  # what was queued is gone with the connection
            writer.cancel()

    async def _writer(self, ws: ClientConnection, queue: asyncio.Queue[str]) -> None:
        while True:
            data = await queue.get()
            try:
                await ws.send(data)
            finally:
                queue.task_done()
                if self.queue is queue:
                    self._set_queued(self.queued - len(data))

    def send(self, message: Any) -> None:
        """Queue a message on the live connection; without one it is dropped
        (results, history records and requests are resent on reconnect,
        output is not)."""
        if self.queue is not None:
            self._queue(encode(message))

    def _queue(self, data: str) -> None:
        if self.queue is not None:
            self.queue.put_nowait(data)
            self._set_queued(self.queued + len(data))

    def _set_queued(self, queued: int) -> None:
        self.queued = queued
        if queued <= BACKLOG_LOW and self.backlog is not None:
            backlog, self.backlog = self.backlog, None
            set_signal(backlog)

    def output_backlog(self) -> asyncio.Future[None] | None:
        """For a stage's command: a future to wait for before reading more
        output, while too much is queued for the coordinator."""
        if self.queued <= BACKLOG_HIGH:
            return None
        if self.backlog is None:
            self.backlog = new_signal()
        return self.backlog

    def _stage_output(self, stage: _Stage, data: bytes) -> None:
        stage.output += data
        if len(stage.output) >= OUTPUT_MESSAGE_MAX:
            self._send_output(stage)
        elif stage.gather is None:
            loop = asyncio.get_running_loop()
            stage.gather = loop.call_later(OUTPUT_GATHER, self._send_output, stage)

    def _send_output(self, stage: _Stage) -> None:
        if stage.gather is not None:
            stage.gather.cancel()
            stage.gather = None
        buffer = stage.output
        for start in range(0, len(buffer), OUTPUT_MESSAGE_MAX):
            piece = bytes(buffer[start : start + OUTPUT_MESSAGE_MAX])
            stage.seq += 1
            # latin-1: one character per byte, so the bytes cross as they are.
            text = piece.decode("latin-1")
            self.send(StageOutput(stage_id=stage.message.stage_id, seq=stage.seq, data=text))
        buffer.clear()

    # --- messages from the coordinator ----------------------------------------------

    async def _dispatch(self, message: CoordinatorMessage) -> None:
        match message:
            case StageStart():
                self._start_stage(message)
            case StageCancel(stage_id=stage_id):
                if stage := self.running.get(stage_id):
                    set_signal(stage.cancelled)
            case LogsCollect():
                task = asyncio.create_task(self._collect_logs(message))
                self.background.add(task)
                task.add_done_callback(self.background.discard)
            case SyncRelease(request_id=rid):
                self._answer(rid, True, "")
            case KvValue(request_id=rid, value=value):
                self._answer(rid, True, value)
            case NetDone(request_id=rid, error=error):
                self._answer(rid, error is None, error or "")
            case VmMigrated(request_id=rid, error=error, detail=detail):
                self._answer(rid, error is None, detail if error is None else error)
            case Ping(seq=seq):
                self.send(Pong(seq=seq, clock=time.time()))
            case ProcessSignal():
                self._signal(message)
            case PeerAsk():
                task = asyncio.create_task(self._vouch(message))
                self.background.add(task)
                task.add_done_callback(self.background.discard)
            case Ack(ref=ref):
                self._acked(ref)
            case ScopeEnd(scope=scope):
                self._end_scope(scope)
            case Shutdown():
                self.stopping.set()

    def _signal(self, message: ProcessSignal) -> None:
        task = asyncio.create_task(self._signal_processes(message))
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _signal_processes(self, message: ProcessSignal) -> None:
        """A nemesis's pause, resume or kill of the case's processes so named
        (in a thread: the killed are reaped, which takes a moment)."""
        try:
            pids = await asyncio.to_thread(
                signals.send,
                message.scope,
                f"{WORKDIR_MARK}={self.workdir}",
                message.name,
                message.signal,
            )
        except OSError as exc:
            self.send(ProcessSignalled(request_id=message.request_id, error=str(exc)))
            return
        self.send(ProcessSignalled(request_id=message.request_id, pids=pids))

    async def _vouch(self, message: PeerAsk) -> None:
        """Whose run capability the process on this host at the client end
        of that connection holds (host/peer.py; in a thread: it reads /proc).
        Only what this agent's user may read is seen: its stages, not other
        users' processes."""
        try:
            held = await asyncio.to_thread(
                connection_capability, message.client_port, message.server_port
            )
        except OSError:
            held = None
        run_id, key = held if held is not None else (None, None)
        self.send(PeerHeld(request_id=message.request_id, run_id=run_id, key=key))

    def _end_scope(self, scope: str) -> None:
        """End what a case left running; stages that start later wait for it.
        Most cases leave nothing, and that is known without a task."""
        groups = self.ledger.take(scope)
        if scope_left(scope, groups):
            task = asyncio.create_task(end_scope(scope, groups))
            self.scope_ends.add(task)
            task.add_done_callback(self.scope_ends.discard)

    def _answer(self, request_id: str, ok: bool, value: str) -> None:
        request = self.requests.pop(request_id, None)
        if request is not None and not request.future.done():
            request.future.set_result((ok, value))

    def _acked(self, stage_id: str) -> None:
        self.outbox.pop(stage_id, None)
        self.history_out.pop(stage_id, None)

    def _start_stage(self, message: StageStart) -> None:
        for ref in message.acks:
            self._acked(ref)
        stage_id = message.stage_id
        if stage_id in self.running:
            return  # a resend after a reconnect; it is already running
        if stage_id in self.outbox:
            self.send(self.outbox[stage_id])
            return
        if stage_id in self.finished:
            return
        for scope in message.end_scopes:
            self._end_scope(scope)
        stage = _Stage(message, after=tuple(self.scope_ends))
        self.running[stage_id] = stage
        stage.task = asyncio.create_task(self._run_stage(stage))

    async def _run_stage(self, stage: _Stage) -> None:
        message = stage.message
        if stage.after:
            await asyncio.wait(stage.after)
        if message.logs:
            self.watches[message.stage_id] = LogWatch(message.logs, self.workdir)
            # A stage's logs are collected right after its barrier; a watch
            # nobody collects (its coordinator went away) must not pile up.
            while len(self.watches) > WATCHES_KEPT:
                self.watches.pop(next(iter(self.watches)))
        env = {
            **self.base_env,
            **message.env,
            "PHALANX_STAGE_ID": message.stage_id,
            SCOPE_MARK: message.scope,
            "PHALANX_STAGE_TIMEOUT": f"{message.timeout:g}",
        }

        def output(data: bytes) -> None:
            self._stage_output(stage, data)

        context = RunnerContext(
            stage_id=message.stage_id,
            scope=message.scope,
            env=env,
            cwd=self.workdir,
            scratch_root=self.scratch_root,
            timeout=message.timeout,
            output=output,
            ledger=self.ledger,
            cancelled=stage.cancelled,
            backlog=self.output_backlog,
        )
        started = datetime.now(UTC)
        try:
            task = task_of(message.task)
        except TaskRefused as exc:  # another phalanx version's task: the stage's error
            outcome = Outcome(error=str(exc))
        else:
            outcome = await execute(task, context)
        self._send_output(stage)  # all of it, before the result
        reply = StageResult(
            stage_id=message.stage_id,
            outcome=outcome,
            started_at=started,
            ended_at=datetime.now(UTC),
        )
        self.outbox[message.stage_id] = reply
        self.running.pop(message.stage_id, None)
        self.finished.add(message.stage_id)
        self.send(reply)

    async def _collect_logs(self, message: LogsCollect) -> None:
        watch = self.watches.pop(message.stage_id, None)
        files = await asyncio.to_thread(watch.collect) if watch is not None else []
        self.send(LogsResult(request_id=message.request_id, files=files))

    # --- the local socket: phalanx-sync / -send / -wait / -net -------------------------

    async def _local_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            request = json.loads(await reader.readline())
            answer = await self._local_request(request)
        except Exception as exc:
            answer = {"ok": False, "error": str(exc)}
        try:
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except OSError:
            pass  # the command gave up waiting
        finally:
            writer.close()

    async def _local_request(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        stage_id = str(request.get("stage_id", ""))
        if op == "send":
            self.send(
                KvSend(stage_id=stage_id, key=str(request["key"]), value=str(request["value"]))
            )
            return {"ok": True}
        if op == "history":
            # Answered once it is queued: behind it on the one connection,
            # the stage's result cannot overtake it.
            try:
                batch = checked(
                    HistoryOps,
                    {
                        "stage_id": stage_id,
                        "batch": uuid.uuid4().hex,
                        "records": request["records"],
                    },
                )
            except InvalidMessage as exc:
                return {"ok": False, "error": _invalid(exc)}
            data = encode(batch)
            if stage_id in self.running:  # else no result will ever ack it
                self.history_out.setdefault(stage_id, []).append(data)
            self._queue(data)
            return {"ok": True}
        rid = uuid.uuid4().hex
        message: SyncArrive | KvWait | NetFault | VmMigrate
        if op == "sync":
            message = SyncArrive(request_id=rid, stage_id=stage_id, name=str(request["name"]))
        elif op == "wait":
            message = KvWait(request_id=rid, stage_id=stage_id, key=str(request["key"]))
        elif op == "net":
            try:
                message = _net_fault(rid, stage_id, request)
            except InvalidMessage as exc:
                return {"ok": False, "error": _invalid(exc)}
        elif op == "vm":
            try:
                message = _vm_migrate(rid, stage_id, request)
            except InvalidMessage as exc:
                return {"ok": False, "error": _invalid(exc)}
        else:
            return {"ok": False, "error": f"unknown request {op!r}"}
        future: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
        self.requests[rid] = _Request(message, future)
        self.send(message)
        try:
            ok, value = await future
        finally:
            self.requests.pop(rid, None)
        return {"ok": True, "value": value} if ok else {"ok": False, "error": value}

    # --- the stage environment ------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
        bin_dir = self.state_dir / "bin"
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', os.defpath)}"
        env["PHALANX_AGENT_SOCKET"] = str(self.socket_path)
        env["PHALANX_FUNCTIONS"] = str(self.state_dir / "functions.sh")
        env["PHALANX_XRDTEST_FUNCTIONS"] = str(self.xrdtest_functions)
        env[WORKDIR_MARK] = str(self.workdir)
        return env

    def _install_commands(self) -> None:
        bin_dir = self.state_dir / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        functions = resources.files("phalanx.host").joinpath("functions.sh").read_text()
        (self.state_dir / "functions.sh").write_text(functions)
        (self.state_dir / "xrdtest_functions.sh").write_text(xrdtest_library())
        # Run with the stages' Python: a container's, when the agent is beside one.
        commandfiles.install(bin_dir, COMMANDS, beside.python())


def _net_fault(rid: str, stage_id: str, request: dict[str, Any]) -> NetFault:
    """The `net.fault` a local `phalanx-net` request asks for; raises
    InvalidMessage when it is not one."""
    fields: dict[str, Any] = {
        key: request[key] for key in ("action", "groups", "host", "delay") if key in request
    }
    return checked(NetFault, {"request_id": rid, "stage_id": stage_id, **fields})


def _vm_migrate(rid: str, stage_id: str, request: dict[str, Any]) -> VmMigrate:
    """The `vm.migrate` a local `phalanx-vm migrate` asks for; raises
    InvalidMessage when it is not one."""
    fields: dict[str, Any] = {
        key: request[key] for key in ("host", "to", "mode", "timeout") if key in request
    }
    return checked(VmMigrate, {"request_id": rid, "stage_id": stage_id, **fields})


def _invalid(exc: InvalidMessage) -> str:
    """The problem, where it is if not the whole request: `net.fault slow:
    the delay …`, or `Expected `str`, got `int` - at `$.host``."""
    return str(exc)


def xrdtest_library() -> str:
    """phalanx's own implementation of XrdTest's utils/functions.sh."""
    return resources.files("phalanx.host").joinpath("xrdtest_functions.sh").read_text()


def install_xrdtest_library(path: Path = Path(XRDTEST_FUNCTIONS)) -> Path:
    """XrdTest's helper library where its scripts source it from (root on a
    netns or VM host). Raises OSError when the agent may not write there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(xrdtest_library())
    return path
