"""The service's Prometheus metrics, on a registry of its own (two apps in one process never share counts)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """Requests, latency per endpoint, errors by status, batch sizes, queue depth, model load time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("llmrec_requests", "requests answered", ["endpoint", "status"], registry=r)
        self.errors = Counter("llmrec_errors", "requests answered with status >= 400", ["endpoint", "status"],
                              registry=r)  # fmt: skip
        self.latency = Histogram("llmrec_request_seconds", "time from request to response", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.batch_size = Histogram("llmrec_batch_size", "requests answered by one model call", ["task"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)  # fmt: skip
        self.queue_depth = Gauge("llmrec_queue_depth", "requests waiting for the model", registry=r)
        self.load_seconds = Gauge("llmrec_model_load_seconds", "seconds the model took to load", registry=r)
        self.feedback = Counter("llmrec_feedback_events", "feedback events logged", ["event"], registry=r)
        self.items_added = Counter("llmrec_items_added", "catalogue items added at run time", registry=r)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if status >= 400:
            self.errors.labels(endpoint, str(status)).inc()
