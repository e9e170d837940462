"""report.html and its pieces, read back with the stdlib's HTML parser."""

from __future__ import annotations

import copy
import json
import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from phalanx import layout
from phalanx.model import RunResult
from phalanx.report.html import TEMPLATES, render_matrix, render_run, render_walks, write_html
from phalanx.report.json import to_json
from phalanx.report.writers import write_reports
from tests.report.conftest import HOSTS, SRV1, SRV2

EXAMPLES = Path(__file__).parents[2] / "examples" / "repo"
VOID = {"meta", "link", "br", "img", "input", "hr", "wbr", "source", "area", "base", "col"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    content: list[Node | str] = field(default_factory=list)  # in document order

    @property
    def children(self) -> list[Node]:
        return [c for c in self.content if isinstance(c, Node)]

    def all_text(self) -> str:
        return "".join(c if isinstance(c, str) else c.all_text() for c in self.content)

    def iter(self, tag: str | None = None) -> list[Node]:
        found = [self] if tag is None or self.tag == tag else []
        for child in self.children:
            found += child.iter(tag)
        return found

    def find(self, tag: str, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.iter(tag)
            if all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def classes(self) -> list[str]:
        return self.attrs.get("class", "").split()


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].content.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].content.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return
        raise AssertionError(f"</{tag}> closes nothing")

    def handle_data(self, data: str) -> None:
        self.stack[-1].content.append(data)


def parse(page: str) -> Node:
    builder = _Builder()
    builder.feed(page)
    builder.close()
    assert builder.stack == [builder.root], [n.tag for n in builder.stack]  # all closed
    return builder.root


def section(root: Node, name: str) -> Node:
    (found,) = root.find("section", id=name)
    return found


def chips(root: Node) -> dict[tuple[str, str, str], Node]:
    """(case, host, stage) -> the chip showing that stage in the matrix."""
    found = {}
    for row in root.iter("tr"):
        case = row.attrs.get("data-case")
        if case is None:
            continue
        for cell in row.iter("td"):
            host = cell.attrs.get("data-host")
            if host is None:
                continue
            for chip in cell.children:
                found[(case, host, chip.attrs["data-stage"])] = chip
    return found


def assert_nothing_external(page: str, root: Node) -> None:
    # The one URL in the page is the SVG namespace's name, which is no link.
    assert set(re.findall(r"https?://[^\"'\s<>]*", page)) <= {"http://www.w3.org/2000/svg"}
    assert not root.iter("script") and not root.iter("link") and not root.iter("img")
    for node in root.iter():
        for name, value in node.attrs.items():
            if name in ("href", "src", "xlink:href", "action", "srcset"):
                assert ":" not in value.split("/")[0], (name, value)  # no scheme at all
            assert not name.startswith("on"), name


def test_report_html_is_written_with_every_report(mixed_run: RunResult, run_dir: Path) -> None:
    write_reports(mixed_run, run_dir)
    page = (run_dir / layout.REPORT_HTML).read_text(encoding="utf-8")
    root = parse(page)
    assert_nothing_external(page, root)
    assert root.find("html")[0].attrs["lang"] == "en"
    assert "hello" in root.iter("title")[0].all_text()

    header = root.find("header")[0]
    text = " ".join(header.all_text().split())
    assert text.startswith("hello ! error")
    facts = dict(
        zip(
            [n.all_text() for n in header.iter("dt")],
            [n.all_text() for n in header.iter("dd")],
            strict=True,
        )
    )
    assert facts == {
        "run": "run-1",
        "cluster": "cluster_hello",
        "hosts": "2",
        "started": "2024-05-01 12:00:00 UTC",
        "took": "1 m 42 s",  # 101.5 s
    }
    assert "5 cases:" in text
    assert "1 error" in text and "1 failed" in text and "1 passed" in text and "1 skipped" in text
    assert "! 1 error" in text and "✗ 1 failed" in text  # a glyph as well as a colour

    matrix = section(root, "matrix")
    heads = [th.all_text() for th in matrix.iter("th") if th.attrs.get("scope") == "col"]
    assert heads == ["case", "status", "took", *HOSTS, "reason"]
    rows = [tr.attrs["data-case"] for tr in matrix.iter("tr") if "data-case" in tr.attrs]
    assert rows == ["suite", "case_pass", "case_fail", "case_error", "case_timeout", "case_skip"]
    found = chips(matrix)
    failed = found[("case_fail", SRV1, "run")]
    assert failed.tag == "a" and failed.classes() == ["st", "st-failed"]
    assert failed.attrs["data-status"] == "failed"
    assert "✗" in failed.all_text() and "failed" in failed.all_text()  # not colour only
    assert failed.attrs["title"] == f"case_fail · run · {SRV1} · failed · 1.5 s · exit code 1"
    assert (run_dir / failed.attrs["href"]).read_text().endswith("LAST LINE OF SRV1\n")
    assert found[("case_timeout", SRV1, "run")].classes() == ["st", "st-timeout"]
    assert found[("suite", SRV2, "finalize")].classes() == ["st", "st-passed"]
    assert sum(1 for k in found if k[0] == "case_skip") == 0  # never ran: no chips
    # One chip per host and stage that ran.
    report = to_json(mixed_run, run_dir)
    stages = [*report["stages"], *(s for c in report["cases"] for s in c["stages"])]
    assert len(found) == sum(len(s["hosts"]) for s in stages)

    timeline = section(root, "timeline")
    (svg,) = timeline.iter("svg")
    assert svg.attrs["role"] == "img"
    assert [g.attrs["data-host"] for g in svg.find("g", **{"class": "lane"})] == HOSTS

    outputs = section(root, "outputs")
    tails = {
        s.attrs["data-host"]: s for s in outputs.iter("section") if "host-tails" in s.classes()
    }
    assert list(tails) == HOSTS
    shown = tails[SRV1].all_text()
    assert "LAST LINE OF SRV1" in shown
    assert "ERROR: connection refused" in shown and "\x1b" not in shown  # colours stripped
    assert "\\x00" in shown  # a NUL shown, not passed on
    assert "setup line 0\n" not in shown  # a tail, not the whole output

    logs = section(root, "logs")
    (log,) = [a.attrs["href"] for a in logs.iter("a")]
    assert log == "suite/initialize/logs/srv1.phalanx.test/var_log_xrootd.log"

    results = section(root, "results")  # a kind's data that is not final_results
    assert "throughput" in [th.all_text() for th in results.iter("th")]
    assert not root.find("section", id="walks")

    links = {a.all_text(): a.attrs["href"] for a in section(root, "files").iter("a")}
    assert links == {"results.json": "results.json", "JUnit XML": "junit.xml", "TAP": "results.tap"}
    assert all((run_dir / href).is_file() for href in links.values())


def test_reports_written_elsewhere_are_linked_where_they_are(
    mixed_run: RunResult, run_dir: Path, tmp_path: Path
) -> None:
    from phalanx.report.writers import ReportPaths

    elsewhere = tmp_path / "ci" / "out.xml"
    elsewhere.parent.mkdir()
    write_reports(mixed_run, run_dir, ReportPaths(junit=elsewhere))
    root = parse((run_dir / layout.REPORT_HTML).read_text())
    links = {a.all_text(): a.attrs["href"] for a in section(root, "files").iter("a")}
    assert (run_dir / links["JUnit XML"]).resolve() == elsewhere.resolve()


def test_hostile_names_and_output_are_text(mixed_run: RunResult, run_dir: Path) -> None:
    report = to_json(mixed_run, run_dir)
    evil = "<script>alert('x')</script>"
    report["suite"] = evil
    report["reason"] = '"><img src=x onerror=alert(1)>'
    report["cases"][1]["name"] = evil
    report["cases"][1]["reason"] = evil
    run = report["cases"][1]["stages"][1]
    run["hosts"][0]["output_tail"] = f"before\n{evil}\n</pre><script>bad()</script>\n"
    run["hosts"][0]["output"] = "javascript:alert(1)"
    run["hosts"][0]["data"] = {"final_results": {evil: {"<b>key</b>": evil, "series": [1, 2, 3]}}}
    report["hosts"][1] = 'srv2"><script>'
    page = render_run(report)
    root = parse(page)
    assert_nothing_external(page, root)
    assert not root.iter("b")
    text = root.all_text()
    assert evil in text and "</pre><script>bad()</script>" in text
    assert '"><img src=x onerror=alert(1)>' in text
    assert "<b>key</b>" in text
    # The output link is a path in the run folder, quoted: never a scheme.
    hrefs = [a.attrs["href"] for a in root.iter("a")]
    assert "javascript%3Aalert%281%29" in hrefs


def test_pieces_take_a_prefix_for_their_links(mixed_run: RunResult, run_dir: Path) -> None:
    report = to_json(mixed_run, run_dir)
    report["cases"][0]["stages"][0]["hosts"][0]["output"] = "cases/a b/run/x?.log"
    piece = render_matrix(report, files="/runs/run-1/files/")
    from markupsafe import escape

    assert escape(piece) == piece  # Markup: a web page's template embeds it as it is
    root = parse(piece)
    hrefs = [a.attrs["href"] for a in root.iter("a")]
    assert hrefs and all(h.startswith("/runs/run-1/files/") for h in hrefs)
    assert "/runs/run-1/files/cases/a%20b/run/x%3F.log" in hrefs


def test_a_running_run_renders(mixed_run: RunResult, run_dir: Path) -> None:
    report = copy.deepcopy(to_json(mixed_run, run_dir))
    report["status"], report["ended_at"], report["duration"] = "running", None, None
    report["stages"] = report["stages"][:1]
    case = report["cases"][1]
    report["cases"] = report["cases"][:2]
    case["status"], case["ended_at"], case["duration"] = "running", None, None
    run = case["stages"][1]
    run["hosts"][0].update(status="running", ended_at=None, duration=None)
    root = parse(render_run(report))
    header = " ".join(root.find("header")[0].all_text().split())
    assert "running" in header and "running for \u2013" in header  # an en dash: no time yet
    later = parse(render_run(report, now="2024-05-01T12:00:30+00:00"))
    assert "running for 30.0 s" in " ".join(later.find("header")[0].all_text().split())
    chip = chips(section(root, "matrix"))[("case_fail", SRV1, "run")]
    assert chip.classes() == ["st", "st-running"]
    bars = [r for r in root.iter("rect") if "st-running" in r.classes()]
    assert len(bars) == 1


def _run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_phalanx_run_of_an_example_suite_writes_report_html(tmp_path: Path) -> None:
    done = _run_cli([str(EXAMPLES), "-s", "hello", "--plain"], tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr  # one case fails on purpose
    (folder,) = (tmp_path / "phalanx-results").iterdir()
    page_path = folder / layout.REPORT_HTML
    assert f"report:  {page_path.relative_to(tmp_path)}" in done.stdout
    page = page_path.read_text()
    root = parse(page)
    assert_nothing_external(page, root)
    hosts = ["srv1.phalanx.test", "cli1.phalanx.test", "cli2.phalanx.test", "cli3.phalanx.test"]
    matrix = section(root, "matrix")
    rows = {tr.attrs["data-case"]: tr for tr in matrix.iter("tr") if "data-case" in tr.attrs}
    assert list(rows) == ["suite", "greet", "two_hosts_agree", "one_host_disagrees"]
    found = chips(matrix)
    assert found[("one_host_disagrees", "cli3.phalanx.test", "run")].classes() == [
        "st",
        "st-failed",
    ]
    for chip in found.values():  # every stage's output is there, by its link
        assert (folder / chip.attrs["href"]).is_file()
    (svg,) = section(root, "timeline").iter("svg")
    assert [g.attrs["data-host"] for g in svg.find("g", **{"class": "lane"})] == hosts
    bars = [r for r in svg.iter("rect") if "bar" in r.classes()]
    assert len(bars) == len(found)
    logs = [a.attrs["href"] for a in section(root, "logs").iter("a")]
    assert logs and all((folder / h).is_file() for h in logs)


SERIES_TEST = """
class Rate:
    def __init__(self, config):
        self.config = config
        self.final_results = "NoData"

    def run(self):
        n = int(self.config["hostname"][1])
        self.final_results = {
            "role": self.config["role"],
            "mean": 10.0 * (n + 1),
            "rate": [float(n * 10 + i) for i in range(12)],
            "overtime": [{"t": i, "mbps": 100.0 + n + i} for i in range(5)],
        }
"""


def test_final_results_as_a_table_and_series_as_charts(tmp_path: Path) -> None:
    from tests.coordinator.runhelpers import run, suite
    from tests.kinds.test_python import python_case

    case = python_case("rates", SERIES_TEST, "roletests:Rate", server_client_mode=True)
    result, folder = run(suite(case, n=2), tmp_path)  # h0 serves h1
    assert result.cases[0].status.value == "passed", result.cases[0].reason
    root = parse((folder / layout.REPORT_HTML).read_text())
    results = section(root, "results")
    (table,) = results.find("table", data_case="rates", data_test="roletests")
    heads = [th.all_text() for th in table.iter("th") if th.attrs.get("scope") == "col"]
    assert heads == ["host", "status", "role", "mean", "rate", "overtime"]
    cells = {
        tr.iter("th")[0].all_text(): [td.all_text() for td in tr.iter("td")]
        for tr in table.iter("tr")
        if tr.iter("td")
    }
    assert list(cells) == ["h0.phalanx.test", "h1.phalanx.test"]
    assert cells["h1.phalanx.test"][1:] == [
        "client",
        "20.0",
        "12 points (chart below)",
        "5 points (chart below)",
    ]
    charts = results.iter("svg")
    names = [f.iter("figcaption")[0].all_text() for f in results.iter("figure")]
    # An over-time result's clock field is when, not a series of its own.
    assert names == ["rates · roletests · rate", "rates · roletests · overtime.mbps"]
    lines = charts[0].iter("polyline")
    assert len(lines) == 2
    assert [g.attrs["data-host"] for g in charts[0].find("g", **{"class": "series"})] == [
        "h0.phalanx.test",
        "h1.phalanx.test",
    ]
    assert len(lines[0].attrs["points"].split()) == 12
    assert len({ln.attrs.get("stroke-dasharray", "") for ln in lines}) == 2  # not colour only


def test_walks_show_counts_failed_ids_and_the_replay_line(tmp_path: Path) -> None:
    from phalanx.load.repo import find_suite
    from tests.coordinator.runhelpers import run
    from tests.kinds.test_walks import make_repo

    folder = make_repo(tmp_path / "repo", "boom", "[Pick, Pick, Bump, Boom]", "    shrink: true\n")
    _, run_dir = run(find_suite(folder), tmp_path / "results")
    page = (run_dir / layout.REPORT_HTML).read_text()
    root = parse(page)
    walks = section(root, "walks")
    text = " ".join(walks.all_text().split())
    assert "walks 36" in text and "failed 2" in text
    assert "Failed walks: 17, 35" in text
    replays = [pre.all_text() for pre in walks.iter("pre") if "replay" in pre.classes()]
    assert len(replays) == 2
    trace, walk_id = replays[0].split()[-2:]
    assert replays[0] == f"phalanx replay {trace} 17" and walk_id == "17"
    assert (run_dir / "hosts" / "srv1.t.test" / trace).is_file()  # where the host wrote it
    assert "ValueError: planted failure" in text
    assert "Pick(2)" in text  # the shrunk walk
    # The walks' data is the walks section's, not a results table.
    assert not root.find("section", id="results")

    report: dict[str, Any] = to_json(_result(run_dir), run_dir)
    assert "phalanx replay" in render_walks(report)


def _result(run_dir: Path) -> RunResult:
    from phalanx.report.json import read_json

    return read_json(run_dir / layout.RESULTS_JSON)


def test_a_test_tree_run_writes_report_html_too(tmp_path: Path) -> None:
    from tests.tree.helpers import make_tree

    make_tree(tmp_path, {"ok": ("testinfo:\n    summary: ok\n", "#!/bin/sh\necho fine\n")})
    done = _run_cli(["tests"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    (folder,) = (tmp_path / "phalanx-results").iterdir()
    assert f"report:  {(folder / layout.REPORT_HTML).relative_to(tmp_path)}" in done.stdout
    root = parse((folder / layout.REPORT_HTML).read_text())
    (((case, host, stage), chip),) = chips(section(root, "matrix")).items()
    assert (case, host, stage) == ("tests/ok", "localhost", "run")
    assert chip.classes() == ["st", "st-passed"]
    assert (folder / chip.attrs["href"]).read_text() == "fine\n"
    (svg,) = section(root, "timeline").iter("svg")
    assert [g.attrs["data-host"] for g in svg.find("g", **{"class": "lane"})] == ["localhost"]


def test_write_html_alone(mixed_run: RunResult, run_dir: Path) -> None:
    path = run_dir / "again.html"
    write_html(to_json(mixed_run, run_dir), path)
    assert parse(path.read_text()).find("section", id="matrix")


RENDER = """
import json, sys
from pathlib import Path
from phalanx.report.html import write_html
write_html(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
"""


def test_the_templates_are_compiled_once_per_user_into_a_private_cache(
    mixed_run: RunResult, run_dir: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    report.write_text(json.dumps(to_json(mixed_run, run_dir)))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def render(to: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", RENDER, str(report), str(run_dir / to)],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return (run_dir / to).read_text()

    first = render("first.html")
    cache = tmp_path / "cache" / "phalanx" / "templates"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700  # loaded as code: the user's alone
    (folder,) = cache.iterdir()  # one per set of templates (and Jinja2 version)
    compiled = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.py")}
    assert len(compiled) >= len(list(TEMPLATES.glob("*.html")))
    assert all(b"pickle" not in p.read_bytes() for p in folder.glob("*.py"))
    assert render("second.html") == first
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.py")} == compiled  # not rewritten
    for entry in folder.glob("*.py"):  # damaged entries: the templates are compiled from source
        entry.write_bytes(entry.read_bytes()[:40] + b"\0damaged")
    assert render("third.html") == first
