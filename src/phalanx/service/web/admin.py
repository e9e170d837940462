"""The admin page: users, their API tokens, agent tokens, the audit log."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from phalanx.service.auth import AuthError, Principal, Role
from phalanx.service.web.access import Refused, Web, action, page
from phalanx.store.errors import Conflict, NotFound

AUDIT_SHOWN = 100  # the admin page's latest audit entries (the API reads further back)

router = APIRouter()


@page(router, "/admin")
async def admin(web: Web, request: Request, who: Principal | None) -> Response:
    if who is None or not who.role.allows(Role.ADMIN):
        raise Refused(403, "the admin page is for admins")
    return await admin_page(web, request, who, None)


async def admin_page(
    web: Web, request: Request, who: Principal, secret: tuple[str, str] | None
) -> Response:
    return web.pages.render(
        request,
        "admin.html",
        who,
        users=await web.service.auth.users(),
        agent_tokens=await web.service.auth.agent_tokens(),
        roles=[r.value for r in Role],
        audit=await web.service.store.audit.recent(limit=AUDIT_SHOWN),
        secret=secret,  # shown once, on the answer that made it only
    )


async def admin_answer(
    web: Web, request: Request, who: Principal, secret: tuple[str, str] | None
) -> Response:
    if secret is None:
        return RedirectResponse("/admin", status_code=303)
    return await admin_page(web, request, who, secret)


@action(router, "/admin/users", Role.ADMIN)
async def add_user(web: Web, request: Request, who: Principal, form: dict[str, str]) -> Response:
    try:
        await web.service.auth.add_user(
            form.get("name", ""),
            form.get("role", ""),
            form.get("password", ""),
            by=who.name,
        )
    except (AuthError, Conflict) as exc:
        raise Refused(400, str(exc)) from None
    return await admin_answer(web, request, who, None)


@action(router, "/admin/users/{name}/remove", Role.ADMIN)
async def remove_user(web: Web, request: Request, who: Principal, form: dict[str, str]) -> Response:
    try:
        await web.service.auth.remove_user(request.path_params["name"], by=who.name)
    except NotFound as exc:
        raise Refused(404, str(exc)) from None
    return await admin_answer(web, request, who, None)


@action(router, "/admin/users/{name}/token", Role.ADMIN)
async def user_token(web: Web, request: Request, who: Principal, form: dict[str, str]) -> Response:
    name = request.path_params["name"]
    try:
        token = await web.service.auth.create_user_token(name, by=who.name)
    except NotFound as exc:
        raise Refused(404, str(exc)) from None
    return await admin_answer(web, request, who, (f"API token for {name}", token))


@action(router, "/admin/users/{name}/revoke", Role.ADMIN)
async def revoke_user(web: Web, request: Request, who: Principal, form: dict[str, str]) -> Response:
    await web.service.auth.revoke_user_tokens(request.path_params["name"], by=who.name)
    return await admin_answer(web, request, who, None)


@action(router, "/admin/agents", Role.ADMIN)
async def agent_token(web: Web, request: Request, who: Principal, form: dict[str, str]) -> Response:
    name = form.get("name", "")
    try:
        token = await web.service.auth.create_agent_token(name, by=who.name)
    except (AuthError, Conflict) as exc:
        raise Refused(400, str(exc)) from None
    return await admin_answer(web, request, who, (f"agent token for {name}", token))


@action(router, "/admin/agents/{name}/revoke", Role.ADMIN)
async def revoke_agent(
    web: Web, request: Request, who: Principal, form: dict[str, str]
) -> Response:
    await web.service.auth.revoke_agent_token(request.path_params["name"], by=who.name)
    return await admin_answer(web, request, who, None)
