"""An agent's clock offset from its pings: the sample with the shortest
round trip wins, and the offset is within half of it."""

from __future__ import annotations

import random

import pytest

from phalanx.coordinator.clock import ClockOffset
from phalanx.coordinator.histories import host_clock


@pytest.mark.parametrize("skew", [-3600.0, -0.25, 0.0, 0.004, 42.5])
def test_the_offset_is_within_half_the_best_round_trip(skew: float) -> None:
    rng = random.Random(1)
    clock = ClockOffset()
    now = 1_000.0
    for seq in range(40):
        out, back = rng.uniform(0.0005, 0.2), rng.uniform(0.0005, 0.2)  # asymmetric delays
        clock.pinged(seq, now)
        agent_reads = now + out + skew
        now += out + back
        clock.ponged(seq, now, agent_reads)
        now += 0.5
    best = clock.best()
    assert best is not None
    assert abs(best.offset - skew) <= best.rtt / 2 + 1e-9
    assert best.rtt == min(s.rtt for s in clock.samples)
    kept = host_clock("h1", clock)
    assert (kept.host, kept.samples) == ("h1", 40)
    assert abs(kept.offset - skew) <= best.rtt / 2 + 1e-6


def test_pongs_without_a_ping_or_a_clock_are_no_sample_and_no_sample_is_offset_zero() -> None:
    clock = ClockOffset()
    assert clock.ponged(1, 10.0, 5.0) is None  # never pinged
    clock.pinged(2, 10.0)
    assert clock.ponged(2, 10.1, None) is None  # an agent that does not say
    assert clock.best() is None
    unmeasured = host_clock("h2", clock)
    assert (unmeasured.offset, unmeasured.rtt, unmeasured.samples) == (0.0, None, 0)
