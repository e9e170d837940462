"""Helpers for tests that run suites on real local agents."""

from __future__ import annotations

import asyncio
from pathlib import Path

from phalanx.coordinator.runs import RunOptions, run_local
from phalanx.events import Event
from phalanx.model import Case, Cluster, Host, RunResult, Script, Suite


def hosts(n: int = 4, prefix: str = "h") -> tuple[Host, ...]:
    return tuple(
        Host(name=f"{prefix}{i}.phalanx.test", roles=("server",) if i == 0 else ("client",))
        for i in range(n)
    )


def case(
    name: str,
    run: str | None = "true",
    init: str | None = None,
    fin: str | None = None,
    timeout: float | None = None,
) -> Case:
    stages = {
        stage: Script(text=text)
        for stage, text in (("initialize", init), ("run", run), ("finalize", fin))
        if text is not None
    }
    return Case(name=name, stages=stages, timeout=timeout)


def suite(
    *cases: Case,
    n: int = 4,
    initialize: str | None = None,
    finalize: str | None = None,
    timeout: float = 60,
    logs: tuple[str, ...] = (),
    tags: dict[str, str] | None = None,
    prefix: str = "h",
) -> Suite:
    return Suite(
        name="t",
        cluster=Cluster(name="c", hosts=hosts(n, prefix)),
        cases=cases,
        initialize=Script(text=initialize) if initialize else None,
        finalize=Script(text=finalize) if finalize else None,
        timeout=timeout,
        logs=logs,
        tags=tags or {},
    )


def run(
    s: Suite, results: Path, heartbeat_timeout: float = 10.0, events: list[Event] | None = None
) -> tuple[RunResult, Path]:
    sinks = [events.append] if events is not None else []
    options = RunOptions(results=results, heartbeat_timeout=heartbeat_timeout, connect_timeout=30)
    return asyncio.run(run_local(s, options, sinks))


def output(folder: Path, result: RunResult, case_name: str | None, stage: str, host: str) -> str:
    """A host's output of a stage; `case_name` None: a suite stage."""
    if case_name is None:
        st = result.stage(stage)
    else:
        c = result.case(case_name)
        assert c is not None
        st = c.stage(stage)
    assert st is not None
    h = st.host(host)
    assert h is not None and h.output is not None
    return (folder / h.output).read_text()
