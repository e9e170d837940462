"""Signing in and out with the login form."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from phalanx.service.routes.deps import open_session  # the API's login, shared
from phalanx.service.web.access import address, local, principal, read_form, same_origin, web_of

router = APIRouter(include_in_schema=False)


@router.get("/login")
async def login_page(request: Request) -> Response:
    web = web_of(request)
    who = await principal(web, request)
    nxt = local(request.query_params.get("next", "/"))
    return web.pages.render(request, "login.html", who, next=nxt, failed=False, name="")


@router.post("/login")
async def login(request: Request) -> Response:
    web = web_of(request)
    if not same_origin(request):
        return web.pages.error(request, None, 403, "this form was sent from another site")
    form = await read_form(request)
    nxt = local(form.get("next", "/"))
    name = form.get("name", "")
    who = await web.service.auth.login(name, form.get("password", ""), address(request))
    if isinstance(who, float):
        if who > 0:
            return web.pages.error(
                request, None, 429, f"too many failed sign-ins: try again in {who:.0f} s"
            )
        # The name stays: a mistyped password is retyped, not both.
        return web.pages.render(
            request, "login.html", None, next=nxt, failed=True, name=name, status=401
        )
    response = RedirectResponse(nxt, status_code=303)
    await open_session(web.service, response, who)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    web = web_of(request)
    if not same_origin(request):
        return web.pages.error(request, None, 403, "this form was sent from another site")
    if cookie := request.cookies.get(web.session_cookie):
        who = await web.service.auth.session_user(cookie)
        await web.service.auth.end_session(cookie)
        if who is not None:
            await web.service.store.audit.record(
                who.name, "logout", who.name, address=address(request)
            )
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(web.session_cookie)
    return response
