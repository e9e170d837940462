"""What every API route depends on: the service (the app's state) and who
asks (a user API token or a login session cookie), and the errors a route
answers with."""

from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from phalanx.coordinator.auth import bearer
from phalanx.service.app import Service
from phalanx.service.auth import Principal, Role
from phalanx.service.origin import from_this_site
from phalanx.service.routes.listings import Listings
from phalanx.service.unavailable import StoreFailures

SESSION_COOKIE = "phalanx_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

RunId = Annotated[str, PathParam(min_length=1, max_length=200)]


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def the_service(request: Request) -> Service:
    """The service this app serves (set by `create_app`). Dependencies are
    coroutines: FastAPI runs a plain function in its thread pool, a hop
    through another thread (and the GIL) for every request."""
    return cast(Service, request.app.state.service)


def store_failures(request: Request) -> StoreFailures:
    return cast(StoreFailures, request.app.state.store_failures)


ServiceDep = Annotated[Service, Depends(the_service)]


async def the_listings(request: Request) -> Listings:
    """The lists shared by readers asking together (set by `create_app`)."""
    return cast(Listings, request.app.state.listings)


ListingsDep = Annotated[Listings, Depends(the_listings)]


def foreign_write(request: Request) -> None:
    """Refuse a cookie-authenticated write that does not come from this
    service's own pages (service/origin.py)."""
    if not from_this_site(request.headers, required=True):
        raise ApiError(
            403, "a signed-in browser's write came from another site (or said from none)"
        )


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else ""


# --- who asks -------------------------------------------------------------------


async def principal(request: Request, service: ServiceDep) -> Principal | None:
    header = request.headers.get("authorization")
    if header is not None:
        token = bearer(header)
        found = await service.auth.verify_user_token(token) if token else None
        if found is None:
            raise ApiError(401, "the bearer token is not a valid user API token")
        return found
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        if request.method not in SAFE_METHODS:
            foreign_write(request)
        return await service.auth.session_user(cookie)
    return None


async def reader(
    who: Annotated[Principal | None, Depends(principal)], service: ServiceDep
) -> Principal | None:
    if who is None and not service.config.anonymous_read:
        raise ApiError(401, "sign in or send an API token (Authorization: Bearer …)")
    return who


async def operator(who: Annotated[Principal | None, Depends(principal)]) -> Principal:
    if who is None:
        raise ApiError(401, "sign in or send an API token (Authorization: Bearer …)")
    if not who.role.allows(Role.OPERATOR):
        raise ApiError(403, f"{who.name} is a {who.role.value}: this needs an operator")
    return who


async def admin(who: Annotated[Principal, Depends(operator)]) -> Principal:
    if not who.role.allows(Role.ADMIN):
        raise ApiError(403, f"{who.name} is a {who.role.value}: this needs an admin")
    return who


Reader = Annotated[Principal | None, Depends(reader)]
Operator = Annotated[Principal, Depends(operator)]
Admin = Annotated[Principal, Depends(admin)]


async def open_session(service: Service, response: Response, who: Principal) -> None:
    """Sign `who` in on this response: a new session in its cookie
    (HttpOnly, SameSite=Lax, Secure when served over TLS)."""
    response.set_cookie(
        SESSION_COOKIE,
        await service.auth.create_session(who.name),
        max_age=int(service.auth.session_ttl.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=service.config.tls_cert is not None,
    )
