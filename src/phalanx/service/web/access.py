"""What every web route depends on: the web UI's state (the service, the
page renderer, the shared gatherings; on the app's state), who asks, and
the two kinds of route: a GET page for readers and a POST form action
that needs a role."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from phalanx.coordinator.auth import bearer
from phalanx.service.app import Service
from phalanx.service.auth import Principal, Role
from phalanx.service.caches import Lru
from phalanx.service.origin import from_this_site
from phalanx.service.unavailable import StoreFailures
from phalanx.service.web import views
from phalanx.service.web.render import SECURITY_HEADERS, Pages
from phalanx.service.web.shared import Shared

Handler = Callable[..., Awaitable[Response]]


@dataclass(frozen=True)
class Web:
    """The web UI's state, one per app (at `app.state.web`)."""

    service: Service
    pages: Pages
    failures: StoreFailures
    session_cookie: str
    # Many readers at once share one gathering of the dashboard and of the
    # suites list (web/shared.py); both show what the dashboard's key holds.
    dashboard: Shared[dict[str, Any]]
    suites: Shared[dict[str, Any]]
    # One suite page's gathering per suite (at most one gathering at once).
    suite_pages: Lru[str, Shared[tuple[views.SuiteView, views.HistoryView]]] = field(
        default_factory=lambda: Lru(256)
    )
    # (path, reader) -> the gathering it was last rendered from, and the page.
    rendered: Lru[tuple[str, Principal | None], tuple[object, bytes]] = field(
        default_factory=lambda: Lru(256)
    )
    # (run id, reader) -> an ended run's page, which never changes; served
    # while its document is kept (service/caches.py: retention forgets it).
    ended_runs: Lru[tuple[str, Principal | None], bytes] = field(default_factory=lambda: Lru(256))

    def render_once(
        self,
        request: Request,
        template: str,
        who: Principal | None,
        gathered: object,
        context: dict[str, Any] | None = None,
    ) -> Response:
        """A page of a shared gathering (`gathered`: what it shows, its
        template's context unless `context` is given, made of it), rendered
        once per reader for it. Pages are told apart by their path."""
        key = (request.url.path, who)
        if (last := self.rendered.get(key)) is not None and last[0] is gathered:
            html = last[1]
        else:
            if context is None:
                context = cast(dict[str, Any], gathered)
            html = bytes(self.pages.render(request, template, who, **context).body)
            self.rendered.put(key, (gathered, html))
        return HTMLResponse(html, headers=SECURITY_HEADERS)

    def suite_page(self, name: str) -> Shared[tuple[views.SuiteView, views.HistoryView]]:
        if (shared := self.suite_pages.get(name)) is None:

            async def gather() -> tuple[views.SuiteView, views.HistoryView]:
                return await views.suite(self.service, name), await views.history(
                    self.service, name
                )

            shared = self.suite_pages.put(
                name, Shared(gather, lambda: views.dashboard_key(self.service))
            )
        return shared


def web_of(request: Request) -> Web:
    return cast(Web, request.app.state.web)


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def principal(web: Web, request: Request) -> Principal | None:
    header = request.headers.get("authorization")
    if header is not None:
        token = bearer(header)
        return await web.service.auth.verify_user_token(token) if token else None
    cookie = request.cookies.get(web.session_cookie)
    return await web.service.auth.session_user(cookie) if cookie else None


def page(router: APIRouter, path: str, *, live: bool = False) -> Callable[[Handler], Handler]:
    """A GET page for readers: a visitor who must sign in is sent to the login."""

    def wrap(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            web = web_of(request)
            who = await principal(web, request)
            if who is None and not web.service.config.anonymous_read:
                if live:
                    return Response(status_code=401)
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
            try:
                return await handler(web, request, who)
            except Refused as exc:
                return web.pages.error(request, who, exc.status, exc.message)

        router.add_api_route(path, endpoint, methods=["GET"], include_in_schema=False)
        return handler

    return wrap


def action(
    router: APIRouter, path: str, role: Role = Role.OPERATOR
) -> Callable[[Handler], Handler]:
    """A POST form action that needs `role`."""

    def wrap(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            web = web_of(request)
            who = await principal(web, request)
            try:
                if not same_origin(request):
                    raise Refused(403, "this form was sent from another site")
                if who is None:
                    raise Refused(401, "sign in first")
                if not who.role.allows(role):
                    raise Refused(
                        403, f"{who.name} is a {who.role.value}: this needs an {role.value}"
                    )
                form = await read_form(request)
                return await handler(web, request, who, form)
            except Refused as exc:
                return web.pages.error(request, who, exc.status, exc.message)

        router.add_api_route(path, endpoint, methods=["POST"], include_in_schema=False)
        return handler

    return wrap


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (the first value of each)."""
    body = (await request.body())[: 64 * 1024].decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def same_origin(request: Request) -> bool:
    """No Origin nor Referer (an older browser, a script with a token), or ours."""
    return from_this_site(request.headers, required=False)


def address(request: Request) -> str:
    return request.client.host if request.client is not None else ""


def local(target: str) -> str:
    """Only a path on this site (no open redirect)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


def int_or(text: str | None, default: int) -> int:
    try:
        return max(0, int(text)) if text is not None else default
    except ValueError:
        return default
