"""Another site cannot write into a visitor's profile or ledger (issue 9, item 2).

Debian's Chromium, a real gateway on 127.0.0.1 and an attacker's pages served from a second
loopback origin, 127.0.0.2 (another site: sites are told apart by host, not by port). The
visitor first consents to every purpose on the gateway's own origin, so ``_vid`` (SameSite=Lax)
is in the browser; the attacker then tries every way a page can send a request. Each attempt
must reach the gateway (the recorder below sees the request and the answer the gateway gave,
so no check passes because the browser sent nothing) and must leave the store exactly as it
was. Last, the site's own ``<img>`` pixel still stores its event.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from flask import Flask
from playwright.sync_api import Browser, BrowserContext, Page
from werkzeug.serving import BaseWSGIServer, make_server

from tests.conftest import LiveServer, snapshot
from tests.helpers import CURRENT, K, stream_events

from .conftest import new_context

ATTACKER_HOST = "127.0.0.2"
MARKER = "xsite-marker"
HTML = "text/html; charset=utf-8"


# ---------------------------------------------------------------------- what reached the gateway
@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: str
    status: int
    error_code: str | None
    fetch_site: str | None
    fetch_mode: str | None
    origin: str | None
    with_vid: bool  # the request carried the visitor's _vid cookie


class Recorder:
    """WSGI middleware around the gateway: every request and the answer it was given."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[Seen] = []
        self.cond = threading.Condition()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        answered: list[tuple[str, list[tuple[str, str]]]] = []

        def recording(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            answered.append((status, headers))
            return start_response(status, headers, *rest)

        body = b"".join(self.app(environ, recording))
        status, headers = answered[0]
        named = {k.lower(): v for k, v in headers}
        code = named.get("x-error-code")
        if code is None and named.get("content-type") == "application/json":
            code = (json.loads(body).get("error") or {}).get("code")  # a JSON refusal
        entry = Seen(
            environ["REQUEST_METHOD"],
            environ.get("PATH_INFO", ""),
            environ.get("QUERY_STRING", ""),
            int(status.split()[0]),
            code,
            environ.get("HTTP_SEC_FETCH_SITE"),
            environ.get("HTTP_SEC_FETCH_MODE"),
            environ.get("HTTP_ORIGIN"),
            "_vid=" in environ.get("HTTP_COOKIE", ""),
        )
        with self.cond:
            self.seen.append(entry)
            self.cond.notify_all()
        return [body]

    def wait_for(self, path: str, method: str, start: int, timeout: float = 10) -> Seen:
        """The first request to ``path`` with ``method`` after the first ``start`` ones."""

        def found() -> Seen | None:
            return next(
                (s for s in self.seen[start:] if s.path == path and s.method == method), None
            )

        with self.cond:
            self.cond.wait_for(found, timeout=timeout)
            hit = found()
        assert hit is not None, f"{method} {path} never reached the gateway: {self.seen[start:]}"
        return hit


@pytest.fixture
def gateway(app: Flask, live: LiveServer) -> Recorder:
    """The gateway on 127.0.0.1, every request it answers recorded."""
    recorder = Recorder(app.wsgi_app)
    app.wsgi_app = recorder  # type: ignore[method-assign]
    return recorder


# ---------------------------------------------------------------------- the attacker's site
class Attacker:
    """A second HTTP server, on 127.0.0.2: another site serving the pages a test gives it."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        self.server: BaseWSGIServer = make_server(ATTACKER_HOST, 0, self.wsgi, threaded=True)
        self.origin = f"http://{ATTACKER_HOST}:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        html = self.pages.get(environ.get("PATH_INFO", ""))
        if html is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        body = html.encode()
        start_response("200 OK", [("Content-Type", HTML), ("Content-Length", str(len(body)))])
        return [body]

    def page(self, name: str, body: str) -> str:
        self.pages["/" + name] = f"<!doctype html><meta charset=utf-8><title>{name}</title>{body}"
        return self.origin + "/" + name

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def attacker() -> Iterator[Attacker]:
    site = Attacker()
    yield site
    site.close()


# ---------------------------------------------------------------------- the visitor
@dataclass
class Visitor:
    ctx: BrowserContext
    page: Page
    sid: str
    base: str  # the gateway, http://127.0.0.1:<port>


def gateway_fetch(page: Page, path: str, body: dict[str, Any]) -> Any:
    """POST JSON from a page of the gateway's own origin; the answer."""
    return page.evaluate(
        """async ([u, b]) => {
             const r = await fetch(u, {method: 'POST', credentials: 'include',
               headers: {'Content-Type': 'application/json'}, body: JSON.stringify(b)});
             return {status: r.status, body: await r.json()};
           }""",
        [path, body],
    )


@pytest.fixture
def visitor(browser: Browser, live: LiveServer, gateway: Recorder) -> Iterator[Visitor]:
    """A browser that consented to every purpose on the gateway's own origin."""
    base = f"http://127.0.0.1:{live.port}"
    ctx = new_context(browser)
    page = ctx.new_page()
    page.goto(base + "/v1/policy")
    policy = page.evaluate("async () => (await fetch('/v1/policy')).json()")
    optional = {n: p for n, p in policy["purposes"].items() if not p["always_on"]}
    sensitive = [n for n, p in optional.items() if p["sensitive"]]
    at_login = [n for n, p in optional.items() if p["asked_at"] == "login"]
    together = dict.fromkeys((n for n in optional if n not in sensitive + at_login), True)
    # sensitive ones alone; those asked at login from the login form
    requests = [(together, "banner"), *(({n: True}, "banner") for n in sensitive)]
    requests += [(dict.fromkeys(at_login, True), "login")]
    for purposes, source in requests:
        answer = gateway_fetch(
            page,
            "/v1/consent",
            {"policy_version": CURRENT, "purposes": purposes, "source": source},
        )
        assert answer["status"] == 201, answer
    state = answer["body"]["state"]["purposes"]
    assert all(state[n]["granted"] for n in optional), state
    vid = next(c for c in ctx.cookies() if c["name"] == "_vid")
    assert vid["sameSite"] == "Lax"
    yield Visitor(ctx, page, vid["value"].split(".")[0], base)
    ctx.close()


def ledger_length(r: redis.Redis, sid: str) -> int:
    key = K.ledger(sid)
    return int(r.xlen(key) if r.type(key) == "stream" else r.llen(key))


def marked(r: redis.Redis) -> list[dict[str, Any]]:
    return [part for _, _, part in stream_events(r) if MARKER in json.dumps(part)]


# ---------------------------------------------------------------------- the attempts
def _query(tag: str) -> str:
    return f"type=search&keyword={MARKER}-{tag}"


def _event_json(tag: str) -> str:
    return json.dumps(
        {"event_id": uuid.uuid4().hex, "type": "search", "keyword": f"{MARKER}-{tag}"}
    )


def _json_form(action: str, body: dict[str, Any]) -> str:
    """A text/plain form whose body is JSON: ``<name>=<value>`` with the '=' inside a string."""
    text = json.dumps(body | {"pad": ""})[:-2]  # ...,"pad": "   (its closing '"}' in value)
    name = text.replace("&", "&amp;").replace("'", "&#39;")
    return (
        f"<form id=f method=post enctype=text/plain action='{action}'>"
        f"<input type=hidden name='{name}' value='\"}}'></form>"
    )


def _consts(url: str, body: str = "") -> str:
    """A page that defines ``U`` (the gateway's URL) and ``B`` (a body) for its script."""
    return f"<script>const U = {json.dumps(url)}, B = {json.dumps(body)};</script>"


def _url_form(action: str, fields: dict[str, str]) -> str:
    inputs = "".join(f"<input type=hidden name='{k}' value='{v}'>" for k, v in fields.items())
    return f"<form id=f method=post action='{action}'>{inputs}</form>"


def _consent_body(tag: str) -> dict[str, Any]:
    # a forged withdrawal (a forged "accept all" is the same request with true)
    return {
        "policy_version": CURRENT,
        "purposes": {"personalization": False, "advertising": False},
        "source": f"banner-{MARKER}-{tag}",
    }


@dataclass(frozen=True)
class Attempt:
    """One way for the attacker's page to send a request to the gateway."""

    name: str
    method: str  # what reaches the gateway
    path: str
    navigates: bool  # the attacker's page is replaced by the gateway's answer
    page: Callable[[str, str], str]  # (gateway base, tag) -> the attacker's HTML
    # once the attacker's page is loaded: a script run in it, or "#id": a user's click on it
    action: str = ""


ATTEMPTS = [
    Attempt(
        "img",
        "GET",
        "/p.gif",
        False,
        lambda base, t: f"<img id=px alt='' src='{base}/p.gif?{_query(t)}'>",
    ),
    Attempt(
        "top_level_navigation",
        "GET",
        "/p.gif",
        True,
        lambda base, t: _consts(f"{base}/p.gif?{_query(t)}"),
        "() => { location.href = U; }",
    ),
    Attempt(
        "link_clicked",
        "GET",
        "/p.gif",
        True,
        lambda base, t: f"<a id=go href='{base}/p.gif?{_query(t)}'>a link</a>",
        "#go",
    ),
    Attempt(
        "get_form",
        "GET",
        "/p.gif",
        True,
        lambda base, t: (
            f"<form id=f method=get action='{base}/p.gif'>"
            f"<input type=hidden name=type value=search>"
            f"<input type=hidden name=keyword value='{MARKER}-{t}'></form>"
        ),
        "() => document.getElementById('f').submit()",
    ),
    Attempt(
        "post_form_text_plain_events",
        "POST",
        "/v1/events",
        True,
        lambda base, t: _json_form(f"{base}/v1/events", json.loads(_event_json(t))),
        "() => document.getElementById('f').submit()",
    ),
    Attempt(
        "post_form_text_plain_consent",
        "POST",
        "/v1/consent",
        True,
        lambda base, t: _json_form(f"{base}/v1/consent", _consent_body(t)),
        "() => document.getElementById('f').submit()",
    ),
    Attempt(
        "post_form_urlencoded_events",
        "POST",
        "/v1/events",
        True,
        lambda base, t: _url_form(
            f"{base}/v1/events", {"type": "search", "keyword": f"{MARKER}-{t}"}
        ),
        "() => document.getElementById('f').submit()",
    ),
    Attempt(
        "post_form_urlencoded_consent",
        "POST",
        "/v1/consent",
        True,
        lambda base, t: _url_form(
            f"{base}/v1/consent", {"policy_version": CURRENT, "personalization": "false"}
        ),
        "() => document.getElementById('f').submit()",
    ),
    Attempt(
        "fetch_post_events",
        "POST",
        "/v1/events",
        False,
        lambda base, t: _consts(f"{base}/v1/events", _event_json(t)),
        "() => { fetch(U, {method: 'POST', credentials: 'include', body: B,"
        " headers: {'Content-Type': 'text/plain'}}).catch(() => {}); }",
    ),
    Attempt(
        "fetch_post_consent",
        "POST",
        "/v1/consent",
        False,
        lambda base, t: _consts(f"{base}/v1/consent", json.dumps(_consent_body(t))),
        "() => { fetch(U, {method: 'POST', credentials: 'include', body: B,"
        " headers: {'Content-Type': 'text/plain'}}).catch(() => {}); }",
    ),
    Attempt(
        "fetch_get_pixel",
        "GET",
        "/p.gif",
        False,
        lambda base, t: _consts(f"{base}/p.gif?{_query(t)}"),
        "() => { fetch(U, {credentials: 'include'}).catch(() => {}); }",
    ),
    Attempt(
        "fetch_no_cors_get_pixel",
        "GET",
        "/p.gif",
        False,
        lambda base, t: _consts(f"{base}/p.gif?{_query(t)}"),
        "() => { fetch(U, {credentials: 'include', mode: 'no-cors'}).catch(() => {}); }",
    ),
    Attempt(
        "send_beacon_events",
        "POST",
        "/v1/events",
        False,
        lambda base, t: _consts(f"{base}/v1/events", _event_json(t)),
        "() => { if (!navigator.sendBeacon(U, B)) throw new Error('not queued'); }",
    ),
]


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda a: a.name)
def test_another_site_cannot_write_into_the_visitors_profile_or_ledger(
    visitor: Visitor,
    attacker: Attacker,
    gateway: Recorder,
    r: redis.Redis,
    attempt: Attempt,
) -> None:
    before, ledger = snapshot(r), ledger_length(r, visitor.sid)
    assert ledger >= 1 and marked(r) == []
    page = visitor.ctx.new_page()
    target = attacker.page(attempt.name, attempt.page(visitor.base, attempt.name))
    start = len(gateway.seen)
    page.goto(target)
    shown = None
    if attempt.navigates:
        with page.expect_navigation(url=lambda u: u.startswith(visitor.base)) as nav:
            if attempt.action.startswith("#"):
                page.click(attempt.action)
            else:
                page.evaluate(attempt.action)
        shown = nav.value
    elif attempt.action:
        page.evaluate(attempt.action)
    seen = gateway.wait_for(attempt.path, attempt.method, start)
    # Nothing was written: no event part, no ledger entry, not one key changed.
    assert marked(r) == []
    assert ledger_length(r, visitor.sid) == ledger
    assert snapshot(r) == before
    # It reached the gateway as another site's request, and was refused.
    assert seen.fetch_site == "cross-site", seen
    assert (seen.status, seen.error_code) == (403, "cross_site_refused"), seen
    if shown is not None:  # what the browser showed in place of the attacker's page
        code = shown.header_value("x-error-code") or shown.json()["error"]["code"]
        assert (shown.status, code) == (403, "cross_site_refused"), shown
    if attempt.path == "/p.gif" and attempt.navigates:
        assert seen.with_vid, "a top-level GET carries the Lax _vid: the attack is real"
    if attempt.name == "img":
        assert page.evaluate("() => document.getElementById('px').naturalWidth") == 1  # a GIF
    page.close()


def test_a_json_fetch_to_consent_stops_at_the_preflight(
    visitor: Visitor, attacker: Attacker, gateway: Recorder, r: redis.Redis
) -> None:
    """``Content-Type: application/json`` from another site: the browser asks first, the
    gateway's answer names no origin, and the POST is never sent."""
    before = snapshot(r)
    page = visitor.ctx.new_page()
    page.goto(attacker.page("preflight", _consts(visitor.base + "/v1/consent")))
    start = len(gateway.seen)
    failed = page.evaluate(
        """(b) => fetch(U, {method: 'POST', credentials: 'include', body: b,
             headers: {'Content-Type': 'application/json'}}).then(() => false, () => true)""",
        json.dumps(_consent_body("preflight")),
    )
    assert failed is True
    seen = gateway.wait_for("/v1/consent", "OPTIONS", start)
    assert seen.fetch_site == "cross-site" and seen.origin == attacker.origin
    assert [s for s in gateway.seen[start:] if s.method == "POST"] == []
    assert snapshot(r) == before
    page.close()


def test_the_sites_own_img_pixel_still_stores(
    visitor: Visitor, gateway: Recorder, r: redis.Redis
) -> None:
    page = visitor.ctx.new_page()
    page.goto(visitor.base + "/v1/policy")  # a page of the gateway's own origin
    start = len(gateway.seen)
    page.set_content(f"<img id=px alt='' src='/p.gif?{_query('own')}'>")
    seen = gateway.wait_for("/p.gif", "GET", start)
    assert (seen.status, seen.error_code, seen.fetch_site) == (200, None, "same-origin"), seen
    assert seen.with_vid
    [part] = marked(r)
    assert part["keyword"] == f"{MARKER}-own" and part["sid"] == visitor.sid
    page.close()
