"""No raw JSON where a person reads (issue 23, item 10): a walks run's
summary and `phalanx results convert` say what happened in words and
columns, and convert says so when a run has nothing to convert."""

from __future__ import annotations

import json
from pathlib import Path

from tests.kinds.test_walks import make_repo
from tests.test_cli import EXAMPLES, only_run, phalanx


def test_a_walks_run_is_summed_up_in_words_and_converted_to_columns(tmp_path: Path) -> None:
    folder = make_repo(tmp_path / "repo", "boom", "[Pick, Pick, Bump, Boom]")
    done = phalanx("run", str(folder), "--plain", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert '"walk_count"' not in done.stdout and "{" not in done.stdout
    assert "36 walks ran, 2 failed (product" in done.stdout
    assert "walk 17 failed at Boom(1): ValueError: planted failure" in done.stdout

    results = only_run(tmp_path) / "results.json"
    table = phalanx("results", "convert", str(results), cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "{" not in table.stdout and len(table.stdout.splitlines()) < 12
    for column in ("walks", "pruned", "failed", "strategy", "trace"):
        assert f" {column} " in table.stdout
    csv = phalanx("results", "convert", str(results), "-f", "csv", cwd=tmp_path).stdout
    lines = csv.splitlines()
    assert (
        lines[0]
        == "case,stage,host,test,status,walks,pruned,failed,cancelled,strategy,seed,seconds,trace,error"
    )
    assert lines[1].startswith("boom,run,srv1.t.test,boom,failed,36,0,2,0,product,,")
    assert lines[2].startswith("boom,run,srv1.t.test,walk 17,failed,,,,,,,,,walk 17 failed at")
    as_json = json.loads(
        phalanx("results", "convert", str(results), "-f", "json", cwd=tmp_path).stdout
    )
    assert as_json[0]["result"]["walks"] == 36 and as_json[0]["result"]["failed"] == 2


def test_converting_a_scripts_run_says_there_is_nothing_to_convert(tmp_path: Path) -> None:
    done = phalanx(
        "run", str(EXAMPLES / "test-suites" / "hello"), "-t", "greet", "--plain", cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = only_run(tmp_path) / "results.json"
    table = phalanx("results", "convert", str(results), cwd=tmp_path)
    assert table.returncode == 0 and table.stdout == ""
    assert "no host reported results in run" in table.stderr
    assert "only walks and Python tests report them" in table.stderr
    as_json = phalanx("results", "convert", str(results), "-f", "json", cwd=tmp_path)
    assert as_json.stdout == "[]\n"
