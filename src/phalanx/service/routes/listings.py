"""Lists many readers ask for at once, gathered once for them all
(web/shared.py): the runs by their query, and the agents; each encoded as
JSON once per gathering. Kept on the app's state beside the service."""

from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import orjson

from phalanx.service.agents import known
from phalanx.service.app import Service
from phalanx.service.caches import Lru
from phalanx.service.web.shared import Shared
from phalanx.service.web.views import dashboard_key

RunsKey = tuple[str | None, str | None, int]  # suite, status, limit


class Listings:
    def __init__(self, service: Service) -> None:
        self.service = service
        self._runs: Lru[RunsKey, Shared[list[dict[str, Any]]]] = Lru(64)
        self.agents = Shared(self._agents, lambda: dashboard_key(service))
        # (list, query) -> the gathering last encoded, and its JSON
        self._encoded: Lru[Hashable, tuple[object, bytes]] = Lru(64)

    def encoded(self, key: Hashable, answer: list[dict[str, Any]]) -> bytes:
        """`answer` (one gathering of the list `key`) as JSON, encoded once
        for all its readers."""
        if (last := self._encoded.get(key)) is not None and last[0] is answer:
            return last[1]
        return self._encoded.put(key, (answer, orjson.dumps(answer)))[1]

    async def _agents(self) -> list[dict[str, Any]]:
        return [agent.to_json() for agent in await known(self.service)]

    async def runs(
        self, key: RunsKey, gather: Callable[[], Awaitable[list[dict[str, Any]]]]
    ) -> list[dict[str, Any]]:
        """The runs `gather` lists for `key`, shared by the readers asking together."""
        if (shared := self._runs.get(key)) is None:
            shared = self._runs.put(key, Shared(gather, lambda: dashboard_key(self.service)))
        return await shared.get()
