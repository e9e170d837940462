"""Where tasks run: a process pool, a thread pool, or a Dask cluster.

An executor takes a task (JSON text for :func:`phalanx.combinatorial.worker.run_chunk`)
and returns a future of its result (JSON text). It queues nothing of its own:
the coordinator keeps a bounded number of tasks in flight, and the pool or Dask
scheduler does the rest.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import multiprocessing
import os
import threading
from abc import ABC, abstractmethod
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from types import TracebackType
from typing import Any, Self

from phalanx.combinatorial.worker import run_chunk
from phalanx.tasks.walks import executor_problem


class ExecutorError(RuntimeError):
    """The machinery failed (a worker died, a cluster is unreachable): not a test failure."""


class Executor(ABC):
    name: str = "executor"
    # Whether workers are other processes, whose log records must be shipped back.
    remote_logs: bool = True
    # How long a task should take: dispatch overhead per task is this executor's
    # fixed cost, so a task should be long enough to make it small.
    task_seconds: float = 0.02

    @property
    @abstractmethod
    def slots(self) -> int:
        """How many tasks can run at once."""

    @abstractmethod
    def submit(self, payload: str) -> Future[str]: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _start_method() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    # fork starts workers in milliseconds and lets them see classes defined in a
    # script's __main__; it is only safe while this process has no other threads.
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["phalanx.combinatorial.worker"])
        return ctx
    return multiprocessing.get_context("spawn")


class _PoolExecutor(Executor):
    """An executor backed by a concurrent.futures pool of `_workers` workers."""

    _workers: int
    _pool: concurrent.futures.Executor

    @property
    def slots(self) -> int:
        return self._workers

    def submit(self, payload: str) -> Future[str]:
        return self._pool.submit(run_chunk, payload)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class LocalExecutor(_PoolExecutor):
    """A process pool on this machine, one worker per core unless told otherwise."""

    name = "local"

    def __init__(self, max_workers: int | None = None) -> None:
        self._workers = max_workers or os.cpu_count() or 1
        self._pool = ProcessPoolExecutor(self._workers, mp_context=_start_method())


class ThreadExecutor(_PoolExecutor):
    """Threads in this process: for actions that mostly wait (network, subprocesses)."""

    name = "threads"
    remote_logs = False

    def __init__(self, max_workers: int | None = None) -> None:
        self._workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="phalanx-walks")


class DaskExecutor(Executor):
    """A Dask distributed cluster: an existing scheduler, or one this object started."""

    name = "dask"
    task_seconds = 0.1

    def __init__(
        self,
        address: str | None = None,
        *,
        client: Any = None,
        cluster: Any = None,
        timeout: float = 30.0,
    ) -> None:
        try:
            from distributed import Client
        except ImportError as exc:  # pragma: no cover - a dependency of phalanx
            raise ExecutorError(f"the dask executor needs dask[distributed]: {exc}") from exc
        self._cluster = cluster
        self._owns_client = client is None
        try:
            if client is None:
                target = cluster if cluster is not None else address
                client = Client(target, timeout=timeout, set_as_default=False)  # type: ignore[no-untyped-call]
            client.wait_for_workers(1, timeout=timeout)
        except Exception as exc:
            if cluster is not None:
                cluster.close()
            raise ExecutorError(f"cannot use dask cluster {address or cluster}: {exc}") from exc
        self._client = client
        self._inflight: set[Any] = set()
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        return self._client

    @property
    def slots(self) -> int:
        workers = self._client.scheduler_info().get("workers", {})
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))

    def submit(self, payload: str) -> Future[str]:
        out: Future[str] = Future()
        dask_future = self._client.submit(run_chunk, payload, pure=False)
        with self._lock:
            # Dask cancels a task whose future is garbage collected: hold it until done.
            self._inflight.add(dask_future)

        def done(f: Any) -> None:
            with self._lock:
                self._inflight.discard(f)
            try:
                out.set_result(f.result())
            except BaseException as exc:
                out.set_exception(exc)

        dask_future.add_done_callback(done)
        return out

    def close(self) -> None:
        with self._lock:
            pending = list(self._inflight)
            self._inflight.clear()
        if pending:
            self._client.cancel(pending)
        if self._owns_client:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()


# A Dask scheduler serves HTTP whatever its `dashboard` says (its routes:
# the dashboard if Bokeh is there, health, metrics, JSON, info pages), on
# port 8787 unless given an address: `dashboard_address=None` means 8787,
# and the next cluster's warns "Port 8787 is already in use" and takes
# another. Asked for no dashboard, it gets a port of its own on loopback.
NO_DASHBOARD: dict[str, Any] = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}


def local_dask(max_workers: int | None = None, timeout: float = 30.0) -> DaskExecutor:
    """A Dask cluster of worker processes on this machine (to try the dask path):
    no dashboard, and no HTTP route at all on the scheduler (nobody here
    reads its pages or metrics)."""
    import dask.config
    from distributed import LocalCluster

    workers = max_workers or os.cpu_count() or 1
    # The scheduler starts in the constructor, in this process: the routes
    # are read then.
    with dask.config.set(
        {
            "distributed.scheduler.http.routes": [],
            # The workers' statistical profiler takes the GIL every 10 ms to
            # walk the stacks of every thread, time taken from the walks'
            # thread; nobody reads the profiles here.
            "distributed.worker.profile.enabled": False,
        }
    ):
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs=NO_DASHBOARD,
        )
    return DaskExecutor(cluster=cluster, timeout=timeout)


def ssh_target(spec: str) -> tuple[str, dict[str, Any]]:
    """``[user@]host[:port]`` -> (host, asyncssh connect options)."""
    user, _, rest = spec.rpartition("@")
    host, colon, port = rest.partition(":")
    if not host or (colon and not port.isdigit()):
        raise ValueError(f"{spec!r}: expected [user@]host[:port]")
    options: dict[str, Any] = {}
    if user:
        options["username"] = user
    if colon:
        options["port"] = int(port)
    return host, options


def ssh_dask(hosts: list[str], timeout: float = 30.0) -> DaskExecutor:
    """A Dask SSH cluster: the scheduler on the first host, a worker on every host.

    Hosts are ``[user@]host[:port]``; keys, known hosts and the rest come from
    the user's ~/.ssh, as for ssh itself.
    """
    # SSHCluster needs asyncssh only once it connects; say so before trying.
    if importlib.util.find_spec("asyncssh") is None:
        raise ExecutorError(
            "the dask-ssh executor needs asyncssh on this machine: pip install asyncssh"
        )
    from distributed.deploy.ssh import SSHCluster

    targets = [ssh_target(h) for h in hosts]
    addresses = [targets[0][0], *(host for host, _ in targets)]
    options = [targets[0][1], *(opts for _, opts in targets)]
    try:
        cluster = SSHCluster(
            addresses,
            connect_options=options,
            scheduler_options=NO_DASHBOARD,
            worker_options={"death_timeout": timeout},
        )
    except Exception as exc:
        raise ExecutorError(
            f"cannot start a dask SSH cluster on {', '.join(hosts)}: {exc}"
        ) from exc
    return DaskExecutor(cluster=cluster, timeout=timeout)


def make_executor(
    spec: str, max_workers: int | None = None, dask_timeout: float = 30.0
) -> Executor:
    """An executor from its spec: local, threads, dask://HOST:PORT, dask-ssh://H1,H2, dask-local."""
    if spec == "local":
        return LocalExecutor(max_workers)
    if spec == "threads":
        return ThreadExecutor(max_workers)
    if spec == "dask-local":
        return local_dask(max_workers, dask_timeout)
    if spec.startswith("dask://"):
        return DaskExecutor("tcp://" + spec.removeprefix("dask://"), timeout=dask_timeout)
    if spec.startswith(("tcp://", "tls://")):
        return DaskExecutor(spec, timeout=dask_timeout)
    if spec.startswith("dask-ssh://"):
        hosts = [h.strip() for h in spec.removeprefix("dask-ssh://").split(",") if h.strip()]
        if not hosts:
            raise ValueError(executor_problem(spec))
        return ssh_dask(hosts, dask_timeout)
    # The spellings are checked where a suite is loaded too: one list of them.
    raise ValueError(executor_problem(spec) or f"unknown executor {spec!r}")
