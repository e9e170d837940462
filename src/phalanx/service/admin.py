"""The service's admin commands, run beside (or before) `phalanx serve`
against its data: `phalanx db upgrade`, `phalanx token create|list|revoke`,
`phalanx user add|token|list|remove`.

Each takes `--config F` (the service's config file) and/or `--data DIR`
(its data folder, over the file's). Like the service, each brings the
database's schema up to date first, so they work on a fresh data folder.

A secret (an agent token, a user's API token) is printed once, alone on
stdout, so `phalanx token create srv1 > srv1.token` keeps it; everything
else goes to stderr. Passwords are read from stdin (a prompt when it is a
terminal), never from the command line, where `ps` would show them.

Only argparse is imported at module level: the `phalanx` parser imports
this module, and `phalanx run` must not pay for pydantic, SQLAlchemy or
argon2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from phalanx.service.auth import Auth
    from phalanx.service.config import ServiceConfig
    from phalanx.store.store import Store

EXIT_OK = 0
EXIT_USAGE = 2  # phalanx.exits.EXIT_DEFINITIONS: bad config or request
EXIT_INFRASTRUCTURE = 3  # the database cannot be reached
ROLES = ("viewer", "operator", "admin")

T = TypeVar("T")
Command = Callable[
    [
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        str,
        Callable[[argparse.Namespace], int],
    ],
    argparse.ArgumentParser,
]


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _config(args: argparse.Namespace) -> ServiceConfig:
    from phalanx.service.config import load_config

    return load_config(args.config, data_dir=args.data)


def _run(args: argparse.Namespace, work: Callable[[Store, ServiceConfig], Awaitable[T]]) -> T:
    """Open the service's store (migrated), do `work`, close it."""
    import asyncio

    config = _config(args)

    async def main() -> T:
        from phalanx.store.store import Store

        store = await Store.open(config.database(), data_dir=config.data_dir)
        try:
            return await work(store, config)
        finally:
            await store.close()

    return asyncio.run(main())


def _admin(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the errors a user can fix into one line and an exit code."""

    def run(args: argparse.Namespace) -> int:
        from sqlalchemy.exc import DBAPIError, OperationalError

        from phalanx.service.config import ConfigError
        from phalanx.store.errors import StoreError

        try:
            return handler(args)
        except ConfigError as exc:
            _err(f"error: {exc}")
            return EXIT_USAGE
        except StoreError as exc:
            _err(f"error: {exc}")
            return EXIT_USAGE
        except (OperationalError, DBAPIError, OSError) as exc:
            # The driver's message may quote the URL: print only its kind.
            orig = getattr(exc, "orig", None) or exc
            _err(f"error: cannot use the database: {type(orig).__name__}: {_first_line(orig)}")
            return EXIT_INFRASTRUCTURE

    run.__doc__ = handler.__doc__
    run.__name__ = handler.__name__
    return run


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


def _auth(store: Store, config: ServiceConfig) -> Auth:
    import getpass
    from datetime import timedelta

    from phalanx.service.auth import Auth

    # The admin commands' changes are audited as the machine's user who ran them.
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return Auth(
        store.credentials,
        session_ttl=timedelta(hours=config.session_hours),
        audit=store.audit,
        actor=f"cli:{user}",
    )


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else "-"


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


# --- db -----------------------------------------------------------------------------------


@_admin
def db_upgrade(args: argparse.Namespace) -> int:
    """Bring the service's database schema to this version's (applied at start too)."""

    async def work(store: Store, config: ServiceConfig) -> int:
        done = store.upgraded
        where = config.safe_database()
        if done is None or not done.changed:
            _err(f"{where}: up to date (revision {done.after if done else '?'})")
        else:
            _err(f"{where}: upgraded from {done.before or 'an empty database'} to {done.after}")
        return EXIT_OK

    return _run(args, work)


# --- agent tokens ---------------------------------------------------------------------------


@_admin
def token_create(args: argparse.Namespace) -> int:
    """Make an agent's token; it is printed once (only its hash is kept)."""

    async def work(store: Store, config: ServiceConfig) -> str:
        auth = _auth(store, config)
        if args.hypervisor:
            return await auth.create_hypervisor_token(args.name)
        return await auth.create_agent_token(args.name)

    token = _run(args, work)
    print(token)
    if args.hypervisor:
        _err(
            f"token for hypervisor {args.name!r}: shown once, keep it where only the daemon "
            "reads it (phalanx hypervisor --token-file F)"
        )
        return EXIT_OK
    _err(
        f"token for agent {args.name!r}: shown once, keep it where only the agent reads it "
        "(--token-file F, or $PHALANX_AGENT_TOKEN)"
    )
    return EXIT_OK


@_admin
def token_list(args: argparse.Namespace) -> int:
    """List agent tokens: agent, created, revoked."""

    async def work(store: Store, config: ServiceConfig) -> list[Any]:
        return await _auth(store, config).agent_tokens()

    tokens = _run(args, work)
    if not tokens:
        _err("no agent tokens (make one: phalanx token create NAME)")
        return EXIT_OK
    rows = [("agent", "created", "revoked")]
    rows += [(t.name, _when(t.created_at), _when(t.revoked_at)) for t in tokens]
    _table(rows)
    return EXIT_OK


@_admin
def token_revoke(args: argparse.Namespace) -> int:
    """Revoke an agent's token: its live connection is closed within a second (the
    service looks twice a second) and it is refused from then on."""

    async def work(store: Store, config: ServiceConfig) -> int:
        auth = _auth(store, config)
        if args.hypervisor:
            return await auth.revoke_hypervisor_token(args.name)
        return await auth.revoke_agent_token(args.name)

    what = "hypervisor" if args.hypervisor else "agent"
    if _run(args, work) == 0:
        _err(f"error: {what} {args.name!r} has no live token")
        return EXIT_USAGE
    _err(f"revoked the token of {what} {args.name!r}")
    return EXIT_OK


# --- users ---------------------------------------------------------------------------------


def _read_password() -> str:
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            from phalanx.store.errors import StoreError

            raise StoreError("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


@_admin
def user_add(args: argparse.Namespace) -> int:
    """Add a user with a role; the password is read from stdin."""
    password = _read_password()

    async def work(store: Store, config: ServiceConfig) -> None:
        await _auth(store, config).add_user(args.name, args.role, password)

    _run(args, work)
    _err(f"added user {args.name!r} ({args.role})")
    return EXIT_OK


@_admin
def user_token(args: argparse.Namespace) -> int:
    """Make an API token for a user (for `Authorization: Bearer`); printed once."""

    async def work(store: Store, config: ServiceConfig) -> str:
        return await _auth(store, config).create_user_token(args.name)

    print(_run(args, work))
    _err(f"API token for user {args.name!r}: shown once")
    return EXIT_OK


@_admin
def user_list(args: argparse.Namespace) -> int:
    """List users: name, role, live API tokens, created."""

    async def work(store: Store, config: ServiceConfig) -> list[Any]:
        return await _auth(store, config).users()

    users = _run(args, work)
    if not users:
        _err("no users (add one: phalanx user add NAME --role admin)")
        return EXIT_OK
    rows = [("user", "role", "tokens", "created")]
    rows += [(u.name, u.role, str(u.tokens), _when(u.created_at)) for u in users]
    _table(rows)
    return EXIT_OK


@_admin
def user_remove(args: argparse.Namespace) -> int:
    """Remove a user, with their API tokens and sessions."""

    async def work(store: Store, config: ServiceConfig) -> None:
        await _auth(store, config).remove_user(args.name)

    _run(args, work)
    _err(f"removed user {args.name!r}")
    return EXIT_OK


# --- the parser ------------------------------------------------------------------------------


def _data_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="the service's config file (phalanx.toml)"
    )
    parser.add_argument(
        "--data", type=Path, metavar="DIR", help="the service's data folder (over the config's)"
    )
    return parser


def _group(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    group = commands.add_parser(name, help=help, description=help)
    sub = group.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
    sub.required = True
    return sub


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], command: Command
) -> None:
    """Register `db`, `token` and `user` on the `phalanx` parser; `command`
    is cli's helper that adds one subcommand with its handler."""
    db = _group(commands, "db", "The service's database.")
    _data_options(command(db, "upgrade", db_upgrade))

    tokens = _group(commands, "token", "Agents' and hypervisors' tokens for the service.")
    create = _data_options(command(tokens, "create", token_create))
    create.add_argument("name", help="the agent's name (the host it serves)")
    create.add_argument(
        "--hypervisor", action="store_true", help="a token for `phalanx hypervisor --name NAME`"
    )
    _data_options(command(tokens, "list", token_list))
    revoke = _data_options(command(tokens, "revoke", token_revoke))
    revoke.add_argument("name", help="the agent's name")
    revoke.add_argument("--hypervisor", action="store_true", help="a hypervisor's token")

    users = _group(commands, "user", "The service's users and their API tokens.")
    add = _data_options(command(users, "add", user_add))
    add.add_argument("name", help="the user's name")
    add.add_argument("--role", choices=ROLES, required=True, help="what the user may do")
    _data_options(command(users, "token", user_token)).add_argument("name", help="the user")
    _data_options(command(users, "list", user_list))
    _data_options(command(users, "remove", user_remove)).add_argument("name", help="the user")
