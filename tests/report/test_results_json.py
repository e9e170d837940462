from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest

from phalanx.codec import iso
from phalanx.model import HostResult, RunResult, StageResult, Status
from phalanx.report.json import read_json, to_json, write_json
from tests.report.conftest import FAILING_OUTPUT


def _hosts(data: dict[str, object]) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    for stage in data["stages"]:  # type: ignore[attr-defined]
        found.extend(stage["hosts"])
    for case in data["cases"]:  # type: ignore[attr-defined]
        for stage in case["stages"]:
            found.extend(stage["hosts"])
    return found


def test_results_json_holds_the_whole_run(mixed_run: RunResult, run_dir: Path) -> None:
    path = run_dir / "results.json"
    write_json(mixed_run, path, run_dir)
    data = json.loads(path.read_text())

    assert (data["run_id"], data["suite"], data["status"]) == ("run-1", "hello", "error")
    assert data["hosts"] == ["srv1.phalanx.test", "srv2.phalanx.test"]
    assert [s["name"] for s in data["stages"]] == ["initialize", "finalize"]
    assert [(c["name"], c["status"]) for c in data["cases"]] == [
        ("case_pass", "passed"),
        ("case_fail", "failed"),
        ("case_error", "error"),
        ("case_timeout", "timeout"),
        ("case_skip", "skipped"),
    ]
    fail = data["cases"][1]
    run = fail["stages"][1]
    assert run["name"] == "run" and run["status"] == "failed"
    srv1 = run["hosts"][0]
    assert srv1 == {
        "host": "srv1.phalanx.test",
        "status": "failed",
        "exit_code": 1,
        "signal": None,
        "started_at": "2024-05-01T12:00:11.000000+00:00",
        "ended_at": "2024-05-01T12:00:12.500000+00:00",
        "duration": 1.5,
        "output": "cases/case_fail/run/srv1.phalanx.test.log",
        "output_tail": FAILING_OUTPUT,
        "output_size": len(FAILING_OUTPUT.encode()),
        "reason": "exit code 1",
        "logs": [],
        "data": None,
    }
    assert (run_dir / srv1["output"]).is_file()
    assert data["cases"][4]["reason"] == "needs #ipv6\nsupport"
    init_host = data["stages"][0]["hosts"][0]
    assert init_host["logs"] == ["suite/initialize/logs/srv1.phalanx.test/var_log_xrootd.log"]
    assert init_host["data"] == {"throughput": 12.5, "ok": True}


def test_every_timestamp_keeps_microseconds_and_its_offset(mixed_run: RunResult) -> None:
    data = to_json(mixed_run)
    stamps = [data["started_at"], data["ended_at"]]
    stamps += [c[k] for c in data["cases"] for k in ("started_at", "ended_at") if c[k]]
    stamps += [h[k] for h in _hosts(data) for k in ("started_at", "ended_at")]
    assert data["started_at"] == "2024-05-01T12:00:00.000000+00:00"
    assert data["cases"][1]["started_at"] == "2024-05-01T12:00:10.250000+00:00"
    for stamp in stamps:
        assert stamp[19] == "." and len(stamp.split(".")[1]) == len("000000+00:00")
        parsed = datetime.fromisoformat(stamp)
        assert parsed.tzinfo is not None


def test_a_naive_time_is_written_as_utc() -> None:
    assert iso(datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05.000000+00:00"
    assert iso(None) is None


def test_read_json_round_trips(mixed_run: RunResult, run_dir: Path) -> None:
    path = run_dir / "results.json"
    write_json(mixed_run, path)
    again = read_json(path)
    assert again == mixed_run
    assert (
        again.cases[1].stages[1].hosts[0].started_at
        == mixed_run.cases[1].stages[1].hosts[0].started_at
    )
    assert to_json(again) == to_json(mixed_run)


def test_unserializable_data_does_not_break_the_report(run_dir: Path) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    result = RunResult(
        run_id="r",
        suite="s",
        stages=[
            StageResult(
                name="initialize", hosts=[HostResult(host="h", data={"x": Opaque(), "t": (1, 2)})]
            )
        ],
    )
    write_json(result, run_dir / "results.json")
    data = json.loads((run_dir / "results.json").read_text())
    assert data["stages"][0]["hosts"][0]["data"] == {"x": "<opaque>", "t": [1, 2]}
    assert data["status"] == Status.PENDING.value
    assert data["started_at"] is None


def test_write_is_atomic(
    mixed_run: RunResult, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = run_dir / "results.json"
    path.write_text("previous")

    def broken(src: str, dst: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        write_json(mixed_run, path)
    assert path.read_text() == "previous"
    assert sorted(p.name for p in run_dir.iterdir() if p.is_file()) == ["results.json"]


def test_results_json_keeps_a_bounded_decoded_tail_and_the_files_path(tmp_path: Path) -> None:
    from phalanx.model import CaseResult
    from phalanx.report.json import OUTPUT_TAIL

    raw = b"caf\xe9 \xff\n"  # latin-1, not UTF-8
    big = "é".encode() * 50_000 + b"\nlast line\n"  # 100 KB: only its end is kept
    (tmp_path / "a.log").write_bytes(raw)
    (tmp_path / "b.log").write_bytes(big)
    hosts = [
        HostResult(host="a", status=Status.FAILED, output="a.log"),
        HostResult(host="b", status=Status.PASSED, output="b.log"),
        HostResult(host="c", status=Status.PASSED, output="missing.log"),
    ]
    result = RunResult(
        run_id="r",
        suite="s",
        status=Status.FAILED,
        cases=[CaseResult(name="c", stages=[StageResult(name="run", hosts=hosts)])],
    )
    write_json(result, tmp_path / "results.json", tmp_path)
    data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    a, b, c = data["cases"][0]["stages"][0]["hosts"]
    assert (a["output"], a["output_tail"], a["output_size"]) == ("a.log", "caf\ufffd \ufffd\n", 7)
    assert b["output_size"] == len(big)
    assert len(b["output_tail"].encode()) <= OUTPUT_TAIL
    assert b["output_tail"].endswith("é\nlast line\n") and "\ufffd" not in b["output_tail"]
    assert c["output_tail"] is None and c["output"] == "missing.log"
    assert (tmp_path / "a.log").read_bytes() == raw  # the file itself is untouched
    back = read_json(tmp_path / "results.json")
    assert back.cases[0].stages[0].hosts[0].output == "a.log"
