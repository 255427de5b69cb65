"""Collection: ``POST /v1/events`` and the ``GET /p.gif`` web beacon.

For each request: who is calling, what their ledger grants right now, enrich for those
purposes only, split every event by purpose, and hand the parts to one atomic store call that
checks the grants again. What is not consented is dropped here and counted by field name.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from typing import Any

from flask import Blueprint, Response, jsonify, request
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .consent import granted_now
from .errors import GatewayError, StorageUnavailable
from .events import Event
from .identity import caller
from .payload import read_body
from .services import Services, services
from .store import DUPLICATE

bp = Blueprint("collect", __name__)

GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
assert len(GIF) == 43
NO_STORE = "no-store, no-cache, must-revalidate, max-age=0"


def collect(svc: Services, events: Sequence[Event]) -> dict[str, Any]:
    """Store what is consented of ``events`` for the calling subject; the answer's body."""
    who = caller()
    dropped: dict[tuple[str, str], int] = {}
    granted: frozenset[str] = frozenset()
    if who.sid is not None:
        granted = granted_now(svc.catalogue, svc.store.read_consent(who.sid), svc.min_grant)
    sid = who.sid or ""
    context = (
        svc.enricher.context(request.remote_addr, request.user_agent.string, granted)
        if granted
        else {}
    )
    batch = [(e.event_id, svc.codec.split(sid, e, context, granted, dropped)) for e in events]
    if any(parts for _, parts in batch):
        outcomes = svc.store.store_events(sid, batch, svc.min_grant, int(time.time() * 1000))
    else:
        outcomes = [""] * len(batch)

    stored_fields: dict[tuple[str, str], int] = {}
    stored = duplicates = 0
    for (_, parts), outcome in zip(batch, outcomes, strict=True):
        if outcome == DUPLICATE:
            duplicates += 1
            continue
        kept = set(outcome.split(",")) if outcome else set()
        stored += bool(kept)
        for part in parts:
            target = stored_fields if part.purpose in kept else dropped
            for name in part.fields[8::2]:  # after the sid/event_id/type/ts head
                key = (part.purpose, name)
                target[key] = target.get(key, 0) + 1
            if part.purpose in kept:
                svc.metrics.events_stored.labels(purpose=part.purpose).inc()
    if duplicates:
        svc.metrics.events_duplicate.inc(duplicates)
    svc.metrics.count_fields(svc.metrics.fields_stored, stored_fields)
    svc.metrics.count_fields(svc.metrics.fields_dropped, dropped)
    return {
        "accepted": len(events),
        "stored": stored,
        "duplicates": duplicates,
        "stored_fields": _by_name(stored_fields),
        "dropped_fields": _by_name(dropped),
    }


def _by_name(counts: dict[tuple[str, str], int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for (_, name), n in counts.items():
        out[name] = out.get(name, 0) + n
    return out


@bp.post("/v1/events")
def post_events() -> Response:
    svc = services()
    svc.origins.check_write(request)
    raw = read_body(request, max_bytes=svc.config["MAX_EVENT_BODY_BYTES"])
    events = svc.codec.decode_body(raw)
    resp = jsonify(collect(svc, events))
    resp.status_code = 202
    return resp


@bp.get("/p.gif")
def pixel() -> Response:
    """Always the 43-byte GIF; the status tells a curious client what happened."""
    svc = services()
    status, code = 200, None
    try:
        defaults = {}
        if request.args.get("type", "page_view") == "page_view" and request.referrer:
            defaults["url"] = request.referrer
        defaults.setdefault("type", "page_view")
        event = svc.codec.from_query(request.args, defaults)
        collect(svc, [event])
    except GatewayError as e:
        status, code = e.status, e.code
    except (RedisConnectionError, RedisTimeoutError):
        svc.metrics.storage_errors.labels(kind="pixel").inc()
        status, code = StorageUnavailable.status, StorageUnavailable.code
    resp = Response(GIF, status=status, mimetype="image/gif")
    resp.headers["Cache-Control"] = NO_STORE
    resp.headers["Pragma"] = "no-cache"
    if code:
        resp.headers["X-Error-Code"] = code
    return resp
