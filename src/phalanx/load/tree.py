"""Asterisk-style test trees: `tests.yaml` lists `test:` and `dir:` entries,
each `dir:` holds another `tests.yaml`, each test folder a `test-config.yaml`
and an executable `run-test` (or `test-modules:` for a declarative test).

A tree loads as a suite on one local host with one case per test, named by
its path from the tree's parent (`tests/apps/sample`), in listing order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from phalanx.load import testconfig, yamlsrc
from phalanx.load.errors import DefinitionError, DefinitionErrors
from phalanx.load.testconfig import TestConfig
from phalanx.model import Case, Cluster, Host, Suite

TESTS_YAML = "tests.yaml"
TEST_CONFIG = "test-config.yaml"
RUN_TEST = "run-test"
LOCAL_HOST = "localhost"


@dataclass(frozen=True)
class TreeTest:
    name: str  # tests/apps/sample
    folder: Path
    config: TestConfig


def tree_folder(path: Path) -> Path | None:
    """The folder holding the top `tests.yaml`: `path` itself, or the `tests/`
    folder of an Asterisk test-suite checkout."""
    for candidate in (path, path / "tests"):
        if (candidate / TESTS_YAML).is_file():
            return candidate
    return None


def find_tests(folder: Path) -> list[TreeTest]:
    """Every test the tree lists, in order; every problem at once."""
    folder = folder.resolve()
    errors: list[DefinitionError] = []
    tests: list[TreeTest] = []
    _walk(folder, folder.name, errors, tests, set())
    if errors:
        raise DefinitionErrors(errors)
    return tests


def _walk(
    folder: Path,
    prefix: str,
    errors: list[DefinitionError],
    tests: list[TreeTest],
    seen: set[Path],
) -> None:
    listing = folder / TESTS_YAML
    if folder in seen:  # a symlink loop would walk forever
        errors.append(DefinitionError(listing, None, None, "this folder is listed twice"))
        return
    seen.add(folder)
    try:
        source = yamlsrc.read(listing)
    except DefinitionErrors as exc:
        errors.extend(exc.errors)
        return
    data = source.data
    entries = data.get("tests") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        errors.append(source.error("must have `tests:` with a list of `- test:` or `- dir:`"))
        return
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or len(entry) != 1:
            errors.append(source.error("must be `- test: NAME` or `- dir: NAME`", "tests", index))
            continue
        ((key, value),) = entry.items()
        if key not in ("test", "dir") or not isinstance(value, str | int) or value == "":
            errors.append(source.error("must be `- test: NAME` or `- dir: NAME`", "tests", index))
            continue
        name = str(value).strip().strip("/")
        sub = folder / name
        if key == "test":
            # Tests are read straight away: a tree has a folder per test, and
            # the checks below run only when the read fails.
            test = _test(sub, f"{prefix}/{name}", source, index, errors)
            if test is not None:
                tests.append(test)
        elif not sub.is_dir():
            errors.append(source.error(f"no folder {name!r} in {folder}", "tests", index, key))
        elif not (sub / TESTS_YAML).is_file():
            errors.append(source.error(f"{name}/ has no {TESTS_YAML}", "tests", index, key))
        else:
            _walk(sub, f"{prefix}/{name}", errors, tests, seen)


def _test(
    folder: Path, name: str, listing: yamlsrc.Source, index: int, errors: list[DefinitionError]
) -> TreeTest | None:
    config_file = folder / TEST_CONFIG
    try:
        config = testconfig.parse(yamlsrc.read(config_file))
    except DefinitionErrors as exc:
        if not folder.is_dir():
            where = listing.file.parent
            errors.append(
                listing.error(
                    f"no folder {os.path.relpath(folder, where)!r} in {where}",
                    "tests",
                    index,
                    "test",
                )
            )
        elif not config_file.exists():
            errors.append(listing.error(f"{name} has no {TEST_CONFIG}", "tests", index, "test"))
        else:
            errors.extend(exc.errors)
        return None
    errors.extend(config.errors)
    run_test = os.path.join(folder, RUN_TEST)
    if os.access(run_test, os.X_OK):
        if config.declarative:
            config = replace(config, declarative=False)  # a run-test, when present, is the test
    elif os.path.exists(run_test):
        errors.append(
            DefinitionError(Path(run_test), None, None, "is not executable (chmod +x run-test)")
        )
    elif not config.declarative:
        errors.append(
            DefinitionError(
                config_file, None, None, f"no {RUN_TEST} here and no `test-modules:` to run"
            )
        )
    return TreeTest(name, folder, config)


def to_case(test: TreeTest, root: Path) -> Case:
    config = test.config
    return Case(
        name=test.name,
        kind="declarative" if config.declarative else "executable",
        timeout=config.timeout,
        tags=config.tags,
        path=test.folder,
        description=config.summary,
        options={
            "dir": str(test.folder),
            "cwd": str(root),
            "skip": config.skip,
            "dependencies": [list(d) for d in config.dependencies],
            "expected_fail": config.expected_fail,
        },
    )


def load_tree(path: Path, tests: list[TreeTest] | None = None) -> Suite:
    """The tree at `path` as a suite on one local host. Tests run with the
    tree's parent as their working directory, as Asterisk's runtests.py does
    (tests refer to `lib/python` and `tests/…` from there)."""
    folder = tree_folder(path)
    if folder is None:
        raise DefinitionErrors(
            [DefinitionError(path, None, None, f"no {TESTS_YAML} here or in tests/")]
        )
    folder = folder.resolve()
    found = find_tests(folder) if tests is None else tests
    root = folder.parent
    return Suite(
        name=folder.name,
        cluster=Cluster(name="local", hosts=(Host(name=LOCAL_HOST),)),
        cases=tuple(to_case(t, root) for t in found),
        path=folder,
    )
