"""Prometheus metrics, one registry per application (no import-time globals).

The counters live here, with the core that counts; the web layer times requests and serves
``/metrics`` (``web/metrics.py``).

Dropped fields are counted by purpose and field name only, never by value: the metrics
must not become a second, unconsented store. Under several worker processes, set
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode) to aggregate them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from .records import RetentionRun

# A client chooses its method: anything else is one label, so it cannot grow the series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in _METHODS else "OTHER"


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
        self.rate_limited = Counter(
            "gateway_rate_limited",
            "Requests refused with 429: a rate limit's bucket was empty",
            ["limit"],
            registry=r,
        )
        self.erasure_rewrites = Counter(
            "gateway_erasure_rewrites",
            "Append-only file rewrites the store ran so that erased values leave its files",
            ["result"],  # started, completed, failed
            registry=r,
        )
        self.audience_index_bytes = Gauge(
            "gateway_audience_index_bytes",
            "Memory of the audience index's bitmaps in this process (serialized size)",
            ["holder"],  # indexer: the writer's shards; reader: the merged copy queries use
            registry=r,
            multiprocess_mode="max",
        )
        self.audience_feed_entries = Counter(
            "gateway_audience_feed_entries", "Feed entries the audience indexer read", registry=r
        )
        # Retention's last run across every gateway sharing the store (read from the store at
        # each scrape: whichever process ran it, every /metrics shows it).
        self.retention_last_run = Gauge(
            "gateway_retention_last_run_timestamp_seconds",
            "When retention last ran (any gateway sharing the store)",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.retention_last_removed = Gauge(
            "gateway_retention_last_removed",
            "Stream entries past retention the last run removed, per purpose",
            ["purpose"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.retention_runs = Gauge(
            "gateway_retention_runs",
            "Retention runs the store has recorded",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.storage_errors = Counter(
            "gateway_storage_errors",
            "Requests refused because storage failed",
            ["kind"],
            registry=r,
        )

        # labels() costs microseconds a call and the label sets are few (the catalogue's
        # purposes and fields, the app's endpoints): resolve each child once.
        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def count_collected(
        self,
        parts: Mapping[str, int],
        duplicates: int,
        stored: Mapping[tuple[str, str], int],
        dropped: Mapping[tuple[str, str], int],
    ) -> None:
        """One request's tallies: parts stored per purpose, duplicates, fields per name."""
        for purpose, n in parts.items():
            self.child(self.events_stored, purpose).inc(n)
        if duplicates:
            self.events_duplicate.inc(duplicates)
        for (purpose, name), n in stored.items():
            self.child(self.fields_stored, purpose, name).inc(n)
        for (purpose, name), n in dropped.items():
            self.child(self.fields_dropped, purpose, name).inc(n)

    def show_retention(self, run: RetentionRun | None) -> None:
        if run is None:
            return
        self.retention_last_run.set(run.at_ms / 1000)
        self.retention_runs.set(run.runs)
        for purpose, n in run.removed.items():
            self.retention_last_removed.labels(purpose=purpose).set(n)

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            reg = CollectorRegistry()
            multiprocess.MultiProcessCollector(reg)  # type: ignore[no-untyped-call]
            return generate_latest(reg)
        return generate_latest(self.registry)
