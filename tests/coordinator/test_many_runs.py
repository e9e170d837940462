"""A coordinator outlives its runs: run after run on one hub leaves nothing behind."""

from __future__ import annotations

import gc
import tracemalloc
import weakref

from phalanx.coordinator.agents import AgentHub
from phalanx.coordinator.auth import TokenBook
from phalanx.coordinator.fleet import RunFleet
from phalanx.engine.lockstep import Lockstep
from phalanx.model import Status
from phalanx.tags import RunContext
from tests.coordinator.hubhelpers import FakeAgent
from tests.coordinator.runhelpers import case, suite

RUNS = 1000
BASELINE_AT = 100
# What 900 runs may add in all (a few KiB of caches warming up): under 40
# bytes a run, less than keeping a single stage id of each run would take.
ALLOWED_GROWTH = 32 * 1024


async def test_a_thousand_runs_on_one_hub_leave_no_state_and_no_memory_behind():
    hub = AgentHub(TokenBook())
    s = suite(case("c", run="true"), n=2)
    names = [h.name for h in s.hosts]
    agents = {name: FakeAgent(hub.link(name)) for name in names}
    for name, agent in agents.items():
        hub.link(name).attach(agent.connection)
    links = dict(hub.links)
    fleets: list[weakref.ref[RunFleet]] = []
    try:
        for n in range(1, RUNS + 1):
            run_id = f"run{n}"
            with RunFleet(hub, run_id, names) as fleet:
                result = await Lockstep(
                    s, fleet, RunContext(run_id, "127.0.0.1", 1), lambda event: None
                ).execute()
                assert result.status is Status.PASSED, result.reason
                assert fleet.rendezvous.held() == (0, 0)
            if n % 100 == 0:
                fleets.append(weakref.ref(fleet))
            del fleet, result
            if n == BASELINE_AT:
                # Traced from here on: what is still held at the end is growth.
                gc.collect()
                tracemalloc.start()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0]
        top = tracemalloc.take_snapshot().statistics("traceback")[:3] if grown else []
    finally:
        tracemalloc.stop()
    for agent in agents.values():
        # Every wait saw the value of its own stage, and every barrier released.
        assert agent.got == RUNS and agent.foreign == 0
        assert agent.barriers == agent.waits == {}
    assert hub.holders == {}
    assert hub.links == links
    assert all(link.connection is agents[name].connection for name, link in links.items())
    assert all(ref() is None for ref in fleets), "a run's fleet is still referenced"
    where = "\n".join(f"{stat}\n" + "\n".join(stat.traceback.format()) for stat in top)
    assert grown < ALLOWED_GROWTH, f"{grown} bytes more after {RUNS - BASELINE_AT} runs:\n{where}"
