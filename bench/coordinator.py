"""One coordinator, many agents: what a service-sized fleet costs.

N simulated agents (100, 500, 1,000 by default) connect to one coordinator
(`open_coordinator`: the real hub and WebSocket endpoint) over real
WebSockets, many per process from a few worker processes. A simulated
agent speaks the wire protocol and nothing more: hello, a pong for every
ping, and an immediate stage.result for every stage.start. Then one
lockstep stage runs on all N hosts at once (a RunFleet over every host,
each host's result written to a SQLite store before its ack, as `phalanx
serve` does), and the coordinator's RSS is read. Last, the rate at which
the store ingests stage results (many writers at once, as many agents
report at once) on SQLite, and on PostgreSQL when a server can be started
here (as tests/store/postgres.py does).

Targets: 1,000 agents on one process with RSS <= 500 MB; one stage across
1,000 agents <= 2 s; >= 5,000 results/s on SQLite. Anchors: openQA runs
~1k worker slots per instance; LAVA and openQA barriers poll every 1-5 s.

    .venv/bin/python bench/coordinator.py [--agents 100,500,1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from phalanx.coordinator.fleet import RunFleet
from phalanx.coordinator.runs import Coordinator, open_coordinator
from phalanx.engine.session import StageOrder, StageScope
from phalanx.model import HostResult, Status
from phalanx.store.runs import HostStageRecord
from phalanx.store.store import Store
from phalanx.tasks.shell import ShellTask
from phalanx.wire.messages import PROTOCOL_VERSION, StageResult

TARGET_RSS_MB = 500.0  # at 1,000 agents
TARGET_STAGE_S = 2.0  # one stage across 1,000 agents
TARGET_INGEST = 5000.0  # results/s on SQLite
INGEST_RESULTS = 20_000


# --- the simulated agents (worker processes) ------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat()


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
                now = _now()
                result = StageResult(
                    stage_id=message["stage_id"],
                    outcome={"exit_code": 0},  # type: ignore[arg-type]
                    started_at=now,  # type: ignore[arg-type]
                    ended_at=now,  # type: ignore[arg-type]
                )
                await ws.send(result.model_dump_json())
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


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _wait_connected(coordinator: Coordinator, hosts: list[str], within: float) -> float:
    started = time.perf_counter()
    missing = await coordinator.hub.wait_connected(hosts, within)
    if missing:
        raise RuntimeError(f"{len(missing)} of {len(hosts)} agents did not connect")
    return time.perf_counter() - started


async def one_size(n: int, workers: int, store: Store) -> dict[str, float]:
    hosts = [f"h{i:05d}.bench" for i in range(n)]
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
            run_id = f"bench-{n}"
            await store.runs.create(run_id, "bench", trigger="bench", hosts=hosts)

            # The service keeps each host's result before the agent's ack: the
            # engine's record of it, here one of a passed host (no engine).
            async def durable(stage_id: str, host: str) -> None:
                now = datetime.now(UTC)
                result = HostResult(
                    host=host, status=Status.PASSED, exit_code=0, started_at=now, ended_at=now
                )
                await store.runs.record_stage_result(
                    HostStageRecord(
                        run_id=run_id, stage_id=stage_id, case="c", stage="run", result=result
                    )
                )

            times = []
            with RunFleet(coordinator.hub, run_id, hosts, durable=durable) as fleet:
                for round_ in range(3):
                    stage_id = f"{run_id}:{round_}:c:run"
                    started = time.perf_counter()
                    fleet.begin_stage(StageScope(stage_id, frozenset(hosts), f"{round_}:c"))
                    reports = await asyncio.gather(
                        *(
                            fleet.session(h).run_stage(
                                StageOrder(
                                    stage_id, h, ShellTask(script="true"), {}, 60, scope=stage_id
                                ),
                                lambda _: None,
                            )
                            for h in hosts
                        )
                    )
                    fleet.end_stage(stage_id)
                    fleet.end_scope(f"{round_}:c")
                    times.append(time.perf_counter() - started)
                    bad = [r for r in reports if r.outcome.exit_code != 0]
                    if bad:
                        raise RuntimeError(f"{len(bad)} hosts failed: {bad[0].outcome}")
            rss = rss_mb()
            coordinator.hub.shutdown(hosts)
        finally:
            for proc in procs:
                proc.join(10)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(5)
    return {"connect_s": connect_s, "stage_s": min(times), "stage_first_s": times[0], "rss_mb": rss}


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
    """A store on a throw-away PostgreSQL server, or None when none can start."""
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
    server = PostgresServer(bin_dir)
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


async def main(sizes: list[int], workers: int) -> None:
    print(f"{os.cpu_count()} cores, {workers} agent worker processes")
    with tempfile.TemporaryDirectory() as folder:
        store = await Store.open(f"sqlite+aiosqlite:///{folder}/bench.db", data_dir=Path(folder))
        try:
            for n in sizes:
                figures = await one_size(n, workers, store)
                print(
                    f"{n:5d} agents: connected in {figures['connect_s']:.2f} s; one stage "
                    f"{figures['stage_s']:.3f} s (first {figures['stage_first_s']:.3f} s); "
                    f"coordinator RSS {figures['rss_mb']:.0f} MB"
                )
                if n == 1000:
                    print(
                        f"  stage: {ratio(figures['stage_s'], TARGET_STAGE_S, lower_is_better=True)}"
                    )
                    print(
                        f"  RSS:   {ratio(figures['rss_mb'], TARGET_RSS_MB, lower_is_better=True)}"
                    )
            rate = await ingest_rate(store)
            print(
                f"SQLite ingest: {rate:,.0f} results/s; {ratio(rate, TARGET_INGEST, lower_is_better=False)}"
            )
        finally:
            await store.close()
    async with postgres_store() as pg:
        if pg is not None:
            rate = await ingest_rate(pg)
            print(f"PostgreSQL ingest: {rate:,.0f} results/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="100,500,1000", help="comma-separated sizes")
    parser.add_argument("--workers", type=int, default=2, help="agent worker processes")
    args = parser.parse_args()
    asyncio.run(main([int(s) for s in args.agents.split(",")], args.workers))
