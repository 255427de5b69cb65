"""Refusing advertising in a real browser (Debian's Chromium): Global Privacy Control, the
no-JavaScript opt-out form, and an unsubscribe page clicked, against the real gateway."""

from __future__ import annotations

from typing import Any

import redis
from flask import Flask
from playwright.sync_api import Browser, Page

from tests.conftest import LiveServer
from tests.helpers import stream_events

from .conftest import new_context
from .test_browser import choose, open_demo, sid_of, url


def consent(page: Page, live: LiveServer, path: str = "/v1/consent") -> Any:
    return page.evaluate(
        "async (u) => (await fetch(u, {credentials: 'include'})).json()", url(live, path)
    )


def sources(page: Page, live: LiveServer) -> list[tuple[str, bool | None]]:
    history = consent(page, live, "/v1/consent/history")
    return [(e["source"], e["purposes"].get("advertising")) for e in history["entries"]]


def test_gpc_withdraws_an_earlier_grant_once(browser: Browser, live: LiveServer) -> None:
    """Advertising granted without GPC; the same browser later sends Sec-GPC: 1 on every
    request: the grant is withdrawn on the ledger once, not on every page."""
    plain = new_context(browser)
    page = plain.new_page()
    open_demo(page, live)
    assert choose(page, "accept-all")["state"]["purposes"]["advertising"]["granted"] is True
    cookies = plain.cookies()
    plain.close()
    gpc = new_context(browser, extra_http_headers={"Sec-GPC": "1"})
    gpc.add_cookies(cookies)
    page = gpc.new_page()
    for _ in range(3):
        open_demo(page, live, banner=False)
        page.wait_for_function("() => document.getElementById('status').textContent.length > 5")
    state = consent(page, live)
    assert state["gpc"] is True and state["purposes"]["advertising"]["granted"] is False
    assert state["purposes"]["personalization"]["granted"] is True
    assert sources(page, live) == [("banner", True), ("gpc", False)]
    gpc.close()


def test_the_opt_out_form_works_without_javascript(
    browser: Browser, live: LiveServer, r: redis.Redis
) -> None:
    no_js = new_context(browser, java_script_enabled=False)
    page = no_js.new_page()
    page.goto(url(live))
    page.click("#optout button")
    page.wait_for_load_state()
    assert "已拒绝商业广告" in page.content() and "Advertising refused" in page.content()
    cookies = no_js.cookies()
    assert any(c["name"] == "_optout" and c["httpOnly"] for c in cookies)
    assert sid_of(page) is None and list(r.scan_iter("*:s:*")) == []  # nothing about anyone
    no_js.close()

    # Later, with JavaScript, "accept all" in the banner: advertising stays refused.
    ctx = new_context(browser)
    ctx.add_cookies(cookies)
    page = ctx.new_page()
    open_demo(page, live)
    answer = choose(page, "accept-all")
    assert answer["state"]["optout"] is True
    assert answer["state"]["purposes"]["advertising"]["granted"] is False
    assert answer["state"]["purposes"]["personalization"]["granted"] is True
    assert answer["receipt"]["purposes"]["advertising"] is False
    ctx.close()


def test_an_unsubscribe_page_clicked(
    app: Flask, browser: Browser, live: LiveServer, r: redis.Redis
) -> None:
    ctx = new_context(browser)
    page = ctx.new_page()
    open_demo(page, live)
    choose(page, "accept-all")
    sid = sid_of(page)
    assert sid is not None
    mail = app.extensions["gateway"].mail
    opened = page.request.get(url(live, f"/e/{mail.open_token(sid, 'winter-2026')}.gif"))
    assert opened.ok and "x-error-code" not in opened.headers
    assert [p["campaign"] for _, _, p in stream_events(r, "advertising")] == ["winter-2026"]

    # The recipient opens the link from the email in a browser of their own.
    mailbox = new_context(browser).new_page()
    mailbox.goto(url(live, f"/u/{mail.unsubscribe_token(sid, 'email')}"))
    assert "退订营销邮件" in mailbox.content()
    mailbox.click("button")
    mailbox.wait_for_selector("text=已退订营销邮件")
    assert "You are unsubscribed from marketing email" in mailbox.content()

    state = consent(page, live)
    assert state["channels"]["email"]["unsubscribed"] is True
    assert state["channels"]["sms"]["may_contact"] is True
    again = page.request.get(url(live, f"/e/{mail.open_token(sid, 'winter-2026')}.gif"))
    assert again.headers["x-error-code"] == "unsubscribed"
    assert len(stream_events(r, "advertising")) == 1  # the second open was not recorded
    ctx.close()
