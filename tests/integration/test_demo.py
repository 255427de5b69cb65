"""The demo shop under ``--dev``: its login form (saved login granted where the person chooses
it), the panel of what the SDK sent and what the gateway kept, its two languages and small
screens. Debian's Chromium, the real gateway with its demo backend (gateway/demo.py), Valkey.

Every test asserts what the store holds (the ledger, ``sl:*`` records, the purpose streams),
not only what the page shows.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from playwright.sync_api import Browser, Page

from gateway import create_app
from tests.conftest import Gateways, LiveServer, make_config
from tests.helpers import stream_events

from .conftest import new_context
from .test_browser import choose, flush, ledger, open_demo, sid_of, subject, url

ROOT = Path(__file__).resolve().parents[2]
DOCS_PANEL = ROOT / "docs" / "demo-panel.png"
PANEL_WIDTH, PANEL_HEIGHT = 1280, 1240  # the README's screenshot: the panel, desktop


@pytest.fixture
def app(redis_url: str, tmp_path: Path) -> Iterator[Flask]:
    """The browser tests' gateway, as ``python -m gateway --dev`` runs it: the demo backend on."""
    application = create_app(make_config(redis_url, tmp_path, ALLOWED_ORIGINS=[], DEV=True))
    yield application
    for close in application.extensions["gateway"].closers:
        close()


def watched(page: Page) -> list[str]:
    """Script errors of the page, gathered as they happen (a test ends with none)."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def log_in(page: Page, account: str, keep: bool) -> dict[str, Any]:
    """Submit the demo's login form; what the demo backend answered."""
    page.fill("#account-name", account)
    page.set_checked("#keep", keep)
    with page.expect_response(
        lambda r: r.url.endswith("/demo/login") and r.request.method == "POST"
    ) as answer:
        page.click("#login-submit")
    page.wait_for_selector("#login-state[data-kept]")
    return answer.value.json()


def saved_logins(r: redis.Redis) -> list[dict[str, str]]:
    return [r.hgetall(k) for k in r.scan_iter("sl:*")]


def test_keep_me_logged_in_grants_saved_login_at_login_and_issues_a_token(
    browser: Browser, live: LiveServer, r: redis.Redis
) -> None:
    ctx = new_context(browser)
    page = ctx.new_page()
    errors = watched(page)
    open_demo(page, live)
    choose(page, "reject-all")  # nothing granted on the banner
    answer = log_in(page, "buyer-1001", keep=True)
    sid = sid_of(page)
    assert answer["account"] == "buyer-1001" and answer["subject"] == sid
    # The grant is on the ledger, made from the login form.
    last = ledger(r, sid)[-1]
    assert last["source"] == "login" and last["action"] == "consent"
    assert last["purposes"] == {"necessary": True, "saved_login": True}
    # A token was issued for this subject with the gateway's own service...
    records = saved_logins(r)
    assert [rec["sid"] for rec in records] == [sid]
    assert int(records[0]["expires"]) == answer["saved_login"]["expires_at_ms"]
    # ... and its cookie set, out of the page scripts' reach.
    cookie = next(c for c in ctx.cookies() if c["name"] == answer["saved_login"]["cookie"])
    assert cookie["httpOnly"] and cookie["value"].count(".") == 2
    assert page.evaluate("() => document.cookie").find("saved_login") < 0
    # The page shows the logged-in state, the gateway what it keeps about the login.
    state = page.inner_text("#login-state")
    assert "buyer-1001" in state and "保持登录至" in state
    held = subject(page, live)["held"]["saved_logins"]
    assert [h["account"] for h in held] == ["buyer-1001"]
    page.wait_for_selector("#subject-logins")
    assert "buyer-1001" in page.inner_text("#subject-logins")
    log = page.inner_text("#log")
    assert "记录隐私选择（来源：登录表单）" in log and "已签发保持登录的令牌" in log
    # The status box follows, in the page's language.
    assert "已同意" in page.inner_text('#status [data-purpose="saved_login"]')
    # Logging out revokes the token.
    with page.expect_response(lambda r: r.url.endswith("/demo/logout")) as out:
        page.click("#logout")
    assert out.value.json() == {"revoked": 1}
    assert saved_logins(r) == []
    assert errors == []
    ctx.close()


def test_without_the_box_nothing_about_saved_login_is_recorded(
    browser: Browser, live: LiveServer, r: redis.Redis
) -> None:
    ctx = new_context(browser)
    page = ctx.new_page()
    errors = watched(page)
    posts: list[str] = []
    page.on("request", lambda q: q.method != "GET" and posts.append(q.url))
    open_demo(page, live)
    choose(page, "accept-all")
    entries = ledger(r, sid_of(page))
    answer = log_in(page, "buyer-1001", keep=False)
    assert answer["saved_login"] is None
    assert ledger(r, sid_of(page)) == entries  # not one ledger entry more
    assert not any(e["purposes"].get("saved_login") for e in entries)
    assert saved_logins(r) == []
    assert not any("saved_login" in c["name"] for c in ctx.cookies())
    assert [u for u in posts if u.endswith("/v1/consent")] == [url(live, "/v1/consent")]
    assert "仅限本次访问" in page.inner_text("#login-state")
    assert errors == []
    ctx.close()


def test_the_demo_backend_exists_only_in_development(
    app: Flask, gateways: Gateways, redis_url: str
) -> None:
    production = gateways(redis_url).test_client()
    assert production.get("/demo").status_code == 200  # the page is always served
    assert production.get("/demo/login").status_code == 404
    assert production.post("/demo/login", json={"account": "a", "keep": True}).status_code == 404
    dev = app.test_client()
    assert dev.get("/demo/login").json == {"demo_backend": True, "lifetime_s": 30 * 86_400}
    # No subject, or one that did not grant saved_login: no token.
    refused = dev.post("/demo/login", json={"account": "buyer-1001", "keep": True})
    assert refused.status_code == 403
    assert refused.json["error"]["code"] == "saved_login_not_granted"
    assert dev.post("/demo/login", json={"account": "", "keep": False}).status_code == 400
    assert dev.post("/demo/login", json={"account": "a", "keep": "yes"}).status_code == 400
    elsewhere = dev.post(
        "/demo/login",
        json={"account": "a", "keep": False},
        headers={"Origin": "https://evil.example.net"},
    )
    assert elsewhere.status_code == 403
    assert elsewhere.json["error"]["code"] == "cross_site_refused"


def use_the_panel(page: Page, live: LiveServer) -> dict[str, Any]:
    """Personalisation only, a search, a login kept for 30 days, then everything withdrawn in
    "another tab" and a cart click this page's SDK still sends: the last events answer."""
    open_demo(page, live)
    page.check('#cg-banner [data-cg-purpose="personalization"]')
    choose(page, "save")
    page.fill("#keyword", "深沟球轴承 6204")
    page.press("#keyword", "Enter")
    flush(page)
    log_in(page, "buyer-1001", keep=True)
    with page.expect_response(lambda r: "/v1/consent" in r.url and r.request.method == "DELETE"):
        page.click("#elsewhere")
    with page.expect_response(lambda r: r.url.endswith("/v1/events")) as answer:
        page.click("#cart-6204")
        flush(page)
    return answer.value.json()


def test_the_panel_shows_what_the_sdk_sent_and_what_the_gateway_kept(
    browser: Browser, live: LiveServer, r: redis.Redis
) -> None:
    ctx = new_context(browser)
    page = ctx.new_page()
    errors = watched(page)
    refused = use_the_panel(page, live)
    # The search: its event, its fields, and the gateway's answer.
    search = page.locator("#log > li", has_text="深沟球轴承 6204")
    search.locator(".answer", has_text="已保存").wait_for()
    text = search.inner_text()
    assert "发送" in text and "搜索" in text and "keyword" in text and "POST /v1/events" in text
    assert "← 202" in text and "保存的字段" in text
    # The cart click after the withdrawal elsewhere: nothing kept, and why.
    assert refused["stored"] == 0 and set(refused["dropped_fields"]) >= {"action", "quantity"}
    cart = page.locator("#log > li", has_text="购物车")
    cart.locator(".dropped").wait_for()
    text = cart.inner_text()
    assert "已保存 0 个" in text and "未保存的字段（个性化推荐未获同意）" in text
    assert "action" in text and "quantity" in text
    if "reason" in refused:  # the gateway says why it kept less than was sent
        reason = cart.locator(f'[data-reason="{refused["reason"]}"]')
        assert reason.is_visible()
        assert "未获同意" in reason.inner_text()
    # The withdrawal elsewhere deleted what personalisation had kept (PIPL art. 47): the store
    # holds none of the search (the store, not the page, says so), and the panel's view of
    # GET /v1/subject shows the ledger's three entries by where they were made, no event.
    assert stream_events(r) == []
    page.locator("#subject-ledger li").nth(2).wait_for()
    held = page.inner_text("#subject")
    assert "深沟球轴承 6204" not in held
    ledger_text = page.inner_text("#subject-ledger")
    for where in ("隐私弹窗", "登录表单", "隐私设置"):
        assert where in ledger_text
    assert "personalization" not in page.inner_text("#status")  # titles, not keys
    assert errors == []
    ctx.close()


def test_the_language_switch(browser: Browser, live: LiveServer, r: redis.Redis) -> None:
    ctx = new_context(browser)
    page = ctx.new_page()
    errors = watched(page)
    open_demo(page, live)
    assert page.inner_text("#cg-title") == "您的隐私选择"
    choose(page, "reject-all")
    page.wait_for_selector('#status [data-purpose="personalization"]')
    assert "个性化推荐" in page.inner_text("#status")
    assert page.inner_text("#lang-switch") == "English"
    page.click("#lang-switch")
    page.wait_for_url("**/demo?lang=en")
    assert page.evaluate("() => document.documentElement.lang") == "en"
    assert page.inner_text("h1") == "Precision Bearings"
    assert page.get_attribute("#keyword", "placeholder") == "Model or keyword"
    page.wait_for_selector('#status [data-purpose="personalization"]')
    status = page.inner_text("#status")
    assert "Personalisation" in status and "not granted" in status
    assert "personalization" not in status and "个性化" not in status
    assert page.inner_text("#cg-settings-link") == "Privacy settings"
    page.click("#cg-settings-link")  # the banner speaks the page's language
    page.wait_for_selector("#cg-banner", state="visible")
    assert page.get_attribute("#cg-banner", "lang") == "en"
    assert page.inner_text("#cg-title") == "Privacy settings"
    page.keyboard.press("Escape")
    page.click("#nav-products")  # navigation keeps the language
    assert page.url.endswith("?view=products&lang=en")
    assert page.inner_text("#view").startswith("All products")
    page.click("#lang-switch")
    page.wait_for_url("**/demo?view=products&lang=zh")
    assert page.inner_text("h1") == "精工轴承商城"
    assert errors == []
    ctx.close()


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("width", [360, 320])
def test_small_screens_never_scroll_sideways(
    browser: Browser, live: LiveServer, r: redis.Redis, lang: str, width: int
) -> None:
    ctx = new_context(browser, viewport={"width": width, "height": 700})
    page = ctx.new_page()
    errors = watched(page)
    open_demo(page, live, lang=lang)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    page.check('#cg-banner [data-cg-purpose="personalization"]')
    choose(page, "save")
    page.fill("#keyword", "a-keyword-without-any-space-that-is-longer-than-the-screen-0123456789")
    page.press("#keyword", "Enter")
    page.click("#download-6204")
    page.click("#nav-about")
    flush(page)
    log_in(page, "buyer-with-a-rather-long-account-name-1001", keep=True)
    page.locator("#subject-logins").wait_for()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    assert errors == []
    ctx.close()


def test_readme_screenshot_of_the_panel(
    browser: Browser, live: LiveServer, r: redis.Redis, shots: Path
) -> None:
    """docs/demo-panel.png is a copy of build/screenshots/demo-panel.png, made here."""
    ctx = new_context(browser, locale="en-US", viewport={"width": PANEL_WIDTH, "height": 900})
    page = ctx.new_page()
    errors = watched(page)
    open_demo(page, live, lang="en")
    choose(page, "accept-all")
    page.fill("#keyword", "6204")
    page.press("#keyword", "Enter")
    page.click("#download-6204")
    flush(page)
    with page.expect_response(lambda r: "/v1/consent" in r.url and r.request.method == "DELETE"):
        page.click("#elsewhere")
    page.click("#cart-6204")
    flush(page)
    page.locator("#log .dropped").wait_for()
    page.locator("#subject-ledger li").nth(1).wait_for()
    page.add_style_tag(content="#cg-settings-link{display:none}")  # it floats over the panel
    box = page.locator("#inspector").bounding_box()
    assert box is not None
    path = shots / "demo-panel.png"
    page.screenshot(
        path=str(path),
        full_page=True,
        clip={"x": 0, "y": box["y"] - 8, "width": PANEL_WIDTH, "height": PANEL_HEIGHT},
    )
    assert png_size(path) == (PANEL_WIDTH, PANEL_HEIGHT) and path.stat().st_size > 30_000
    assert errors == []
    ctx.close()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_docs_demo_panel_is_a_real_screenshot_shown_in_the_readme() -> None:
    assert png_size(DOCS_PANEL) == (PANEL_WIDTH, PANEL_HEIGHT)
    assert DOCS_PANEL.stat().st_size > 30_000
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "](docs/demo-panel.png)" in readme
