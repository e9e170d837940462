"""What a request gets while the store cannot be used (a full disk, a lock,
a damaged file): 503 and a message saying so, instead of a 500 and a
traceback in the log for every request. The log gets one line a minute."""

from __future__ import annotations

import logging
import sqlite3
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from phalanx.store.failures import Throttle, describe

log = logging.getLogger("phalanx.service")

# A client may try again after this long (seconds): a disk is not freed at once.
RETRY_AFTER = 30


def add_store_failure_handler(app: FastAPI) -> None:
    throttle = Throttle(time.monotonic)

    # Registered for these classes (not for Exception): Starlette's outermost
    # middleware would answer for Exception and then re-raise it to uvicorn,
    # which logs a traceback per request.
    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        why = describe(exc)
        if why is None:
            log.error("a database error on %s %s", request.method, request.url.path, exc_info=exc)
            return JSONResponse({"message": "internal error"}, status_code=500)
        if (line := throttle.line(why, f"the store cannot be used: {why}")) is not None:
            log.error("%s", line)
        return JSONResponse(
            {"message": f"the service cannot use its database: {why}; try again later"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER)},
        )

    app.add_exception_handler(DBAPIError, unavailable)
    app.add_exception_handler(sqlite3.Error, unavailable)
