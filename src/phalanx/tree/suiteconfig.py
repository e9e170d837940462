"""What a test suite's own `test-config.yaml` and runtests.py's options make
of a loaded tree: excluded tests skipped with the entry that excludes them,
the environment runtests.py gives every test, the settings of the
dependency checks."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from phalanx.load import yamlsrc
from phalanx.load.errors import DefinitionError, DefinitionErrors
from phalanx.load.testconfig import GlobalConfig, parse_global
from phalanx.model import Suite

SUITE_CONFIG = "test-config.yaml"
VENVS = (".venv", "venv")


def read_global(tree: Path, given: Path | None) -> GlobalConfig:
    """`given` (--testsuite-config), else the test-config.yaml beside the
    tree, as runtests.py reads it from where it runs; none is fine."""
    file = given if given is not None else tree.resolve().parent / SUITE_CONFIG
    if given is None and not file.is_file():
        return GlobalConfig()
    if not file.is_file():
        raise DefinitionErrors([DefinitionError(file, None, None, "no such file")])
    return parse_global(yamlsrc.read(file, allow_duplicates=True))


def settings(
    tree: Path, asterisk: Path | None, python: Path | None, *, remote: bool
) -> dict[str, str]:
    """The dependency checks' settings (see host.depends.Checker). The tests'
    interpreter is `python`, else the suite's own venv when it has one."""
    root = tree.resolve().parent
    found: dict[str, str] = {"root": str(root)}
    if asterisk is not None:
        found["asterisk"] = str(asterisk)
    if python is None:
        for venv in VENVS:
            candidate = root / venv / "bin" / "python"
            if os.access(candidate, os.X_OK):
                python = candidate
                break
    if python is not None:
        found["python"] = str(python)
    if remote:
        found["remote"] = "1"
    return found


def suite_env(tree: Path, python: str | None) -> dict[str, str]:
    """runtests.py puts the suite's lib/python first on every test's
    PYTHONPATH (its tests import `asterisk.*` from there). The tests'
    interpreter's folder goes first on PATH, so that a `run-test` starting
    with `#!/usr/bin/env python3` runs with it, as in an activated venv."""
    env: dict[str, str] = {}
    lib = tree.resolve().parent / "lib" / "python"
    if lib.is_dir():
        given = os.environ.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(lib), given) if p)
    if python is not None:
        folder = os.path.dirname(os.path.abspath(python))
        env["PATH"] = os.pathsep.join(p for p in (folder, os.environ.get("PATH")) if p)
    return env


def apply(suite: Suite, config: GlobalConfig, env: dict[str, str], checks: dict[str, str]) -> Suite:
    cases = []
    for case in suite.cases:
        options = dict(case.options)
        entry = config.excluded_by(case.name)
        if entry is not None and not options.get("skip"):
            where = config.file.name if config.file is not None else SUITE_CONFIG
            options["skip"] = f"excluded by {where} ({config.configuration}): {entry!r}"
        options["env"] = {**env, "TESTSUITE_ACTIVE_TEST": case.name}
        options["checks"] = dict(checks)
        cases.append(replace(case, options=options))
    return replace(suite, cases=tuple(cases))
