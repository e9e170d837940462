"""`phalanx results convert` in every format, from a real results.json."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from phalanx.cli import main
from phalanx.model import CaseResult, HostResult, RunResult, StageResult, Status
from phalanx.report.json import write_json

SPEC = "iperf:CloudPunchTest"


@pytest.fixture
def results(tmp_path: Path) -> Path:
    hosts = [
        HostResult(
            host=f"h{i}",
            status=Status.PASSED,
            data={"final_results": {SPEC: {"rate": rate, "unit": "Mb/s"}}, "error": None},
        )
        for i, rate in enumerate([10, 30, 20])
    ]
    run = RunResult(
        run_id="r1",
        suite="s",
        status=Status.PASSED,
        cases=[
            CaseResult(
                name="throughput",
                status=Status.PASSED,
                stages=[StageResult(name="run", status=Status.PASSED, hosts=hosts)],
            )
        ],
    )
    path = tmp_path / "results.json"
    write_json(run, path)
    return path


@pytest.fixture
def convert(capsys: pytest.CaptureFixture[str]) -> Callable[..., str]:
    def run(*args: str) -> str:
        code = main(["results", "convert", *args])
        out, error = capsys.readouterr()
        assert code == 0, error
        return out

    return run


def test_json_has_one_row_per_host_and_test(results: Path, convert: Callable[..., str]):
    rows = json.loads(convert(str(results), "--format", "json"))
    assert [(r["host"], r["test"], r["result"]["rate"]) for r in rows] == [
        ("h0", SPEC, 10),
        ("h1", SPEC, 30),
        ("h2", SPEC, 20),
    ]


def test_yaml_and_stat(results: Path, convert: Callable[..., str]):
    doc = yaml.safe_load(convert(str(results), "-f", "yaml", "--stat", "rate"))
    assert len(doc["rows"]) == 3
    assert doc["stat"] == {
        "name": "rate",
        "count": 3,
        "mean": 20.0,
        "median": 20.0,
        "minimum": 10.0,
        "maximum": 30.0,
    }


def test_csv_flattens_result_fields(results: Path, convert: Callable[..., str]):
    table = list(csv.reader(io.StringIO(convert(str(results), "-f", "csv"))))
    assert table[0] == ["case", "stage", "host", "test", "status", "rate", "unit"]
    assert table[2] == ["throughput", "run", "h1", SPEC, "passed", "30", "Mb/s"]


def test_table_and_html(results: Path, tmp_path: Path, convert: Callable[..., str]):
    text = convert(str(results), "-f", "table", "--stat", "rate")
    assert "h2" in text and "Mb/s" in text
    assert "rate: n=3 mean=20 median=20 min=10 max=30" in text
    out = tmp_path / "r.html"
    convert(str(results), "-f", "html", "-o", str(out))

    cells: list[str] = []

    class Cells(HTMLParser):
        def handle_data(self, data: str) -> None:
            if data.strip():
                cells.append(data.strip())

    Cells().feed(out.read_text())
    assert cells[cells.index("unit") + 1 :][:7] == [
        "throughput",
        "run",
        "h0",
        SPEC,
        "passed",
        "10",
        "Mb/s",
    ]


def test_bad_format_and_missing_stat_are_usage_errors(results: Path):
    assert main(["results", "convert", str(results), "-f", "xml"]) == 2
    assert main(["results", "convert", str(results), "--stat", "nope"]) == 2
