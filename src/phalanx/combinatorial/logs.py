"""``phalanx.combinatorial.logger``, and how its records reach the coordinating process.

On a worker process, records are buffered per task and returned with the
task's result; the coordinator hands them to its own handlers (console by
verbosity, and ``log_dir``). In the coordinating process itself (serial
actions, the threads executor) records go to those handlers directly.

Each run's handlers take only that run's records (by a run id carried in a
thread-local), so runs going on at once in one process keep their logs apart.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from phalanx.combinatorial.protocol import WorkerRecord

logger = logging.getLogger("phalanx.combinatorial")

# Records a worker keeps per task; beyond this they are counted, not kept, so a
# chatty action cannot exhaust the coordinator's memory.
RECORD_LIMIT = 5000

LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}

_tls = threading.local()


_run_ids = itertools.count(1)


def set_run(run_id: str | None) -> None:
    """Attribute records emitted from now on, in this thread, to run ``run_id``."""
    _tls.run_id = run_id


def current_run() -> str | None:
    return getattr(_tls, "run_id", None)


def set_walk(walk_id: int | None) -> None:
    """Tag records emitted from now on, in this thread, with ``walk_id``."""
    _tls.walk_id = walk_id


def current_walk() -> int | None:
    return getattr(_tls, "walk_id", None)


class _RunFilter(logging.Filter):
    """Passes one run's records, tagged with the walk they came from."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def filter(self, record: logging.LogRecord) -> bool:
        run_id = getattr(record, "run_id", None)
        if run_id is None:
            run_id = current_run()
            record.run_id = run_id
        if run_id != self.run_id:
            return False
        if getattr(record, "walk_id", None) is None:
            record.walk_id = current_walk()
        return True


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        walk_id = getattr(record, "walk_id", None)
        record.walk = f" [walk {walk_id}]" if walk_id is not None else ""
        return super().format(record)


_FORMAT = "%(asctime)s %(levelname)s %(name)s%(walk)s: %(message)s"


@contextmanager
def coordinator_logging(verbose: int, log_file: Path | None) -> Iterator[str]:
    """Handlers for one run: console by ``verbose`` (none if negative), and a file.

    Yields the run id that tasks carry, so that records of this run reach these
    handlers and no other run's.
    """
    run_id = f"{os.getpid()}-{next(_run_ids)}"
    level = LEVELS.get(verbose, logging.DEBUG if verbose > 2 else logging.WARNING)
    handlers: list[logging.Handler] = []
    if verbose >= 0:
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(level)
        handlers.append(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setLevel(min(level, logging.INFO))
        handlers.append(file_handler)
    run_filter = _RunFilter(run_id)
    for h in handlers:
        h.setFormatter(_Formatter(_FORMAT))
        h.addFilter(run_filter)
        logger.addHandler(h)
    old_level, old_run = logger.level, current_run()
    if handlers:
        wanted = min(h.level for h in handlers)
        # Never quieter than the level someone else set: their handlers want those records.
        logger.setLevel(min(wanted, old_level) if old_level else wanted)
    set_run(run_id)
    try:
        yield run_id
    finally:
        set_run(old_run)
        logger.setLevel(old_level)
        for h in handlers:
            logger.removeHandler(h)
            h.close()


def effective_level() -> int:
    return logger.getEffectiveLevel()


class _Capture(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        buffer: list[WorkerRecord] | None = getattr(_tls, "buffer", None)
        if buffer is None:
            return
        if len(buffer) >= RECORD_LIMIT:
            _tls.dropped += 1
            return
        exc_text = None
        if record.exc_info:
            exc_text = logging.Formatter().formatException(record.exc_info)
        walk_id = getattr(record, "walk_id", None)
        if walk_id is None:
            walk_id = current_walk()
        buffer.append(
            WorkerRecord(
                record.levelno, record.name, record.getMessage(), record.created, walk_id, exc_text
            )
        )


_capture_lock = threading.Lock()
_capture_installed = False


def capture_begin(level: int) -> None:
    """Start buffering this thread's records (worker side)."""
    global _capture_installed
    with _capture_lock:
        if not _capture_installed:
            # A forked worker inherits the coordinator's handlers: replace them, or
            # every record would be printed twice (once here, once when returned).
            logger.handlers[:] = [_Capture()]
            logger.propagate = False
            _capture_installed = True
    logger.setLevel(level)
    _tls.buffer = []
    _tls.dropped = 0


def capture_end() -> tuple[list[WorkerRecord], int]:
    buffer: list[WorkerRecord] = getattr(_tls, "buffer", None) or []
    dropped: int = getattr(_tls, "dropped", 0)
    _tls.buffer = None
    _tls.dropped = 0
    return buffer, dropped


def emit_returned(records: list[WorkerRecord], dropped: int, origin: str) -> None:
    """Hand records returned by a worker to this process's handlers."""
    for r in records:
        record = logging.makeLogRecord(
            {
                "name": r.name,
                "levelno": r.levelno,
                "levelname": logging.getLevelName(r.levelno),
                "msg": r.message,
                "args": None,
                "created": r.created,
                "msecs": (r.created - int(r.created)) * 1000,
                "walk_id": r.walk_id,
                "run_id": current_run(),
                "exc_text": r.exc_text,
                "worker": origin,
            }
        )
        logging.getLogger(r.name).handle(record)
    if dropped:
        logger.warning(
            "%s: %d log records were dropped (more than %d in one task)",
            origin,
            dropped,
            RECORD_LIMIT,
        )
