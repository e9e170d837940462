"""What a checker says about a history."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from phalanx.history.ops import Op


@dataclass(frozen=True, slots=True)
class KeyVerdict:
    """One key's verdict: valid, or why not and the operations that show it."""

    key: Hashable
    valid: bool
    ops: int
    reason: str = ""
    window: tuple[Op, ...] = ()


@dataclass(frozen=True, slots=True)
class Verdict:
    model: str
    keys: tuple[KeyVerdict, ...] = field(default_factory=tuple)

    @property
    def valid(self) -> bool:
        return all(k.valid for k in self.keys)

    @property
    def invalid(self) -> tuple[KeyVerdict, ...]:
        return tuple(k for k in self.keys if not k.valid)

    def summary(self) -> str:
        """One line: `history linearizable` or `history not linearizable on key x`."""
        bad = self.invalid
        if not bad:
            return f"history valid ({self.model}, {len(self.keys)} key(s))"
        what = "not linearizable" if self.model == "register" else f"not a valid {self.model}"
        if all(k.key is None for k in bad):
            return f"history {what}"
        names = ", ".join(key_name(k.key) for k in bad)
        return f"history {what} on key {names}"


def key_name(key: Hashable) -> str:
    return "(none)" if key is None else str(key)
