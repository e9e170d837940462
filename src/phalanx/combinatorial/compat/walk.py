"""``combtest.walk``: Walk (phalanx's, which also takes ``walk += actions``) and the errors."""

from __future__ import annotations

from phalanx.combinatorial.action import CancelWalk
from phalanx.combinatorial.walk import Walk

__all__ = ["CancelWalk", "Walk", "WalkFailedError"]


class WalkFailedError(RuntimeError):
    """A replayed walk raised; the message holds the traceback, the walk and its state."""

    errno: int | None = None
