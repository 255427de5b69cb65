"""Prometheus metrics, one registry per application (no import-time globals).

Dropped fields are counted by purpose and field name only, never by value: the metrics
must not become a second, unconsented store. Under several worker processes, set
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode) to aggregate them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "gateway_requests",
            "HTTP requests answered",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "gateway_request_seconds",
            "Time to answer a request",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.events_stored = Counter(
            "gateway_events_stored", "Event parts stored", ["purpose"], registry=r
        )
        self.events_duplicate = Counter(
            "gateway_events_duplicate", "Events not stored again: event_id already seen", registry=r
        )
        self.fields_stored = Counter(
            "gateway_fields_stored", "Fields stored", ["purpose", "field"], registry=r
        )
        self.fields_dropped = Counter(
            "gateway_fields_dropped",
            "Fields dropped because their purpose was not consented",
            ["purpose", "field"],
            registry=r,
        )
        self.consents = Counter(
            "gateway_consent_changes", "Ledger entries written", ["action"], registry=r
        )
        self.storage_errors = Counter(
            "gateway_storage_errors",
            "Requests refused because storage failed",
            ["kind"],
            registry=r,
        )

    @staticmethod
    def count_fields(counter: Counter, counts: Mapping[tuple[str, str], int]) -> None:
        for (purpose, name), n in counts.items():
            counter.labels(purpose=purpose, field=name).inc(n)

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            reg = CollectorRegistry()
            multiprocess.MultiProcessCollector(reg)
            return generate_latest(reg)
        return generate_latest(self.registry)

    def init_app(self, app: Flask) -> None:
        app.extensions["metrics"] = self

        @app.before_request
        def _start() -> None:
            g.metrics_start = time.perf_counter()

        @app.after_request
        def _observe(resp: Response) -> Response:
            endpoint = request.endpoint or "unmatched"
            self.requests.labels(endpoint, request.method, str(resp.status_code)).inc()
            start = g.get("metrics_start")
            if start is not None:
                self.latency.labels(endpoint).observe(time.perf_counter() - start)
            return resp

        @app.get("/metrics")
        def metrics() -> Response:
            return Response(self.exposition(), mimetype=CONTENT_TYPE_LATEST)
