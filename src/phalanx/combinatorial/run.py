"""run_tests: generate the walks, run them segment by segment on an executor, report.

A run is a depth-first walk over the branch tree that serial actions make.
Segment 0 runs for every walk; then, for each option of the next serial action,
that action runs once here and the next segment runs for the walks of its
branch, and so on down. Walk states live on the workers only while a segment
runs: between segments they come back (as JSON) with the chunk results, so
workers stay stateless and any worker can take any chunk.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any

from phalanx.combinatorial import logs
from phalanx.combinatorial import state as state_codec
from phalanx.combinatorial.action import CancelWalk
from phalanx.combinatorial.config import load_settings
from phalanx.combinatorial.executors import Executor, ExecutorError, make_executor
from phalanx.combinatorial.generate import WalkSet, chunk_size, select
from phalanx.combinatorial.logs import logger
from phalanx.combinatorial.plan import OrderEntry, Plan
from phalanx.combinatorial.protocol import (
    ChunkResult,
    RunHeader,
    SegmentChunk,
    SegmentResult,
    WalkOutcome,
    WalksChunk,
    decode_result,
    encode,
)
from phalanx.combinatorial.results import Failure, Results, RunLogs, Shrunk, place_of
from phalanx.combinatorial.serial import SerialUpdateError, apply_update, run_serial
from phalanx.combinatorial.shrink import Candidate, shrink
from phalanx.combinatorial.trace import TraceWriter
from phalanx.combinatorial.worker import origin

# Failures logged one by one; past this, only counted (the trace and Results hold all).
LOGGED_FAILURES = 20
# Distinct failures shrunk per run, and candidate walks tried per failure.
SHRINK_FAILURES = 10
SHRINK_BUDGET = 2000
SHRINK_BATCH = 64

_run_numbers = itertools.count(1)

Constraint = Callable[[list[Any]], bool]


def run_tests(
    walk_order: Sequence[OrderEntry],
    state: Any = None,
    gather_states: bool = False,
    log_dir: str | Path | None = None,
    verbose: int = 1,
    executor: str | Executor | None = None,
    max_workers: int | None = None,
    strategy: str = "product",
    seed: int | None = None,
    shrink: bool = False,
    *,
    count: int | None = None,
    constraints: Constraint | None = None,
    config_file: Path | None = None,
    modules: Mapping[str, str] | None = None,
) -> Results:
    """Run every walk that ``strategy`` picks from ``walk_order``.

    ``strategy``: ``"product"`` (every combination), ``"pairwise"`` (every pair of
    options of any two actions at least once; ``constraints`` may veto prefixes of
    parameters), or ``"random"`` / ``"random:N"`` (N distinct walks from ``seed``;
    N may also be given as ``count``).

    ``executor``: ``"local"`` (a process pool), ``"threads"``, ``"dask://HOST:PORT"``,
    ``"dask-ssh://H1,H2"``, ``"dask-local"``, or an :class:`Executor` (kept open).
    Unset, it comes from ``[combinatorial]`` in phalanx.toml or
    ``PHALANX_COMBINATORIAL_EXECUTOR``.

    ``modules``: the actions modules' sources (name → source), kept in the
    trace so that ``phalanx replay`` imports them from there, wherever the
    trace was copied to.

    Raises StateError for a state that is not JSON-able, RuntimeError
    (SerialUpdateError) for a serial action update that cannot be applied, and
    ExecutorError when the machinery (not a walk) fails.
    """
    started = time.perf_counter()
    strategy, count = _parse_strategy(strategy, count)
    plan = Plan.build(walk_order)
    initial = state_codec.dumps(state)
    if strategy == "random" and seed is None:
        seed = random.SystemRandom().randrange(2**32)
    allowed = None
    if constraints is not None:
        check = constraints

        def allowed(row: list[int]) -> bool:
            return bool(check([plan.options[p][i].param for p, i in enumerate(row)]))

    walks = select(plan.space, strategy, count=count, seed=seed or 0, allowed=allowed)

    run_logs = _log_paths(Path(log_dir)) if log_dir is not None else None
    with logs.coordinator_logging(verbose, run_logs.log if run_logs else None) as run_id:
        if strategy == "random":
            logger.info("random strategy: seed %d (pass seed=%d to repeat these walks)", seed, seed)
        owned = not isinstance(executor, Executor)
        if isinstance(executor, Executor):
            ex = executor
        else:
            settings = load_settings(config_file, executor=executor, max_workers=max_workers)
            ex = make_executor(settings.executor, settings.max_workers, settings.dask_timeout)
        trace = None
        try:
            if run_logs is not None:
                trace = TraceWriter(
                    run_logs.trace,
                    {
                        "walk_order": list(plan.paths),
                        "strategy": strategy,
                        "seed": seed,
                        # Generated, before any was pruned: the totals line at
                        # the end says how many ran and how many were pruned.
                        "planned_walks": walks.count,
                        "segments": len(plan.segments),
                        # So that `phalanx replay` starts a walk where the run did.
                        "state": json.loads(initial),
                        **({"modules": dict(modules)} if modules else {}),
                    },
                )
            runner = _Runner(plan, walks, ex, trace, initial, gather_states, run_id)
            runner.run()
            shrunk = runner.shrink_failures() if shrink else []
            if trace is not None:
                trace.totals(
                    walk_count=walks.count - len(runner.pruned),
                    pruned_count=len(runner.pruned),
                    error_count=len(runner.failures),
                    cancel_count=len(runner.cancelled),
                )
        finally:
            if trace is not None:
                trace.close()
            if owned:
                ex.close()
        results = runner.results(time.perf_counter() - started, run_logs, shrunk)
        results.strategy, results.seed, results.executor = strategy, seed, ex.name
        _report(results)
    return results


def _parse_strategy(strategy: str, count: int | None) -> tuple[str, int | None]:
    name, sep, n = strategy.partition(":")
    if sep:
        if name != "random" or not n.strip().isdigit():
            raise ValueError(f"bad strategy {strategy!r} (expected e.g. 'random:500')")
        return name, int(n)
    return name, count


def _log_paths(log_dir: Path) -> RunLogs:
    stem = f"walks-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{next(_run_numbers)}"
    return RunLogs(trace=log_dir / f"{stem}.trace.jsonl", log=log_dir / f"{stem}.log")


def _report(results: Results) -> None:
    hidden = results.error_count - min(results.error_count, LOGGED_FAILURES)
    if hidden > 0:
        logger.error("... and %d more failed walks (Results.failures holds them all)", hidden)
    for s in results.shrunk:
        logger.warning("shrunk: %s", s)
    logger.info("%s", results.summary())


class _Runner:
    def __init__(
        self,
        plan: Plan,
        walks: WalkSet,
        executor: Executor,
        trace: TraceWriter | None,
        initial: str,
        gather: bool,
        run_id: str,
    ) -> None:
        self.plan = plan
        self.walks = walks
        self.ex = executor
        self.trace = trace
        self.initial = initial
        self.root = json.loads(initial)  # the initial state, encoded
        self.gather = gather
        self.slots = executor.slots
        self.header = RunHeader(
            plan=plan.to_wire(),
            log_level=logs.effective_level(),
            capture=executor.remote_logs,
            origin=origin(),
            run=run_id,
        )
        self.segments_run = 0
        self.timed_walks = 0  # walk segments whose time workers reported
        self.busy_seconds = 0.0
        self.failures: dict[int, Failure] = {}
        self.cancelled: set[int] = set()
        self.pruned: set[int] = set()
        self.carried: dict[int, Any] = {}  # walk id -> encoded state, between segments
        self.final: dict[int, Any] = {}  # walk id -> encoded final state (gather_states)
        self.final_worker: dict[int, str] = {}  # walk id -> worker that ran its last segment

    # -- the branch tree -------------------------------------------------

    def run(self) -> None:
        if self.walks.count == 0:
            return
        if self.plan.segments[0].serial is None:
            self._segment(0, [], 0, self.walks.count, self.root, None)
        else:
            self._branches(0, [], 0, self.walks.count, self.root)

    def _branches(self, k: int, branch: list[int], lo: int, hi: int, branch_state: Any) -> None:
        """Segment k opens with a serial action: run it per option, then its branch."""
        pos = self.plan.segments[k].serial
        assert pos is not None
        level = len(branch)
        key = 0
        for i, option in enumerate(branch):
            key = self.walks.sub_key(i, key, option)
        for option, action in enumerate(self.plan.options[pos]):
            sub_lo, sub_hi = self.walks.branch(level + 1, self.walks.sub_key(level, key, option))
            live = self._live(k, sub_lo, sub_hi)
            if not live:
                continue
            sub_branch = [*branch, option]
            logs.set_walk(None)
            logger.debug("serial %r for branch %s (%d walks)", action, sub_branch, len(live))
            given = state_codec.decode(branch_state)
            try:
                update = run_serial(action, given)
            except SerialUpdateError:
                raise
            except CancelWalk:
                self._trace_segment(k, sub_branch, live)
                self._serial_outcome(k, live, None, pos, option)
                continue
            except Exception as exc:
                self._trace_segment(k, sub_branch, live)
                self._serial_outcome(k, live, exc, pos, option)
                continue
            child = state_codec.encode(apply_update(state_codec.decode(branch_state), update))
            self._segment(k, sub_branch, sub_lo, sub_hi, child, update)

    def _segment(
        self, k: int, branch: list[int], lo: int, hi: int, branch_state: Any, update: Any
    ) -> None:
        self._dispatch(k, branch, self._live(k, lo, hi), update)
        if k + 1 < len(self.plan.segments):
            self._branches(k + 1, branch, lo, hi, branch_state)

    def _live(self, k: int, lo: int, hi: int) -> range | list[int]:
        if k == 0:
            return range(lo, hi)
        return [w for w in range(lo, hi) if w in self.carried]

    # -- dispatch ----------------------------------------------------------

    def _dispatch(self, k: int, branch: list[int], ids: range | list[int], update: Any) -> None:
        if not ids:
            return
        seg = self.plan.segments[k]
        last = k == len(self.plan.segments) - 1
        keep = not last or self.gather
        if not seg.actions and last and not self.gather:
            # A trailing serial action: nothing left to run on the workers.
            self._trace_segment(k, branch, ids)
            self.segments_run += len(ids)
            return
        encoded_update = state_codec.encode(update) if update is not None else None
        indexes = self.walks.indexes

        def tasks() -> Iterator[tuple[str, Callable[[], None]]]:
            a = 0
            while a < len(ids):
                # Sized as each task is made: later tasks use what earlier ones measured.
                b = a + chunk_size(len(ids), self.slots, self._per_walk(), self.ex.task_seconds)
                part = ids[a:b]
                a = b
                segment = functools.partial(
                    SegmentChunk,
                    self.header,
                    segment=k,
                    prune=k == 0,
                    return_states=keep,
                    update=encoded_update,
                )
                if isinstance(part, range):
                    # The first segment's walks start from the initial state.
                    chunk = segment(
                        initial=self.initial,
                        span=(part.start, part.stop),
                        pidx=None if indexes is None else list(indexes[part.start : part.stop]),
                    )
                else:
                    chunk = segment(
                        ids=part,
                        states=[self.carried.pop(w) for w in part],
                        pidx=None if indexes is None else [indexes[w] for w in part],
                    )

                def on_submit(part: range | list[int] = part) -> None:
                    self._trace_segment(k, branch, part)

                yield encode(chunk), on_submit

        for result in self._pump(tasks()):
            if result.segment is None:
                raise ExecutorError(f"worker {result.worker} returned no segment result")
            self._absorb(k, last, result.segment, result.worker)

    def _window(self) -> int:
        # One task per slot until a walk has been timed (those tasks are one walk
        # each); then two per slot, so that no slot waits for the coordinator.
        return self.slots if self._per_walk() is None else self.slots * 2

    def _pump(self, tasks: Iterator[tuple[str, Callable[[], None]]]) -> Iterator[ChunkResult]:
        """Submit tasks keeping a bounded number in flight; yield results as they end.

        The next task is made only once there is room for it, so that it is
        sized with everything measured so far.
        """
        pending: set[Future[str]] = set()
        try:
            while True:
                while len(pending) >= self._window():
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        yield self._result(fut)
                task = next(tasks, None)
                if task is None:
                    break
                payload, on_submit = task
                on_submit()
                pending.add(self.ex.submit(payload))
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield self._result(fut)
        finally:
            for fut in pending:
                fut.cancel()

    def _result(self, fut: Future[str]) -> ChunkResult:
        try:
            text = fut.result()
        except Exception as exc:
            raise ExecutorError(
                f"{self.ex.name} executor failed while running walks: "
                f"{type(exc).__name__}: {exc} (a walk may have killed its worker; "
                "the trace names the walks that were running)"
            ) from exc
        result = decode_result(text)
        if result.logs is not None:
            logs.emit_returned(result.logs, result.dropped_logs, result.worker)
        if result.fatal is not None:
            raise ExecutorError(
                f"a worker could not set up the walks: {result.fatal} "
                "(action modules must be importable on every worker; see docs/combinatorial.md)"
            )
        return result

    def _per_walk(self) -> float | None:
        return self.busy_seconds / self.timed_walks if self.timed_walks else None

    def _absorb(self, k: int, last: bool, result: SegmentResult, worker: str) -> None:
        self.segments_run += result.segments
        if result.segments:
            self.timed_walks += result.segments
            self.busy_seconds += result.elapsed
        for walk_id in result.pruned:
            self.pruned.add(walk_id)
            self._outcome(walk_id, "pruned")
        dead: set[int] = set()
        for walk_id in result.cancelled:
            self.cancelled.add(walk_id)
            dead.add(walk_id)
            self._outcome(walk_id, "cancelled")
        for f in result.failed:
            self._fail(f.walk_id, k, f.error_type, f.pos, f.message, f.traceback, f.place)
            dead.add(f.walk_id)
        for walk_id, encoded in zip(result.state_ids or (), result.states or (), strict=True):
            if walk_id in dead or last:
                if self.gather:
                    self.final[walk_id] = encoded
                    self.final_worker[walk_id] = worker
            else:
                self.carried[walk_id] = encoded

    def _fail(
        self,
        walk_id: int,
        k: int,
        error_type: str,
        pos: int,
        message: str,
        tb: str | None,
        place: str = "",
    ) -> None:
        label, cls = "", ""
        if pos >= 0:
            digits = self.plan.space.digits(self.walks.product_index(walk_id))
            label, cls = self.plan.label(pos, digits[pos]), self.plan.paths[pos]
        failure = Failure(walk_id, error_type, cls, label, message, tb, k, place)
        self.failures[walk_id] = failure
        if len(self.failures) <= LOGGED_FAILURES:
            logger.error("%s", failure, extra={"walk_id": walk_id})
            if tb:
                logger.debug("walk %d traceback:\n%s", walk_id, tb, extra={"walk_id": walk_id})
        self._outcome(walk_id, "failed", str(failure))

    def _serial_outcome(
        self, k: int, live: range | list[int], exc: Exception | None, pos: int, option: int
    ) -> None:
        """A serial action cancelled or failed: so did every walk of its branch."""
        for walk_id in live:
            # Walks of segment 0 have not started: their state is the run's initial one.
            state = self.carried.pop(walk_id, None) if k > 0 else self.root
            if self.gather:
                self.final[walk_id] = state
                self.final_worker[walk_id] = "coordinator"
            self.segments_run += 1
            if exc is None:
                self.cancelled.add(walk_id)
                self._outcome(walk_id, "cancelled")
            else:
                error_type = f"{type(exc).__module__}.{type(exc).__qualname__}"
                self._fail(walk_id, k, error_type, pos, str(exc), None, place_of(exc))

    def _outcome(self, walk_id: int, outcome: str, detail: str = "") -> None:
        if self.trace is not None:
            self.trace.outcome(walk_id, outcome, detail)

    def _trace_segment(self, k: int, branch: list[int], ids: range | list[int]) -> None:
        if self.trace is not None:
            pidx = self.walks.product_index
            self.trace.segment(self.plan, k, branch, ((w, pidx(w)) for w in ids))

    # -- shrinking -----------------------------------------------------------

    def shrink_failures(self) -> list[Shrunk]:
        firsts: dict[tuple[str, str, str], Failure] = {}
        for walk_id in sorted(self.failures):
            failure = self.failures[walk_id]
            if failure.action_class and failure.signature not in firsts:
                firsts[failure.signature] = failure
        out: list[Shrunk] = []
        for n, failure in enumerate(list(firsts.values())[:SHRINK_FAILURES]):
            out.append(self._shrink_one(failure, self.walks.count + n))
        return out

    def _shrink_one(self, failure: Failure, trace_id: int) -> Shrunk:
        digits = self.plan.space.digits(self.walks.product_index(failure.walk_id))
        start: Candidate = tuple(enumerate(digits))
        messages: dict[Candidate, str] = {}

        def evaluate(cands: Sequence[Candidate]) -> list[bool]:
            outcomes = self._run_walks(cands)
            verdicts = []
            for cand, outcome in zip(cands, outcomes, strict=True):
                signature = (outcome.error_type, outcome.action_class, outcome.place)
                same = outcome.outcome == "failed" and signature == failure.signature
                if same:
                    messages[cand] = outcome.message or ""
                verdicts.append(same)
            return verdicts

        logger.info("shrinking %s", failure)
        if not evaluate([start])[0]:
            return Shrunk(
                failure.signature,
                failure.walk_id,
                len(start),
                self.plan.walk(digits),
                failure.message,
                False,
                1,
            )
        best, tries = shrink(start, evaluate, SHRINK_BUDGET)
        walk = self.plan.walk_of(best)
        traced = None
        if self.trace is not None:
            self.trace.shrunk(trace_id, failure.walk_id, walk, messages.get(best, ""))
            traced = trace_id
        return Shrunk(
            failure.signature,
            failure.walk_id,
            len(start),
            walk,
            messages.get(best, failure.message),
            True,
            tries + 1,
            traced,
        )

    def _run_walks(self, cands: Sequence[Candidate]) -> list[WalkOutcome]:
        batches = [list(cands[i : i + SHRINK_BATCH]) for i in range(0, len(cands), SHRINK_BATCH)]
        futures = [
            self.ex.submit(
                encode(
                    WalksChunk(
                        self.header, [[list(step) for step in c] for c in batch], self.initial
                    )
                )
            )
            for batch in batches
        ]
        outcomes: list[WalkOutcome] = []
        for fut in futures:
            result = self._result(fut)
            if result.outcomes is None:
                raise ExecutorError(f"worker {result.worker} returned no walk outcomes")
            outcomes.extend(result.outcomes)
        return outcomes

    # -- results -------------------------------------------------------------

    def results(self, elapsed: float, run_logs: RunLogs | None, shrunk: list[Shrunk]) -> Results:
        state_ids = sorted(self.final)
        return Results(
            walk_count=self.walks.count - len(self.pruned),
            segment_count=self.segments_run,
            error_count=len(self.failures),
            cancel_count=len(self.cancelled),
            elapsed=elapsed,
            states=[state_codec.decode(self.final[w]) for w in state_ids],
            logs=run_logs,
            failed_tests=sorted(self.failures),
            shrunk=shrunk,
            pruned_count=len(self.pruned),
            failures=[self.failures[w] for w in sorted(self.failures)],
            cancelled_tests=sorted(self.cancelled),
            state_ids=state_ids,
            state_workers=[self.final_worker.get(w, "coordinator") for w in state_ids],
        )
