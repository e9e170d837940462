"""The pages' Jinja2 environment (templates shipped in the package) and
the filters the templates share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from phalanx.service.auth import Principal, Role
from phalanx.service.caches import ENDED_RUNS, Lru

if TYPE_CHECKING:
    from phalanx.service.web.views import RunView


def when(moment: datetime | str | None) -> str:
    if moment is None:
        return "—"
    if isinstance(moment, str):
        try:
            parsed = datetime.fromisoformat(moment)
        except ValueError:
            return moment
    else:
        parsed = moment
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def took(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{seconds:.1f} s"


def span(started: datetime | None, ended: datetime | None) -> str:
    if started is None or ended is None:
        return "—"
    return took((ended - started).total_seconds())


def size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return str(n)


def seg(value: object) -> str:
    """`value` as one path segment of a link or a form's action: a name
    holding `/`, `?`, `#` or `..` cannot reach another route."""
    return quote(str(value), safe="")


# Pages show what hosts printed: should any of it slip through escaping, it
# still cannot run script, load from elsewhere or frame the site.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class Pages:
    def __init__(self) -> None:
        self.env = Environment(
            loader=PackageLoader("phalanx.service.web", "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
            # The templates ship with the package: not looked up on disk
            # again (a stat of each of a page's templates) for every page.
            auto_reload=False,
        )
        self.env.filters.update(when=when, took=took, span=span, size=size, seg=seg)
        # An ended run's report parts never change: rendered once.
        self.ended_parts: Lru[str, dict[str, str]] = Lru(ENDED_RUNS)

    def _context(self, who: Principal | None, **context: Any) -> dict[str, Any]:
        return {
            "who": who,
            "operator": who is not None and who.role.allows(Role.OPERATOR),
            "admin": who is not None and who.role.allows(Role.ADMIN),
            **context,
        }

    def fragment(self, template: str, who: Principal | None, **context: Any) -> str:
        return self.env.get_template(template).render(self._context(who, **context))

    def render(
        self,
        request: Request,
        template: str,
        who: Principal | None,
        *,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        html = self.fragment(template, who, path=request.url.path, **context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def error(
        self, request: Request, who: Principal | None, status: int, message: str
    ) -> HTMLResponse:
        return self.render(request, "error.html", who, status=status, code=status, message=message)

    def report_parts(self, run: RunView) -> dict[str, str]:
        """The Run page's pieces from the report renderers (report/html.py),
        linking files through this site's viewer."""
        if not run.active and (kept := self.ended_parts.get(run.summary.id)) is not None:
            return kept
        parts = self._report_parts(run)
        if not run.active:
            self.ended_parts.put(run.summary.id, parts)
        return parts

    def _report_parts(self, run: RunView) -> dict[str, str]:
        from phalanx.report import html, runview

        report, files = run.report, f"/runs/{quote(run.summary.id)}/files/"
        parts = {
            "matrix": html.render_matrix(report, files),
            # A running run's bars grow up to now (re-rendered at each change
            # and every few seconds between).
            "timeline": html.render_timeline(
                report, now=datetime.now(UTC) if run.active else None, id_prefix="tl"
            ),
            "outputs": html.render_outputs(report, files),
        }
        if runview.logs(report):
            parts["logs"] = html.render_logs(report, files)
        if runview.result_rows(report):
            parts["results"] = html.render_results(report)
        if runview.walks(report):
            parts["walks"] = html.render_walks(report, files)
        if html.has_histories(report):
            parts["histories"] = html.render_histories(report, files)
        if runview.vms(report):
            parts["vms"] = html.render_vms(report, files)
        return parts
