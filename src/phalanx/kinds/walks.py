"""Combinatorial walks as a case kind.

A case names an actions module and a walk order; in its `run` stage one host
(the first host of the case's roles, or the suite's first host) runs every
walk with `phalanx.combinatorial.run_tests`, on the executor the case names.
The module's source travels in the task, as for `python` cases, so the host
needs only phalanx installed. The host's `data` carries the counts, the ids of
the failed walks, the shrunk walks, and one JUnit testcase per failed walk.

    tests:
      - name: cache_walks
        kind: walks
        module: cacheactions          # found in tc/<case>/, the suite folder or the repo
        order: [Put, Get, Flush, Get] # classes of `module` (or `other.module:Class`)
        strategy: product             # product | pairwise | random:N
        executor: local               # local, threads, dask-local, dask://H:P, dask-ssh://H1,H2
        state: {}                     # the initial state (a mapping)
        seed: 7                       # random strategy
        max_workers: 2
        shrink: true
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phalanx.kinds import checks
from phalanx.kinds.base import CaseSpec, OptionError, StageContext, judge_exit
from phalanx.kinds.scripts import OwnRun
from phalanx.model import Case, Host, Status
from phalanx.tasks import Outcome, Task, WalksTask
from phalanx.tasks.walks import executor_problem, strategy_problem

OPTION_KEYS = frozenset(
    {"module", "order", "strategy", "executor", "state", "seed", "max_workers", "shrink", "verbose"}
)
# Options that go into the task as they are; the task's defaults fill in the rest.
TASK_OPTIONS = ("strategy", "executor", "state", "seed", "max_workers", "shrink", "verbose")


def runner_host(ctx: StageContext) -> Host | None:
    """The one host that runs the walks."""
    case = ctx.case
    hosts = ctx.suite.hosts
    if case is not None and case.roles:
        hosts = tuple(h for h in hosts if set(case.roles) & set(h.roles))
    return hosts[0] if hosts else None


class Walks(OwnRun):
    name = "walks"
    options = OPTION_KEYS

    def prepare(self, spec: CaseSpec) -> dict[str, Any]:
        opts = spec.options
        module = opts.get("module")
        if not isinstance(module, str) or not module:
            raise OptionError("a walks case names its actions module: `module: NAME`", "module")
        order = opts.get("order")
        if not isinstance(order, list) or not order or not all(isinstance(o, str) for o in order):
            raise OptionError("a walks case lists its actions in `order: [Class, ...]`", "order")
        strategy = opts.get("strategy", "product")
        if not isinstance(strategy, str):
            raise OptionError(
                f"must be product, pairwise or random:N, not {strategy!r}", "strategy"
            )
        if problem := strategy_problem(strategy):
            raise OptionError(problem, "strategy")
        executor = checks.text(opts, "executor")
        if executor is not None and (problem := executor_problem(executor)):
            raise OptionError(problem, "executor")
        checks.mapping(opts, "state")
        checks.integer(opts, "seed")
        checks.integer(opts, "max_workers", least=1)
        checks.boolean(opts, "shrink")
        checks.integer(opts, "verbose", least=0)
        source = checks.source(spec, module, "module")
        defined = checks.defined_names(module, source, "module")
        missing = [o for o in order if ":" not in o and o not in defined]
        if missing:
            index = order.index(missing[0])
            raise OptionError(
                f"module {module!r} defines no class {', '.join(missing)}", "order", index
            )
        return {**opts, "modules": {module: source}}

    def run_task(self, ctx: StageContext, case: Case) -> Task | None:
        chosen = runner_host(ctx)
        if chosen is None or chosen.name != ctx.host.name:
            return None
        opts = case.options
        given = {k: opts[k] for k in TASK_OPTIONS if opts.get(k) is not None}
        return WalksTask(
            case=case.name,
            module=opts["module"],
            order=tuple(opts["order"]),
            modules=dict(opts.get("modules", {})),
            **given,
        )

    def judge_run(self, ctx: StageContext, outcome: Outcome) -> tuple[Status, str | None]:
        data = outcome.data if isinstance(outcome.data, dict) else {}
        if outcome.error is not None or outcome.timed_out or outcome.cancelled:
            return judge_exit(outcome, ctx)
        # The machinery (executor, workers) failing is not the walks failing.
        if data.get("infra_error"):
            return Status.ERROR, str(data["infra_error"])
        if data.get("error"):
            return Status.FAILED, str(data["error"])
        if data.get("error_count"):
            return Status.FAILED, summary(data)
        status, reason = judge_exit(outcome, ctx)
        if status is Status.PASSED and "walk_count" not in data:
            return Status.ERROR, "the walks process reported no results"
        return status, reason


def summary(data: Mapping[str, Any]) -> str:
    total = data["walk_count"]
    text = f"{data['error_count']} of {total} walk{'' if total == 1 else 's'} failed"
    failures = data.get("failures") or []
    if failures:
        text += f"; first: {failures[0]['text']}"
    return text


WALKS = Walks()
