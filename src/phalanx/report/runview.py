"""What the Run page shows, taken out of a run's JSON report as plain data:
the case-by-host matrix, the hosts' output tails, collected logs, the tests'
final_results and their numeric series, the walks. Pure: dict in, dataclasses
out; the HTML templates only lay these out.

The report is results.json's dict (`report.json.to_json`), or the same shape
for a run still going (stages and hosts without an end). Nothing in it is
trusted: every value is checked for its type before use, and text is escaped
by whoever renders it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeGuard

from phalanx.report.text import clean
from phalanx.report.timeline import LOOKS, SUITE, mappings, moment, took

# A status and where it stands: worst first, as `model.worst` folds them.
ORDER = ("error", "timeout", "failed", "cancelled", "running", "pending", "passed", "skipped")
TAIL_LINES = 40
TAIL_CHARS = 8 * 1024
TAILS_PER_HOST = 8  # of stages that went wrong; the host's latest output besides
WALK_IDS = 200  # failed walk ids listed; the rest are counted
# Fields of over-time results that say when, not how much: the x axis, not a series.
CLOCKS = frozenset({"t", "time", "ts", "timestamp", "second", "seconds", "elapsed", "when"})
_EPOCH = datetime(1, 1, 1, tzinfo=UTC)


# A run's status in the service has two more: waiting to start, and left
# running by a coordinator that stopped.
RUN_GLYPHS = {"queued": "…", "interrupted": "↯"}


def glyph(status: str) -> str:
    """The sign that shows a status besides its colour."""
    look = LOOKS.get(status)
    return look.glyph if look else RUN_GLYPHS.get(status, "?")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def seconds_of(item: Mapping[str, Any]) -> float | None:
    """An item's duration: its `duration`, else from its times; None: not ended."""
    duration = item.get("duration")
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        return float(duration)
    start, end = moment(item.get("started_at")), moment(item.get("ended_at"))
    return (end - start).total_seconds() if start and end else None


def took_text(item: Mapping[str, Any]) -> str:
    found = seconds_of(item)
    return "" if found is None else took(found)


# --- the header --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    run_id: str
    suite: str
    cluster: str | None
    status: str
    reason: str | None
    started_at: str | None
    duration: str
    hosts: int
    counts: tuple[tuple[str, int], ...]  # of the cases, worst first


def header(report: Mapping[str, Any], now: Any = None) -> Header:
    """`now`: what a run still going is measured up to (a datetime or ISO
    text); without it, such a run shows no duration."""
    statuses = [str(c.get("status", "pending")) for c in mappings(report.get("cases"))]
    counts = tuple((s, statuses.count(s)) for s in ORDER if s in statuses)
    counts += tuple(
        (s, statuses.count(s)) for s in sorted(set(statuses)) if s not in ORDER
    )  # a status this version does not know still counts
    started = moment(report.get("started_at"))
    return Header(
        run_id=str(report.get("run_id", "")),
        suite=str(report.get("suite", "")),
        cluster=_text(report.get("cluster")),
        status=str(report.get("status", "pending")),
        reason=_text(report.get("reason")),
        started_at=started.strftime("%Y-%m-%d %H:%M:%S %Z") if started else None,
        duration=took_text(report) or _so_far(started, moment(now)),
        hosts=len(hosts_of(report)),
        counts=counts,
    )


def _so_far(started: datetime | None, now: datetime | None) -> str:
    return took(max(0.0, (now - started).total_seconds())) if started and now else ""


# --- the matrix --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Chip:
    """One stage on one host."""

    stage: str
    status: str
    title: str  # what hovering tells
    output: str | None  # path of its whole output, relative to the run folder


@dataclass(frozen=True, slots=True)
class MatrixRow:
    name: str  # `suite` for the suite's own stages
    suite: bool
    status: str
    reason: str | None
    duration: str
    cells: tuple[tuple[Chip, ...], ...]  # one per host


def hosts_of(report: Mapping[str, Any]) -> tuple[str, ...]:
    """The run's hosts, then any a stage names that the run's list does not."""
    found: dict[str, None] = dict.fromkeys(str(h) for h in report.get("hosts") or ())
    for _, stage in stages_of(report):
        for host in mappings(stage.get("hosts")):
            found.setdefault(str(host.get("host", "?")))
    return tuple(found)


def stages_of(report: Mapping[str, Any]) -> Iterator[tuple[str | None, Mapping[str, Any]]]:
    """(case name or None for the suite, stage) of every stage, in run order:
    the suite's initialize, the cases, then its other stages."""
    suite = mappings(report.get("stages"))
    for stage in suite[:1]:
        yield None, stage
    for case in mappings(report.get("cases")):
        for stage in mappings(case.get("stages")):
            yield str(case.get("name", "?")), stage
    for stage in suite[1:]:
        yield None, stage


def _chip(case: str | None, stage: Mapping[str, Any], host: Mapping[str, Any]) -> Chip:
    status = str(host.get("status", "pending"))
    name = str(stage.get("name", "?"))
    parts = [case or SUITE, name, str(host.get("host", "?")), status]
    if (duration := took_text(host)) != "":
        parts.append(duration)
    if host.get("reason"):
        parts.append(str(host["reason"]))
    output = host.get("output")
    return Chip(name, status, " · ".join(parts), str(output) if output else None)


def _row(
    name: str | None, status: str, reason: Any, item: Mapping[str, Any], hosts: tuple[str, ...]
) -> MatrixRow:
    cells: dict[str, list[Chip]] = {h: [] for h in hosts}
    for stage in mappings(item.get("stages")):
        for host in mappings(stage.get("hosts")):
            cells.setdefault(str(host.get("host", "?")), []).append(_chip(name, stage, host))
    return MatrixRow(
        name=name or SUITE,
        suite=name is None,
        status=status,
        reason=_text(reason),
        duration=took_text(item),
        cells=tuple(tuple(cells[h]) for h in hosts),
    )


def matrix(report: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[MatrixRow, ...]]:
    """The hosts (columns) and a row per case, the suite's stages first."""
    hosts = hosts_of(report)
    rows = []
    suite = mappings(report.get("stages"))
    if suite:
        statuses = [str(s.get("status", "pending")) for s in suite]
        status = next((s for s in ORDER if s in statuses), statuses[0])
        rows.append(_row(None, status, None, {"stages": suite}, hosts))
    for case in mappings(report.get("cases")):
        rows.append(
            _row(
                str(case.get("name", "?")),
                str(case.get("status", "pending")),
                case.get("reason"),
                case,
                hosts,
            )
        )
    return hosts, tuple(rows)


# --- output tails ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tail:
    case: str
    stage: str
    status: str
    path: str | None
    size: int | None
    text: str
    cut: bool  # earlier output is not shown


@dataclass(frozen=True, slots=True)
class HostTails:
    host: str
    tails: tuple[Tail, ...]  # in run order
    left_out: int  # stages that went wrong whose tails are not shown


def _tail(case: str | None, stage: Mapping[str, Any], host: Mapping[str, Any]) -> Tail:
    text = str(host.get("output_tail") or "")
    size = host.get("output_size")
    size = size if isinstance(size, int) and not isinstance(size, bool) else None
    lines = text.splitlines()
    cut = len(lines) > TAIL_LINES or (size is not None and size > len(text.encode()))
    shown = "\n".join(lines[-TAIL_LINES:])[-TAIL_CHARS:]
    cut = cut or len(shown) < len("\n".join(lines[-TAIL_LINES:]))
    output = host.get("output")
    return Tail(
        case or SUITE,
        str(stage.get("name", "?")),
        str(host.get("status", "pending")),
        str(output) if output else None,
        size,
        clean(shown),
        cut,
    )


def tails(report: Mapping[str, Any]) -> tuple[HostTails, ...]:
    """Per host: the tails of its stages that went wrong (the latest
    `TAILS_PER_HOST`) and of the last stage it wrote output in (the one
    running, while the run goes)."""
    per_host: dict[str, list[tuple[str | None, Mapping[str, Any], Mapping[str, Any]]]] = {
        h: [] for h in hosts_of(report)
    }
    for case, stage in stages_of(report):
        for host in mappings(stage.get("hosts")):
            if host.get("output") or host.get("output_tail"):
                per_host.setdefault(str(host.get("host", "?")), []).append((case, stage, host))
    out = []
    for name, seen in per_host.items():
        bad = [
            i for i, (_, _, h) in enumerate(seen) if h.get("status") not in ("passed", "skipped")
        ]
        keep = set(bad[-TAILS_PER_HOST:])
        latest = max(
            range(len(seen)),
            key=lambda i: moment(seen[i][2].get("started_at")) or _EPOCH,
            default=None,
        )
        if latest is not None:
            keep.add(latest)
        out.append(
            HostTails(
                name,
                tuple(_tail(*seen[i]) for i in sorted(keep)),
                max(0, len(bad) - TAILS_PER_HOST),
            )
        )
    return tuple(out)


# --- collected logs ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogFile:
    case: str
    stage: str
    host: str
    path: str  # relative to the run folder


def logs(report: Mapping[str, Any]) -> tuple[LogFile, ...]:
    found = []
    for case, stage in stages_of(report):
        for host in mappings(stage.get("hosts")):
            for path in host.get("logs") or ():
                found.append(
                    LogFile(
                        case or SUITE, str(stage.get("name", "?")), str(host.get("host")), str(path)
                    )
                )
    return tuple(found)


# --- virtual machines ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VmFacts:
    host: str
    accel: str
    ram: str
    started: str  # QEMU's start to the agent's start
    connected: str  # ...to the agent's connection
    migrations: str
    ended_by: str
    events: str  # QMP events by name, with their counts
    console: str | None  # its path in the run folder
    events_path: str | None


NONE = "\u2013"  # a fact not known


def _secs(value: Any) -> str:
    return f"{value:.1f} s" if is_number(value) else NONE


def vms(report: Mapping[str, Any]) -> tuple[VmFacts, ...]:
    """A row per VM of the run (results.json's `vms`)."""
    found = report.get("vms")
    if not isinstance(found, Mapping):
        return ()
    rows = []
    for host, vm in found.items():
        if not isinstance(vm, Mapping):
            continue
        moves = mappings(vm.get("migrations"))
        migrations = (
            f"{len(moves)} ({', '.join(_secs(m.get('seconds')) for m in moves)})" if moves else NONE
        )
        qmp = vm.get("qmp_events")
        qmp = qmp if isinstance(qmp, Mapping) else {}
        counts = qmp.get("counts")
        counts = counts if isinstance(counts, Mapping) else {}
        ram = vm.get("ram_mb")
        rows.append(
            VmFacts(
                host=str(host),
                accel=str(vm.get("accel") or "?").upper(),
                ram=f"{ram} MiB" if is_number(ram) else NONE,
                started=_secs(vm.get("boot_to_agent_s")),
                connected=_secs(vm.get("boot_to_connected_s")),
                migrations=migrations,
                ended_by=str(vm.get("ended_by") or NONE),
                events=", ".join(f"{name} {n}" for name, n in counts.items()) or NONE,
                console=_text(vm.get("console")),
                events_path=_text(qmp.get("path")),
            )
        )
    return tuple(rows)


# --- final_results -----------------------------------------------------------------


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_walks(data: Any) -> TypeGuard[Mapping[str, Any]]:
    """A `walks` case's host data: shown as walks, not as results."""
    return isinstance(data, Mapping) and "walk_count" in data


@dataclass(frozen=True, slots=True)
class ResultRow:
    case: str
    stage: str
    host: str
    test: str
    status: str
    value: Any


def result_rows(report: Mapping[str, Any]) -> tuple[ResultRow, ...]:
    """One row per host and test that reported data: each of a Python
    test's `final_results`, or a kind's data as it is (walks aside)."""
    found: list[ResultRow] = []
    for case, stage in stages_of(report):
        for host in mappings(stage.get("hosts")):
            data = host.get("data")
            if data is None or is_walks(data):
                continue
            where = (case or SUITE, str(stage.get("name", "?")), str(host.get("host", "?")))
            status = str(host.get("status", "pending"))
            tests = data.get("final_results") if isinstance(data, Mapping) else None
            if isinstance(tests, Mapping):
                found += [ResultRow(*where, str(t), status, v) for t, v in tests.items()]
            else:
                found.append(ResultRow(*where, case or SUITE, status, data))
    return tuple(found)


def series_of(value: Any) -> dict[str, list[float]]:
    """The numeric series in a result: a list of numbers (named ``), a
    mapping's lists of numbers (by key), a list of mappings' numeric fields
    (by field: CloudPunch's over-time results). Two points at least."""
    found: dict[str, list[float]] = {}
    if isinstance(value, list):
        if len(value) >= 2 and all(is_number(v) for v in value):
            found[""] = [float(v) for v in value]
        elif len(value) >= 2 and all(isinstance(v, Mapping) for v in value):
            keys = [k for k, v in value[0].items() if is_number(v) and str(k) not in CLOCKS]
            for key in keys:
                if all(is_number(v.get(key)) for v in value):
                    found[str(key)] = [float(v[key]) for v in value]
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            for sub, points in series_of(inner).items():
                found[f"{key}.{sub}" if sub else str(key)] = points
    return found


@dataclass(frozen=True, slots=True)
class Series:
    """One chart: a field of one test of one case, a line per host."""

    case: str
    test: str
    name: str
    lines: tuple[tuple[str, tuple[float, ...]], ...]  # host, points


def all_series(rows: tuple[ResultRow, ...]) -> tuple[Series, ...]:
    charts: dict[tuple[str, str, str], list[tuple[str, tuple[float, ...]]]] = {}
    for row in rows:
        for name, points in series_of(row.value).items():
            charts.setdefault((row.case, row.test, name), []).append((row.host, tuple(points)))
    return tuple(Series(c, t, n, tuple(lines)) for (c, t, n), lines in charts.items())


@dataclass(frozen=True, slots=True)
class ResultTable:
    """The rows of one case and test, with the fields of their results as
    columns when results are mappings (a series shows as its length)."""

    case: str
    test: str
    columns: tuple[str, ...]  # empty: one `result` column
    rows: tuple[tuple[str, str, tuple[str, ...]], ...]  # host, status, cells


def shown(value: Any, limit: int = 160) -> str:
    import json

    if isinstance(value, str):
        text = value
    elif is_number(value) or isinstance(value, bool) or value is None:
        text = json.dumps(value)
    elif isinstance(value, list) and series_of(value):
        text = f"{len(value)} points (chart below)"
    else:
        text = json.dumps(value, separators=(", ", ": "), default=str, ensure_ascii=False)
    text = clean(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def result_tables(rows: tuple[ResultRow, ...]) -> tuple[ResultTable, ...]:
    grouped: dict[tuple[str, str], list[ResultRow]] = {}
    for row in rows:
        grouped.setdefault((row.case, row.test), []).append(row)
    tables = []
    for (case, test), group in grouped.items():
        columns: dict[str, None] = {}
        if all(isinstance(r.value, Mapping) for r in group):
            for r in group:
                columns.update(dict.fromkeys(str(k) for k in r.value))
        cells = tuple(
            (
                r.host,
                r.status,
                tuple(shown(r.value.get(c, "")) for c in columns) if columns else (shown(r.value),),
            )
            for r in group
        )
        tables.append(ResultTable(case, test, tuple(columns), cells))
    return tuple(tables)


# --- walks -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FailedWalk:
    walk_id: str
    text: str
    replay: str | None  # the command line that replays it


@dataclass(frozen=True, slots=True)
class Walks:
    case: str
    host: str
    status: str
    counts: tuple[tuple[str, str], ...]  # label, value
    failed_ids: tuple[str, ...]
    more_failed: int  # failed walks not listed
    failures: tuple[FailedWalk, ...]
    shrunk: tuple[str, ...]
    trace: str | None  # on the host, relative to its working directory
    trace_copy: str | None  # the trace collected into the run folder, if it was
    problem: str | None  # the walks could not run


_COUNTS = (
    ("walk_count", "walks"),
    ("error_count", "failed"),
    ("segment_count", "segments"),
    ("cancel_count", "cancelled"),
    ("pruned_count", "pruned"),
    ("strategy", "strategy"),
    ("seed", "seed"),
    ("executor", "executor"),
)


def replay_line(trace: str, walk_id: Any) -> str:
    """`phalanx replay TRACE WALK_ID`, as the walks process prints it."""
    import shlex

    return f"phalanx replay {shlex.quote(trace)} {shlex.quote(str(walk_id))}"


def _trace_copy(trace: str | None, logs: list[str]) -> str | None:
    if not trace:
        return None
    name = trace.rstrip("/").rsplit("/", 1)[-1]
    return next((p for p in logs if p.endswith(name)), None)


def walks(report: Mapping[str, Any]) -> tuple[Walks, ...]:
    found = []
    for case, stage in stages_of(report):
        for host in mappings(stage.get("hosts")):
            data = host.get("data")
            if not is_walks(data):
                continue
            trace = _text(data.get("trace"))
            counts = tuple(
                (label, str(data[key])) for key, label in _COUNTS if data.get(key) is not None
            )
            if is_number(data.get("elapsed")):
                counts += (("took", took(float(data["elapsed"]))),)
            ids = [str(i) for i in data.get("failed_tests") or ()]
            failures = tuple(
                FailedWalk(
                    str(f.get("walk_id")),
                    clean(str(f.get("text") or f.get("message") or "")),
                    replay_line(trace, f.get("walk_id")) if trace else None,
                )
                for f in mappings(data.get("failures"))
            )
            shrunk = tuple(
                clean(str(s.get("text") or s.get("walk") or ""))
                for s in mappings(data.get("shrunk"))
            )
            found.append(
                Walks(
                    case=case or SUITE,
                    host=str(host.get("host", "?")),
                    status=str(host.get("status", "pending")),
                    counts=counts,
                    failed_ids=tuple(ids[:WALK_IDS]),
                    more_failed=max(0, len(ids) - WALK_IDS),
                    failures=failures,
                    shrunk=shrunk,
                    trace=trace,
                    trace_copy=_trace_copy(trace, [str(p) for p in host.get("logs") or ()]),
                    problem=_text(data.get("infra_error") or data.get("error")),
                )
            )
    return tuple(found)


@dataclass(frozen=True, slots=True)
class RunView:
    """Everything the Run page shows."""

    header: Header
    hosts: tuple[str, ...]
    rows: tuple[MatrixRow, ...]
    tails: tuple[HostTails, ...]
    logs: tuple[LogFile, ...]
    results: tuple[ResultTable, ...]
    series: tuple[Series, ...]
    walks: tuple[Walks, ...] = field(default=())


def view(report: Mapping[str, Any]) -> RunView:
    hosts, rows = matrix(report)
    found = result_rows(report)
    return RunView(
        header=header(report),
        hosts=hosts,
        rows=rows,
        tails=tails(report),
        logs=logs(report),
        results=result_tables(found),
        series=all_series(found),
        walks=walks(report),
    )
