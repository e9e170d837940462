"""Walk throughput: phalanx.combinatorial against a bare process pool.

Two workloads, in one run:

- flat: 100,000 walks of 5 actions x 10 options, no serial action;
- serial: 1,500 walks of [A(5), A(10), S(5), A(3), S(2)], two serial actions
  making 10 branches (py-combtest's multistage test).

Each runs on phalanx's ``local`` executor (a fresh pool per run, as a user's
``run_tests`` call does, and a pool kept across runs), on ``dask`` (a local
cluster of worker processes, started once), and, as the floor, on a bare
``ProcessPoolExecutor`` that maps the same action functions over the same
combinations (pickled tuples, ``chunksize`` tuned, no trace, states or logs).

Targets on a 2-core machine: flat >= 100,000 walks/s and >= 1/3 of the bare
pool; serial <= 0.3 s. py-combtest's figures, quoted (not measured here): about
11,700 walks/s flat and about 15 s for the serial workload.

    .venv/bin/python bench/walks.py [--repeat 3] [--no-dask]
"""

from __future__ import annotations

import argparse
import itertools
import os
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

from phalanx.combinatorial import (  # noqa: E402
    Action,
    Executor,
    LocalExecutor,
    SerialAction,
    run_tests,
)

TARGET_FLAT_RATE = 100_000.0
TARGET_FLAT_SHARE = 1 / 3
TARGET_SERIAL_S = 0.3
PYCOMBTEST_FLAT_RATE = 11_700.0  # quoted
PYCOMBTEST_SERIAL_S = 15.0  # quoted


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


def bare_flat_walk(combo: tuple[int, ...]) -> bool:
    for options, param in zip(FLAT_INSTANCES, combo, strict=True):
        action = options[param]
        action.run(action.param, None)
    return True


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
    combos = list(itertools.product(range(10), repeat=5))
    return sum(pool.map(bare_flat_walk, combos, chunksize=max(1, len(combos) // (workers * 4))))


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


def best_of(repeat: int, fn: Callable[[], int]) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        count = fn()
        times.append(time.perf_counter() - t0)
    return min(times), count


def phalanx_run(
    order: list[type[Action]], executor: str | Executor, state: Any
) -> Callable[[], int]:
    def go() -> int:
        results = run_tests(order, state=state, executor=executor, verbose=0)
        assert results.error_count == 0, results.failures[:3]
        return results.walk_count

    return go


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-dask", action="store_true")
    args = parser.parse_args()
    workers = os.cpu_count() or 1
    flat, serial = actions()
    print(f"{workers} cores; best of {args.repeat} runs each\n")

    rows: dict[str, dict[str, tuple[float, int]]] = {"flat": {}, "serial": {}}
    rows["flat"]["local (fresh pool)"] = best_of(args.repeat, phalanx_run(flat, "local", None))
    rows["serial"]["local (fresh pool)"] = best_of(args.repeat, phalanx_run(serial, "local", {}))
    with LocalExecutor() as ex:
        rows["flat"]["local (kept pool)"] = best_of(args.repeat, phalanx_run(flat, ex, None))
        rows["serial"]["local (kept pool)"] = best_of(args.repeat, phalanx_run(serial, ex, {}))
    if not args.no_dask:
        from phalanx.combinatorial.executors import local_dask

        t0 = time.perf_counter()
        with local_dask(workers) as dask_ex:
            started = time.perf_counter() - t0
            rows["flat"]["dask (local cluster)"] = best_of(
                args.repeat, phalanx_run(flat, dask_ex, None)
            )
            rows["serial"]["dask (local cluster)"] = best_of(
                args.repeat, phalanx_run(serial, dask_ex, {})
            )
        print(f"(dask local cluster of {workers} workers started in {started:.2f}s, not counted)\n")
    with ProcessPoolExecutor(workers) as pool:
        pool.submit(int).result()  # started: the floor pays no start-up
        rows["flat"]["bare ProcessPoolExecutor"] = best_of(
            args.repeat, lambda: bare_flat(pool, workers)
        )
        rows["serial"]["bare ProcessPoolExecutor"] = best_of(
            args.repeat, lambda: bare_serial(pool, workers)
        )

    ok = True
    for name, table in rows.items():
        floor_s, _ = table["bare ProcessPoolExecutor"]
        print(f"{name}:")
        for label, (seconds, count) in table.items():
            rate = count / seconds
            print(
                f"  {label:26} {count:>7,} walks {seconds:7.3f}s {rate:>10,.0f} walks/s  "
                f"{floor_s / seconds:5.2f}x the bare pool"
            )
        local_s, count = table["local (fresh pool)"]
        if name == "flat":
            rate = count / local_s
            share = floor_s / local_s
            good = rate >= TARGET_FLAT_RATE and share >= TARGET_FLAT_SHARE
            print(
                f"  target: >= {TARGET_FLAT_RATE:,.0f} walks/s and >= {TARGET_FLAT_SHARE:.2f}x the bare pool: "
                f"{'met' if good else 'MISSED'}; {rate / PYCOMBTEST_FLAT_RATE:.0f}x py-combtest's quoted "
                f"{PYCOMBTEST_FLAT_RATE:,.0f} walks/s"
            )
        else:
            good = local_s <= TARGET_SERIAL_S
            print(
                f"  target: <= {TARGET_SERIAL_S}s: {'met' if good else 'MISSED'} ({local_s:.3f}s); "
                f"{PYCOMBTEST_SERIAL_S / local_s:.0f}x faster than py-combtest's quoted {PYCOMBTEST_SERIAL_S:.0f}s"
            )
        ok = ok and good
        print()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
