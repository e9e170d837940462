"""JUnit XML for Jenkins and GitLab: one <testsuite> named after the suite,
one <testcase> per case (plus the suite stages that did not pass).

A failing testcase carries, for each host that did not pass, the tail of
that host's output: what a CI user needs without opening the run folder.
Element order and attributes follow the schema Jenkins validates against
(testcase: skipped?, error*, failure*, system-out*).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

from phalanx.model import RunResult, Status, seconds
from phalanx.report.files import write_atomic
from phalanx.report.outcomes import Entry, Problem, entries
from phalanx.report.text import clean, tail

_FAILURES = frozenset({Status.FAILED, Status.TIMEOUT})
_ERRORS = frozenset({Status.ERROR, Status.CANCELLED})


def _time(value: float) -> str:
    return f"{value:.3f}"


def _timestamp(moment: datetime | None) -> str:
    """UTC, to the second, no offset: the one form every JUnit consumer
    accepts (the Ant schema's pattern)."""
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def _set(element: ET.Element, **attributes: str) -> None:
    for key, value in attributes.items():
        element.set(key, clean(value))


def _problem_text(problem: Problem, run_dir: Path) -> str:
    host = problem.host
    if host is None:
        return f"=== {problem.stage.name}: {problem.stage.status} ==="
    details = [str(host.status)]
    if host.exit_code is not None:
        details.append(f"exit code {host.exit_code}")
    if host.reason and host.reason != f"exit code {host.exit_code}":
        details.append(host.reason)
    header = f"=== {problem.stage.name} on {host.host}: {', '.join(details)} ==="
    if host.output is None:
        return f"{header}\n(no output file)"
    text = tail(run_dir / host.output)
    if text is None:
        return f"{header}\n(output file {host.output} is missing)"
    if not text:
        return f"{header}\n(no output; {host.output})"
    return f"{header}\n--- tail of {host.output} ---\n{text}"


def _failure_text(entry: Entry, run_dir: Path) -> str:
    if not entry.problems:
        return clean(entry.message)
    # Names and reasons come from users' programs too: clean the whole text.
    return clean("\n\n".join(_problem_text(p, run_dir) for p in entry.problems))


def _overview(entry: Entry) -> str:
    """Where everything about the entry lives in the run folder."""
    lines = []
    for stage in entry.stages:
        for host in stage.hosts:
            line = f"{stage.name} {host.host}: {host.status}"
            if host.output:
                line += f" output={host.output}"
            if host.logs:
                line += f" logs={','.join(host.logs)}"
            lines.append(line)
    return clean("\n".join(lines))


def _names(suite: str, name: str) -> tuple[str, str]:
    """A case named by a path (a tree test, `tests/apps/sample`) is listed
    under its folder (`tests/apps`) by its leaf; any other under the suite."""
    folder, _, leaf = name.rpartition("/")
    return (folder, leaf) if folder and leaf else (suite, name)


def _testcase(parent: ET.Element, entry: Entry, result: RunResult, run_dir: Path) -> str:
    """Append the testcase; return which JUnit outcome it counted as."""
    case = ET.SubElement(parent, "testcase")
    classname, name = _names(result.suite, entry.name)
    _set(case, classname=classname, name=name, time=_time(entry.seconds))
    if entry.status in _FAILURES:
        kind, tag = "failure", "failure"
    elif entry.status in _ERRORS:
        kind, tag = "error", "error"
    elif entry.status is Status.PASSED:
        kind, tag = "passed", ""
    else:
        # Skipped, or never ran because the run stopped first.
        kind, tag = "skipped", "skipped"
    if tag == "skipped":
        if entry.status.done:
            message = entry.reason or str(entry.status)
        else:
            message = f"did not run: {result.reason or 'the run stopped before it'}"
        ET.SubElement(case, "skipped").set("message", clean(message))
    elif tag:
        element = ET.SubElement(case, tag)
        _set(element, message=entry.message, type=entry.status.value)
        element.text = _failure_text(entry, run_dir)
    overview = _overview(entry)
    if overview:
        ET.SubElement(case, "system-out").text = overview
    return kind


def _subcases(parent: ET.Element, entry: Entry, result: RunResult) -> list[str]:
    """Testcases a kind reported inside one case (a host's data lists them
    under `testcases`: name, status, message, text), e.g. one per failed walk."""
    kinds = []
    for stage in entry.stages:
        for host in stage.hosts:
            found = host.data.get("testcases") if isinstance(host.data, dict) else None
            for sub in found if isinstance(found, list) else []:
                case = ET.SubElement(parent, "testcase")
                _set(case, classname=f"{result.suite}.{entry.name}", name=str(sub.get("name")))
                failed = sub.get("status") != "passed"
                if failed:
                    element = ET.SubElement(case, "failure")
                    _set(element, message=str(sub.get("message", "")), type="failed")
                    element.text = clean(str(sub.get("text", "")))
                kinds.append("failure" if failed else "passed")
    return kinds


def to_junit(result: RunResult, run_dir: Path) -> ET.Element:
    listed = entries(result)
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite")
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("run_id", result.run_id),
        ("status", result.status.value),
        ("cluster", result.cluster or ""),
        ("hosts", ",".join(result.hosts)),
        ("reason", result.reason or ""),
    ):
        if value:
            _set(ET.SubElement(properties, "property"), name=name, value=value)
    counts = {"failure": 0, "error": 0, "skipped": 0, "passed": 0}
    for entry in listed:
        counts[_testcase(suite, entry, result, run_dir)] += 1
        for kind in _subcases(suite, entry, result):
            counts[kind] += 1
    ET.SubElement(suite, "system-out").text = clean(
        f"run {result.run_id}: {result.status}" + (f" ({result.reason})" if result.reason else "")
    )
    totals = {
        "tests": str(sum(counts.values())),
        "failures": str(counts["failure"]),
        "errors": str(counts["error"]),
        "skipped": str(counts["skipped"]),
        "time": _time(seconds(result.started_at, result.ended_at)),
    }
    _set(root, name=result.suite, **totals)
    _set(
        suite,
        name=result.suite,
        **totals,
        timestamp=_timestamp(result.started_at),
        hostname=result.cluster or "localhost",
        id="0",
        package=result.suite,
    )
    return root


def write_junit(result: RunResult, run_dir: Path, path: Path) -> None:
    root = to_junit(result, run_dir)
    ET.indent(root)
    data = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    write_atomic(path, data + b"\n")
