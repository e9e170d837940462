"""`phalanx serve` under load: GETs from 50 concurrent clients over the
API's and the web's eight busiest routes, against a store with a history
(runs of several suites, each with cases, stages and hosts, written by the
store's own writer), then the dashboard alone at the same concurrency.

Targets (issue 22, on this 2-core machine): p99 <= 250 ms over the mix,
dashboard p50 <= 100 ms. The client shares the machine with the service:
its CPU counts too, as it does for a browser on the same host.

    .venv/bin/python bench/api.py [--runs 1000] [--requests 2000] [--rounds 3]
                                  [--anchor ../main/.venv/bin/python]

`--anchor PYTHON` serves the same data folder with another phalanx (another
checkout's venv) in the same run, for a before/after as ratios; with
`--rounds`, the two take turns, each round a service started afresh, and
the figures are the medians of the rounds (with their min and max).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httptools
import httpx

from phalanx.model import CaseResult, HostResult, RunResult, StageResult, Status
from phalanx.store.db import default_url
from phalanx.store.store import Store

TARGET_P99_MS = 250.0
TARGET_DASHBOARD_P50_MS = 100.0
CONCURRENCY = 50
SUITES = [f"suite{n}" for n in range(8)]
HOSTS = ["srv1.lab.test", "srv2.lab.test", "cli1.lab.test"]
CASES = 12
PASSWORD = "bench-password-1"
CLUSTER = "name: lab\nprovider: local\nhosts:\n" + "".join(f"  - {{name: {h}}}\n" for h in HOSTS)


def make_repo(root: Path) -> Path:
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "lab.yaml").write_text(CLUSTER)
    for suite in SUITES:
        folder = root / "test-suites" / suite
        for case in range(CASES):
            (folder / "tc" / f"case{case}").mkdir(parents=True)
            (folder / "tc" / f"case{case}" / "run.sh").write_text("true\n")
        cases = ", ".join(f"case{c}" for c in range(CASES))
        (folder / "suite.yaml").write_text(f"cluster: lab\ntests: [{cases}]\ntimeout: 60\n")
    return root


def a_run(number: int, when: datetime) -> RunResult:
    """One finished run: suite stages, CASES cases of three stages, on each
    host; one run in seven fails a case."""
    suite = SUITES[number % len(SUITES)]

    def stage(name: str, start: datetime, failed: bool = False) -> StageResult:
        status = Status.FAILED if failed else Status.PASSED
        hosts = [
            HostResult(
                host=h, status=status if h == HOSTS[0] else Status.PASSED, exit_code=0,
                started_at=start, ended_at=start + timedelta(seconds=1),
                output=f"cases/x/{name}/{h}.log",
            )
            for h in HOSTS
        ]  # fmt: skip
        return StageResult(
            name=name, status=status, hosts=hosts, started_at=start,
            ended_at=start + timedelta(seconds=1),
        )  # fmt: skip

    failing = number % 7 == 3
    cases = []
    for c in range(CASES):
        start = when + timedelta(seconds=3 * c + 1)
        bad = failing and c == CASES // 2
        cases.append(
            CaseResult(
                name=f"case{c}", status=Status.FAILED if bad else Status.PASSED,
                reason="run: srv1.lab.test exited 1" if bad else None,
                started_at=start, ended_at=start + timedelta(seconds=3),
                stages=[stage(s, start + timedelta(seconds=i), bad and s == "run")
                        for i, s in enumerate(("initialize", "run", "finalize"))],
            )
        )  # fmt: skip
    end = when + timedelta(seconds=3 * CASES + 2)
    return RunResult(
        run_id=f"{when:%Y%m%d-%H%M%S}-{number:06x}", suite=suite,
        status=Status.FAILED if failing else Status.PASSED,
        reason="1 case failed" if failing else None, cluster="lab", hosts=list(HOSTS),
        started_at=when, ended_at=end,
        stages=[stage("initialize", when), stage("finalize", end - timedelta(seconds=1))],
        cases=cases,
    )  # fmt: skip


async def fill(data: Path, runs: int) -> list[str]:
    """`runs` finished runs, the newest last, through the store's writer."""
    start = datetime.now(UTC) - timedelta(minutes=runs)
    ids = []
    async with await Store.open(default_url(data), data_dir=data) as store:
        for n in range(runs):
            result = a_run(n, start + timedelta(minutes=n))
            # As the queue makes it: created with its definition's snapshot,
            # then its result recorded.
            definition = {"name": result.suite, "cluster": "lab", "provider": "local",
                          "hosts": HOSTS, "cases": [c.name for c in result.cases], "timeout": 60}  # fmt: skip
            await store.runs.create(
                result.run_id, result.suite, trigger="schedule", cluster="lab", hosts=HOSTS,
                definition=definition, queued_at=result.started_at,
            )  # fmt: skip
            await store.runs.record_run_result(result)
            ids.append(result.run_id)
    return ids


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def admin(python: str, data: Path, *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [python, "-m", "phalanx.cli", *args, "--data", str(data)],
        input=stdin, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def serve(python: str, data: Path, repo: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    with (data / "serve.log").open("ab") as log:  # shown if a request fails
        proc = subprocess.Popen(
            [python, "-m", "phalanx.cli", "serve", "--listen", f"127.0.0.1:{port}",
             "--data", str(data), "--repo", str(repo)],
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit("the service did not answer within 120 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


# A request sent again when the connection broke under it (the server closed
# a kept-alive connection as the request went out); counted and printed.
RETRIES = 2
retried = 0


class _Answer:
    """One response as httptools parses it."""

    def __init__(self) -> None:
        self.body = bytearray()
        self.complete = False

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


class _Connection:
    """One kept-alive HTTP/1.1 connection, as a browser holds: a request
    written whole, the response read by httptools (a C parser: the clients'
    own CPU a tenth of httpx's, so that what is measured is the service)."""

    def __init__(self, url: str, token: str) -> None:
        where = urlsplit(url)
        self.host, self.port = where.hostname or "127.0.0.1", where.port or 80
        self.head = f"Host: {where.netloc}\r\nAuthorization: Bearer {token}\r\n\r\n"
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        writer.write(f"GET {path} HTTP/1.1\r\n{self.head}".encode())
        answer = _Answer()
        parser = httptools.HttpResponseParser(answer)
        try:
            while not answer.complete:
                data = await asyncio.wait_for(reader.read(256 * 1024), 120)
                if not data:
                    raise ConnectionError("the service closed the connection")
                parser.feed_data(data)
        except (OSError, httptools.HttpParserError):
            self.close()
            raise
        return parser.get_status_code(), bytes(answer.body)

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def load(url: str, token: str, paths: list[str], total: int) -> dict[str, list[float]]:
    """`total` GETs over `paths` in turn from CONCURRENCY clients, each on
    its own kept-alive connection; the seconds each took (from its first
    try), by path."""
    times: dict[str, list[float]] = {p: [] for p in paths}
    todo = iter(range(total))

    async def worker() -> None:
        global retried
        connection = _Connection(url, token)
        try:
            for n in todo:
                path = paths[n % len(paths)]
                started = time.perf_counter()
                for attempt in range(RETRIES + 1):
                    try:
                        status, body = await connection.get(path)
                        break
                    except (OSError, httptools.HttpParserError):
                        if attempt == RETRIES:
                            raise
                        retried += 1
                times[path].append(time.perf_counter() - started)
                if status != 200:
                    raise SystemExit(f"GET {path}: {status} {body[:200]!r}")
        finally:
            connection.close()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return times


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else values[0]


def spread(values: list[float]) -> str:
    """min, median, p99, max and the mean: fifty clients in a closed loop
    keep the mean at fifty times what one request costs the service (Little's
    law), so a lower median with the same mean is only a less even queue."""
    ms = [v * 1000 for v in values]
    return (f"min {min(ms):7.1f}  median {statistics.median(ms):7.1f}  p99 {p99(ms):7.1f}"
            f"  max {max(ms):7.1f}  mean {statistics.fmean(ms):7.1f}")  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User and system CPU of process `pid` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    python: str, data: Path, repo: Path, ids: list[str], requests: int
) -> tuple[dict[str, list[float]], float, int]:
    """The seconds each request took, by path, the service's CPU seconds
    per request over the mix and the dashboard, and the requests sent again."""
    token = admin(python, data, "user", "token", "bench")
    proc, url = serve(python, data, repo)
    try:
        newest, failed = ids[-1], ids[-5]
        paths = [
            "/api/runs", f"/api/runs/{newest}", "/api/suites", "/api/agents",
            "/", "/suites", f"/suites/{SUITES[0]}", f"/runs/{failed}",
        ]  # fmt: skip
        # Once unmeasured: the service's first answers (its caches, imports).
        asyncio.run(load(url, token, paths, len(paths)))
        before, retried_before = cpu_seconds(proc.pid), retried
        client_before = time.process_time()
        mix = asyncio.run(load(url, token, paths, requests))
        dashboards = max(requests // 4, CONCURRENCY)
        dashboard = asyncio.run(load(url, token, ["/"], dashboards))
        cpu = (cpu_seconds(proc.pid) - before) / (requests + dashboards)
        client = (time.process_time() - client_before) / (requests + dashboards)
    except (OSError, httptools.HttpParserError, SystemExit):
        print(f"{python}: the service's log ends:", file=sys.stderr)
        print(*(data / "serve.log").read_text().splitlines()[-30:], sep="\n", file=sys.stderr)
        raise
    finally:
        stop(proc)
    print(f"{python}: the clients' CPU {client * 1000:.2f} ms a request")
    return mix | {"dashboard alone": dashboard["/"]}, cpu, retried - retried_before


def mix_of(times: dict[str, list[float]]) -> list[float]:
    return [t for path, ts in times.items() if path != "dashboard alone" for t in ts]


def three(values: list[float], unit: float = 1000.0) -> str:
    """min / median / max of `values`, in ms."""
    ms = [v * unit for v in values]
    return f"{min(ms):.1f} / {statistics.median(ms):.1f} / {max(ms):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs in the store's history")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--anchor", metavar="PYTHON", help="another phalanx, side by side")
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="rounds, this and the anchor in turn; each a service started afresh",
    )  # fmt: skip
    parser.add_argument(
        "--keep", metavar="DIR", type=Path,
        help="make the history in DIR once and serve it from there in later runs",
    )  # fmt: skip
    args = parser.parse_args()
    pythons = {"this": sys.executable} | ({"anchor": args.anchor} if args.anchor else {})
    found: dict[str, dict[str, list[float]]] = {name: {} for name in pythons}
    tails: dict[str, list[float]] = {name: [] for name in pythons}  # each round's mix p99
    dashes: dict[str, list[float]] = {name: [] for name in pythons}  # each round's dashboard p50
    cpu: dict[str, list[float]] = {name: [] for name in pythons}
    again = dict.fromkeys(pythons, 0)
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="phalanx-bench-") as tmp:
        where = args.keep or Path(tmp)
        data, repo, made = where / "data", where / "defs", where / "ids"
        if not made.exists():
            make_repo(repo)
            started = time.perf_counter()
            ids = asyncio.run(fill(data, args.runs))
            rows = args.runs * (2 + CASES * 3) * len(HOSTS)
            print(f"history: {args.runs} runs of {len(SUITES)} suites, {rows} host results"
                  f" (written in {time.perf_counter() - started:.1f} s)")  # fmt: skip
            admin(sys.executable, data, "user", "add", "bench", "--role", "viewer",
                  stdin=PASSWORD + "\n")  # fmt: skip
            made.write_text("\n".join(ids))
        ids = made.read_text().split()
        print(f"history: {len(ids)} runs in {data}")
        for round_ in range(args.rounds):
            for name, python in pythons.items():
                loads.append(os.getloadavg()[0])
                times, per_request, count = measure(python, data, repo, ids, args.requests)
                for path, ts in times.items():
                    found[name].setdefault(path, []).extend(ts)
                tails[name].append(p99(mix_of(times)))
                dashes[name].append(statistics.median(times["dashboard alone"]))
                cpu[name].append(per_request)
                again[name] += count
                print(f"round {round_ + 1} {name}: mix p99 {tails[name][-1] * 1000:.0f} ms,"
                      f" dashboard p50 {dashes[name][-1] * 1000:.1f} ms,"
                      f" CPU {per_request * 1000:.2f} ms a request, load {loads[-1]:.1f}")  # fmt: skip
    loads.append(os.getloadavg()[0])
    print(f"{os.cpu_count()} CPUs, load average {min(loads):.1f}-{max(loads):.1f};"
          f" {CONCURRENCY} concurrent clients, {args.rounds} round(s), ms")  # fmt: skip
    for name, times in found.items():
        print(f"== {name}: the service's CPU a request (min / median / max)"
              f" {three(cpu[name])} ms, {again[name]} requests sent again on a broken"
              f" connection; per round: mix p99 {three(tails[name])},"
              f" dashboard p50 {three(dashes[name])}")  # fmt: skip
        print(f"  {'all of the mix':<38} {spread(mix_of(times))}")
        for path, ts in times.items():
            print(f"  {path[:38]:<38} {spread(ts)}")
    tail = statistics.median(tails["this"]) * 1000
    dash = statistics.median(dashes["this"]) * 1000
    if "anchor" in found:
        print(f"this/anchor (medians of the rounds): mix p99"
              f" {tail / (statistics.median(tails['anchor']) * 1000):.2f},"
              f" dashboard p50 {dash / (statistics.median(dashes['anchor']) * 1000):.2f},"
              f" CPU a request {statistics.median(cpu['this']) / statistics.median(cpu['anchor']):.2f}")  # fmt: skip
    print(f"target mix p99 <= {TARGET_P99_MS:.0f} ms: {'met' if tail <= TARGET_P99_MS else 'NOT met'}"
          f" ({tail:.0f} ms); dashboard p50 <= {TARGET_DASHBOARD_P50_MS:.0f} ms:"
          f" {'met' if dash <= TARGET_DASHBOARD_P50_MS else 'NOT met'} ({dash:.0f} ms)"
          f" (medians of the rounds)")  # fmt: skip


if __name__ == "__main__":
    main()
