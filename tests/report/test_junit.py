from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from phalanx.model import RunResult
from phalanx.report.junit import write_junit

# The structure Jenkins (junit-10.xsd) and GitLab accept: element order,
# which children each element may have, which attributes, which are numbers.
_CHILDREN = {
    "testsuites": ["testsuite"],
    "testsuite": ["properties", "testcase", "system-out", "system-err"],
    "properties": ["property"],
    "testcase": ["skipped", "error", "failure", "system-out", "system-err"],
}
_ATTRIBUTES = {
    "testsuites": {"name", "time", "tests", "failures", "disabled", "errors", "skipped"},
    "testsuite": {
        "name", "tests", "failures", "errors", "time", "disabled", "skipped",
        "timestamp", "hostname", "id", "package", "file", "log", "url", "version",
    },
    "property": {"name", "value"},
    "testcase": {"name", "assertions", "time", "classname", "status"},
    "skipped": {"message"},
    "error": {"message", "type"},
    "failure": {"message", "type"},
    "system-out": set(),
    "system-err": set(),
    "properties": set(),
}  # fmt: skip
_REQUIRED = {"testsuite": {"name", "tests"}, "testcase": {"name"}, "property": {"name", "value"}}
_ONCE = {"properties", "skipped"}


def validate(element: ET.Element) -> None:
    assert set(element.attrib) <= _ATTRIBUTES[element.tag], element.tag
    assert _REQUIRED.get(element.tag, set()) <= set(element.attrib), element.tag
    for numeric in ("tests", "failures", "errors", "skipped"):
        if numeric in element.attrib:
            assert int(element.attrib[numeric]) >= 0
    if "time" in element.attrib:
        assert float(element.attrib["time"]) >= 0
    allowed = _CHILDREN.get(element.tag, [])
    order = [allowed.index(child.tag) for child in element]  # raises on an unknown child
    assert order == sorted(order), f"children of {element.tag} out of order"
    for tag in _ONCE:
        assert len(element.findall(tag)) <= 1
    for child in element:
        validate(child)


def parse(path: Path) -> ET.Element:
    raw = path.read_bytes()
    assert raw.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.fromstring(raw)
    validate(root)
    return root


def cases(root: ET.Element) -> dict[str, ET.Element]:
    return {c.attrib["name"]: c for c in root.iter("testcase")}


def test_counts_and_outcomes_match_the_run(mixed_run: RunResult, run_dir: Path) -> None:
    write_junit(mixed_run, run_dir, run_dir / "junit.xml")
    root = parse(run_dir / "junit.xml")
    (suite,) = root.findall("testsuite")
    assert suite.attrib["name"] == "hello"
    expected = {"tests": "5", "failures": "2", "errors": "1", "skipped": "1"}
    assert {k: suite.attrib[k] for k in expected} == expected
    assert {k: root.attrib[k] for k in expected} == expected
    assert float(suite.attrib["time"]) == 101.5
    assert datetime.fromisoformat(suite.attrib["timestamp"]) == datetime(2024, 5, 1, 12, 0, 0)

    by_name = cases(root)
    assert list(by_name) == ["case_pass", "case_fail", "case_error", "case_timeout", "case_skip"]
    assert all(c.attrib["classname"] == "hello" for c in by_name.values())
    assert by_name["case_pass"].find("failure") is None
    assert by_name["case_pass"].find("error") is None
    assert float(by_name["case_fail"].attrib["time"]) == 4.5

    failure = by_name["case_fail"].find("failure")
    assert failure is not None
    assert failure.attrib["type"] == "failed"
    assert failure.attrib["message"] == "run failed: srv1.phalanx.test (exit code 1)"

    timeout = by_name["case_timeout"].find("failure")
    assert timeout is not None and timeout.attrib["type"] == "timeout"

    error = by_name["case_error"].find("error")
    assert error is not None and by_name["case_error"].find("failure") is None
    assert error.attrib["message"] == "run error: srv2.phalanx.test (agent lost)"
    assert "=== run on srv2.phalanx.test: error, agent lost ===" in (error.text or "")

    skipped = by_name["case_skip"].find("skipped")
    assert skipped is not None and skipped.attrib["message"] == "needs #ipv6\nsupport"


def test_failure_text_is_the_tail_of_the_failing_host_only(
    mixed_run: RunResult, run_dir: Path
) -> None:
    write_junit(mixed_run, run_dir, run_dir / "junit.xml")
    failure = cases(parse(run_dir / "junit.xml"))["case_fail"].find("failure")
    assert failure is not None
    text = failure.text or ""
    assert text.startswith("=== run on srv1.phalanx.test: failed, exit code 1 ===")
    assert "cases/case_fail/run/srv1.phalanx.test.log" in text
    assert text.rstrip().endswith("LAST LINE OF SRV1")
    assert "ERROR: connection refused" in text  # colors gone, words kept
    assert "binary junk: \\x00 and a bare \\x1b here" in text
    assert "SRV2-PASSING-OUTPUT" not in text
    assert "setup line 299" in text and "setup line 200" not in text
    assert len([line for line in text.splitlines() if line.startswith("setup line")]) < 50


def test_testcase_system_out_points_into_the_run_folder(
    mixed_run: RunResult, run_dir: Path
) -> None:
    write_junit(mixed_run, run_dir, run_dir / "junit.xml")
    out = cases(parse(run_dir / "junit.xml"))["case_fail"].find("system-out")
    assert out is not None
    assert "run srv1.phalanx.test: failed output=cases/case_fail/run/srv1.phalanx.test.log" in (
        out.text or ""
    )


def test_suite_initialize_failure_skips_every_case_and_is_reported(
    init_failed_run: RunResult, run_dir: Path
) -> None:
    write_junit(init_failed_run, run_dir, run_dir / "junit.xml")
    root = parse(run_dir / "junit.xml")
    suite = root.find("testsuite")
    assert suite is not None
    expected = {"tests": "3", "failures": "1", "errors": "0", "skipped": "2"}
    assert {k: suite.attrib[k] for k in expected} == expected
    by_name = cases(root)
    assert list(by_name) == ["suite.initialize", "case_a", "case_b"]
    for name in ("case_a", "case_b"):
        skipped = by_name[name].find("skipped")
        assert skipped is not None
        assert skipped.attrib["message"] == init_failed_run.reason
    failure = by_name["suite.initialize"].find("failure")
    assert failure is not None
    assert "mkdir: cannot create /data: denied" in (failure.text or "")
    assert "srv2.phalanx.test" not in (failure.text or "")


def test_a_run_that_never_started_is_not_green(
    provisioning_failed_run: RunResult, run_dir: Path
) -> None:
    write_junit(provisioning_failed_run, run_dir, run_dir / "junit.xml")
    root = parse(run_dir / "junit.xml")
    by_name = cases(root)
    assert list(by_name) == ["case_a", "suite"]
    error = by_name["suite"].find("error")
    assert error is not None
    assert error.attrib["message"].startswith("provisioning failed")
    assert root.attrib["errors"] == "1"


def test_missing_output_file_is_said_not_fatal(mixed_run: RunResult, run_dir: Path) -> None:
    (run_dir / "cases/case_fail/run/srv1.phalanx.test.log").unlink()
    write_junit(mixed_run, run_dir, run_dir / "junit.xml")
    failure = cases(parse(run_dir / "junit.xml"))["case_fail"].find("failure")
    assert failure is not None
    assert "is missing" in (failure.text or "")


def test_control_characters_anywhere_still_make_valid_xml(
    mixed_run: RunResult, run_dir: Path
) -> None:
    bad = "bell\x07 nul\x00 esc\x1b[1m surrogate\udcff"
    mixed_run.cases[1].reason = bad
    hosts = mixed_run.cases[1].stages[1].hosts
    hosts[0] = replace(hosts[0], reason=bad)
    write_junit(mixed_run, run_dir, run_dir / "junit.xml")
    failure = cases(parse(run_dir / "junit.xml"))["case_fail"].find("failure")
    assert failure is not None
    assert re.fullmatch(r"bell\\x07 nul\\x00 esc surrogate\\xdcff", failure.attrib["message"])


def test_a_cancelled_run(cancelled_run: RunResult, run_dir: Path) -> None:
    write_junit(cancelled_run, run_dir, run_dir / "junit.xml")
    root = parse(run_dir / "junit.xml")
    by_name = cases(root)
    assert list(by_name) == ["case_a", "case_b", "case_c"]
    error = by_name["case_b"].find("error")
    assert error is not None and error.attrib["type"] == "cancelled"
    skipped = by_name["case_c"].find("skipped")
    assert skipped is not None
    assert skipped.attrib["message"] == "did not run: cancelled by alice"
    expected = {"tests": "3", "failures": "0", "errors": "1", "skipped": "1"}
    assert {k: root.attrib[k] for k in expected} == expected


def test_raw_output_bytes_are_replaced_only_in_the_report(
    mixed_run: RunResult, run_dir: Path
) -> None:
    output = run_dir / "cases/case_fail/run/srv1.phalanx.test.log"
    raw = b"\x1b]0;PWNED\x07caf\xe9 \xff\nlast \x1b[31mred\x1b[0m\n"
    output.write_bytes(raw)
    write_junit(mixed_run, run_dir, run_dir / "junit.xml")
    failure = cases(parse(run_dir / "junit.xml"))["case_fail"].find("failure")
    assert failure is not None
    text = failure.text or ""
    assert "caf\ufffd \ufffd\nlast red" in text
    assert "\x1b" not in text and "PWNED" not in text
    assert output.read_bytes() == raw


def test_the_end_of_one_huge_line_is_shown(mixed_run: RunResult, run_dir: Path) -> None:
    output = run_dir / "cases/case_fail/run/srv1.phalanx.test.log"
    output.write_bytes(b"x" * 100_000 + b"THE END")
    write_junit(mixed_run, run_dir, run_dir / "junit.xml")
    failure = cases(parse(run_dir / "junit.xml"))["case_fail"].find("failure")
    assert failure is not None and "THE END" in (failure.text or "")
