"""Tasks on the wire: each type goes out and comes back as the same
dataclass; what an agent cannot run is the stage's error, saying why."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from phalanx.kinds import registry
from phalanx.kinds.base import CaseSpec, StageContext, judge_exit
from phalanx.model import Case, Status
from phalanx.tasks import (
    ExecutableTask,
    Outcome,
    PythonTask,
    ShellTask,
    Task,
    WalksTask,
    from_json,
    to_json,
)
from phalanx.tasks.registry import TASKS as TASK_TYPES
from phalanx.wire.messages import (
    StageStart,
    TaskRefused,
    TaskSpec,
    encode,
    parse_coordinator_message,
    task_of,
    task_spec,
)
from tests.coordinator.runhelpers import run, suite

TASKS: list[Task] = [
    ShellTask(script="echo hi\n", origin="tc/a/run.sh"),
    PythonTask(
        classes=("roles:Ping", "roles:Pong"),
        config={"role": "server", "match_ip": None, "sizes": [1, 2]},
        modules={"roles": "class Ping: pass\n"},
        test_mode="concurrent",
        test_start_delay=0.5,
    ),
    WalksTask(
        case="w",
        module="acts",
        order=("Pick", "other.mod:Fine"),
        modules={"acts": "class Pick: pass\n"},
        strategy="random:5",
        executor="dask-local",
        state={"seen": []},
        seed=7,
        max_workers=2,
        shrink=True,
        verbose=2,
    ),
    ExecutableTask(
        name="tests/a",
        dir="/t/tests/a",
        cwd="/t",
        skip=None,
        dependencies=(("python", "yaml"), ("app", "sh")),
        inactivity=3.0,
        declarative=True,
    ),
]


def through_the_wire(spec: TaskSpec) -> TaskSpec:
    message = parse_coordinator_message(
        encode(StageStart(stage_id="s1", scope="r:1:a", task=spec, env={}, timeout=5))
    )
    assert isinstance(message, StageStart)
    return message.task


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.type)
def test_each_task_type_comes_back_as_the_same_dataclass(task: Task) -> None:
    back = task_of(through_the_wire(task_spec(task)))
    assert type(back) is type(task)
    assert back == task


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.type)
def test_a_runners_child_process_reads_back_the_task_it_was_written(task: Task) -> None:
    written = json.dumps(to_json(task))
    assert from_json(type(task), json.loads(written)) == task


def refusal(task_type: str, payload: dict[str, Any], version: int | None = None) -> str:
    """Why `task_of` refuses this payload (sent as the type's own version
    unless `version` says otherwise)."""
    if version is None:
        version = TASK_TYPES.get(task_type).version if task_type in TASK_TYPES else 1
    with pytest.raises(TaskRefused) as info:
        task_of(through_the_wire(TaskSpec(type=task_type, version=version, payload=payload)))
    return str(info.value)


WALKS = {"case": "w", "module": "acts", "order": ["Pick"]}


@pytest.mark.parametrize(
    ("task_type", "payload", "says"),
    [
        ("walks", {**WALKS, "colour": "red"}, "colour: unknown key"),
        ("walks", {"case": "w", "order": ["Pick"]}, "module: missing"),
        ("walks", {**WALKS, "max_workers": "two"}, "max_workers: Expected `int | null`, got `str`"),
        ("walks", {**WALKS, "shrink": "yes"}, "shrink: Expected `bool`, got `str`"),
        ("shell", {"script": ["echo"]}, "script: Expected `str`, got `array`"),
        (
            "python",
            {"classes": ["m:C"], "test_mode": "parallel"},
            "test_mode: Invalid enum value 'parallel'",
        ),
        ("executable", {"name": "t", "dir": "/t", "dependencies": [["x"]]}, "dependencies.0"),
    ],
)
def test_a_payload_this_agent_cannot_read_is_refused_naming_type_and_field(
    task_type: str, payload: dict[str, Any], says: str
) -> None:
    text = refusal(task_type, payload)
    assert text.startswith("this agent (phalanx ")
    assert (
        f"cannot run this {task_type} task (version {TASK_TYPES.get(task_type).version}): " in text
    )
    assert says in text


def test_another_version_of_a_task_type_says_which_versions() -> None:
    text = refusal("walks", WALKS, version=2)
    assert "runs walks tasks version 1; the coordinator sent version 2" in text


def test_an_unknown_task_type_names_it() -> None:
    assert "has no runner for task type 'teleport'" in refusal("teleport", {})


# --- through a real agent -------------------------------------------------------


@dataclass(frozen=True)
class NewerWalksTask(WalksTask):
    """A walks task as a later phalanx would send it."""

    version: ClassVar[int] = 2


@dataclass(frozen=True)
class WalksTaskWithMore(WalksTask):
    """Version 1, with a field this agent's version 1 does not have."""

    colour: str = "red"


@dataclass(frozen=True)
class TeleportTask(Task):
    type: ClassVar[str] = "teleport"
    version: ClassVar[int] = 1

    where: str = "moon"


def _skewed(case: str) -> Task:
    if case == "newer":
        return NewerWalksTask(case=case, module="acts", order=("Pick",))
    if case == "more":
        return WalksTaskWithMore(case=case, module="acts", order=("Pick",))
    return TeleportTask()


class Skewed:
    """A kind whose tasks come from another phalanx version."""

    name = "skewed-test"
    options: frozenset[str] = frozenset()

    def prepare(self, spec: CaseSpec) -> dict[str, Any]:
        return dict(spec.options)

    def stages(self, case: Case) -> tuple[str, ...]:
        return ("run",)

    def task(self, ctx: StageContext) -> Task | None:
        return _skewed(ctx.case.name) if ctx.case is not None else None

    def judge(self, ctx: StageContext, outcome: Outcome) -> tuple[Status, str | None]:
        return judge_exit(outcome)


@pytest.fixture
def skewed_kind() -> Any:
    registry.register(Skewed())
    yield
    registry.unregister(Skewed.name)


@pytest.mark.usefixtures("skewed_kind")
def test_an_agent_says_what_it_cannot_run_as_the_stages_error(tmp_path: Path) -> None:
    cases = [Case(name=n, kind=Skewed.name) for n in ("newer", "more", "teleport")]
    result, _ = run(suite(*cases, n=1), tmp_path)
    reasons = {}
    for case in result.cases:
        (host,) = case.stages[0].hosts
        assert host.status is Status.ERROR, case.name
        reasons[case.name] = host.reason or ""
    assert "runs walks tasks version 1; the coordinator sent version 2" in reasons["newer"]
    assert "cannot run this walks task (version 1): colour: unknown key" in reasons["more"]
    assert "has no runner for task type 'teleport'" in reasons["teleport"]
