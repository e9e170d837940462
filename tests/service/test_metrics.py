"""`/metrics` of a real `phalanx serve`, scraped over HTTP as Prometheus does."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.service.test_serve import Served, served, user_token, wait_case_a, wait_run

__all__ = ["served"]


def scrape(url: str) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """Metric family -> (sample name, labels) -> value."""
    response = httpx.get(f"{url}/metrics", timeout=30)  # no credentials: like /healthz
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        family.name: {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        for family in text_string_to_metric_families(response.text)
    }


def test_metrics_count_runs_by_status_stage_durations_agents_and_the_queue(
    served: Served,
) -> None:
    before = scrape(served.url)
    assert before["phalanx_agents_connected"] == {("phalanx_agents_connected", ()): 0.0}
    assert before["phalanx_queue_length"] == {("phalanx_queue_length", ()): 0.0}
    assert before["phalanx_runs"] == {}

    token = user_token(served, "otto", "operator")
    with served.client(token) as client:
        for suite, status in (("good", "passed"), ("bad", "failed"), ("good", "passed")):
            run = client.post(f"/api/suites/{suite}/runs").json()["id"]
            assert wait_run(client, run, ("passed", "failed", "error"))["status"] == status
        # A long run holds the cluster: one more waits in the queue.
        long = client.post("/api/suites/long/runs").json()["id"]
        wait_case_a(client, long)  # its host's agent is connected
        queued = client.post("/api/suites/good/runs").json()["id"]
        during = scrape(served.url)
        assert during["phalanx_queue_length"] == {("phalanx_queue_length", ()): 1.0}
        # The local provider's agent of the running run's host.
        assert during["phalanx_agents_connected"] == {("phalanx_agents_connected", ()): 1.0}
        for run in (queued, long):
            client.post(f"/api/runs/{run}/cancel")
        wait_run(client, long, ("cancelled",))

    after = scrape(served.url)
    runs = after["phalanx_runs"]
    assert runs[("phalanx_runs_total", (("status", "passed"),))] == 2.0
    assert runs[("phalanx_runs_total", (("status", "failed"),))] == 1.0
    assert runs[("phalanx_runs_total", (("status", "cancelled"),))] == 2.0
    stages = after["phalanx_stage_duration_seconds"]
    # Each of the three finished runs ran at least its case's run stage.
    assert stages[("phalanx_stage_duration_seconds_count", ())] >= 3
    assert (
        stages[("phalanx_stage_duration_seconds_bucket", (("le", "+Inf"),))]
        == (stages[("phalanx_stage_duration_seconds_count", ())])
    )
    assert after["phalanx_queue_length"] == {("phalanx_queue_length", ()): 0.0}
