"""Per-host results of a run as rows, and those rows as JSON, YAML, CSV, a
table or HTML (`phalanx results convert`). Pure: text in, text out."""

from __future__ import annotations

import csv
import html
import io
import json
import statistics
from dataclasses import dataclass
from typing import Any

import yaml

from phalanx.model import RunResult
from phalanx.report.hostdata import is_walks, value_text, walks_fields

FORMATS = ("json", "yaml", "csv", "table", "html")


@dataclass(frozen=True)
class Row:
    case: str
    stage: str
    host: str
    test: str
    status: str
    value: Any  # the test's final_results, or a kind's data

    def as_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "stage": self.stage,
            "host": self.host,
            "test": self.test,
            "status": self.status,
            "result": self.value,
        }


def rows(result: RunResult) -> list[Row]:
    """One row per host and test that reported data."""
    found: list[Row] = []
    for case in result.cases:
        for stage in case.stages:
            for host in stage.hosts:
                data = host.data
                if data is None:
                    continue
                if is_walks(data):
                    found += _walk_rows(case.name, stage.name, host.host, host.status.value, data)
                    continue
                tests = data.get("final_results") if isinstance(data, dict) else None
                if isinstance(tests, dict):
                    found += [
                        Row(case.name, stage.name, host.host, test, host.status.value, value)
                        for test, value in tests.items()
                    ]
                else:
                    found.append(
                        Row(case.name, stage.name, host.host, case.name, host.status.value, data)
                    )
    return found


def _walk_rows(case: str, stage: str, host: str, status: str, data: dict[str, Any]) -> list[Row]:
    """A walks case: its counts in one row, then one row per failed walk
    (what results.json details; the trace has them all)."""
    found = [Row(case, stage, host, case, status, walks_fields(data))]
    for failure in data.get("failures") or []:
        if isinstance(failure, dict):
            found.append(
                Row(
                    case,
                    stage,
                    host,
                    f"walk {failure.get('walk_id')}",
                    "failed",
                    {"error": failure.get("text")},
                )
            )
    return found


@dataclass(frozen=True)
class Stat:
    name: str
    count: int
    mean: float
    median: float
    minimum: float
    maximum: float


def stat(found: list[Row], name: str) -> Stat | None:
    """Summary of the numeric field `name` of every row's result; None if no
    row has it."""
    values = [
        float(r.value[name])
        for r in found
        if isinstance(r.value, dict)
        and isinstance(r.value.get(name), int | float)
        and not isinstance(r.value.get(name), bool)
    ]
    if not values:
        return None
    return Stat(
        name,
        len(values),
        statistics.fmean(values),
        statistics.median(values),
        min(values),
        max(values),
    )


def _columns(found: list[Row]) -> list[str]:
    """Result fields become columns when results are mappings."""
    keys: dict[str, None] = {}
    for r in found:
        if isinstance(r.value, dict):
            keys.update(dict.fromkeys(str(k) for k in r.value))
    return list(keys)


def flat(found: list[Row]) -> tuple[list[str], list[list[str]]]:
    """Header and cells, one cell per result field (or one `result` cell)."""
    fields = _columns(found)
    header = ["case", "stage", "host", "test", "status", *(fields or ["result"])]
    table = []
    for r in found:
        base = [r.case, r.stage, r.host, r.test, r.status]
        if fields:
            value = r.value if isinstance(r.value, dict) else {}
            table.append(base + [_cell(value.get(f)) for f in fields])
        else:
            table.append([*base, _cell(r.value)])
    return header, table


def _cell(value: Any) -> str:
    return value_text(value)


def render(found: list[Row], fmt: str, summary: Stat | None = None) -> str:
    if fmt == "json":
        doc: Any = [r.as_dict() for r in found]
        if summary is not None:
            doc = {"rows": doc, "stat": summary.__dict__}
        return json.dumps(doc, indent=2, default=repr) + "\n"
    if fmt == "yaml":
        doc = [r.as_dict() for r in found]
        if summary is not None:
            doc = {"rows": doc, "stat": summary.__dict__}
        return str(yaml.safe_dump(json.loads(json.dumps(doc, default=repr)), sort_keys=False))
    header, table = flat(found)
    if fmt == "table":
        return _table(header, table, summary)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(table)
        return out.getvalue()
    if fmt == "html":
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>\n" for row in table
        )
        stat_html = f"<p>{html.escape(_summary_line(summary))}</p>\n" if summary else ""
        return (
            "<!doctype html>\n<meta charset=utf-8>\n<title>phalanx results</title>\n"
            f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"
            + stat_html
        )
    raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")


def _summary_line(summary: Stat) -> str:
    return (
        f"{summary.name}: n={summary.count} mean={summary.mean:g} median={summary.median:g} "
        f"min={summary.minimum:g} max={summary.maximum:g}"
    )


def _table(header: list[str], cells: list[list[str]], summary: Stat | None) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(*header, title="results")
    for row in cells:
        table.add_row(*row)
    out = io.StringIO()
    console = Console(file=out, width=max(100, 16 * len(header)), color_system=None)
    console.print(table)
    if summary is not None:
        console.print(_summary_line(summary))
    return out.getvalue()
