"""Random and mutated definition files either load or fail with
DefinitionErrors that name the file: never a traceback, never a hang.

Documents are built two ways: from the loaders' own vocabulary of keys with
values of any shape (so deep paths are reached), and from the repository's
real example files with characters deleted, inserted or swapped (so the YAML
layer's errors are reached too).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanx.load.cluster import load_cluster
from phalanx.load.errors import DefinitionErrors
from phalanx.load.repo import find_suite
from phalanx.load.tree import find_tests

EXAMPLES = Path(__file__).parents[2] / "examples"

SUITE_KEYS = ["name", "cluster", "clusters", "machines", "tests", "initialize", "finalize",
              "schedule", "logs", "alert_emails", "alert_success", "alert_failure", "timeout",
              "tags", "params", "description", "kind", "run", "roles", "class", "module",
              "order", "strategy", "executor", "state", "seed", "max_workers", "shrink",
              "server_client_mode", "test_mode"]  # fmt: skip
CLUSTER_KEYS = ["name", "hosts", "network", "ip", "mac", "roles", "aliases", "disks", "size",
                "device", "mount_point", "netmask", "dhcp_range", "bridge_name", "ram_size",
                "arch", "boot_image", "params", "description"]  # fmt: skip
TREE_KEYS = ["tests", "test", "dir", "testinfo", "properties", "tags", "dependencies",
             "skip", "expected-result", "test-modules", "test-object", "modules", "typename",
             "config-section", "app", "python", "custom", "summary", "description",
             "test-object-config", "processes", "command", "event-action-config",
             "process-output", "match", "count", "logger", "stop_test"]  # fmt: skip

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["file://run.sh", "file:///etc/hostname", "file://../../x", "30 3 * * *",
                     "90s", "-5", "20G", "10.0.0.1", "h1", "SUITE", "local:Thing", ""]),
)  # fmt: skip


def documents(keys: list[str]) -> st.SearchStrategy[Any]:
    key = st.one_of(st.sampled_from(keys), st.text(max_size=8))
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(key, inner, max_size=6)
        ),
        max_leaves=25,
    ).flatmap(lambda v: st.dictionaries(st.sampled_from(keys), st.just(v) | scalars, max_size=8))


def mutations(text: str) -> st.SearchStrategy[str]:
    """`text` with a few characters deleted, inserted or replaced."""
    edit = st.tuples(
        st.sampled_from(["delete", "insert", "replace"]),
        st.integers(0, max(len(text) - 1, 0)),
        st.sampled_from([*":-[]{}'\"#&*!|>%@ \t\n", "\x00", "é", "0", "a"]),
    )

    def apply(edits: list[tuple[str, int, str]]) -> str:
        out = text
        for op, at, char in edits:
            at = min(at, len(out))
            if op == "delete":
                out = out[:at] + out[at + 1 :]
            elif op == "insert":
                out = out[:at] + char + out[at:]
            else:
                out = out[:at] + char + out[at + 1 :]
        return out

    return st.lists(edit, min_size=1, max_size=6).map(apply)


def as_text(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True)


@contextmanager
def copy_of(source: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="phalanx-fuzz-") as tmp:
        target = Path(tmp) / source.name
        shutil.copytree(source, target)
        yield target


def loads_or_names_the_file(load: Callable[[], object], root: Path) -> None:
    """`load()` succeeds, or every error it raises names a definition file
    below `root` and says something."""
    try:
        load()
    except DefinitionErrors as exc:
        assert exc.errors, "DefinitionErrors with no error in it"
        for error in exc.errors:
            assert error.file is not None, error
            assert error.file.resolve().is_relative_to(root.resolve()), error
            assert error.message.strip(), error
            assert str(error).startswith(str(error.file))


def _suite_text(repo: Path) -> str:
    return (repo / "test-suites" / "hello" / "suite.yaml").read_text()


@SETTINGS
@given(st.data())
def test_suite_yaml(data: st.DataObject) -> None:
    with copy_of(EXAMPLES / "repo") as repo:
        suite = repo / "test-suites" / "hello"
        text = data.draw(
            st.one_of(documents(SUITE_KEYS).map(as_text), mutations(_suite_text(repo))),
            label="suite.yaml",
        )
        (suite / "suite.yaml").write_text(text, encoding="utf-8")
        loads_or_names_the_file(lambda: find_suite(suite), repo)


@SETTINGS
@given(st.data())
def test_cluster_yaml(data: st.DataObject) -> None:
    with copy_of(EXAMPLES / "repo" / "clusters") as clusters:
        file = clusters / "local4.yaml"
        text = data.draw(
            st.one_of(documents(CLUSTER_KEYS).map(as_text), mutations(file.read_text())),
            label="cluster.yaml",
        )
        file.write_text(text, encoding="utf-8")
        loads_or_names_the_file(lambda: load_cluster(file), clusters)


@SETTINGS
@given(st.data())
def test_tests_yaml(data: st.DataObject) -> None:
    with copy_of(EXAMPLES / "tree" / "tests") as tree:
        file = tree / "tests.yaml"
        text = data.draw(
            st.one_of(documents(TREE_KEYS).map(as_text), mutations(file.read_text())),
            label="tests.yaml",
        )
        file.write_text(text, encoding="utf-8")
        loads_or_names_the_file(lambda: find_tests(tree), tree)


@SETTINGS
@given(st.data())
def test_test_config_yaml(data: st.DataObject) -> None:
    with copy_of(EXAMPLES / "tree" / "tests") as tree:
        configs = sorted(tree.rglob("test-config.yaml"))
        file = data.draw(st.sampled_from(configs), label="which")
        text = data.draw(
            st.one_of(documents(TREE_KEYS).map(as_text), mutations(file.read_text())),
            label="test-config.yaml",
        )
        file.write_text(text, encoding="utf-8")
        loads_or_names_the_file(lambda: find_tests(tree), tree)
