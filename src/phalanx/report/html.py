"""report.html: the Run page as one self-contained file (inline CSS and SVG,
no script, no external URL), and the pieces it is made of for the web UI to
embed: `render_header`, `render_matrix`, `render_timeline`, `render_outputs`,
`render_logs`, `render_results`, `render_walks`, `render_histories`,
`render_vms`, `render_files`.
Each takes a run's JSON report (results.json's dict, or the same shape for a run still
going) and returns an HTML string, a `markupsafe.Markup` (a Jinja2 template
embeds it as it is); `stylesheet()` is the CSS they expect (scoped under
`.px-run`).

Links to files of the run (outputs, logs, traces, results.json) are relative
to the run folder; `files` is put in front of each, for a page that is not
in the run folder ("/runs/ID/files/"). Paths are percent-quoted, so none can
become a scheme.

Jinja2 with autoescape: everything from a run (names, output, results) is
untrusted text. Jinja2 is imported on first use, not with this module.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from phalanx import layout
from phalanx.report import runview
from phalanx.report.files import write_atomic
from phalanx.report.timeline import timeline_svg

if TYPE_CHECKING:
    from jinja2 import BaseLoader, Environment

REPORT_HTML = layout.REPORT_HTML
TEMPLATES = Path(__file__).parent / "templates"


def size_text(n: int) -> str:
    """`512 bytes`, `4.9 KiB`, `1.2 MiB`."""
    if n < 1024:
        return f"{n} bytes"
    size, units = n / 1024, ["KiB", "MiB", "GiB"]
    while size >= 1024 and len(units) > 1:
        size, units = size / 1024, units[1:]
    return f"{size:.1f} {units[0]}"


def _compiled_templates() -> BaseLoader | None:
    """The templates compiled once per user into Python modules (Jinja2's
    `compile_templates`), not on every run: compiling them costs a run more
    than rendering (about 50 ms here). Python imports them as it imports any
    module; nothing is unpickled. Kept under the user's cache folder, private
    to them (they are loaded as code), in a folder named by the templates'
    contents and Jinja2's version, so an edit or an upgrade compiles anew.
    None if it cannot be made: the templates are then compiled as they load."""
    import hashlib

    import jinja2

    digest = hashlib.sha256(jinja2.__version__.encode())
    for path in sorted(TEMPLATES.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    root = Path(base, "phalanx", "templates")
    folder = root / digest.hexdigest()[:16]
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if root.stat().st_uid != os.getuid() or root.stat().st_mode & 0o077:
            return None
        if not folder.is_dir():
            scratch = Path(tempfile.mkdtemp(prefix=".new-", dir=root))
            try:
                _plain_environment(jinja2.FileSystemLoader(TEMPLATES)).compile_templates(
                    scratch, zip=None, ignore_errors=False
                )
                scratch.rename(folder)  # whole, or not at all
            except OSError:
                shutil.rmtree(scratch, ignore_errors=True)
                if not folder.is_dir():
                    return None
    except OSError:
        return None
    return _compiled_loader(folder)


def _compiled_loader(folder: Path) -> BaseLoader:
    """A loader of the compiled templates that takes a module it cannot
    import (damaged, cut short by a full disk) for one that is not there:
    the template is then compiled from its source, and the report written."""
    from jinja2 import ModuleLoader, TemplateNotFound

    class Compiled(ModuleLoader):
        def load(self, environment: Any, name: str, globals: Any = None) -> Any:
            try:
                return super().load(environment, name, globals)
            except TemplateNotFound:
                raise
            except Exception as exc:
                raise TemplateNotFound(name) from exc

    return Compiled(folder)


def _plain_environment(loader: BaseLoader) -> Environment:
    from jinja2 import Environment, StrictUndefined

    env = Environment(
        loader=loader,
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["glyph"] = runview.glyph
    env.filters["size"] = size_text
    return env


def prepare() -> None:
    """Compile every template now (the environment keeps them), so that a
    report written later only renders."""
    env = environment()
    for path in TEMPLATES.glob("*.html"):
        env.get_template(path.name)
    stylesheet()


@functools.cache
def environment() -> Environment:
    from jinja2 import ChoiceLoader, FileSystemLoader

    source = FileSystemLoader(TEMPLATES)
    compiled = _compiled_templates()
    return _plain_environment(ChoiceLoader([compiled, source]) if compiled else source)


@functools.cache
def stylesheet() -> str:
    """The CSS the pieces are styled by."""
    return (TEMPLATES / "report.css").read_text(encoding="utf-8")


def _markup(text: str) -> str:
    """HTML made here (and escaped here): Jinja2 embeds it as it is, in these
    templates and in the web UI's."""
    from markupsafe import Markup

    return Markup(text)


def _with_href(template: str, files: str, **context: Any) -> str:
    def href(path: Any) -> str:
        return files + quote(str(path), safe="/")

    rendered = environment().get_template(template).render(href=href, **context)
    return _markup(rendered.strip() + "\n")


def render_header(report: Mapping[str, Any], *, now: Any = None) -> str:
    """Suite, status, reason, run id, cluster, start, duration (of a run
    still going: up to `now`), case counts."""
    return _with_href("header.html", "", h=runview.header(report, now))


def render_matrix(report: Mapping[str, Any], files: str = "") -> str:
    """A row per case (the suite's own stages first), a column per host; in
    each cell a chip per stage with its status, linked to its output."""
    hosts, rows = runview.matrix(report)
    return _with_href("matrix.html", files, hosts=hosts, rows=rows)


def render_timeline(report: Mapping[str, Any], *, now: Any = None, id_prefix: str = "tl") -> str:
    """The timeline SVG in a figure with its caption."""
    return _with_href(
        "timeline.html", "", svg=_markup(timeline_svg(report, now=now, id_prefix=id_prefix))
    )


def render_outputs(report: Mapping[str, Any], files: str = "") -> str:
    """Per host: the tail of each stage that went wrong and of its latest
    output, each linked to the whole output."""
    return _with_href("outputs.html", files, tails=runview.tails(report))


def render_logs(report: Mapping[str, Any], files: str = "") -> str:
    """The log files collected from the hosts, linked."""
    return _with_href("logs.html", files, logs=runview.logs(report))


def render_results(report: Mapping[str, Any]) -> str:
    """Each test's `final_results` as a table per case and test, and each
    numeric series in them as a line chart, a line per host."""
    from phalanx.report.charts import line_chart

    rows = runview.result_rows(report)
    charts = [
        (" · ".join(p for p in (s.case, s.test, s.name) if p), _markup(line_chart(s)))
        for s in runview.all_series(rows)
    ]
    return _with_href("results.html", "", tables=runview.result_tables(rows), charts=charts)


def render_vms(report: Mapping[str, Any], files: str = "") -> str:
    """Per VM: accel, RAM, its boot to the agent's start and connection,
    migrations, how it ended, its QMP events; its console and events linked."""
    return _with_href("vms.html", files, vms=runview.vms(report))


def render_walks(report: Mapping[str, Any], files: str = "") -> str:
    """Per walks case: its counts, the failed walks' ids, each failure with
    the `phalanx replay` line that replays it, the shrunk walks."""
    return _with_href("walks.html", files, walks=runview.walks(report))


def render_histories(report: Mapping[str, Any], files: str = "") -> str:
    """Per case with an operation history: its check's verdict, each invalid
    key's window as a per-client timeline, the hosts' clock offsets, the
    nemesis's faults; the history's files linked."""
    import dataclasses

    from phalanx.report.histview import histories

    views = [
        dataclasses.replace(
            view,
            windows=tuple(dataclasses.replace(w, picture=_markup(w.picture)) for w in view.windows),
        )
        for view in histories(report)
    ]
    return _with_href("histories.html", files, histories=views)


def has_histories(report: Mapping[str, Any]) -> bool:
    return any(isinstance(c, Mapping) and c.get("history") for c in report.get("cases") or ())


def render_files(links: Iterable[tuple[str, str]] | None = None, files: str = "") -> str:
    """Links to the run's report files: (label, path) pairs; by default the
    usual names in the run folder."""
    listed = list(links) if links is not None else default_files()
    return _with_href("files.html", files, links=listed)


def default_files() -> list[tuple[str, str]]:
    return [
        ("results.json", layout.RESULTS_JSON),
        ("JUnit XML", layout.JUNIT_XML),
        ("TAP", layout.RESULTS_TAP),
    ]


def render_run(
    report: Mapping[str, Any],
    *,
    files: str = "",
    links: Iterable[tuple[str, str]] | None = None,
    now: Any = None,
) -> str:
    """The whole Run page as one HTML document."""
    view_rows = runview.result_rows(report)
    return _with_href(
        "page.html",
        files,
        h=runview.header(report, now),
        css=_markup(stylesheet()),
        header=_markup(render_header(report, now=now)),
        matrix=_markup(render_matrix(report, files)),
        timeline=_markup(render_timeline(report, now=now)),
        outputs=_markup(render_outputs(report, files)),
        logs=_markup(render_logs(report, files)),
        results=_markup(render_results(report)),
        walks=_markup(render_walks(report, files)),
        histories=_markup(render_histories(report, files)) if has_histories(report) else "",
        vms=_markup(render_vms(report, files)),
        files_list=_markup(render_files(links, files)),
        has_logs=bool(runview.logs(report)),
        has_results=bool(view_rows),
        has_walks=bool(runview.walks(report)),
        has_histories=has_histories(report),
        has_vms=bool(runview.vms(report)),
    )


def write_html(
    report: Mapping[str, Any],
    path: Path,
    *,
    links: Iterable[tuple[str, str | Path]] | None = None,
    run_dir: Path | None = None,
) -> None:
    """The Run page at `path`. `run_dir`: the run folder, which the report's
    output and log paths are relative to (default: where `path` is).
    `links`: the report files to link, (label, path), a relative path being
    in the run folder (default: results.json, junit.xml, results.tap)."""
    here = path.parent
    run_dir = run_dir or here
    files = "" if _same(run_dir, here) else _relative(run_dir, here) + "/"
    found = list(links) if links is not None else default_files()
    rebased = [
        (label, _relative(Path(target), run_dir) if Path(target).is_absolute() else str(target))
        for label, target in found
    ]
    write_atomic(path, render_run(report, files=files, links=rebased).encode("utf-8"))


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _relative(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()
