"""What a request gets while the store cannot be used (a full disk, a lock,
a damaged file): 503 and a message saying so, instead of a 500 and a
traceback in the log for every request. An event stream already under way
cannot change its status: it ends with an `unavailable` event saying so
(and when to come back), instead of a traceback. The log gets one line a
minute, for the requests and the streams together."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from phalanx.store.failures import Throttle, describe

log = logging.getLogger("phalanx.service")

# A client may try again after this long (seconds): a disk is not freed at once.
RETRY_AFTER = 30


def message(why: str) -> str:
    """What a client is told while the store cannot be used."""
    return f"the service cannot use its database: {why}; try again later"


class StoreFailures:
    """The service's one account of store failures: each said in one log
    line, at most one a minute per kind."""

    def __init__(self) -> None:
        self._throttle = Throttle(time.monotonic)

    def said(self, exc: BaseException) -> str | None:
        """Why the store cannot be used (logged, throttled), or None when
        `exc` is no store failure (a bug: its caller lets it raise)."""
        why = describe(exc)
        if why is not None and (
            line := self._throttle.line(why, f"the store cannot be used: {why}")
        ):
            log.error("%s", line)
        return why

    async def guard(
        self, stream: AsyncGenerator[str, None], last: Callable[[str], str]
    ) -> AsyncIterator[str]:
        """`stream`'s events; if the store fails under it, `last(why)` (the
        stream's own closing event) and the end."""
        try:
            async with aclosing(stream):
                async for event in stream:
                    yield event
        except (DBAPIError, sqlite3.Error) as exc:
            why = self.said(exc)
            if why is None:
                raise
            # The browser's EventSource reconnects after `retry` ms, not at once.
            yield f"retry: {RETRY_AFTER * 1000}\n{last(why)}"


def add_store_failure_handler(app: FastAPI) -> StoreFailures:
    """Answer store failures with 503; the account the app's streams share
    (also at `app.state.store_failures`)."""
    failures = StoreFailures()
    app.state.store_failures = failures

    # Registered for these classes (not for Exception): Starlette's outermost
    # middleware would answer for Exception and then re-raise it to uvicorn,
    # which logs a traceback per request.
    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        why = failures.said(exc)
        if why is None:
            log.error("a database error on %s %s", request.method, request.url.path, exc_info=exc)
            return JSONResponse({"message": "internal error"}, status_code=500)
        return JSONResponse(
            {"message": message(why)},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER)},
        )

    app.add_exception_handler(DBAPIError, unavailable)
    app.add_exception_handler(sqlite3.Error, unavailable)
    return failures
