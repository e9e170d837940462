"""What the Run page takes out of a run's JSON report."""

from __future__ import annotations

from phalanx.report.runview import glyph, header, series_of, walks


def test_numeric_series_are_found_in_the_shapes_tests_report() -> None:
    assert series_of([1, 2.5, 3]) == {"": [1.0, 2.5, 3.0]}
    assert series_of({"rtt": [1, 2], "mean": 1.5, "tags": ["a", "b"]}) == {"rtt": [1.0, 2.0]}
    overtime = [{"time": 0, "mbps": 10, "host": "a"}, {"time": 1, "mbps": 12, "host": "a"}]
    assert series_of({"overtime": overtime}) == {"overtime.mbps": [10.0, 12.0]}
    assert series_of([1]) == {}  # one point is no line
    assert series_of([True, False]) == {}  # booleans are not numbers here
    assert series_of([1, "x"]) == {}
    assert series_of("NoData") == {}


def test_a_run_status_of_the_service_has_a_glyph_too() -> None:
    assert glyph("failed") == "✗" and glyph("passed") == "✓"
    assert glyph("queued") != "?" and glyph("interrupted") != "?"
    assert glyph("something new") == "?"


def test_a_malformed_report_still_gives_a_header() -> None:
    found = header({"suite": 3, "cases": "no", "stages": [None, 1], "hosts": None})
    assert found.suite == "3" and found.counts == () and found.hosts == 0
    report = {"cases": [{"name": "c", "stages": [{"hosts": [{"data": {"walk_count": 1}}]}]}]}
    (found_walks,) = walks(report)
    assert found_walks.counts == (("walks", "1"),) and found_walks.failures == ()
