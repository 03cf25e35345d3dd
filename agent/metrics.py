"""Prometheus metrics of one agent, on its own registry (served at /metrics when a port is configured)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class Metrics:
    """Counters, gauges and histograms the agent updates."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.files = Counter("partcheck_agent_files_total", "Files by outcome", ["outcome"], registry=r)
        self.bytes = Counter("partcheck_agent_uploaded_bytes_total", "Bytes uploaded", registry=r)
        self.errors = Counter(
            "partcheck_agent_upload_errors_total", "Failed upload attempts by kind", ["kind"], registry=r
        )
        self.upload_seconds = Histogram(
            "partcheck_agent_upload_seconds",
            "Duration of one PUT",
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.ready_delay = Histogram(
            "partcheck_agent_ready_to_upload_seconds",
            "From a file turning ready to its upload starting",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300),
        )
        self.outbox = Gauge("partcheck_agent_outbox_files", "Outbox rows by state", ["state"], registry=r)
        self.s3_up = Gauge("partcheck_agent_s3_available", "1 unless uploads are backing off", registry=r)
        self.watch_up = Gauge(
            "partcheck_agent_watch_folder_present", "1 if the watched folder exists", registry=r
        )

    def bind_outbox(self, counts: Callable[[], dict[str, int]], states: tuple[str, ...]) -> None:
        """Read outbox counts at scrape time."""
        for state in states:
            self.outbox.labels(state).set_function(_reader(counts, state))

    def serve(self, port: int, host: str) -> None:
        """Start the /metrics HTTP endpoint in a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)


def _reader(counts: Callable[[], dict[str, int]], state: str) -> Callable[[], float]:
    return lambda: float(counts().get(state, 0))
