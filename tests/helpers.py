"""Small helpers the gateway tests share."""

from __future__ import annotations

import uuid
from typing import Any

from flask.testing import FlaskClient

from gateway.core.catalogue import load as load_catalogue
from gateway.storage.keys import Keys

K = Keys()  # the store's key names (the default SLOT_GROUPS), for tests that read it

# Bookkeeping that is not anybody's data and changes by itself: rate-limit buckets (they
# refill and expire) and the gateway's housekeeping markers (``gw:layout``, locks).
BOOKKEEPING = ("rl:", "gw:")


def data_keys(r: Any) -> list[str]:
    """Every key of a store that holds somebody's data: all but ``BOOKKEEPING``."""
    return sorted(k for k in r.scan_iter(count=1000) if not k.startswith(BOOKKEEPING))


CURRENT = "2026-11-01"
# an APP batch's device context (every field the APP may state) and a GPS fix
DEVICE = {
    "device_model": "HUAWEI Mate 60 Pro",
    "device_brand": "HUAWEI",
    "os": "HarmonyOS",
    "os_version": "4.2",
    "device_id": "a1b2c3d4e5f6",
    "carrier": "中国移动",
    "app_version": "3.8.1",
}
GPS = {"lat": 31.2304, "lon": 121.4737, "accuracy": 12.5}
ORIGINAL = "2018-02-04"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)


# Sensitive purposes are granted in a request of their own (PIPL art. 29), as the SDKs do, and
# purposes asked at login (saved login) from the login form (source "login"), never the banner.
_CATALOGUE = load_catalogue()
SENSITIVE = frozenset(p.name for p in _CATALOGUE.purposes.values() if p.sensitive)
AT_LOGIN = frozenset(p.name for p in _CATALOGUE.purposes.values() if p.asked_at == "login")


def separately(
    purposes: dict[str, bool], source: str = "banner"
) -> list[tuple[dict[str, bool], str]]:
    """The requests (decisions, source) that record ``purposes`` as a person would: the rest
    first, then each sensitive grant alone, then grants asked at login from the login form."""
    login = [p for p, g in purposes.items() if p in AT_LOGIN and g is True and source != "app"]
    alone = [p for p, g in purposes.items() if p in SENSITIVE and g is True and len(purposes) > 1]
    rest = {p: g for p, g in purposes.items() if p not in alone and p not in login}
    out = [(rest, source)] if rest else []
    out += [({p: True}, source) for p in alone]
    if login:
        out.append((dict.fromkeys(login, True), "login"))
    return out


def grant(client: FlaskClient, version: str = CURRENT, **purposes: bool) -> Any:
    """Record ``purposes`` as a banner (and a login form) would; the (last) answer."""
    for decided, source in separately(purposes) or [({}, "banner")]:
        resp = client.post(
            "/v1/consent", json={"policy_version": version, "purposes": decided, "source": source}
        )
        assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def app_subject(client: FlaskClient, **purposes: bool) -> tuple[str, str]:
    """An APP subject (``POST /v1/subjects``) with ``purposes`` decided: its id and token."""
    made = client.post("/v1/subjects").get_json()
    for decided, source in separately(purposes, "app"):
        resp = client.post(
            "/v1/consent",
            json={"policy_version": CURRENT, "purposes": decided, "source": source},
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
    from gateway.storage import entry_events

    out = []
    for key in sorted(r.scan_iter(f"*:ev:{purpose}", count=1000)):
        family = key.split(":ev:", 1)[1]
        for _, fields in r.xrange(key):
            events = entry_events(fields)
            assert int(fields["n"]) == len(events)
            out += [(key, family, {**e, "sid": fields["sid"]}) for e in events]
    return out
