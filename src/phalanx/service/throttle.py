"""How often a name or an address may try a password: a few free tries,
then a wait that doubles with each further failure, per user name and per
address at once (one address trying many names is held back as one name
tried from many addresses is). While a wait runs, no password is checked,
not even the right one: that is what makes guessing slow. A success clears
the name's and the address's count.

Pure logic: the caller says what time it is."""

from __future__ import annotations

from dataclasses import dataclass, field

FREE_PER_NAME = 5  # failures after which a name waits
FREE_PER_ADDRESS = 10  # failures after which an address waits (it may be shared)
FIRST_WAIT = 1.0  # seconds, doubled with each failure after the free ones
LONGEST_WAIT = 900.0
FORGET_AFTER = 3600.0  # seconds of quiet after which a count starts again
MAX_KEPT = 10_000  # counts kept at most (the oldest go first)


@dataclass
class _Count:
    failures: int = 0
    last: float = 0.0
    until: float = 0.0  # no try before this


@dataclass
class LoginThrottle:
    free_per_name: int = FREE_PER_NAME
    free_per_address: int = FREE_PER_ADDRESS
    first_wait: float = FIRST_WAIT
    longest_wait: float = LONGEST_WAIT
    _counts: dict[str, _Count] = field(default_factory=dict)

    def wait(self, name: str, address: str, now: float) -> float:
        """Seconds until `name` may try from `address` (0: now)."""
        keys = (self._name(name), self._address(address))
        return max((c.until - now for k in keys if (c := self._get(k, now))), default=0.0)

    def failed(self, name: str, address: str, now: float) -> None:
        for key, free in (
            (self._name(name), self.free_per_name),
            (self._address(address), self.free_per_address),
        ):
            count = self._get(key, now) or self._new(key)
            count.failures += 1
            count.last = now
            over = count.failures - free + 1  # the free ones used up: wait
            if over > 0:
                count.until = now + min(self.first_wait * 2 ** (over - 1), self.longest_wait)

    def succeeded(self, name: str, address: str) -> None:
        self._counts.pop(self._name(name), None)
        self._counts.pop(self._address(address), None)

    @staticmethod
    def _name(name: str) -> str:
        return "name:" + name.lower()

    @staticmethod
    def _address(address: str) -> str:
        return "address:" + address

    def _get(self, key: str, now: float) -> _Count | None:
        count = self._counts.get(key)
        if count is not None and now - count.last > FORGET_AFTER and now >= count.until:
            del self._counts[key]
            return None
        return count

    def _new(self, key: str) -> _Count:
        if len(self._counts) >= MAX_KEPT:
            oldest = min(self._counts, key=lambda k: self._counts[k].last)
            del self._counts[oldest]
        count = self._counts[key] = _Count()
        return count
