"""Asterisk-style test trees: `tests.yaml` lists `test:` and `dir:` entries,
each `dir:` holds another `tests.yaml`, each test folder a `test-config.yaml`
and an executable `run-test` (or `test-modules:` for a declarative test).

A tree loads as a suite on one local host with one case per test, named by
its path from the tree's parent (`tests/apps/sample`), sorted by that name as
Asterisk's runtests.py sorts them. A test whose files are broken is kept,
skipped with its first problem as the reason; only an unusable top
`tests.yaml` stops the load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from phalanx.load import testconfig, yamlsrc
from phalanx.load.errors import DefinitionError, DefinitionErrors
from phalanx.load.testconfig import TestConfig
from phalanx.load.treeroot import TESTS_YAML, tree_folder
from phalanx.model import Case, Cluster, Host, Suite

TEST_CONFIG = "test-config.yaml"
RUN_TEST = "run-test"
LOCAL_HOST = "localhost"
OPTIONAL_DIR = "custom"  # the real tree lists it and its checkout ignores it


@dataclass(frozen=True)
class TreeTest:
    name: str  # tests/apps/sample
    folder: Path
    config: TestConfig
    # Why it cannot run: it is listed, reported and skipped, and the rest of
    # the tree runs (as Asterisk's runtests.py does with a test it cannot read).
    broken: tuple[DefinitionError, ...] = ()


@dataclass(frozen=True)
class Scan:
    tests: list[TreeTest]  # sorted by name, the order runtests.py runs them in
    notes: list[DefinitionError]  # listing entries passed over (a missing folder)


def scan(folder: Path) -> Scan:
    """Every test the tree lists, each with its problems; raises only when
    the top `tests.yaml` itself gives nothing to run."""
    folder = folder.resolve()
    notes: list[DefinitionError] = []
    tests: list[TreeTest] = []
    top = _walk(folder, folder.name, notes, tests, set())
    if top:
        raise DefinitionErrors(top)
    tests.sort(key=lambda t: t.name)
    return Scan(tests, notes)


def find_tests(folder: Path) -> list[TreeTest]:
    """Every test the tree lists, in runtests.py's order (by name)."""
    return scan(folder).tests


def _walk(
    folder: Path,
    prefix: str,
    notes: list[DefinitionError],
    tests: list[TreeTest],
    seen: set[Path],
) -> list[DefinitionError]:
    """Walks one listing; returns the problems that make it unusable (the
    caller decides whether that is a note or the end)."""
    listing = folder / TESTS_YAML
    if folder in seen:  # a symlink loop would walk forever
        return [DefinitionError(listing, None, None, "this folder is listed twice")]
    seen.add(folder)
    try:
        source = yamlsrc.read(listing, allow_duplicates=True)
    except DefinitionErrors as exc:
        return exc.errors
    data = source.data
    entries = data.get("tests") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return [source.error("must have `tests:` with a list of `- test:` or `- dir:`")]
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or len(entry) != 1:
            notes.append(source.error("must be `- test: NAME` or `- dir: NAME`", "tests", index))
            continue
        ((key, value),) = entry.items()
        if key not in ("test", "dir") or not isinstance(value, str | int) or value == "":
            notes.append(source.error("must be `- test: NAME` or `- dir: NAME`", "tests", index))
            continue
        name = str(value).strip().strip("/")
        sub = folder / name
        if key == "test":
            tests.append(_test(sub, f"{prefix}/{name}", source, index))
        elif not sub.is_dir():
            # runtests.py passes over a listed folder that is not there; the
            # real tree lists `custom`, which its checkout ignores.
            if not (name == OPTIONAL_DIR and "/" not in prefix):
                notes.append(
                    source.error(f"no folder {name!r} in {folder}; passed over", "tests", index)
                )
        elif not (sub / TESTS_YAML).is_file():
            notes.append(source.error(f"{name}/ has no {TESTS_YAML}; passed over", "tests", index))
        else:
            notes.extend(_walk(sub, f"{prefix}/{name}", notes, tests, seen))
    return []


def _test(folder: Path, name: str, listing: yamlsrc.Source, index: int) -> TreeTest:
    config_file = folder / TEST_CONFIG
    try:
        config = testconfig.parse(yamlsrc.read(config_file, allow_duplicates=True))
    except DefinitionErrors as exc:
        if not folder.is_dir():
            where = listing.file.parent
            problem = listing.error(
                f"no folder {os.path.relpath(folder, where)!r} in {where}", "tests", index, "test"
            )
        elif not config_file.exists():
            problem = listing.error(f"{name} has no {TEST_CONFIG}", "tests", index, "test")
        else:
            return TreeTest(name, folder, TestConfig(), tuple(exc.errors))
        return TreeTest(name, folder, TestConfig(), (problem,))
    errors = list(config.errors)
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
    return TreeTest(name, folder, config, tuple(errors))


def broken_reason(test: TreeTest, root: Path) -> str | None:
    """The skip reason of a broken test: its first problem, its file named
    from the tree's parent."""
    if not test.broken:
        return None
    first = test.broken[0]
    if first.file is not None:
        first = replace(first, file=Path(os.path.relpath(first.file, root)))
    more = len(test.broken) - 1
    return f"broken: {first}" + (f" (and {more} more)" if more else "")


def to_case(test: TreeTest, root: Path) -> Case:
    config = test.config
    broken = broken_reason(test, root)
    return Case(
        name=test.name,
        kind="declarative" if config.declarative else "executable",
        timeout=config.timeout,
        check=config.check,
        tags=config.tags,
        path=test.folder,
        description=config.summary,
        options={
            "dir": str(test.folder),
            "cwd": str(root),
            "skip": broken or config.skip,
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
