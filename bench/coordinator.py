"""One coordinator, many agents: what a service-sized fleet costs.

Simulated agents: N (100, 500, 1,000 by default) connect to one coordinator
(`open_coordinator`: the real hub and WebSocket endpoint) over real
WebSockets, many per process from a few worker processes. A simulated
agent speaks the wire protocol and nothing more: hello, a pong for every
ping, and an immediate stage.result for every stage.start (no process is
started). Then lockstep stages run on all N hosts at once (a RunFleet over
every host, each host's result written to a SQLite store before its ack,
as `phalanx serve` does).

Real agents: R agent processes (32 by default: `phalanx agent`, started by
the local provider as `phalanx run` starts them) run the same stages, each
executing a real command (`/bin/sh` running `true`), their results written
to the store before their acks.

Memory is the peak (VmHWM), not the value at the end: the coordinator's,
reset before each size (/proc/self/clear_refs), and each real agent's.

Last, the rate at which the store ingests stage results (many writers at
once, as many agents report at once) on SQLite, and on PostgreSQL with
fsync on (a throw-away server, started as tests/store/postgres.py does)
when one can be started here.

Targets: 1,000 agents on one process with peak RSS <= 500 MB; one stage
across 1,000 agents <= 2 s; >= 5,000 results/s on SQLite. Anchors: openQA
runs ~1k worker slots per instance; LAVA and openQA barriers poll every 1-5 s.

    .venv/bin/python bench/coordinator.py [--agents 100,500,1000] [--real 32]"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from phalanx.coordinator.fleet import RunFleet
from phalanx.coordinator.runs import Coordinator, open_coordinator
from phalanx.engine.session import StageOrder, StageScope
from phalanx.model import HostResult, Status
from phalanx.store.runs import HostStageRecord
from phalanx.store.store import Store
from phalanx.tasks import Outcome
from phalanx.tasks.shell import ShellTask
from phalanx.wire.messages import PROTOCOL_VERSION, StageResult, encode

TARGET_RSS_MB = 500.0  # at 1,000 agents
TARGET_STAGE_S = 2.0  # one stage across 1,000 agents
TARGET_INGEST = 5000.0  # results/s on SQLite
INGEST_RESULTS = 20_000


# --- the simulated agents (worker processes) ------------------------------------------


async def _agent(url: str, host: str, token: str, ready: asyncio.Event, counter: list[int]) -> None:
    from websockets.asyncio.client import connect

    async with connect(
        url,
        additional_headers={"Authorization": f"Bearer {token}"},
        open_timeout=60,
        ping_interval=None,
        compression=None,
        max_size=64 * 1024 * 1024,
    ) as ws:
        await ws.send(json.dumps({"type": "hello", "version": PROTOCOL_VERSION, "host": host}))
        counter[0] += 1
        if counter[0] == counter[1]:
            ready.set()
        async for raw in ws:
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "ping":
                await ws.send(json.dumps({"type": "pong", "seq": message["seq"]}))
            elif kind == "stage.start":
                now = datetime.now(UTC)
                result = StageResult(
                    stage_id=message["stage_id"],
                    outcome=Outcome(exit_code=0),
                    started_at=now,
                    ended_at=now,
                )
                await ws.send(encode(result))
            elif kind == "shutdown":
                return


async def _agents(url: str, hosts: list[tuple[str, str]]) -> None:
    ready = asyncio.Event()
    counter = [0, len(hosts)]
    tasks = []
    for host, token in hosts:
        tasks.append(asyncio.create_task(_agent(url, host, token, ready, counter)))
        await asyncio.sleep(0)  # connect in a stream, not a burst of N handshakes
    await asyncio.gather(*tasks, return_exceptions=True)


def _worker(url: str, hosts: list[tuple[str, str]]) -> None:
    asyncio.run(_agents(url, hosts))


# --- the coordinator side -------------------------------------------------------------


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, load average {load}"


def spread(values: list[float], unit: str, digits: int = 3) -> str:
    """min / median / max."""
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{low:.{digits}f} / {mid:.{digits}f} / {high:.{digits}f} {unit}"


def peak_rss_mb(pid: int | str = "self") -> float:
    """The process's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pss_mb(pid: int) -> float:
    """The process's proportional set now (shared pages split among their
    users), in MB: what a fleet of forked agents costs together."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> None:
    """Start this process's VmHWM again from its present RSS (Linux)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


async def _wait_connected(coordinator: Coordinator, hosts: list[str], within: float) -> float:
    started = time.perf_counter()
    missing = await coordinator.hub.wait_connected(hosts, within)
    if missing:
        raise RuntimeError(f"{len(missing)} of {len(hosts)} agents did not connect")
    return time.perf_counter() - started


async def stages(
    coordinator: Coordinator, store: Store, run_id: str, hosts: list[str], rounds: int
) -> list[float]:
    """Seconds per lockstep stage of `true` on every host, each host's result
    written to `store` before its ack (as the service does)."""
    await store.runs.create(run_id, "bench", trigger="bench", hosts=hosts)

    # The engine's record of a passed host (no engine here), kept before the ack.
    async def durable(stage_id: str, host: str) -> None:
        now = datetime.now(UTC)
        result = HostResult(
            host=host, status=Status.PASSED, exit_code=0, started_at=now, ended_at=now
        )
        await store.runs.record_stage_result(
            HostStageRecord(run_id=run_id, stage_id=stage_id, case="c", stage="run", result=result)
        )

    times = []
    task = ShellTask(script="#!/bin/sh\ntrue\n")
    with RunFleet(coordinator.hub, run_id, hosts, durable=durable) as fleet:
        for round_ in range(rounds):
            stage_id = f"{run_id}:{round_}:c:run"
            scope = f"{run_id}:{round_}:c"
            started = time.perf_counter()
            fleet.begin_stage(StageScope(stage_id, frozenset(hosts), scope))
            reports = await asyncio.gather(
                *(
                    fleet.session(h).run_stage(
                        StageOrder(stage_id, h, task, {}, 60, scope=scope), lambda _: None
                    )
                    for h in hosts
                )
            )
            fleet.end_stage(stage_id)
            fleet.end_scope(scope)
            times.append(time.perf_counter() - started)
            bad = [r for r in reports if r.outcome.exit_code != 0]
            if bad:
                raise RuntimeError(f"{len(bad)} hosts failed: {bad[0].outcome}")
    return times


async def simulated(n: int, workers: int, store: Store, rounds: int) -> dict[str, Any]:
    hosts = [f"h{i:05d}.bench" for i in range(n)]
    reset_peak_rss()
    async with open_coordinator(heartbeat_timeout=60) as coordinator:
        tokens = [(h, coordinator.tokens.issue(h)) for h in hosts]
        url = coordinator.agent_url
        context = multiprocessing.get_context("spawn")
        chunks = [tokens[i::workers] for i in range(workers)]
        procs = [
            context.Process(target=_worker, args=(url, chunk), daemon=True) for chunk in chunks
        ]
        for proc in procs:
            proc.start()
        try:
            connect_s = await _wait_connected(coordinator, hosts, 120)
            times = await stages(coordinator, store, f"bench-{n}", hosts, rounds)
            rss = peak_rss_mb()
            coordinator.hub.shutdown(hosts)
        finally:
            for proc in procs:
                await asyncio.to_thread(proc.join, 10)
                if proc.is_alive():
                    proc.terminate()
                    await asyncio.to_thread(proc.join, 5)
    return {"connect_s": connect_s, "stages": times, "rss_mb": rss}


async def real(n: int, store: Store, rounds: int, root: Path) -> dict[str, Any]:
    """`n` real agent processes (the local provider's, as `phalanx run`
    starts them), each running `true` for every stage."""
    from phalanx.model import Host
    from phalanx.providers.base import AgentSpec
    from phalanx.providers.local import LocalProvider

    hosts = [f"r{i:03d}.bench" for i in range(n)]
    reset_peak_rss()
    async with open_coordinator(heartbeat_timeout=60) as coordinator:
        provider = LocalProvider(root / f"real-{n}")
        await provider.open()
        try:
            specs = [
                AgentSpec(Host(name=h), coordinator.agent_url, coordinator.tokens.issue(h))
                for h in hosts
            ]
            started = time.perf_counter()
            await provider.up(specs)
            await _wait_connected(coordinator, hosts, 120)
            connect_s = time.perf_counter() - started
            times = await stages(coordinator, store, f"real-{n}", hosts, rounds)
            rss = peak_rss_mb()
            agents = [peak_rss_mb(agent.process.pid) for agent in provider.agents]
            pss = sum(pss_mb(agent.process.pid) for agent in provider.agents)
            coordinator.hub.shutdown(hosts)
            await provider.down()
        finally:
            await provider.close()
    return {
        "connect_s": connect_s,
        "stages": times,
        "rss_mb": rss,
        "agents_mb": agents,
        "agents_pss_mb": pss,
    }


async def ingest_rate(store: Store, results: int = INGEST_RESULTS) -> float:
    run_id = f"ingest-{time.monotonic_ns()}"
    hosts = [f"h{i:05d}.bench" for i in range(1000)]
    await store.runs.create(run_id, "bench", trigger="bench", hosts=hosts)
    now = datetime.now(UTC)
    records = [
        HostStageRecord(
            run_id=run_id, stage_id=f"{run_id}:{i // 1000}:c:run", case="c", stage="run",
            result=HostResult(host=hosts[i % 1000], status=Status.PASSED, exit_code=0,
                              started_at=now, ended_at=now),
        )
        for i in range(results)
    ]  # fmt: skip
    started = time.perf_counter()
    # Each result is its own call, many in flight at once: what N agents do.
    await asyncio.gather(*(store.runs.record_stage_result(r) for r in records))
    return results / (time.perf_counter() - started)


@contextlib.asynccontextmanager
async def postgres_store() -> AsyncIterator[Store | None]:
    """A store on a throw-away PostgreSQL server with fsync on, or None when
    none can start."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    try:
        from tests.store.postgres import PostgresServer, binaries
    except ImportError:  # pytest is a test extra
        yield None
        return
    bin_dir = binaries()
    if bin_dir is None:
        print("  (PostgreSQL skipped: no server binaries here)")
        yield None
        return
    server = PostgresServer(bin_dir, durable=True)
    try:
        server.start()
    except Exception as exc:
        print(f"  (PostgreSQL skipped: the server did not start: {exc})")
        server.stop()
        yield None
        return
    try:
        store = await Store.open(server.new_database())
        try:
            yield store
        finally:
            await store.close()
    finally:
        server.stop()


def ratio(value: float, target: float, *, lower_is_better: bool) -> str:
    r = value / target
    ok = r <= 1 if lower_is_better else r >= 1
    return f"{r:.2f}x target ({'ok' if ok else 'MISSED'})"


async def main(sizes: list[int], workers: int, real_agents: int, rounds: int) -> None:
    print(f"machine: {machine()}; {workers} simulated-agent worker processes")
    print(f"{rounds} stages per size; times min / median / max")
    with tempfile.TemporaryDirectory() as folder:
        store = await Store.open(f"sqlite+aiosqlite:///{folder}/bench.db", data_dir=Path(folder))
        try:
            for n in sizes:
                figures = await simulated(n, workers, store, rounds)
                print(
                    f"{n:5d} simulated agents: connected in {figures['connect_s']:.2f} s; "
                    f"a stage {spread(figures['stages'], 's')}; "
                    f"coordinator peak RSS {figures['rss_mb']:.0f} MB"
                )
                if n == 1000:
                    stage = statistics.median(figures["stages"])
                    print(f"  stage: {ratio(stage, TARGET_STAGE_S, lower_is_better=True)}")
                    print(
                        f"  RSS:   {ratio(figures['rss_mb'], TARGET_RSS_MB, lower_is_better=True)}"
                    )
            if real_agents:
                figures = await real(real_agents, store, rounds, Path(folder))
                agents = figures["agents_mb"]
                print(
                    f"{real_agents:5d} real agents (processes, running /bin/sh true): up and "
                    f"connected in {figures['connect_s']:.2f} s; a stage "
                    f"{spread(figures['stages'], 's')}; coordinator peak RSS "
                    f"{figures['rss_mb']:.0f} MB; each agent's peak RSS "
                    f"{spread(agents, 'MB', 1)} ({sum(agents):.0f} MB summed, shared pages "
                    f"counted once per agent; their PSS at the end: "
                    f"{figures['agents_pss_mb']:.0f} MB in all)"
                )
            rates = [await ingest_rate(store) for _ in range(3)]
            print(
                f"SQLite ingest: {spread(rates, 'results/s', 0)}; "
                f"median {ratio(statistics.median(rates), TARGET_INGEST, lower_is_better=False)}"
            )
        finally:
            await store.close()
    async with postgres_store() as pg:
        if pg is not None:
            rates = [await ingest_rate(pg) for _ in range(3)]
            print(f"PostgreSQL ingest (fsync on): {spread(rates, 'results/s', 0)}")
    print(f"machine after: {machine()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="100,500,1000", help="comma-separated sizes")
    parser.add_argument("--workers", type=int, default=2, help="simulated-agent worker processes")
    parser.add_argument("--real", type=int, default=32, help="real agent processes (0: none)")
    parser.add_argument("--rounds", type=int, default=5, help="stages per size")
    args = parser.parse_args()
    asyncio.run(
        main([int(s) for s in args.agents.split(",")], args.workers, args.real, args.rounds)
    )
