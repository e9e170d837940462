"""The `walks` case kind: suite.yaml -> loader -> a real agent -> results.json and JUnit."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phalanx import layout
from phalanx.load.errors import DefinitionErrors
from phalanx.load.repo import find_suite
from phalanx.model import Status
from tests.combinatorial.test_dask import dask_cluster, free_port
from tests.coordinator.runhelpers import output, run

CLUSTER = """\
name: trio
hosts:
  - {name: srv1.t.test, roles: [server]}
  - {name: cli1.t.test, roles: [client]}
  - {name: cli2.t.test, roles: [client]}
"""

# Pick, Pick, Bump (serial), Boom: 3 x 3 x 2 x 2 = 36 walks. Boom(1) fails the
# walks that picked 2 twice: 2 walks (one per Bump branch). The minimal failing
# walk drops Bump: [Pick(2), Pick(2), Boom(1)].
ACTIONS = """\
import os

from phalanx.combinatorial import Action, SerialAction, logger


class Pick(Action):
    OPTIONS = [0, 1, 2]

    def run(self, p, state):
        state["seen"].append(p)


class Bump(SerialAction):
    OPTIONS = [10, 20]

    def run(self, p, state):
        return {"bump": p}


class Boom(Action):
    OPTIONS = [0, 1]

    def run(self, p, state):
        logger.info("boom %s from pid %d", p, os.getpid())
        if p == 1 and state["seen"] == [2, 2]:
            raise ValueError("planted failure")


class Fine(Action):
    OPTIONS = [0, 1]

    def run(self, p, state):
        state["seen"].append(p)
"""

SUITE = """\
name: w
cluster: trio
tests:
  - name: {name}
    kind: walks
    module: walkacts
    order: {order}
    state: {{seen: []}}
{extra}"""


def make_repo(root: Path, name: str, order: str, extra: str = "") -> Path:
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "trio.yaml").write_text(CLUSTER)
    folder = root / "test-suites" / "w"
    folder.mkdir(parents=True)
    (folder / "suite.yaml").write_text(SUITE.format(name=name, order=order, extra=extra))
    (folder / "walkacts.py").write_text(ACTIONS)
    return folder


def host_data(result_json: Path, case: str) -> dict[str, Any]:
    """What the host that ran the walks reported, read back from results.json."""
    saved = json.loads(result_json.read_text())
    (found,) = [c for c in saved["cases"] if c["name"] == case]
    (stage,) = [s for s in found["stages"] if s["name"] == "run"]
    (host,) = stage["hosts"]
    data: dict[str, Any] = host["data"]
    return data


def test_loader_ships_the_module_and_checks_the_walks_keys(tmp_path: Path) -> None:
    folder = make_repo(tmp_path / "ok", "good", "[Pick, Fine]")
    case = find_suite(folder).cases[0]
    assert case.kind == "walks"
    assert case.options["modules"] == {"walkacts": ACTIONS}
    assert case.options["order"] == ["Pick", "Fine"]

    bad = make_repo(tmp_path / "bad", "bad", "[Pick, Nope]", "    strategy: sideways\n")
    with pytest.raises(DefinitionErrors) as info:
        find_suite(bad)
    text = str(info.value)
    assert "strategy 'sideways'" in text
    assert "suite.yaml" in text

    bad.joinpath("suite.yaml").write_text(SUITE.format(name="bad", order="[Pick, Nope]", extra=""))
    with pytest.raises(DefinitionErrors, match="module 'walkacts' defines no class Nope"):
        find_suite(bad)

    bad.joinpath("walkacts.py").unlink()
    with pytest.raises(DefinitionErrors, match="module 'walkacts' not found"):
        find_suite(bad)


def test_passing_walks_run_on_one_host_and_report_counts(tmp_path: Path) -> None:
    folder = make_repo(tmp_path / "repo", "fine", "[Pick, Bump, Fine]", "    roles: [client]\n")
    result, run_dir = run(find_suite(folder), tmp_path / "results")

    case = result.cases[0]
    assert case.status is Status.PASSED, case.reason
    run_stage = case.stages[0]
    # The first host of the case's roles runs the walks; no other host takes part.
    assert [h.host for h in run_stage.hosts] == ["cli1.t.test"]
    data = host_data(run_dir / layout.RESULTS_JSON, "fine")
    assert data["walk_count"] == 3 * 2 * 2
    assert data["segment_count"] == 2 * 12
    assert data["error_count"] == 0
    assert data["failed_tests"] == []
    assert data["executor"] == "local"
    junit = ET.parse(run_dir / layout.JUNIT_XML).getroot()
    assert [t.get("name") for t in junit.iter("testcase")] == ["fine"]
    assert junit.get("tests") == "1" and junit.get("failures") == "0"


def test_failing_walks_fail_the_case_each_as_a_junit_testcase(tmp_path: Path) -> None:
    folder = make_repo(tmp_path / "repo", "boom", "[Pick, Pick, Bump, Boom]", "    shrink: true\n")
    result, run_dir = run(find_suite(folder), tmp_path / "results")

    case = result.cases[0]
    assert case.status is Status.FAILED
    data = host_data(run_dir / layout.RESULTS_JSON, "boom")
    assert data["walk_count"] == 36
    assert data["error_count"] == 2
    # Walk ids follow the product with serial digits first: Bump, Pick, Pick, Boom.
    assert data["failed_tests"] == [17, 35]
    assert case.stages[0].hosts[0].reason == (
        "2 of 36 walks failed; first: walk 17 failed at Boom(1): ValueError: planted failure"
    )
    (shrunk,) = data["shrunk"]
    assert shrunk["walk"] == ["Pick(2)", "Pick(2)", "Boom(1)"]

    # JUnit: the case's own testcase (the summary), then one per failed walk.
    junit = ET.parse(run_dir / layout.JUNIT_XML).getroot()
    cases = list(junit.iter("testcase"))
    assert [t.get("name") for t in cases] == ["boom", "walk 17", "walk 35"]
    assert junit.get("tests") == "3" and junit.get("failures") == "3"
    walk17 = cases[1].find("failure")
    assert walk17 is not None and walk17.text is not None
    assert "ValueError: planted failure" in (walk17.get("message") or "")
    assert "shrunk to 3" in walk17.text

    # The workers' log records reached the stage output.
    log = output(run_dir, result, "boom", "run", "srv1.t.test")
    # One record per walk that reached Boom(1) (shrinking runs more, untagged by walk).
    assert len(re.findall(r"\[walk \d+\]: boom 1 from pid", log)) == 18
    assert "2 failed" in log

    # The replay line in the testcase names a trace on the host; replay walk 17 from it.
    replay_line = next(line for line in walk17.text.splitlines() if line.startswith("replay:"))
    trace, walk_id = replay_line.split()[-2:]
    host_dir = run_dir / "hosts" / "srv1.t.test"
    assert (host_dir / trace).is_file()
    env = {**os.environ, "PYTHONPATH": str(folder)}
    replayed = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "replay", trace, walk_id],
        cwd=host_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    # The trace recorded the run's initial state: the replay starts from it.
    assert "ValueError: planted failure" in replayed.stderr
    assert "  2: Bump(10)\n  3: Boom(1)\nwalk 17 failed" in replayed.stdout


def test_an_action_module_that_does_not_import_fails_the_case(tmp_path: Path) -> None:
    folder = make_repo(tmp_path / "repo", "broken", "[Pick]")
    folder.joinpath("walkacts.py").write_text(ACTIONS + "\nimport no_such_module_here\n")
    result, _ = run(find_suite(folder), tmp_path / "results")

    host = result.cases[0].stages[0].hosts[0]
    assert host.status is Status.FAILED
    assert "no_such_module_here" in (host.reason or "")


def test_an_unreachable_dask_scheduler_is_an_error_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHALANX_COMBINATORIAL_DASK_TIMEOUT", "2")
    executor = f"dask://127.0.0.1:{free_port()}"
    folder = make_repo(tmp_path / "repo", "nodask", "[Pick]", f"    executor: {executor}\n")
    result, _ = run(find_suite(folder), tmp_path / "results")

    host = result.cases[0].stages[0].hosts[0]
    assert host.status is Status.ERROR
    assert "cannot use dask cluster" in (host.reason or "")


@pytest.fixture(scope="module")
def dask_scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with dask_cluster(tmp_path_factory.mktemp("dask")) as address:
        yield address


def test_walks_on_a_dask_cluster_get_the_shipped_module(
    tmp_path: Path, dask_scheduler: str
) -> None:
    # The dask workers were started without the suite's folder on their path:
    # the module reaches them only because the walks kind uploads it.
    folder = make_repo(
        tmp_path / "repo", "dask", "[Pick, Bump, Boom]", f"    executor: {dask_scheduler}\n"
    )
    result, run_dir = run(find_suite(folder), tmp_path / "results")

    case = result.cases[0]
    assert case.status is Status.PASSED, case.reason
    data = host_data(run_dir / layout.RESULTS_JSON, "dask")
    assert data["executor"] == "dask"
    assert data["walk_count"] == 12
    log = output(run_dir, result, "dask", "run", "srv1.t.test")
    assert len(re.findall(r"\[walk \d+\]: boom [01] from pid", log)) == 12
