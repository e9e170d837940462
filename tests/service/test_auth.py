"""Credentials, on SQLite and PostgreSQL: agent tokens, users, API tokens,
sessions; and the kinds never stand in for each other."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from phalanx.service.auth import (
    AGENT_PREFIX,
    CHECKED_TTL,
    USER_PREFIX,
    Auth,
    AuthError,
    Principal,
    Role,
    token_hash,
)
from phalanx.store.errors import Conflict, NotFound
from phalanx.store.store import Store
from tests.eventually import eventually_async

PASSWORD = "correct horse battery"


async def test_an_agent_token_admits_its_agent_until_revoked(store: Store) -> None:
    auth = Auth(store.credentials)
    token = await auth.create_agent_token("srv1.lab.test")
    assert token.startswith(AGENT_PREFIX) and len(token) > 40
    assert await auth.verify_agent_token(token) == "srv1.lab.test"
    assert await auth.verify_agent_token(token + "x") is None
    assert await auth.verify_agent_token(None) is None
    assert await auth.verify_agent_token("") is None
    with pytest.raises(Conflict):
        await auth.create_agent_token("srv1.lab.test")
    assert await auth.revoke_agent_token("srv1.lab.test") == 1
    assert await auth.verify_agent_token(token) is None
    assert await auth.revoke_agent_token("srv1.lab.test") == 0
    # A new token after the revocation; the old one stays dead.
    fresh = await auth.create_agent_token("srv1.lab.test")
    assert await auth.verify_agent_token(fresh) == "srv1.lab.test"
    assert await auth.verify_agent_token(token) is None
    listed = [(t.name, t.revoked_at is None) for t in await auth.agent_tokens()]
    assert listed == [("srv1.lab.test", False), ("srv1.lab.test", True)]


async def test_only_hashes_are_stored(store: Store) -> None:
    auth = Auth(store.credentials)
    token = await auth.create_agent_token("srv1")
    await auth.add_user("alice", Role.ADMIN, PASSWORD)
    api = await auth.create_user_token("alice")
    cookie = await auth.create_session("alice")
    async with store.db.engine.connect() as connection:
        dump = []
        for table in ("agent_tokens", "users", "user_tokens", "login_sessions"):
            rows = await connection.exec_driver_sql(f"SELECT * FROM {table}")
            dump += [str(v) for row in rows for v in row]
    text = " ".join(dump)
    for secret in (token, api, cookie, PASSWORD):
        assert secret not in text
    assert token_hash(token) in text and "$argon2id$" in text


async def test_a_user_logs_in_with_their_password_and_keeps_their_role(store: Store) -> None:
    auth = Auth(store.credentials)
    await auth.add_user("alice", "operator", PASSWORD)
    assert await auth.verify_password("alice", PASSWORD) == Principal("alice", Role.OPERATOR)
    assert await auth.verify_password("alice", PASSWORD + "!") is None
    assert await auth.verify_password("bob", PASSWORD) is None
    with pytest.raises(Conflict):
        await auth.add_user("alice", "admin", PASSWORD)
    with pytest.raises(AuthError, match="role"):
        await auth.add_user("bob", "root", PASSWORD)
    with pytest.raises(AuthError, match="at least"):
        await auth.add_user("bob", "viewer", "short")
    with pytest.raises(AuthError, match="name"):
        await auth.add_user("bob smith", "viewer", PASSWORD)
    (alice,) = await auth.users()
    assert (alice.name, alice.role, alice.tokens) == ("alice", "operator", 0)


async def test_user_api_tokens_and_sessions(store: Store) -> None:
    auth = Auth(store.credentials)
    await auth.add_user("carol", "viewer", PASSWORD)
    token = await auth.create_user_token("carol")
    assert token.startswith(USER_PREFIX)
    assert await auth.verify_user_token(token) == ("carol", Role.VIEWER)
    assert (await auth.users())[0].tokens == 1
    cookie = await auth.create_session("carol")
    assert await auth.session_user(cookie) == ("carol", Role.VIEWER)
    await auth.end_session(cookie)
    assert await auth.session_user(cookie) is None
    with pytest.raises(NotFound):
        await auth.create_user_token("nobody")
    assert await auth.revoke_user_tokens("carol") == 1
    assert await auth.verify_user_token(token) is None
    # Removing a user ends their tokens and sessions with them.
    token = await auth.create_user_token("carol")
    cookie = await auth.create_session("carol")
    await auth.remove_user("carol")
    assert await auth.verify_user_token(token) is None
    assert await auth.session_user(cookie) is None
    with pytest.raises(NotFound):
        await auth.remove_user("carol")


async def test_a_revoke_by_another_process_is_seen_within_a_fraction_of_a_second(
    store: Store,
) -> None:
    """The service reuses a check for CHECKED_TTL; a `phalanx user` command
    (another Auth on the same store) revoking meanwhile is seen after it."""
    service, command = Auth(store.credentials), Auth(store.credentials)
    await command.add_user("erin", "operator", PASSWORD)
    token = await command.create_user_token("erin")
    cookie = await command.create_session("erin")
    assert await service.verify_user_token(token) == ("erin", Role.OPERATOR)
    assert await service.session_user(cookie) == ("erin", Role.OPERATOR)
    await command.remove_user("erin")

    async def refused() -> bool | None:
        token_refused = await service.verify_user_token(token) is None
        return (token_refused and await service.session_user(cookie) is None) or None

    seen: bool = await eventually_async(refused, within=CHECKED_TTL + 10, what="the removal seen")
    assert seen


async def test_fifty_requests_at_once_check_a_token_with_one_store_query(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page's fifty readers whose check just went stale ask the store
    once between them, not fifty times at once; a revoke by this service
    while that query runs is still seen by the next request."""
    auth = Auth(store.credentials)
    await auth.add_user("frank", "viewer", PASSWORD)
    token = await auth.create_user_token("frank")
    queries = 0
    real = store.credentials.user_for_token_hash

    async def counted(hashed: str) -> tuple[str, str] | None:
        nonlocal queries
        queries += 1
        return await real(hashed)

    monkeypatch.setattr(store.credentials, "user_for_token_hash", counted)
    answers = await asyncio.gather(*(auth.verify_user_token(token) for _ in range(50)))
    assert answers == [("frank", Role.VIEWER)] * 50
    assert queries == 1
    auth.checked.clear()  # stale: the next readers ask again
    during = [asyncio.ensure_future(auth.verify_user_token(token)) for _ in range(10)]
    await asyncio.sleep(0)
    await auth.revoke_user_tokens("frank")
    assert await auth.verify_user_token(token) is None
    await asyncio.gather(*during)
    assert await auth.verify_user_token(token) is None  # what the older query found is not kept


async def test_an_expired_session_is_refused_and_pruned(store: Store) -> None:
    auth = Auth(store.credentials, session_ttl=timedelta(seconds=-1))
    await auth.add_user("dave", "admin", PASSWORD)
    cookie = await auth.create_session("dave")
    assert await auth.session_user(cookie) is None
    assert await store.credentials.prune_sessions() == 1


async def test_agent_and_user_tokens_are_never_interchangeable(store: Store) -> None:
    auth = Auth(store.credentials)
    await auth.add_user("erin", "admin", PASSWORD)
    agent = await auth.create_agent_token("erin")  # the same name on purpose
    user = await auth.create_user_token("erin")
    cookie = await auth.create_session("erin")
    assert await auth.verify_agent_token(user) is None
    assert await auth.verify_agent_token(cookie) is None
    assert await auth.verify_user_token(agent) is None
    assert await auth.verify_user_token(cookie) is None
    assert await auth.session_user(agent) is None
    assert await auth.session_user(user) is None
    # Nor does relabelling one as the other get in: the tables are separate.
    assert await auth.verify_user_token(USER_PREFIX + agent.removeprefix(AGENT_PREFIX)) is None
    assert await auth.verify_agent_token(AGENT_PREFIX + user.removeprefix(USER_PREFIX)) is None


def test_roles_nest() -> None:
    assert Role.ADMIN.allows(Role.OPERATOR) and Role.OPERATOR.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.OPERATOR) and not Role.OPERATOR.allows(Role.ADMIN)
