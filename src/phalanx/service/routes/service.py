"""The service's own routes: health, metrics, sign-in and out, the audit log."""

import dataclasses
import math
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict

from phalanx.service.origin import from_this_site
from phalanx.service.routes.deps import (
    SESSION_COOKIE,
    Admin,
    ApiError,
    ServiceDep,
    client_address,
    foreign_write,
    open_session,
)

router = APIRouter(tags=["service"])


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    password: str


@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@router.get("/metrics", response_class=Response)
async def metrics(service: ServiceDep) -> Response:
    """Prometheus metrics (open like `/healthz`: counts, no names or secrets)."""
    if service.metrics is None:
        return JSONResponse({"message": "metrics are not enabled"}, status_code=404)
    from phalanx.service.metrics import CONTENT_TYPE

    return Response(service.metrics.render(), media_type=CONTENT_TYPE)


@router.post("/api/login")
async def login(body: LoginRequest, request: Request, service: ServiceDep) -> JSONResponse:
    """Sign in with a name and password; the session is a cookie the
    browser keeps (HttpOnly, SameSite=Lax, Secure when served over TLS).
    Too many failures for a name or from an address: 429 and a wait
    (Retry-After) that doubles with each further failure."""
    if not from_this_site(request.headers, required=False):
        raise ApiError(403, "a sign-in came from another site")
    who = await service.auth.login(body.name, body.password, client_address(request))
    if isinstance(who, float):
        if who > 0:
            return JSONResponse(
                {"message": f"too many failed sign-ins: try again in {who:.0f} s"},
                status_code=429,
                headers={"Retry-After": str(max(1, math.ceil(who)))},
            )
        raise ApiError(401, "wrong name or password")
    response = JSONResponse({"name": who.name, "role": who.role.value})
    await open_session(service, response, who)
    return response


@router.post("/api/logout")
async def logout(request: Request, service: ServiceDep) -> JSONResponse:
    """End this browser's session (a no-op without one)."""
    if cookie := request.cookies.get(SESSION_COOKIE):
        foreign_write(request)
        who = await service.auth.session_user(cookie)
        await service.auth.end_session(cookie)
        if who is not None:
            await service.store.audit.record(
                who.name, "logout", who.name, address=client_address(request)
            )
    response = JSONResponse({"message": "signed out"})
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/api/audit")
async def audit(
    who: Admin,
    service: ServiceDep,
    action: Annotated[str | None, Query(max_length=50)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    """The audit log, newest first (admins): sign-ins, users and tokens
    made or removed, runs started and cancelled; by whom, from where."""
    return [
        {**dataclasses.asdict(e), "at": e.at.isoformat()}
        for e in await service.store.audit.recent(limit=limit, action=action)
    ]
