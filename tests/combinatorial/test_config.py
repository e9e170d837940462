"""[combinatorial] in phalanx.toml, PHALANX_COMBINATORIAL_* overrides, and arguments on top."""

from __future__ import annotations

from pathlib import Path

import pytest

from phalanx.combinatorial import ExecutorError, run_tests
from phalanx.combinatorial.config import load_settings
from tests.combinatorial import actions as a


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("PHALANX_COMBINATORIAL_EXECUTOR", "PHALANX_COMBINATORIAL_MAX_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "phalanx.toml"
    path.write_text('[combinatorial]\nexecutor = "threads"\nmax_workers = 3\n')
    monkeypatch.setenv("PHALANX_CONFIG", str(path))
    return path


def test_file_then_environment_then_arguments(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().executor == "threads"
    assert load_settings().max_workers == 3

    monkeypatch.setenv("PHALANX_COMBINATORIAL_EXECUTOR", "dask://sched:8786")
    assert load_settings().executor == "dask://sched:8786"
    assert load_settings().max_workers == 3

    assert load_settings(executor="local").executor == "local"


def test_missing_file_gives_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PHALANX_COMBINATORIAL_EXECUTOR", raising=False)
    settings = load_settings(tmp_path / "absent.toml")
    assert (settings.executor, settings.max_workers) == ("local", None)


def test_run_tests_follows_the_config(config: Path) -> None:
    assert run_tests([a.Append3], state={}).executor == "threads"
    assert run_tests([a.Append3], state={}, executor="local").executor == "local"


def test_unknown_executor(config: Path) -> None:
    with pytest.raises(ValueError, match="unknown executor"):
        run_tests([a.Append3], executor="carrier-pigeon")


class NotOnWorkers(a.Append3):
    pass


# As if defined in a module the workers do not have.
NotOnWorkers.__module__ = "module_only_the_coordinator_has"


def test_action_module_missing_on_workers_is_an_executor_error() -> None:
    with pytest.raises(ExecutorError, match="module_only_the_coordinator_has"):
        run_tests([NotOnWorkers], state={}, executor="local")
