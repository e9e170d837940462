"""Walk throughput: phalanx.combinatorial against a bare process pool.

Two workloads, in one run:

- flat: 100,000 walks of 5 actions x 10 options, no serial action;
- serial: 1,500 walks of [A(5), A(10), S(5), A(3), S(2)], two serial actions
  making 10 branches (py-combtest's multistage test).

Each runs on phalanx's ``local`` executor (a fresh pool per run, as a user's
``run_tests`` call does, and a pool kept across runs), and, as the floor, on a
bare ``ProcessPoolExecutor`` already started. The flat floor is given the
walks as phalanx's workers are, by id range (8,192 walks a task, the most
phalanx puts in one), and each of its workers turns an id into the walk's
options and runs the same action objects: no walk is pickled, no trace,
state or log is kept. The serial floor sends each walk's options and state
(pickled) through the same depth-first barriers.

Dask, flat walks: one Dask worker against one local pool process (target:
within 1.5x), then a cluster of one worker per core and one of more workers
than cores (said so: they share the cores), with walks/s per core in use.

Targets on a 2-core machine: flat >= 100,000 walks/s and >= 1/3 of the bare
pool; serial <= 0.3 s; one Dask worker >= 1/1.5 of one local process.
py-combtest is not measured here: it cannot be installed on this machine (no
release on the package index it reaches; it does not run on Python 3.10 or
later, docs/compat.md). Its figures below are quoted, unverified: about
11,700 walks/s flat and about 15 s for the serial workload, as this bench
has stated them since it was written (commit 6c1dc81), with no measurement
of them in this repository.

Every figure is the min / median / max of --repeat runs; the machine (cores,
load) is printed before and after.

    .venv/bin/python bench/walks.py [--repeat 5] [--no-dask]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
# Dask workers are other processes and import the actions by name (bench.walks).
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p
)

from bench.machine import cores, machine, spread  # noqa: E402

from phalanx.combinatorial import (  # noqa: E402
    Action,
    Executor,
    LocalExecutor,
    SerialAction,
    run_tests,
)
from phalanx.combinatorial.generate import CEILING  # noqa: E402

TARGET_FLAT_RATE = 100_000.0
TARGET_FLAT_SHARE = 1 / 3
TARGET_SERIAL_S = 0.3
TARGET_DASK_RATIO = 1.5  # one Dask worker's time over one local process's
PYCOMBTEST_FLAT_RATE = 11_700.0  # quoted, unverified (see the docstring)
PYCOMBTEST_SERIAL_S = 15.0  # quoted, unverified


# -- the actions (the same functions for phalanx and for the bare pool) ---------


class Step(Action):
    OPTIONS = range(10)

    def run(self, param: Any, state: Any) -> None:
        if state is not None:
            state["sum"] = state.get("sum", 0) + param


class F1(Step):
    pass


class F2(Step):
    pass


class F3(Step):
    pass


class F4(Step):
    pass


class F5(Step):
    pass


class A5(Step):
    OPTIONS = range(5)


class A10(Step):
    OPTIONS = range(10)


class A3(Step):
    OPTIONS = range(3)


class Toggle(SerialAction):
    def run(self, param: Any, state: Any) -> dict[str, Any]:
        return {"toggle": param}


class S5(Toggle):
    OPTIONS = range(5)


class S2(Toggle):
    OPTIONS = range(2)


def actions() -> tuple[list[type[Action]], list[type[Action]]]:
    """The classes as module bench.walks names them (not __main__), for dask workers."""
    import bench.walks as named

    flat: list[type[Action]] = [named.F1, named.F2, named.F3, named.F4, named.F5]
    serial: list[type[Action]] = [named.A5, named.A10, named.S5, named.A3, named.S2]
    return flat, serial


# -- the floor: a bare process pool ------------------------------------------------

# One instance per (action, option), built once per process, as phalanx does.
FLAT_INSTANCES = [[cls(p) for p in range(10)] for cls in (F1, F2, F3, F4, F5)]
SEGMENT_INSTANCES: dict[int, list[list[Action]]] = {
    0: [[A5(p) for p in range(5)], [A10(p) for p in range(10)]],
    1: [[A3(p) for p in range(3)]],
    2: [],
}


FLAT_WALKS = 10**5
# Walk id -> each action's option, in mixed radix, as a phalanx worker turns one.
FLAT_WEIGHTS = [10 ** (4 - i) for i in range(5)]


def bare_flat_range(span: tuple[int, int]) -> int:
    """The walks lo..hi, each made from its id here: what a phalanx worker
    does with a chunk, without its bookkeeping."""
    lo, hi = span
    steps = [
        (options, weight, len(options))
        for options, weight in zip(FLAT_INSTANCES, FLAT_WEIGHTS, strict=True)
    ]
    for walk_id in range(lo, hi):
        for options, weight, size in steps:
            action = options[(walk_id // weight) % size]
            action.run(action.param, None)
    return hi - lo


def bare_segment(
    item: tuple[int, tuple[int, ...], dict[str, Any], dict[str, Any] | None],
) -> dict[str, Any]:
    k, params, state, update = item
    if update:
        state.update(update)
    for options, param in zip(SEGMENT_INSTANCES[k], params, strict=True):
        action = options[param]
        action.run(action.param, state)
    return state


def bare_flat(pool: ProcessPoolExecutor, workers: int) -> int:
    spans = [(lo, min(lo + CEILING, FLAT_WALKS)) for lo in range(0, FLAT_WALKS, CEILING)]
    return sum(pool.map(bare_flat_range, spans))


def bare_serial(pool: ProcessPoolExecutor, workers: int) -> int:
    """The same depth-first barriers: segment 0 for all, then per serial option its
    branch's next segment; states travel by pickle."""
    walks = list(itertools.product(range(5), range(10), range(5), range(3), range(2)))

    def segment(k: int, ids: list[int], states: dict[int, dict[str, Any]], update: Any) -> None:
        params = {0: (0, 1), 1: (3,), 2: ()}[k]
        items = [(k, tuple(walks[i][p] for p in params), states[i], update) for i in ids]
        chunk = max(1, len(items) // (workers * 4))
        for i, state in zip(ids, pool.map(bare_segment, items, chunksize=chunk), strict=True):
            states[i] = state

    states: dict[int, dict[str, Any]] = {i: {} for i in range(len(walks))}
    segment(0, list(states), states, None)
    for s1 in range(5):
        branch = [i for i, w in enumerate(walks) if w[2] == s1]
        segment(1, branch, states, S5(s1).run(s1, {}))
        for s2 in range(2):
            segment(2, [i for i in branch if walks[i][4] == s2], states, S2(s2).run(s2, {}))
    return len(states)


# -- measuring ------------------------------------------------------------------------


Times = list[float]


def timed(repeat: int, fn: Callable[[], int]) -> tuple[Times, int]:
    """Each run's seconds, and the walks of the last."""
    times, count = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        count = fn()
        times.append(time.perf_counter() - t0)
    return times, count


def phalanx_run(
    order: list[type[Action]], executor: str | Executor, state: Any
) -> Callable[[], int]:
    def go() -> int:
        results = run_tests(order, state=state, executor=executor, verbose=0)
        assert results.error_count == 0, results.failures[:3]
        return results.walk_count

    return go


def rates(times: Times, count: int) -> str:
    """walks/s, min / median / max."""
    return spread([count / t for t in times], digits=0)


def dask_rows(flat: list[type[Action]], repeat: int, cpus: int) -> dict[str, tuple[Times, int]]:
    """Flat walks on one local process and on Dask clusters of 1, `cpus` and
    2 x `cpus` workers (each started once, its start not counted)."""
    from phalanx.combinatorial.executors import local_dask

    rows: dict[str, tuple[Times, int]] = {}
    with LocalExecutor(1) as one:
        phalanx_run(flat, one, None)()  # started
        rows["local, 1 process"] = timed(repeat, phalanx_run(flat, one, None))
    for workers in sorted({1, cpus, 2 * cpus}):
        t0 = time.perf_counter()
        with local_dask(workers) as ex:
            started = time.perf_counter() - t0
            phalanx_run(flat, ex, None)()  # the workers import the actions
            label = f"dask, {workers} worker{'s' if workers > 1 else ''}"
            if workers > cpus:
                label += f" (> {cpus} cores)"
            rows[label] = timed(repeat, phalanx_run(flat, ex, None))
        print(f"(dask cluster of {workers} started in {started:.2f}s, not counted)")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-dask", action="store_true")
    args = parser.parse_args()
    workers = cores()
    flat, serial = actions()
    print(machine() + " (before)")
    print(f"{args.repeat} runs each; walks/s and seconds as min / median / max\n")

    rows: dict[str, dict[str, tuple[Times, int]]] = {"flat": {}, "serial": {}}
    rows["flat"]["local (fresh pool)"] = timed(args.repeat, phalanx_run(flat, "local", None))
    rows["serial"]["local (fresh pool)"] = timed(args.repeat, phalanx_run(serial, "local", {}))
    with LocalExecutor() as ex:
        rows["flat"]["local (kept pool)"] = timed(args.repeat, phalanx_run(flat, ex, None))
        rows["serial"]["local (kept pool)"] = timed(args.repeat, phalanx_run(serial, ex, {}))
    with ProcessPoolExecutor(workers) as pool:
        pool.submit(int).result()  # started: the floor pays no start-up
        rows["flat"]["bare pool, id ranges"] = timed(args.repeat, lambda: bare_flat(pool, workers))
        rows["serial"]["bare pool, pickled"] = timed(
            args.repeat, lambda: bare_serial(pool, workers)
        )
    dask = None if args.no_dask else dask_rows(flat, args.repeat, workers)
    print(machine() + " (after)\n")

    ok = True
    for name, table in rows.items():
        floor_label = next(label for label in table if label.startswith("bare"))
        floor_s = statistics.median(table[floor_label][0])
        print(f"{name} ({workers} workers; ratio: the floor's median time over this one's):")
        for label, (times, count) in table.items():
            mid = statistics.median(times)
            print(
                f"  {label:28} {count:>7,} walks {spread(times, digits=3):>21} s "
                f"{rates(times, count):>26} walks/s  {floor_s / mid:5.2f}x the floor"
            )
        local_times, count = table["local (fresh pool)"]
        local_s = statistics.median(local_times)
        if name == "flat":
            rate = count / local_s
            share = floor_s / local_s
            good = rate >= TARGET_FLAT_RATE and share >= TARGET_FLAT_SHARE
            print(
                f"  target: >= {TARGET_FLAT_RATE:,.0f} walks/s and >= {TARGET_FLAT_SHARE:.2f}x "
                f"the floor: {'met' if good else 'MISSED'}; {rate / PYCOMBTEST_FLAT_RATE:.0f}x "
                f"py-combtest's {PYCOMBTEST_FLAT_RATE:,.0f} walks/s (quoted, not measured)"
            )
        else:
            good = local_s <= TARGET_SERIAL_S
            print(
                f"  target: <= {TARGET_SERIAL_S}s: {'met' if good else 'MISSED'} ({local_s:.3f}s); "
                f"{PYCOMBTEST_SERIAL_S / local_s:.0f}x faster than py-combtest's "
                f"{PYCOMBTEST_SERIAL_S:.0f}s (quoted, not measured)"
            )
        ok = ok and good
        print()
    if dask is not None:
        print("flat walks on Dask (local clusters, one thread a worker) beside local processes:")
        one_s = statistics.median(dask["local, 1 process"][0])
        for label, (times, count) in dask.items():
            mid = statistics.median(times)
            used = min(workers, int(label.split(", ")[1].split()[0]))
            print(
                f"  {label:28} {spread(times, digits=3):>21} s {rates(times, count):>26} walks/s  "
                f"{count / mid / used:>9,.0f} walks/s per core in use  "
                f"{mid / one_s:5.2f}x one local process's time"
            )
        dask_s = statistics.median(dask["dask, 1 worker"][0])
        good = dask_s <= TARGET_DASK_RATIO * one_s
        print(
            f"  target: one Dask worker within {TARGET_DASK_RATIO}x one local process: "
            f"{dask_s / one_s:.2f}x, {'met' if good else 'MISSED'}"
        )
        print(
            f"  (the clusters' scheduler, nannies and this process's client share the "
            f"{workers} cores with the workers)"
        )
        ok = ok and good
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
