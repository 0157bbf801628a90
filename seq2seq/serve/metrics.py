"""The Prometheus metrics of one app, in a registry of its own (two apps in one process, as in the
tests, do not share counters)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "seq2seq_requests", "HTTP requests answered, by route and status", ["route", "status"], registry=r
        )
        self.sentences = Counter("seq2seq_sentences", "Lines translated", registry=r)
        self.dropped = Counter(
            "seq2seq_dropped_sentences", "Lines dropped because their client went away", registry=r
        )
        self.queue = Gauge("seq2seq_queue_sentences", "Lines queued or being decoded", registry=r)
        self.batch_sentences = Histogram(
            "seq2seq_batch_sentences", "Lines per decoding batch", buckets=SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "seq2seq_batch_tokens", "Source pieces per decoding batch", buckets=SIZE_BUCKETS, registry=r
        )
        self.latency = Histogram(
            "seq2seq_request_seconds",
            "Time from a request's arrival to its answer, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
