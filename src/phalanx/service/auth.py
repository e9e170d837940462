"""Who may talk to the service, and as whom: agent tokens, users with roles,
users' API tokens and login sessions.

Three kinds of secret, each checked its own way:

- **Tokens** (agents' and users' API tokens) are 32 random bytes from
  `secrets`, so they cannot be guessed, and are stored as their sha256.
  A slow, salted hash protects a secret a person chose, whose space can be
  searched; 256 random bits cannot be searched, so one fast hash is as
  safe, and being unsalted it lets a token be found by an indexed lookup
  of its hash instead of a verify against every row.
- **Passwords** are chosen by people: argon2id (argon2-cffi's defaults),
  checked off the event loop, and a login for an unknown user costs the
  same as one with a wrong password, so timing tells no names.
- **Sessions** are random ids in a cookie, stored as their sha256 with an
  expiry.

The kinds never stand in for each other: an agent token starts with
`phx_agent_`, a user token with `phx_user_`, each is looked up only in its
own table, and a session id is neither. No function here logs a secret.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from phalanx.service.caches import Recent
from phalanx.service.throttle import LoginThrottle
from phalanx.store.audit import Audit
from phalanx.store.credentials import AgentTokenInfo, Credentials, UserInfo
from phalanx.store.errors import StoreError

AGENT_PREFIX = "phx_agent_"
USER_PREFIX = "phx_user_"
HYPERVISOR_PREFIX = "phx_hyper_"
# A hypervisor's token is kept in the agents' token table under this name
# prefix; its own token prefix keeps the two apart (neither stands in for
# the other), and the prefix keeps a hypervisor from taking an agent's name.
HYPERVISOR_NAME = "hypervisor."
MIN_PASSWORD = 8
DEFAULT_SESSION_TTL = timedelta(hours=12)
# Seconds a user token's or a session's check is reused: every request of a
# page costs no store query. A change this service makes (revoke, remove,
# log out) is seen at once; one another process makes, within this.
CHECKED_TTL = 0.3

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,199}")


class Role(StrEnum):
    VIEWER = "viewer"  # reads
    OPERATOR = "operator"  # reads, starts, cancels and reruns runs
    ADMIN = "admin"  # everything

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what `needed` may (roles are nested)."""
        order = list(Role)
        return order.index(self) >= order.index(needed)


class Principal(NamedTuple):
    """A signed-in user: who, and with which role."""

    name: str
    role: Role


class AuthError(StoreError):
    """A request about credentials that cannot be granted; says why."""


def token_hash(secret: str) -> str:
    """How tokens and session ids are stored and looked up."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def check_name(name: str, what: str) -> str:
    if not _NAME.fullmatch(name):
        raise AuthError(
            f"{what} name {name!r}: use letters, digits and _ . @ -, "
            "starting with a letter or digit (at most 200)"
        )
    return name


@functools.cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@functools.cache
def _decoy() -> str:
    """A hash to verify against when the user does not exist."""
    return _hasher().hash(secrets.token_urlsafe(16))


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _role(value: str) -> Role | None:
    try:
        return Role(value)
    except ValueError:
        return None


def _principal(found: tuple[str, str] | None) -> Principal | None:
    """(user, role) as the store found them; None for none or a role no
    longer known."""
    if found is None or (role := _role(found[1])) is None:
        return None
    return Principal(found[0], role)


class Auth:
    """The credentials of one store, with the checks the service makes.

    Everything is async; password hashing runs in a worker thread.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        session_ttl: timedelta = DEFAULT_SESSION_TTL,
        audit: Audit | None = None,
        actor: str = "service",
    ) -> None:
        """`audit`: where changes and logins are recorded (None: nowhere);
        `actor`: who makes a change no caller names (the admin commands
        give `cli:<os user>`)."""
        self.credentials = credentials
        self.session_ttl = session_ttl
        self.audit = audit
        self.actor = actor
        self.throttle = LoginThrottle()
        # token or session hash -> whom it admits (None: no one), for CHECKED_TTL
        self.checked: Recent[str, Principal | None] = Recent(CHECKED_TTL)

    async def _record(
        self,
        by: str | None,
        action: str,
        target: str | None = None,
        *,
        address: str | None = None,
        detail: str | None = None,
    ) -> None:
        if self.audit is not None:
            await self.audit.record(
                by or self.actor, action, target, address=address, detail=detail
            )

    async def login(self, name: str, password: str, address: str) -> Principal | float:
        """Sign in: the user, or the seconds to wait before trying again
        (0.0: a wrong name or password; more: too many tries from this name
        or address, and this one was not even checked). Each is audited."""
        now = time.monotonic()
        wait = self.throttle.wait(name, address, now)
        if wait > 0:
            await self._record(name, "login.throttled", name, address=address)
            return wait
        who = await self.verify_password(name, password)
        if who is None:
            self.throttle.failed(name, address, time.monotonic())
            await self._record(name, "login.failed", name, address=address)
            return 0.0
        self.throttle.succeeded(name, address)
        await self._record(who.name, "login", who.name, address=address)
        return who

    # --- agents -----------------------------------------------------------------------

    async def create_agent_token(self, name: str, *, by: str | None = None) -> str:
        """A new token for agent `name`, returned once; only its hash is kept.
        Raises `Conflict` while `name` has a live token."""
        token = new_token(AGENT_PREFIX)
        await self.credentials.add_agent_token(check_name(name, "agent"), token_hash(token))
        await self._record(by, "agent_token.create", name)
        return token

    async def agent_tokens(self) -> list[AgentTokenInfo]:
        return await self.credentials.agent_tokens()

    async def revoke_agent_token(self, name: str, *, by: str | None = None) -> int:
        """Revoke agent `name`'s token(s); how many were live."""
        revoked = await self.credentials.revoke_agent_tokens(name)
        await self._record(by, "agent_token.revoke", name, detail=f"{revoked} live")
        return revoked

    async def verify_agent_token(self, token: str | None) -> str | None:
        """The agent name a live agent token admits; None for anything else
        (a user token, a revoked or unknown one, nothing)."""
        if not token or not token.startswith(AGENT_PREFIX):
            return None
        return await self.credentials.agent_for_hash(token_hash(token))

    # --- hypervisors ------------------------------------------------------------------

    async def create_hypervisor_token(self, name: str, *, by: str | None = None) -> str:
        """A new token for hypervisor `name` (`phalanx hypervisor`), returned once."""
        token = new_token(HYPERVISOR_PREFIX)
        check_name(name, "hypervisor")
        await self.credentials.add_agent_token(HYPERVISOR_NAME + name, token_hash(token))
        await self._record(by, "hypervisor_token.create", name)
        return token

    async def revoke_hypervisor_token(self, name: str, *, by: str | None = None) -> int:
        revoked = await self.credentials.revoke_agent_tokens(HYPERVISOR_NAME + name)
        await self._record(by, "hypervisor_token.revoke", name, detail=f"{revoked} live")
        return revoked

    async def verify_hypervisor_token(self, token: str | None) -> str | None:
        """The hypervisor name a live hypervisor token admits; None for anything else."""
        if not token or not token.startswith(HYPERVISOR_PREFIX):
            return None
        found = await self.credentials.agent_for_hash(token_hash(token))
        if found is None or not found.startswith(HYPERVISOR_NAME):
            return None
        return found.removeprefix(HYPERVISOR_NAME)

    # --- users ------------------------------------------------------------------------

    async def add_user(
        self, name: str, role: Role | str, password: str, *, by: str | None = None
    ) -> None:
        """A new user. Raises `AuthError` for a bad name, role or password,
        `Conflict` if the name is taken."""
        check_name(name, "user")
        if _role(str(role)) is None:
            raise AuthError(f"role {role!r}: one of {', '.join(Role)}")
        if len(password) < MIN_PASSWORD:
            raise AuthError(f"the password needs at least {MIN_PASSWORD} characters")
        hashed = await asyncio.to_thread(_hasher().hash, password)
        await self.credentials.add_user(name, str(role), hashed)
        await self._record(by, "user.add", name, detail=f"role {role}")

    async def users(self) -> list[UserInfo]:
        return await self.credentials.users()

    async def remove_user(self, name: str, *, by: str | None = None) -> None:
        """Remove the user with their API tokens and sessions; `NotFound` if none."""
        await self.credentials.remove_user(name)
        self.checked.clear()
        await self._record(by, "user.remove", name)

    async def verify_password(self, name: str, password: str) -> Principal | None:
        """The user, if `password` is theirs; None otherwise."""
        record = await self.credentials.user(name)
        stored = record.password_hash if record is not None else _decoy()
        ok = await asyncio.to_thread(_verify, stored, password)
        if not ok or record is None or (role := _role(record.role)) is None:
            return None
        if _hasher().check_needs_rehash(stored):  # argon2's parameters were raised since
            await self.credentials.set_password_hash(
                name, await asyncio.to_thread(_hasher().hash, password)
            )
        return Principal(record.name, role)

    # --- users' API tokens ------------------------------------------------------------

    async def create_user_token(self, name: str, *, by: str | None = None) -> str:
        """A new API token for user `name`, returned once; `NotFound` if no such user."""
        token = new_token(USER_PREFIX)
        await self.credentials.add_user_token(name, token_hash(token))
        await self._record(by, "user_token.create", name)
        return token

    async def revoke_user_tokens(self, name: str, *, by: str | None = None) -> int:
        revoked = await self.credentials.revoke_user_tokens(name)
        self.checked.clear()
        await self._record(by, "user_token.revoke", name, detail=f"{revoked} live")
        return revoked

    async def verify_user_token(self, token: str | None) -> Principal | None:
        """(user, role) for a live user API token (`Authorization: Bearer`);
        None for anything else, an agent token included."""
        if not token or not token.startswith(USER_PREFIX):
            return None
        hashed = token_hash(token)

        async def look() -> Principal | None:
            return _principal(await self.credentials.user_for_token_hash(hashed))

        return await self.checked.fetch(hashed, look)

    # --- login sessions ---------------------------------------------------------------

    async def create_session(self, user: str) -> str:
        """A new login session for `user`: the cookie value (returned once)."""
        session = new_token()
        expires = datetime.now(UTC) + self.session_ttl
        await self.credentials.add_session(token_hash(session), user, expires)
        return session

    async def session_user(self, cookie: str | None) -> Principal | None:
        """The user of a live session cookie; None if unknown or expired."""
        if not cookie or cookie.startswith((AGENT_PREFIX, USER_PREFIX, HYPERVISOR_PREFIX)):
            return None
        hashed = token_hash(cookie)

        async def look() -> Principal | None:
            return _principal(await self.credentials.session_user(hashed))

        return await self.checked.fetch(hashed, look)

    async def end_session(self, cookie: str) -> None:
        """Log out."""
        await self.credentials.end_session(token_hash(cookie))
        self.checked.clear()
