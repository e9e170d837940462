"""``combtest.central_logger``: the logger and levels py-combtest code uses.

phalanx has no log server: workers return their log records with their results.
"""

from __future__ import annotations

import logging
from typing import Any

from phalanx.combinatorial.logs import logger

DEBUG = logging.DEBUG
INFO = logging.INFO
WARNING = logging.WARNING
ERROR = logging.ERROR

__all__ = ["DEBUG", "ERROR", "INFO", "WARNING", "log_status", "logger", "set_level"]


def set_level(level: int) -> None:
    logger.setLevel(level)


def log_status(msg: str, *args: Any) -> None:
    logger.info(msg, *args)
