"""The nemesis's schedule: faults parsed with clear errors, the same seed
the same schedule, start and heal alternating, everything healed by the end."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.history.nemesis import Fault, parse_fault, schedule

HOSTS = ["e1", "e2", "e3"]
FAULTS = [
    parse_fault(f)
    for f in ("partition-halves", "partition-random", "isolate-random", "slow-random 200ms")
]


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    one = schedule(FAULTS, HOSTS, every=2, seed=7, duration=60)
    assert one == schedule(FAULTS, HOSTS, every=2, seed=7, duration=60)
    assert one != schedule(FAULTS, HOSTS, every=2, seed=8, duration=60)


@given(
    st.lists(st.sampled_from(FAULTS), min_size=1),
    st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=2, max_size=5, unique=True),
    st.floats(0.1, 5),
    st.integers(),
    st.floats(0, 60),
)
@settings(deadline=None)
def test_faults_alternate_with_heals_and_all_heal_by_the_end(
    faults: list[Fault], hosts: list[str], every: float, seed: int, duration: float
) -> None:
    steps = schedule(faults, hosts, every, seed, duration)
    assert [s.action for s in steps] == ["start", "heal"] * (len(steps) // 2)
    assert all(s.at <= duration for s in steps)
    assert [s.at for s in steps] == sorted(s.at for s in steps)
    for step in steps:
        if step.groups:
            assert sorted(h for g in step.groups for h in g) == sorted(hosts)
            assert all(step.groups)
        if step.fault.kind in ("isolate-random", "slow-random"):
            assert step.host in hosts


def test_partition_halves_cuts_the_hosts_in_two_halves() -> None:
    steps = schedule([parse_fault("partition-halves")], ["a", "b", "c", "d"], 1, 3, 10)
    assert {len(g) for s in steps if s.action == "start" for g in s.groups} == {2}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("partition-all", "unknown fault 'partition-all'"),
        ("pause", "pause needs the process's name: `pause NAME`"),
        ("slow-random fast", "slow-random needs a delay with its unit (200ms), not 'fast'"),
        ("isolate-random e1", "isolate-random takes nothing after it (got 'e1')"),
    ],
)
def test_a_bad_fault_says_what_is_wrong(text: str, error: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_fault(text)
    assert str(caught.value).startswith(error)


def test_pausing_or_killing_needs_one_host_and_cutting_a_network_two() -> None:
    steps = schedule([parse_fault("pause etcd"), parse_fault("kill etcd")], ["solo"], 1.0, 7, 10)
    assert {s.host for s in steps} == {"solo"}
    with pytest.raises(ValueError, match="at least two hosts"):
        schedule([parse_fault("pause etcd"), parse_fault("isolate-random")], ["solo"], 1.0, 7, 10)
    with pytest.raises(ValueError, match="needs a host"):
        schedule([parse_fault("kill etcd")], [], 1.0, 7, 10)
