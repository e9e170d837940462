"""What the store raises for a caller's mistake (as opposed to a database failure)."""

from __future__ import annotations


class StoreError(Exception):
    """A request the data does not allow; the message says why, for a user."""


class NotFound(StoreError, KeyError):
    def __str__(self) -> str:  # KeyError's own would quote the message
        return str(self.args[0]) if self.args else ""


class Conflict(StoreError):
    """It exists already."""
