"""Fail tokens: every expectation not yet met holds one. A test passes only
if it was marked passed and no token is left."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Token:
    id: int
    message: str


@dataclass
class FailTokens:
    tokens: dict[int, Token] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def create(self, message: str) -> Token:
        token = Token(next(self._ids), message)
        self.tokens[token.id] = token
        return token

    def remove(self, token: Token) -> None:
        self.tokens.pop(token.id, None)

    def left(self) -> list[str]:
        return [t.message for t in self.tokens.values()]


def verdict(passed: bool, tokens: FailTokens) -> tuple[bool, list[str]]:
    """(passed, why not): marked passed and nothing left unmet."""
    reasons = tokens.left()
    if not passed:
        reasons = ["the test was not marked passed", *reasons]
    return passed and not tokens.tokens, reasons
