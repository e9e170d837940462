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
        executor: local               # local | threads | dask://H:P | dask-ssh://H1,H2
        state: {}                     # the initial state (JSON)
        seed: 7                       # random strategy
        max_workers: 2
        shrink: true
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phalanx.kinds.base import StageContext, judge_exit
from phalanx.kinds.scripts import OwnRun
from phalanx.model import Case, Host, Status
from phalanx.tasks import Outcome, Task

OPTION_KEYS = frozenset(
    {"module", "order", "strategy", "executor", "state", "seed", "max_workers", "shrink", "verbose"}
)


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

    def run_task(self, ctx: StageContext, case: Case) -> Task | None:
        chosen = runner_host(ctx)
        if chosen is None or chosen.name != ctx.host.name:
            return None
        opts = case.options
        return Task(
            "walks",
            {
                "case": case.name,
                "modules": dict(opts.get("modules", {})),
                "module": opts["module"],
                "order": list(opts["order"]),
                "strategy": str(opts.get("strategy", "product")),
                "executor": opts.get("executor"),
                "state": opts.get("state"),
                "seed": opts.get("seed"),
                "max_workers": opts.get("max_workers"),
                "shrink": bool(opts.get("shrink", False)),
                "verbose": int(opts.get("verbose", 1)),
            },
        )

    def judge_run(self, ctx: StageContext, outcome: Outcome) -> tuple[Status, str | None]:
        data = outcome.data if isinstance(outcome.data, dict) else {}
        if outcome.error is not None or outcome.timed_out or outcome.cancelled:
            return judge_exit(outcome)
        # The machinery (executor, workers) failing is not the walks failing.
        if data.get("infra_error"):
            return Status.ERROR, str(data["infra_error"])
        if data.get("error"):
            return Status.FAILED, str(data["error"])
        if data.get("error_count"):
            return Status.FAILED, summary(data)
        status, reason = judge_exit(outcome)
        if status is Status.PASSED and "walk_count" not in data:
            return Status.ERROR, "the walks process reported no results"
        return status, reason


def summary(data: Mapping[str, Any]) -> str:
    text = f"{data['error_count']} of {data['walk_count']} walks failed"
    failures = data.get("failures") or []
    if failures:
        text += f"; first: {failures[0]['text']}"
    return text


# --- what the loader checks and ships ------------------------------------------


WALKS = Walks()
