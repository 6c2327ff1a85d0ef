"""Prometheus metrics at `/metrics`: queries and their latency (histogram), cache hits and
spend from the answers, and, read at scrape time from the store, runs by status and the
documents and chunks it holds. One registry per app, so two servers in one test process
never share counters."""

from __future__ import annotations

import time
from contextlib import contextmanager

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ragline.models import Answer

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ServerMetrics:
    def __init__(self, service):
        self._service = service
        self.registry = CollectorRegistry()
        self.requests = Counter("ragline_requests", "Retrieve and query requests.", ["endpoint", "outcome"],
                                registry=self.registry)  # fmt: skip
        self.latency = Histogram("ragline_request_seconds", "Retrieve and query latency.", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)  # fmt: skip
        self.cache_hits = Counter("ragline_cache_hits", "Answers served from the response cache.", registry=self.registry)
        self.spend = Counter("ragline_spend_usd", "Model spend of the answers served.", registry=self.registry)
        self.runs = Gauge("ragline_runs", "Ingest runs in the history, by status.", ["status"], registry=self.registry)
        self.documents = Gauge("ragline_documents", "Documents in the store.", registry=self.registry)
        self.chunks = Gauge("ragline_chunks", "Chunks in the store.", registry=self.registry)

    @contextmanager
    def timed(self, endpoint: str):
        started, outcome = time.perf_counter(), "error"
        try:
            yield
            outcome = "ok"
        finally:
            self.observe(endpoint, time.perf_counter() - started, outcome)

    def observe(self, endpoint: str, seconds: float, outcome: str) -> None:
        self.requests.labels(endpoint, outcome).inc()
        self.latency.labels(endpoint).observe(seconds)

    def answered(self, answer: Answer) -> None:
        if answer.cached:
            self.cache_hits.inc()
        self.spend.inc(max(0.0, answer.cost_usd))

    def render(self) -> tuple[bytes, str]:
        for status, count in self._service.history.counts_by_status().items():
            self.runs.labels(status).set(count)
        summaries = self._service.rag.sources()
        self.documents.set(sum(s.documents for s in summaries))
        self.chunks.set(sum(s.chunks for s in summaries))
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
