"""How far an agent's clock is from the coordinator's, from its pings.

A ping leaves at t0 and its pong, carrying the agent's clock c, comes back
at t1 (both on the coordinator's clock). The agent read its clock somewhere
in between, so its offset is c - (t0 + t1) / 2, give or take half the round
trip. Of the recent samples the one with the shortest round trip is the
best bound (NTP's clock filter does the same). Pure: times in, an offset out.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

KEPT = 32  # recent samples: a clock stepped since is followed within these
PINGS_REMEMBERED = 64  # pings in flight whose send time is kept


@dataclass(frozen=True, slots=True)
class Sample:
    offset: float  # the agent's clock less the coordinator's, seconds
    rtt: float


class ClockOffset:
    def __init__(self) -> None:
        self.samples: deque[Sample] = deque(maxlen=KEPT)
        self.count = 0
        self._sent: dict[int, float] = {}

    def pinged(self, seq: int, at: float) -> None:
        """A ping `seq` left at `at` (the coordinator's clock)."""
        self._sent[seq] = at
        while len(self._sent) > PINGS_REMEMBERED:
            del self._sent[next(iter(self._sent))]

    def ponged(self, seq: int, at: float, clock: float | None) -> Sample | None:
        """Its pong came back at `at`, the agent's clock reading `clock`."""
        sent = self._sent.pop(seq, None)
        if sent is None or clock is None or at < sent:
            return None
        sample = Sample(clock - (sent + at) / 2, at - sent)
        self.samples.append(sample)
        self.count += 1
        return sample

    def best(self) -> Sample | None:
        """The sample with the shortest round trip; None before any."""
        return min(self.samples, key=lambda s: s.rtt, default=None)
