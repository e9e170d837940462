"""Each kind checks its own options when a suite loads: a wrong one is a
definition error at its file, line and key, before anything runs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phalanx.kinds import registry
from phalanx.kinds.base import CaseSpec, OptionError, ReadError, StageContext, judge_exit
from phalanx.load.errors import DefinitionErrors
from phalanx.load.repo import find_suite
from phalanx.model import Case, Status
from phalanx.tasks import Outcome, ShellTask, Task

CLUSTER = "name: one\nhosts:\n  - {name: h1.t.test, roles: [server]}\n"

ACTS = """\
from phalanx.combinatorial import Action


class Pick(Action):
    OPTIONS = [0, 1]

    def run(self, p, state):
        pass
"""

ROLES = """\
class Ping:
    def __init__(self, config):
        self.final_results = "pong"

    def run(self):
        pass
"""

WALKS = "    kind: walks\n    module: acts\n    order: [Pick]\n"
PYTHON = "    kind: python\n    class: roles:Ping\n"

# case name -> (its suite.yaml entry, the bad line's text, its key, what the error says)
BAD: dict[str, tuple[str, str, str, str]] = {
    "typo_executor": (WALKS, "executor: dask", "executor", "unknown executor 'dask'"),
    "no_workers": (WALKS, "max_workers: 0", "max_workers", "must be at least 1"),
    "text_seed": (WALKS, "seed: seven", "seed", "must be a whole number"),
    "maybe_shrink": (WALKS, "shrink: maybe", "shrink", "must be true or false"),
    "list_state": (WALKS, "state: [1, 2]", "state", "must be a mapping"),
    "countless": (WALKS, "strategy: random", "strategy", "expected product, pairwise or random:N"),
    "no_scheduler": (WALKS, "executor: dask-ssh://", "executor", "names no hosts"),
    "gone_class": (
        "    kind: python\n",
        "class: roles:Gone",
        "class",
        "module 'roles' defines no class Gone",
    ),
    "gone_in_list": (
        "    kind: python\n",
        "classes: [roles:Ping, roles:Gone]",
        "classes.1",
        "module 'roles' defines no class Gone",
    ),
    "parallel": (PYTHON, "test_mode: parallel", "test_mode", "must be list or concurrent"),
    "early": (PYTHON, "test_start_delay: -1", "test_start_delay", "must be at least 0"),
    "sometimes": (PYTHON, "server_client_mode: sometimes", "server_client_mode", "true or false"),
    "bad_dir": (
        "    kind: executable\n",
        "dir: 5",
        "dir",
        "must be non-empty text",
    ),
    "half_dependency": (
        "    kind: executable\n    dir: /t\n",
        "dependencies: [[python]]",
        "dependencies.0",
        "must be a (kind, name) pair",
    ),
}


def make_repo(root: Path, entries: str) -> Path:
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "one.yaml").write_text(CLUSTER)
    folder = root / "test-suites" / "opts"
    folder.mkdir(parents=True)
    (folder / "suite.yaml").write_text(f"name: opts\ncluster: one\ntests:\n{entries}")
    (folder / "acts.py").write_text(ACTS)
    (folder / "roles.py").write_text(ROLES)
    return folder


def test_validate_names_file_line_and_key_of_every_bad_option(tmp_path: Path) -> None:
    entries = "".join(
        f"  - name: {name}\n{common}    {line}\n" for name, (common, line, _, _) in BAD.items()
    )
    folder = make_repo(tmp_path, entries)
    lines = (folder / "suite.yaml").read_text().splitlines()
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "validate", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    for name, (_, line, key, says) in BAD.items():
        number = next(n for n, text in enumerate(lines, 1) if text.strip() == line)
        # Named relative to where the user stands (cwd is tmp_path).
        where = f"{(folder / 'suite.yaml').relative_to(tmp_path)}:{number}: tests.{name}.{key}: "
        (found,) = [t for t in done.stderr.splitlines() if where in t]
        assert says in found, found
    assert f"{len(BAD)} problems found" in done.stderr


def test_good_options_load_as_written(tmp_path: Path) -> None:
    folder = make_repo(
        tmp_path,
        "  - name: w\n" + WALKS + "    executor: dask-ssh://a,b\n    strategy: random:4\n"
        "    max_workers: 2\n    seed: 3\n    shrink: true\n    state: {seen: []}\n"
        "  - name: p\n" + PYTHON + "    test_mode: concurrent\n    test_start_delay: 0.5\n"
        "    server_client_mode: false\n",
    )
    walks, python = find_suite(folder).cases
    assert walks.options["executor"] == "dask-ssh://a,b"
    assert walks.options["modules"] == {"acts": ACTS}
    assert python.options["modules"] == {"roles": ROLES}
    assert python.options["test_start_delay"] == 0.5


@pytest.mark.parametrize(
    "executor", ["local", "threads", "dask-local", "dask://s:8786", "tcp://s:8786", "tls://s:1"]
)
def test_every_executor_spelling_combinatorial_makes_loads(tmp_path: Path, executor: str) -> None:
    folder = make_repo(tmp_path, "  - name: w\n" + WALKS + f"    executor: '{executor}'\n")
    assert find_suite(folder).cases[0].options["executor"] == executor


# --- a kind the loader has never heard of -----------------------------------------


class Greeting:
    """A minimal kind: one option of its own, one shipped file, one shell task."""

    name = "greeting-test"
    options = frozenset({"greeting", "helper"})

    def prepare(self, spec: CaseSpec) -> dict[str, Any]:
        greeting = spec.options.get("greeting")
        if not isinstance(greeting, str):
            raise OptionError(f"must be text, not {greeting!r}", "greeting")
        helper = str(spec.options.get("helper", "acts"))
        try:
            source = spec.read_module(helper)
        except ReadError as exc:
            raise OptionError(str(exc), "helper") from None
        return {
            "greeting": greeting.upper(),
            "lines": source.count("\n"),
            "has_run": "run" in spec.stages,
        }

    def stages(self, case: Case) -> tuple[str, ...]:
        return ("run",)

    def task(self, ctx: StageContext) -> Task | None:
        assert ctx.case is not None
        return ShellTask(script=f"echo {ctx.case.options['greeting']}")

    def judge(self, ctx: StageContext, outcome: Outcome) -> tuple[Status, str | None]:
        return judge_exit(outcome)


@pytest.fixture
def greeting_kind() -> Iterator[None]:
    registry.register(Greeting())
    yield
    registry.unregister(Greeting.name)


@pytest.mark.usefixtures("greeting_kind")
def test_a_registered_kind_checks_and_keeps_its_own_options(tmp_path: Path) -> None:
    folder = make_repo(tmp_path / "ok", "  - name: g\n    kind: greeting-test\n    greeting: hi\n")
    (case,) = find_suite(folder).cases
    assert case.kind == "greeting-test"
    assert case.options == {"greeting": "HI", "lines": ACTS.count("\n"), "has_run": False}

    bad = make_repo(
        tmp_path / "bad",
        "  - name: g\n    kind: greeting-test\n    greeting: 5\n"
        "  - name: h\n    kind: greeting-test\n    greeting: hi\n    helper: nowhere\n"
        "  - name: i\n    kind: greeting-test\n    colour: red\n    greeting: hi\n",
    )
    with pytest.raises(DefinitionErrors) as info:
        find_suite(bad)
    text = str(info.value)
    yaml = bad / "suite.yaml"
    assert f"{yaml}:6: tests.g.greeting: must be text, not 5" in text
    assert f"{yaml}:10: tests.h.helper: module 'nowhere' not found" in text
    assert f"{yaml}:13: tests.i.colour: " in text  # not one of the kind's keys
