"""A tree run starts light: the libraries that cost a tenth of a second each
to import (pydantic, Rich, a CLI framework) stay out of it. A run of 500
trivial tests has about a second in all (bench/executables.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.tree.helpers import make_tree

HEAVY = {"pydantic", "pydantic_core", "rich", "typer", "click", "fastapi", "starlette", "httpx"}

PROBE = """
import json, sys
from phalanx.cli import main
code = main(sys.argv[1:])
names = {m.split('.')[0] for m in sys.modules} | set(sys.modules)  # packages and modules
loaded = sorted(names & set(json.loads(HEAVY)))
print(json.dumps({"code": code, "heavy": loaded}), file=sys.stderr)
"""


def test_a_tree_run_imports_none_of_the_heavy_libraries(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a": ("testinfo:\n    summary: a\n", "#!/bin/sh\necho hi\n")})
    done = subprocess.run(
        [sys.executable, "-c", PROBE.replace("HEAVY", repr(json.dumps(sorted(HEAVY)))), "run",
         "tests", "-j", "2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "heavy": []}


# The service's stack (its store, migrations, password hashing, web API) is
# for `phalanx serve` and the admin commands: a run has its results folder.
# asyncssh is for the ssh provider's hosts only.
SERVICE_STACK = {
    "sqlalchemy", "alembic", "argon2", "fastapi", "fastapi_offline", "aiosqlite", "asyncpg", "asyncssh",
}  # fmt: skip
EXAMPLES = Path(__file__).parents[2] / "examples" / "repo"


def _imports_of(args: list[str], cwd: Path, heavy: set[str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.replace("HEAVY", repr(json.dumps(sorted(heavy)))), *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    report: dict[str, object] = json.loads(done.stderr.strip().splitlines()[-1])
    return report


# The agents' wire is msgspec's: a suite run on local hosts reads its
# agents' messages without pydantic (~0.1 s of CPU to import and build).
WIRE_ONLY = {"pydantic", "pydantic_core"}


# `phalanx run`'s coordinator listens on websockets' own server
# (coordinator/listener.py): uvicorn and what it brings (click, its
# reloaders), Starlette and anyio are `phalanx serve`'s. A run that selects
# nothing goes without the selection's modules (the -k grammar, the past
# runs' reader).
EMBEDDED = {"uvicorn", "click", "httptools", "watchfiles", "starlette", "anyio"}
UNSELECTED = {"phalanx.tree.select", "phalanx.tree.rerun", "phalanx.keywords"}
# Nor, on local hosts, the hypervisors' hub (qemu clusters' runs make it).
NO_VMS = {"phalanx.coordinator.hypervisors", "phalanx.providers.remote"}


def test_a_suite_run_and_a_tree_run_import_none_of_the_service_stack(tmp_path: Path) -> None:
    suite = ["run", str(EXAMPLES), "-s", "hello", "-t", "greet", "--plain"]
    heavy = SERVICE_STACK | WIRE_ONLY | EMBEDDED | UNSELECTED | NO_VMS
    assert _imports_of(suite, tmp_path, heavy) == {"code": 0, "heavy": []}
    make_tree(tmp_path, {"a": ("testinfo:\n    summary: a\n", "#!/bin/sh\necho hi\n")})
    tree = ["run", "tests", "-j", "2"]
    assert _imports_of(tree, tmp_path, SERVICE_STACK) == {"code": 0, "heavy": []}


# What only some commands need, and a run only once it writes its reports
# (XML, YAML, HTML) or opens its coordinator (the web stack): the parser
# that every command goes through imports none of it.
PARSER_PROBE = """
import json, sys
from phalanx.cli import main
try:
    main(["--help"])
except SystemExit as stop:
    code = stop.code
names = {m.split('.')[0] for m in sys.modules} | set(sys.modules)  # packages and modules
loaded = sorted(names & set(json.loads(HEAVY)))
print(json.dumps({"code": code, "heavy": loaded}), file=sys.stderr)
"""


def test_the_commands_parser_imports_none_of_the_heavy_libraries_nor_the_report_writers(
    tmp_path: Path,
) -> None:
    # Nor the model (its dataclasses): a command that loads definitions imports it.
    heavy = (
        HEAVY | SERVICE_STACK | {"jinja2", "yaml", "xml", "uvicorn", "websockets", "phalanx.model"}
    )
    done = subprocess.run(
        [sys.executable, "-c", PARSER_PROBE.replace("HEAVY", repr(json.dumps(sorted(heavy))))],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "usage: phalanx" in done.stdout
    assert json.loads(done.stderr.strip().splitlines()[-1]) == {"code": 0, "heavy": []}
