"""The service's Prometheus metrics (`/metrics`): runs ended by status, host
stage durations, connected agents and queued runs. One registry per
service (not the process-wide default), so tests and embedders do not mix."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

# Stage scripts run from well under a second to hours.
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    def __init__(self, connected: Callable[[], int], queued: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.runs = Counter(
            "phalanx_runs", "Runs ended, by status", ["status"], registry=self.registry
        )
        self.stage_seconds = Histogram(
            "phalanx_stage_duration_seconds",
            "How long a host's stage ran, as its agent reported it",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        agents = Gauge("phalanx_agents_connected", "Agents connected now", registry=self.registry)
        agents.set_function(lambda: float(connected()))
        queue = Gauge("phalanx_queue_length", "Runs queued, not started", registry=self.registry)
        queue.set_function(lambda: float(queued()))

    def run_ended(self, status: str) -> None:
        self.runs.labels(status=status).inc()

    def stage_ended(self, started_at: datetime, ended_at: datetime) -> None:
        self.stage_seconds.observe(max((ended_at - started_at).total_seconds(), 0.0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
