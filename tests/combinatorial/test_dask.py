"""The dask executor against a real `dask scheduler` and `dask worker`, started here."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from phalanx.combinatorial import DaskExecutor, ExecutorError, run_tests
from phalanx.combinatorial.executors import local_dask
from tests.combinatorial import actions as a
from tests.eventually import eventually

REPO = Path(__file__).resolve().parents[2]
DASK = Path(sys.executable).with_name("dask")
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"dask scheduler exited with {proc.returncode}")
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", port)) == 0

    eventually(listening, within=timeout, what=f"dask scheduler listening on {port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill the process's whole group (a worker's nanny has children)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextmanager
def dask_cluster(logs: Path) -> Iterator[str]:
    """A real `dask scheduler` and a `dask worker` (2 processes); yields dask://HOST:PORT."""
    if not DASK.exists():
        pytest.fail(f"{DASK} is missing: dask[distributed] is a dependency of phalanx")
    env = dict(os.environ)
    # The worker imports the test actions by name: give it the repository root.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sched = subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=(logs / "scheduler.log").open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        procs.append(sched)
        wait_for_port(port, sched, START_TIMEOUT)
        worker = subprocess.Popen(
            [
                str(DASK),
                "worker",
                f"tcp://127.0.0.1:{port}",
                "--host",
                "127.0.0.1",
                "--nworkers",
                "2",
                "--nthreads",
                "1",
                "--no-dashboard",
                "--local-directory",
                str(logs),
                "--death-timeout",
                "30",
            ],
            stdout=(logs / "worker.log").open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=logs,  # not the repo: imports must come through PYTHONPATH
            start_new_session=True,
        )
        procs.append(worker)
        yield f"dask://127.0.0.1:{port}"
    finally:
        for proc in reversed(procs):
            stop(proc)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with dask_cluster(tmp_path_factory.mktemp("dask")) as address:
        yield address


def test_walks_run_on_dask_workers(scheduler: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="phalanx.combinatorial")
    order = [a.Logs, a.Append10, a.SerialAppend2, a.Append3]
    results = run_tests(order, state={}, gather_states=True, executor=scheduler)

    assert results.executor == "dask"
    assert results.walk_count == 4 * 10 * 2 * 3
    assert results.error_count == 0
    assert sorted(s["inner"] for s in results.states) == [
        list(c) for c in itertools.product(range(4), range(10), range(2), range(3))
    ]
    hello = [r for r in caplog.records if r.getMessage().startswith("hello from pid")]
    assert len(hello) == results.walk_count
    assert os.getpid() not in {int(r.getMessage().split()[3]) for r in hello}


def test_dask_executor_object_is_reused_and_reports_failures(scheduler: str) -> None:
    with DaskExecutor("tcp://" + scheduler.removeprefix("dask://")) as ex:
        first = run_tests([a.Append3, a.AlwaysFails], state={}, executor=ex, verbose=0)
        second = run_tests([a.P0, a.P1, a.P2, a.P3], state={}, executor=ex, shrink=True, verbose=0)

    assert first.failed_tests == [0, 1, 2]
    assert [list(s.walk) for s in second.shrunk] == [[a.P1(3), a.P3(2)]]


def test_unreachable_scheduler_is_an_executor_error(tmp_path: Path) -> None:
    config = tmp_path / "phalanx.toml"
    config.write_text("[combinatorial]\ndask_timeout = 2\n")
    with pytest.raises(ExecutorError, match="cannot use dask cluster"):
        run_tests([a.Append3], executor=f"dask://127.0.0.1:{free_port()}", config_file=config)


def test_a_local_cluster_asked_for_no_dashboard_serves_none() -> None:
    # 8787 is the dashboard's port: held here (if no one holds it yet), a
    # cluster that still wanted it would warn and move to another one.
    with socket.socket() as held, warnings.catch_warnings(record=True) as caught:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError):
            held.bind(("127.0.0.1", 8787))
            held.listen()
        warnings.simplefilter("always")
        with local_dask(1) as ex:
            results = run_tests([a.Append3, a.Append10], state={}, executor=ex, verbose=0)
            port = ex.client.scheduler_info()["services"]["dashboard"]
            pages = []
            for page in ("/status", "/health", "/info/main/workers.html", "/metrics"):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{page}", timeout=10):
                        pages.append(page)
                except urllib.error.HTTPError as exc:
                    assert exc.code == 404
    assert results.walk_count == 30 and results.error_count == 0
    assert port != 8787
    assert pages == []
    assert not [w for w in caught if "already in use" in str(w.message)]
