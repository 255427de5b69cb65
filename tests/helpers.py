"""Small helpers the gateway tests share."""

from __future__ import annotations

import uuid
from typing import Any

from flask.testing import FlaskClient

from gateway.catalogue import load as load_catalogue

CURRENT = "2026-11-01"
ORIGINAL = "2018-02-04"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)


# Sensitive purposes are granted in a request of their own (PIPL art. 29), as the SDKs do.
SENSITIVE = frozenset(p.name for p in load_catalogue().purposes.values() if p.sensitive)


def separately(purposes: dict[str, bool]) -> list[dict[str, bool]]:
    """The requests that record ``purposes``: sensitive grants each alone, after the rest."""
    alone = [p for p, g in purposes.items() if p in SENSITIVE and g is True and len(purposes) > 1]
    rest = {p: g for p, g in purposes.items() if p not in alone}
    return ([rest] if rest else []) + [{p: True} for p in alone]


def grant(client: FlaskClient, version: str = CURRENT, **purposes: bool) -> Any:
    """Record ``purposes`` as a banner would; the (last) answer."""
    for decided in separately(purposes) or [{}]:
        resp = client.post(
            "/v1/consent", json={"policy_version": version, "purposes": decided, "source": "banner"}
        )
        assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def app_subject(client: FlaskClient, **purposes: bool) -> tuple[str, str]:
    """An APP subject (``POST /v1/subjects``) with ``purposes`` decided: its id and token."""
    made = client.post("/v1/subjects").get_json()
    for decided in separately(purposes):
        resp = client.post(
            "/v1/consent",
            json={"policy_version": CURRENT, "purposes": decided, "source": "app"},
            headers={"X-Subject": made["token"]},
        )
        assert resp.status_code == 201, resp.get_json()
    return made["subject"], made["token"]


def event(type_: str = "page_view", **fields: Any) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "type": type_, **fields}


def page_view(**fields: Any) -> dict[str, Any]:
    defaults = {"url": "https://shop.example.com/p/1", "title": "螺丝 M3"}
    return event("page_view", **(defaults | fields))


def stream_events(r: Any, purpose: str = "*") -> list[tuple[str, str, dict[str, Any]]]:
    """Every event part stored in the purpose streams: (stream key, purpose, part + its sid).

    A stream entry holds one request's parts for one purpose (``sid``, ``n``, ``events``).
    """
    from gateway.store import entry_events

    out = []
    for key in sorted(r.scan_iter(f"ev:{{{purpose}:*", count=1000)):
        family = key[len("ev:{") :].split(":")[0]
        for _, fields in r.xrange(key):
            events = entry_events(fields)
            assert int(fields["n"]) == len(events)
            out += [(key, family, {**e, "sid": fields["sid"]}) for e in events]
    return out
