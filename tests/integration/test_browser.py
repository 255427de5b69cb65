"""The browser SDK end to end: Debian's Chromium on the demo page, the real gateway, Valkey.

Every test asserts what the gateway actually stored (the purpose streams, GET /v1/subject),
not what the page believes.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import redis
from playwright.sync_api import Browser, Page

from tests.conftest import Gateways, LiveServer
from tests.helpers import CURRENT, ORIGINAL, K, stream_events

from .conftest import new_context

DOCS_BANNER = Path(__file__).resolve().parents[2] / "docs" / "banner.png"
CHOICE = '#cg-banner [data-cg-action="{}"]'


def url(live: LiveServer, path: str = "/demo") -> str:
    return f"http://127.0.0.1:{live.port}{path}"


def open_demo(page: Page, live: LiveServer, banner: bool = True, lang: str = "zh") -> None:
    page.goto(url(live, "/demo?lang=en" if lang == "en" else "/demo"))
    if banner:
        page.wait_for_selector("#cg-banner", state="visible")


def choose(page: Page, action: str) -> dict[str, Any]:
    """Click a banner button; the consent answer the gateway gave."""
    with page.expect_response(
        lambda r: r.url.endswith("/v1/consent") and r.request.method in ("POST", "DELETE")
    ) as answer:
        page.click(CHOICE.format(action))
    page.wait_for_selector("#cg-banner", state="detached")
    return answer.value.json()


def flush(page: Page) -> None:
    page.evaluate("() => ConsentGateway('flush')")


def subject(page: Page, live: LiveServer) -> dict[str, Any]:
    """GET /v1/subject with the browser's own cookies: what the gateway holds about it."""
    return page.evaluate(
        "async (u) => (await fetch(u, {credentials: 'include'})).json()", url(live, "/v1/subject")
    )


def sid_of(page: Page) -> str | None:
    vid = next((c for c in page.context.cookies() if c["name"] == "_vid"), None)
    return vid["value"].split(".")[0] if vid else None


def use_the_shop(page: Page) -> None:
    """Search, download a drawing, add to cart, navigate the single-page app."""
    page.fill("#keyword", "深沟球轴承 6204")
    page.press("#keyword", "Enter")
    page.click("#download-6204")
    page.click("#cart-6204")
    page.click("#nav-products")
    flush(page)


def parts(r: redis.Redis, purpose: str = "*") -> list[dict[str, Any]]:
    return [part for _, _, part in stream_events(r, purpose)]


def ledger(r: redis.Redis, sid: str | None) -> list[dict[str, Any]]:
    """The subject's ledger as the store holds it, each entry's purposes parsed."""
    entries = [json.loads(e) for e in r.lrange(K.ledger(str(sid)), 0, -1)]
    return [e | {"purposes": json.loads(e["purposes"])} for e in entries]


def open_settings(page: Page) -> None:
    page.click("#cg-settings-link")
    page.wait_for_selector("#cg-banner", state="visible")


def test_reject_all_stores_nothing(browser: Browser, live: LiveServer, r: redis.Redis) -> None:
    ctx = new_context(browser)
    page = ctx.new_page()
    open_demo(page, live)
    answer = choose(page, "reject-all")
    assert not any(s["granted"] for p, s in answer["state"]["purposes"].items() if p != "necessary")
    use_the_shop(page)
    page.reload()
    flush(page)
    assert stream_events(r) == []
    assert subject(page, live)["events"] == {}
    assert page.locator("#cg-banner").count() == 0  # the choice holds on the next page
    ctx.close()


def test_personalization_only_keeps_behaviour_without_ip_device_or_gps(
    browser: Browser, live: LiveServer, r: redis.Redis
) -> None:
    ctx = new_context(browser)
    page = ctx.new_page()
    open_demo(page, live)
    page.check('#cg-banner [data-cg-purpose="personalization"]')
    answer = choose(page, "save")
    assert answer["state"]["purposes"]["personalization"]["granted"] is True
    assert answer["state"]["purposes"]["account_security"]["granted"] is False
    use_the_shop(page)
    stored = parts(r, "personalization")
    types = [p["type"] for p in stored]
    assert "page_view" in types and "search" in types and "drawing_download" in types
    assert types.count("page_view") >= 2  # the first page and the single-page navigation
    search = next(p for p in stored if p["type"] == "search")
    assert search["keyword"] == "深沟球轴承 6204"
    forbidden = {"ip", "browser", "os", "device_model", "gps", "is_bot"}
    assert all(forbidden.isdisjoint(p) for p in stored)
    assert parts(r, "account_security") == [] and parts(r, "precise_location") == []
    assert {p["sid"] for p in stored} == {sid_of(page)}
    ctx.close()


def test_accept_all_stores_every_granted_part_but_not_gps(
    browser: Browser, live: LiveServer, r: redis.Redis
) -> None:
    ctx = new_context(browser)
    page = ctx.new_page()
    open_demo(page, live)
    answer = choose(page, "accept-all")
    purposes = answer["state"]["purposes"]
    assert purposes["personalization"]["granted"] and purposes["account_security"]["granted"]
    assert purposes["precise_location"]["granted"] is False  # asked separately, never bundled
    use_the_shop(page)
    security = parts(r, "account_security")
    assert security and all(p["ip"] == "127.0.0.1" and "browser" in p for p in security)
    assert parts(r, "personalization")
    assert parts(r, "precise_location") == []
    held = subject(page, live)["events"]
    assert set(held) == {"personalization", "account_security"}
    ctx.close()


def test_withdrawing_in_settings_stops_collection(
    browser: Browser, live: LiveServer, r: redis.Redis
) -> None:
    ctx = new_context(browser)
    page = ctx.new_page()
    open_demo(page, live)
    choose(page, "accept-all")
    use_the_shop(page)
    before = len(stream_events(r))
    assert before > 0
    page.click("#cg-settings-link")
    page.wait_for_selector("#cg-banner", state="visible")
    answer = choose(page, "reject-all")
    assert answer["state"]["purposes"]["personalization"]["granted"] is False
    assert sum(answer["deleted"].values()) > 0  # what was kept under them goes (PIPL art. 47)
    after = len(stream_events(r))
    assert after < before
    use_the_shop(page)
    page.reload()
    flush(page)
    assert len(stream_events(r)) == after  # and nothing more is collected
    ctx.close()


def test_a_policy_change_asks_again_only_for_the_purposes_it_changed(
    browser: Browser, live: LiveServer, r: redis.Redis
) -> None:
    ctx = new_context(browser)
    page = ctx.new_page()
    page.goto(url(live, "/v1/policy"))
    status = page.evaluate(
        """async (v) => (await fetch('/v1/consent', {method: 'POST', credentials: 'include',
             headers: {'Content-Type': 'application/json'},
             body: JSON.stringify({policy_version: v, source: 'banner', purposes:
               {personalization: true, account_security: true, advertising: true}})})).status""",
        ORIGINAL,
    )
    assert status == 201
    open_demo(page, live)
    asked = page.locator("#cg-banner [data-cg-purpose]:not([disabled])")
    names = [asked.nth(i).get_attribute("data-cg-purpose") for i in range(asked.count())]
    assert names == ["personalization"]  # only 2026-11-01 changed what it covers
    page.check('#cg-banner [data-cg-purpose="personalization"]')
    answer = choose(page, "save")
    state = answer["state"]
    assert state["needs_reconsent"] == [] and state["purposes"]["personalization"]["granted"]
    assert state["purposes"]["account_security"]["granted"]  # kept from the old consent
    assert answer["receipt"]["policy_version"] == CURRENT
    ctx.close()


def test_global_privacy_control_refuses_advertising(
    browser: Browser, live: LiveServer, r: redis.Redis
) -> None:
    ctx = new_context(browser, extra_http_headers={"Sec-GPC": "1"})
    ctx.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})"
    )
    page = ctx.new_page()
    open_demo(page, live)
    assert page.locator("#cg-banner [data-cg-gpc]").is_visible()
    assert page.locator('#cg-banner [data-cg-purpose="advertising"]').is_disabled()
    answer = choose(page, "accept-all")
    assert answer["state"]["gpc"] is True
    assert answer["state"]["purposes"]["advertising"]["granted"] is False
    assert answer["state"]["purposes"]["personalization"]["granted"] is True
    ctx.close()


def test_keyboard_only(browser: Browser, live: LiveServer, r: redis.Redis) -> None:
    ctx = new_context(browser)
    page = ctx.new_page()
    open_demo(page, live)
    inside = "() => document.getElementById('cg-banner').contains(document.activeElement)"
    assert page.evaluate(inside), "focus moves into the banner when it opens"
    focused = "() => document.activeElement.getAttribute('data-cg-purpose')"
    for _ in range(30):  # Tab to the personalization switch
        page.keyboard.press("Tab")
        assert page.evaluate(inside), "Tab stays inside the dialog"
        if page.evaluate(focused) == "personalization":
            break
    else:
        pytest.fail("the personalization switch is not reachable with Tab")
    page.keyboard.press("Space")
    assert page.is_checked('#cg-banner [data-cg-purpose="personalization"]')
    action = "() => document.activeElement.getAttribute('data-cg-action')"
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate(action) == "save":
            break
    else:
        pytest.fail("the save button is not reachable with Tab")
    with page.expect_response(lambda r: r.url.endswith("/v1/consent")) as answer:
        page.keyboard.press("Enter")
    state = answer.value.json()["state"]
    assert state["purposes"]["personalization"]["granted"] is True
    assert state["purposes"]["account_security"]["granted"] is False
    page.wait_for_selector("#cg-banner", state="detached")
    # The settings link is reachable and opens the banner again, Escape closes it unrecorded.
    page.focus("#cg-settings-link")
    page.keyboard.press("Enter")
    page.wait_for_selector("#cg-banner", state="visible")
    page.keyboard.press("Escape")
    page.wait_for_selector("#cg-banner", state="detached")
    assert len(subject(page, live)["ledger"]) == 1
    ctx.close()


def test_a_forged_vid_cookie_is_not_trusted(
    browser: Browser, live: LiveServer, r: redis.Redis
) -> None:
    ctx = new_context(browser)
    forged_sid = "0123456789abcdef0123456789abcdef"
    ctx.add_cookies(
        [{"name": "_vid", "value": forged_sid + ".forgedsignature", "url": url(live, "/")}]
    )
    page = ctx.new_page()
    open_demo(page, live)
    choose(page, "accept-all")
    use_the_shop(page)
    sid = sid_of(page)
    assert sid is not None and sid != forged_sid
    stored = stream_events(r)
    assert stored and {p["sid"] for _, _, p in stored} == {sid}
    assert not r.exists(K.consent(forged_sid))
    ctx.close()


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize(
    ("device", "width", "height"), [("desktop", 1280, 800), ("mobile", 360, 740)]
)
def test_banner_screenshots_and_small_screens(
    browser: Browser,
    gateways: Gateways,
    serve: Any,
    redis_url: str,
    shots: Path,
    lang: str,
    device: str,
    width: int,
    height: int,
) -> None:
    live = serve(gateways(redis_url, ALLOWED_ORIGINS=[], DEV=True))  # as ./scripts/run serves it
    ctx = new_context(
        browser,
        viewport={"width": width, "height": height},
        locale="zh-CN" if lang == "zh" else "en-US",
    )
    page = ctx.new_page()
    open_demo(page, live, lang=lang)  # the demo's ?lang=en gives the SDK lang "en"
    banner = page.locator("#cg-banner")
    assert banner.get_attribute("lang") == ("zh-CN" if lang == "zh" else "en")
    accept = "全部接受" if lang == "zh" else "Accept all"
    reject = "全部拒绝" if lang == "zh" else "Reject all"
    assert page.locator(CHOICE.format("accept-all")).inner_text().strip() == accept
    assert page.locator(CHOICE.format("reject-all")).inner_text().strip() == reject
    a = page.locator(CHOICE.format("accept-all")).bounding_box()
    b = page.locator(CHOICE.format("reject-all")).bounding_box()
    assert a and b and abs(a["width"] - b["width"]) < 2 and abs(a["height"] - b["height"]) < 2
    path = shots / f"banner-{lang}-{device}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
    if (lang, device) == ("zh", "desktop"):
        shutil.copyfile(path, shots / "banner.png")  # docs/banner.png is a copy of this one
    page.set_viewport_size({"width": 320, "height": 640})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 320
    ctx.close()


def test_docs_banner_is_a_real_screenshot() -> None:
    data = DOCS_BANNER.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    meta = json.dumps({"bytes": len(data)})
    assert meta


def test_precise_location_is_granted_in_a_request_of_its_own(
    browser: Browser, live: LiveServer, r: redis.Redis
) -> None:
    """PIPL art. 29: the gateway refuses a sensitive grant bundled with other decisions, so
    the SDK sends the banner's other choices first, then the location grant alone."""
    ctx = new_context(browser)
    page = ctx.new_page()
    posts: list[dict[str, Any]] = []

    def note(q: Any) -> None:
        if q.method == "POST" and q.url.endswith("/v1/consent"):
            posts.append(json.loads(q.post_data or "{}"))

    page.on("request", note)
    open_demo(page, live)
    choose(page, "reject-all")
    page.click("#cg-settings-link")
    page.wait_for_selector("#cg-banner", state="visible")
    page.check('#cg-banner [data-cg-purpose="precise_location"]')
    page.check('#cg-banner [data-cg-purpose="personalization"]')
    page.click(CHOICE.format("save"))
    page.wait_for_selector("#cg-banner", state="detached")  # closes once both are recorded
    saved = [p["purposes"] for p in posts[1:]]
    assert len(saved) == 2 and saved[1] == {"precise_location": True}
    assert saved[0]["personalization"] is True and "precise_location" not in saved[0]
    assert {p["source"] for p in posts[1:]} == {"settings"}
    held = subject(page, live)
    entries = [e["purposes"] for e in held["ledger"]]
    assert len(entries) == 3  # reject all, then the save: two entries
    assert entries[-1] == {"necessary": True, "precise_location": True}
    assert entries[-2]["personalization"] is True and "precise_location" not in entries[-2]
    state = page.evaluate("() => ConsentGateway('consent.get')")
    granted = {p for p, s in state["purposes"].items() if s["granted"]}
    assert granted == {"necessary", "personalization", "precise_location"}
    assert held["consent"]["purposes"]["precise_location"]["granted"] is True
    ctx.close()


SAVED_LOGIN = '#cg-banner [data-cg-purpose="saved_login"]'


def test_the_banner_never_offers_or_grants_saved_login(
    browser: Browser, live: LiveServer, r: redis.Redis
) -> None:
    """Policy 2(2) item 1: saved login is the person's choice when logging in, not the
    banner's. Neither its first layer nor "accept all" offers or grants it."""
    ctx = new_context(browser)
    page = ctx.new_page()
    posts: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda q: (
            q.method == "POST"
            and q.url.endswith("/v1/consent")
            and posts.append(json.loads(q.post_data or "{}"))
        ),
    )
    open_demo(page, live)
    assert page.locator(SAVED_LOGIN).count() == 0
    assert "保持登录" not in page.inner_text("#cg-banner")
    answer = choose(page, "accept-all")
    assert answer["state"]["purposes"]["saved_login"]["granted"] is False
    assert answer["state"]["purposes"]["personalization"]["granted"] is True
    assert posts and all("saved_login" not in p["purposes"] for p in posts)
    entries = ledger(r, sid_of(page))
    assert entries and not any(e["purposes"].get("saved_login") for e in entries)
    open_settings(page)  # nor do the settings, while it is not granted
    assert page.locator(SAVED_LOGIN).count() == 0
    answer = choose(page, "accept-all")
    assert answer["state"]["purposes"]["saved_login"]["granted"] is False
    assert not any(e["purposes"].get("saved_login") for e in ledger(r, sid_of(page)))
    ctx.close()


def test_saved_login_granted_at_login_is_turned_off_in_the_settings(
    browser: Browser, live: LiveServer, r: redis.Redis
) -> None:
    """Withdrawing stays as easy as granting: once granted (at login), the settings show it,
    with a note, and turn it off; left on, the banner does not send it (the gateway takes its
    grant from a login form only)."""
    ctx = new_context(browser)
    page = ctx.new_page()
    open_demo(page, live)
    choose(page, "reject-all")
    state = page.evaluate("() => ConsentGateway('consent.grant', {saved_login: true}, 'login')")
    assert state["state"]["purposes"]["saved_login"]["granted"] is True
    open_settings(page)
    switch = page.locator(SAVED_LOGIN)
    assert switch.is_checked() and switch.is_enabled()
    assert "登录时勾选“保持登录”后开启" in page.inner_text("#cg-d-saved_login")
    page.check('#cg-banner [data-cg-purpose="personalization"]')
    answer = choose(page, "save")
    assert answer["state"]["purposes"]["saved_login"]["granted"] is True
    assert answer["receipt"]["source"] == "settings"
    assert "saved_login" not in answer["receipt"]["purposes"]
    open_settings(page)
    page.uncheck(SAVED_LOGIN)
    answer = choose(page, "save")
    assert answer["state"]["purposes"]["saved_login"]["granted"] is False
    assert answer["state"]["purposes"]["personalization"]["granted"] is True
    last = ledger(r, sid_of(page))[-1]
    assert last["source"] == "settings" and last["purposes"]["saved_login"] is False
    open_settings(page)
    assert page.locator(SAVED_LOGIN).count() == 0  # shown only while granted
    page.keyboard.press("Escape")
    # Granted again at login, "reject all" in the settings turns it off with the rest.
    page.evaluate("() => ConsentGateway('consent.grant', {saved_login: true}, 'login')")
    open_settings(page)
    answer = choose(page, "reject-all")
    assert not any(s["granted"] for p, s in answer["state"]["purposes"].items() if p != "necessary")
    ctx.close()


def test_a_grant_at_login_is_no_answer_to_the_banner(
    browser: Browser, live: LiveServer, r: redis.Redis
) -> None:
    ctx = new_context(browser)
    page = ctx.new_page()
    page.goto(url(live, "/v1/policy"))
    status = page.evaluate(
        """async (v) => (await fetch('/v1/consent', {method: 'POST', credentials: 'include',
             body: JSON.stringify({policy_version: v, source: 'login',
                                   purposes: {saved_login: true}})})).status""",
        CURRENT,
    )
    assert status == 201
    open_demo(page, live)  # the banner still asks, with its first layer
    assert page.inner_text("#cg-title") == "您的隐私选择"
    assert page.locator(SAVED_LOGIN).count() == 0
    answer = choose(page, "reject-all")
    assert answer["state"]["purposes"]["saved_login"]["granted"] is True  # not its to decide
    ctx.close()


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_banner_cites_clauses_as_its_language_numbers_them(
    browser: Browser, live: LiveServer, lang: str
) -> None:
    ctx = new_context(browser)
    page = ctx.new_page()
    open_demo(page, live, lang=lang)
    text = page.inner_text("#cg-banner")
    if lang == "zh":
        for cited in (
            "依据隐私政策注1–2",
            "依据隐私政策第二条第（二）款第2–4项",
            "依据隐私政策第二条第（三）款",
            "第二条第（三）款、第三条第（二）款第1项",
            "第二条第（二）款第2项",
        ):
            assert cited in text
        # no clause or copy in English (GPS and IP are how Chinese writes them)
        assert not re.search(r"[A-Za-z]{4,}|\d\(\d\)", text), re.findall(r"[A-Za-z]{4,}", text)
        for literal in ("打开信标", "计入营销人员", "政策条款"):
            assert literal not in text
    else:
        assert "Policy clause 2(2) items 2–4" in text and "Notes 1–2" in text
        assert not re.search(r"[\u4e00-\u9fff]", text)
    ctx.close()


POLICY_URL = "https://www.example.com/privacy"


def test_the_banner_links_to_the_privacy_policy_when_there_is_one(
    browser: Browser,
    live: LiveServer,
    gateways: Gateways,
    serve: Any,
    redis_url: str,
) -> None:
    ctx = new_context(browser)
    page = ctx.new_page()
    open_demo(page, live)  # no POLICY_URL: no link
    assert page.locator("#cg-banner a").count() == 0
    linked = serve(gateways(redis_url, ALLOWED_ORIGINS=[], POLICY_URL=POLICY_URL))
    ctx.route(POLICY_URL, lambda route: route.fulfill(body="<title>policy</title>", status=200))
    for lang, text in (("en", "Read the full privacy policy"), ("zh", "查看《隐私政策》全文")):
        open_demo(page, linked, lang=lang)
        link = page.locator("#cg-policy a")
        assert link.inner_text() == text
        assert link.get_attribute("href") == POLICY_URL
        assert link.get_attribute("target") == "_blank"
        assert "noopener" in (link.get_attribute("rel") or "").split()
    with ctx.expect_page() as opened:
        page.click("#cg-policy a")
    tab = opened.value
    tab.wait_for_load_state()
    assert tab.url == POLICY_URL
    assert tab.evaluate("() => window.opener") is None
    assert page.locator("#cg-banner").is_visible()  # the choice in progress stays open
    ctx.close()
