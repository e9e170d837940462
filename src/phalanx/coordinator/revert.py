"""`revert: case` for one run: the hosts go back as they were before a
case (VMs restored to a snapshot) once anything has run on them, and the
case's first stage waits for it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class CaseRevert:
    def __init__(self, before_case: Callable[[], Awaitable[str | None]] | None) -> None:
        """`before_case`: what puts the hosts back; its error (None: it
        worked) is that case's stages' error."""
        self.before_case = before_case
        self.reverting: asyncio.Future[str | None] | None = None
        self.stages_begun = False  # any stage of the run, suite stages included

    def begin_case(self) -> None:
        if self.before_case is not None and self.stages_begun:
            self.reverting = asyncio.ensure_future(self.before_case())

    def begin_stage(self) -> None:
        self.stages_begun = True

    async def reverted(self) -> str | None:
        """Once the hosts are back as before the case: None, or why not."""
        if self.reverting is None:
            return None
        return await asyncio.shield(self.reverting)

    def close(self) -> None:
        if self.reverting is not None:
            self.reverting.cancel()
