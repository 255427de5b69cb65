"""The beacon middleware: GET/HEAD /p.gif in front of Flask, the same rules as the views."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import EnvironBuilder

from gateway.core.tokens import VID_COOKIE
from gateway.web import beacon
from gateway.web.beacon import MAX_PARAMS
from gateway.web.collect import GIF

from ..conftest import ORIGIN, Snapshot
from ..helpers import CHROME, grant, stream_events

PAGE = "/p.gif?url=https%3A%2F%2Fshop.example.com%2Fitem%2F1"


def test_head_answers_like_get_without_a_body(client: FlaskClient, r: redis.Redis) -> None:
    grant(client, personalization=True)
    resp = client.head(PAGE)
    assert resp.status_code == 200 and resp.data == b""
    assert resp.headers["Content-Type"] == "image/gif" and resp.headers["Content-Length"] == "43"
    assert len(stream_events(r, "personalization")) == 1  # HEAD is a beacon too


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_are_refused_with_405_json(client: FlaskClient, method: str) -> None:
    resp = client.open(PAGE, method=method)
    assert resp.status_code == 405
    assert resp.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert resp.headers["Vary"] == "Origin"
    assert resp.get_json()["error"]["code"] == "method_not_allowed"


def test_preflight_answers_allowed_origins(client: FlaskClient, r: redis.Redis) -> None:
    ok = client.options(PAGE, headers={"Origin": ORIGIN})
    assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "X-Subject" in ok.headers["Access-Control-Allow-Headers"]
    other = client.options(PAGE, headers={"Origin": "https://evil.example"})
    assert other.status_code == 200 and "Access-Control-Allow-Origin" not in other.headers
    assert stream_events(r) == []


def test_raw_utf8_in_the_query_is_stored_as_sent(
    app: Flask, client: FlaskClient, r: redis.Redis
) -> None:
    """A client that sends UTF-8 unescaped: a PEP 3333 server hands the bytes over as latin-1
    (granian does; werkzeug's development server encodes them twice, so it cannot show it)."""
    grant(client, personalization=True)
    environ = EnvironBuilder(path="/p.gif", headers={"Cookie": _cookies(client)}).get_environ()
    environ["QUERY_STRING"] = "type=search&keyword=" + "螺丝".encode().decode("latin-1")
    seen: list[str] = []
    body = b"".join(app.wsgi_app(environ, lambda status, headers: seen.append(status)))
    assert seen == ["200 OK"] and body == GIF
    [(_, _, part)] = stream_events(r, "personalization")
    assert part["keyword"] == "螺丝"


def _cookies(client: FlaskClient) -> str:
    return "; ".join(f"{k}={client.get_cookie(k).value}" for k in (VID_COOKIE, "_consent"))


def test_cookie_header_that_is_not_utf8_is_not_an_error(client: FlaskClient) -> None:
    grant(client, personalization=True)
    header = "other=" + "中文".encode("gbk").decode("latin-1")
    resp = client.get(PAGE, headers={"Cookie": header})
    assert resp.status_code == 200 and resp.data == GIF


def test_a_long_cookie_header_is_read_but_not_kept(
    app: Flask, client: FlaskClient, r: redis.Redis
) -> None:
    """Cookie headers are parsed once and kept (a browser sends the same one each beacon),
    but only those of ordinary size: the cache must not hold 4096 headers of 8 KiB each."""
    grant(client, personalization=True)
    long = _cookies(client) + "; pad=" + "x" * beacon.CACHED_COOKIE_HEADER
    before = beacon._cached_cookies.cache_info().currsize
    for header, kept in ((long, 0), (_cookies(client), 1)):
        environ = EnvironBuilder(path=PAGE, headers={"Cookie": header}).get_environ()
        statuses: list[str] = []
        b"".join(app.wsgi_app(environ, lambda status, _, s=statuses: s.append(status)))
        assert statuses == ["200 OK"]
        assert beacon._cached_cookies.cache_info().currsize == before + kept
    # both were read: their _vid and _consent found, each beacon stored
    assert len(stream_events(r, "personalization")) == 2


def test_other_paths_go_to_flask(client: FlaskClient) -> None:
    resp = client.get("/p.gifx")
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "not_found"
    assert client.get("/healthz").status_code == 200


def test_too_many_parameters_is_a_400_gif(client: FlaskClient, r: redis.Redis) -> None:
    grant(client, personalization=True)
    query = "&".join(f"p{i}=x" for i in range(MAX_PARAMS + 1))
    resp = client.get("/p.gif?" + query)
    assert resp.status_code == 400 and resp.data == GIF
    assert resp.headers["X-Error-Code"] == "too_many_parameters"
    assert stream_events(r) == []


def test_invalid_subject_header_is_a_401_gif_and_stores_nothing(
    client: FlaskClient, r: redis.Redis
) -> None:
    resp = client.get(PAGE, headers={"X-Subject": "0" * 32 + ".forged"})
    assert resp.status_code == 401 and resp.data == GIF
    assert resp.headers["X-Error-Code"] == "invalid_subject"
    assert "Set-Cookie" not in resp.headers
    assert stream_events(r) == []


def test_forged_vid_gets_a_new_subject_and_stores_nothing(
    client: FlaskClient, r: redis.Redis
) -> None:
    grant(client, personalization=True)
    real = client.get_cookie(VID_COOKIE).value
    forged = "f" * 32 + real[32:]
    client.set_cookie(VID_COOKIE, forged)
    resp = client.get(PAGE)
    assert resp.status_code == 200 and resp.data == GIF
    fresh = client.get_cookie(VID_COOKIE).value
    assert fresh not in (forged, real)
    assert stream_events(r) == []


def test_cors_names_allowed_origins_only(client: FlaskClient) -> None:
    allowed = client.get(PAGE, headers={"Origin": ORIGIN})
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
    assert allowed.headers["Vary"] == "Origin"
    other = client.get(PAGE, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_requests_and_latency_are_counted(client: FlaskClient) -> None:
    client.get(PAGE)
    client.head(PAGE)
    client.post(PAGE)
    for i in range(3):
        client.open(PAGE, method=f"X{i}")  # made-up methods share one series
    text = client.get("/metrics").get_data(as_text=True)
    for method, status in (("GET", "200"), ("HEAD", "200"), ("POST", "405")):
        labels = f'endpoint="collect.pixel",method="{method}",status="{status}"'
        assert f"gateway_requests_total{{{labels}}} 1.0" in text
    other = 'endpoint="collect.pixel",method="OTHER",status="405"'
    assert f"gateway_requests_total{{{other}}} 3.0" in text
    assert 'gateway_request_seconds_count{endpoint="collect.pixel"} 6.0' in text


def test_a_bug_still_answers_a_gif(app: Flask, client: FlaskClient, monkeypatch: Any) -> None:
    """A fault no real part produces on demand: the codec itself failing."""

    def broken(*_: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(app.extensions["gateway"].codec, "from_query", broken)
    resp = client.get(PAGE, headers={"User-Agent": CHROME})
    assert resp.status_code == 500 and resp.data == GIF
    assert resp.headers["X-Error-Code"] == "internal_error"


# ---------------------------------------------------------------------- another site's requests
SEARCH = "/p.gif?type=search&keyword=%E8%BD%B4%E6%89%BF-cross"
IMAGE = {"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}
PAGE_LOAD = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-User": "?1"}
FRAME = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}
EVIL = "https://evil.example"
CROSS = {"Sec-Fetch-Site": "cross-site"}

REFUSED = {
    # another site's <img>, fetch (cors, no-cors), top-level navigation or GET form, iframe
    "cross-site img": ({**CROSS, **IMAGE}, "cross_site_refused"),
    "cross-site fetch": ({**CROSS, "Sec-Fetch-Mode": "cors", "Origin": EVIL}, "cross_site_refused"),
    "cross-site no-cors": ({**CROSS, "Sec-Fetch-Mode": "no-cors"}, "cross_site_refused"),
    "cross-site navigation": ({**CROSS, **PAGE_LOAD}, "cross_site_refused"),
    "cross-site iframe": ({**CROSS, **FRAME}, "cross_site_refused"),
    # an older browser's cross-origin fetch: no fetch metadata, an Origin that may not write
    "origin not allowed": ({"Origin": EVIL}, "cross_site_refused"),
    "origin null": ({"Origin": "null"}, "cross_site_refused"),
    # a pixel is an image, never a page: not even the site's own links or the address bar
    "same-origin navigation": (
        {"Sec-Fetch-Site": "same-origin", **PAGE_LOAD},
        "navigation_refused",
    ),
    "same-site navigation": ({"Sec-Fetch-Site": "same-site", **PAGE_LOAD}, "navigation_refused"),
    "address bar": ({"Sec-Fetch-Site": "none", **PAGE_LOAD}, "navigation_refused"),
    "same-origin iframe": ({"Sec-Fetch-Site": "same-origin", **FRAME}, "navigation_refused"),
    "dest iframe": (
        {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Dest": "iframe"},
        "navigation_refused",
    ),
    # a browser without fetch metadata still asks for a page as HTML, never for an image
    "old browser's navigation": (
        {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
        "navigation_refused",
    ),
}


@pytest.mark.parametrize(("headers", "code"), list(REFUSED.values()), ids=list(REFUSED))
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_another_sites_request_or_a_navigation_is_a_403_gif_and_stores_nothing(
    client: FlaskClient,
    r: redis.Redis,
    snap: Callable[[redis.Redis], Snapshot],
    headers: dict[str, str],
    code: str,
    method: str,
) -> None:
    """Issue 9: ``_vid`` is SameSite=Lax, so another site's top-level navigation to the pixel
    carries it. Nothing is stored, no withdrawal written (Sec-GPC), no cookie refreshed."""
    grant(client, personalization=True, account_security=True, advertising=True)
    assert client.get(SEARCH).status_code == 200  # the visitor's own search: stored
    before = snap(r)
    resp = client.open(SEARCH, method=method, headers={**headers, "Sec-GPC": "1"})
    assert resp.status_code == 403
    assert resp.data == (b"" if method == "HEAD" else GIF)
    assert resp.headers["Content-Type"] == "image/gif" and resp.headers["Content-Length"] == "43"
    assert resp.headers["X-Error-Code"] == code
    assert resp.headers["Cache-Control"].startswith("no-store")
    assert "Set-Cookie" not in resp.headers
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert snap(r) == before
    text = client.get("/metrics").get_data(as_text=True)
    labels = f'endpoint="collect.pixel",method="{method}",status="403"'
    assert f"gateway_requests_total{{{labels}}} 1.0" in text


KEPT = {
    # curl, servers, browsers without fetch metadata, the <noscript> pixel in them
    "no fetch metadata": {},
    "same-origin img": {"Sec-Fetch-Site": "same-origin", **IMAGE},
    # the shop www.example.com embedding t.example.com/p.gif: the intended deployment
    "same-site img": {"Sec-Fetch-Site": "same-site", **IMAGE},
    "same-site fetch": {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors", "Origin": ORIGIN},
    "own fetch": {
        "Sec-Fetch-Site": "same-origin",
        "Sec-Fetch-Mode": "cors",
        "Origin": "http://localhost",
    },
    # a fetch from a configured origin on another site, as for the JSON endpoints
    "allowed origin cross-site": {**CROSS, "Sec-Fetch-Mode": "cors", "Origin": ORIGIN},
    "allowed origin": {"Origin": ORIGIN},
    # what an image request of a browser without fetch metadata accepts
    "old browser's image": {"Accept": "image/webp,image/png,image/*;q=0.8,*/*;q=0.5"},
    "curl": {"Accept": "*/*"},
}


@pytest.mark.parametrize("headers", list(KEPT.values()), ids=list(KEPT))
def test_the_sites_own_image_requests_still_store(
    client: FlaskClient, r: redis.Redis, headers: dict[str, str]
) -> None:
    grant(client, personalization=True)
    resp = client.get(SEARCH, headers=headers)
    assert resp.status_code == 200 and resp.data == GIF
    assert "X-Error-Code" not in resp.headers
    [(_, _, part)] = stream_events(r, "personalization")
    assert part["type"] == "search" and part["keyword"] == "轴承-cross"
