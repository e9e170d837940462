"""Log records emitted on workers reach the coordinating process."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from phalanx.combinatorial import run_tests
from tests.combinatorial import actions as a


def worker_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("hello from pid")]


def test_worker_records_arrive_with_their_walk(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="phalanx.combinatorial")
    results = run_tests([a.Logs, a.Append2], state={}, log_dir=tmp_path, verbose=1)

    records = worker_records(caplog)
    assert len(records) == results.walk_count == 8
    pids = {int(r.getMessage().split()[3]) for r in records}
    assert os.getpid() not in pids  # emitted in worker processes, received here
    assert sorted(r.walk_id for r in records) == list(range(8))  # type: ignore[attr-defined]

    assert results.logs is not None
    text = results.logs.log.read_text()
    assert text.count("hello from pid") == 8
    assert "[walk 7]" in text


def test_verbosity_zero_keeps_info_off_the_console(capsys: pytest.CaptureFixture[str]) -> None:
    run_tests([a.Logs], state={}, verbose=0)
    assert "hello from pid" not in capsys.readouterr().err


def test_verbosity_one_prints_info_on_the_console(capsys: pytest.CaptureFixture[str]) -> None:
    run_tests([a.Logs], state={}, verbose=1)
    err = capsys.readouterr().err
    assert err.count("hello from pid") == 4
    assert "4 walks" in err
