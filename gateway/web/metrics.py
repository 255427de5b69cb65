"""``/metrics`` and the timing of every request, on the core's registry (``core/metrics.py``)."""

from __future__ import annotations

import contextlib
import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST

from ..core.errors import StorageUnavailable
from ..core.metrics import Metrics, method_label


def init_app(app: Flask, metrics: Metrics) -> None:
    app.extensions["metrics"] = metrics

    @app.before_request
    def _start() -> None:
        g.metrics_start = time.perf_counter()

    @app.after_request
    def _observe(resp: Response) -> Response:
        endpoint = request.endpoint or "unmatched"
        metrics.child(
            metrics.requests, endpoint, method_label(request.method), str(resp.status_code)
        ).inc()
        start = g.get("metrics_start")
        if start is not None:
            metrics.child(metrics.latency, endpoint).observe(time.perf_counter() - start)
        return resp

    @app.get("/metrics")
    def exposition() -> Response:
        store = app.extensions["gateway"].store
        # whichever gateway ran it; without the store the metrics answer all the same
        with contextlib.suppress(StorageUnavailable):
            metrics.show_retention(store.last_retention())
        return Response(metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)
