"""The marketers' dashboard (/marketers) in Debian's Chromium against the real gateway on
Valkey: signing in with an ``audiences`` key (which the page keeps nowhere), filters and the
estimate, the breakdown charts drawn with exactly the API's numbers, suppressed cells never
shown as a number, the budget and the key's recent queries, a phone's width, English, and the
keyboard alone. Every test ends with no script error on the page.

The audience is made as the API's tests make it (tests/gateway/test_audiences.py): APP
subjects with consent who searched a category, linked to accounts whose traits name the
province, company size and industry; then the index is built. The backend's own tests are
tests/gateway/test_marketers.py.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, Response, expect

from gateway import create_app
from gateway.core.catalogue import load as load_catalogue
from gateway.core.sessions import COOKIE
from tests.conftest import LiveServer, make_config
from tests.gateway.test_audiences import people

from .conftest import new_context

CATALOGUE = load_catalogue()

ROOT = Path(__file__).resolve().parents[2]
K = 100  # the default floor: what a marketer sees ("少于 100 人")
DESKTOP, PHONE = (1280, 1500), (375, 1800)  # the screenshots' sizes (docs/marketers-*.png)
# (people, category, province, company size, industry): two groups over the floor in their
# province, size and industry, one under it.
GROUPS = (
    (150, "BOLT", "江苏省", "20-99", "machinery"),
    (120, "NUT", "浙江省", "100-499", "automation"),
    (30, "BOLT", "广东省", "1000+", "rail"),
)


@pytest.fixture
def app(redis_url: str, tmp_path: Path) -> Iterator[Flask]:
    """The gateway as ``--dev`` runs it (cookies not Secure over plain HTTP), the indexer run
    when a test says, no rate limits (hundreds of people are made from one address)."""
    application = create_app(
        make_config(
            redis_url,
            tmp_path,
            ALLOWED_ORIGINS=[],
            DEV=True,
            RATE_LIMITS=False,
            AUDIENCE_INDEXER=False,
            AUDIENCE_K=K,
        )
    )
    yield application
    for close in application.extensions["gateway"].closers:
        close()


def new_key(app: Flask, name: str = "marketing team", scope: str = "audiences") -> str:
    key: str = app.extensions["gateway"].apikeys.create(name, [scope])
    return key


@pytest.fixture
def audience(app: Flask) -> None:
    """GROUPS made and indexed."""
    accounts = {"Authorization": "Bearer " + new_key(app, "platform backend", "accounts")}
    client = app.test_client()
    n = 0
    jobs = []
    for size, category, province, company, industry in GROUPS:
        traits = {"province": province, "company_size": company, "industry": industry}
        for sid, _ in people(client, size, category=category):
            jobs.append((f"acct-{n}", sid, traits))
            n += 1

    def link(job: tuple[str, str, dict[str, str]]) -> None:
        account, sid, traits = job
        c = app.test_client()
        resp = c.post(f"/v1/accounts/{account}/subjects", json={"subject": sid}, headers=accounts)
        assert resp.status_code == 200, resp.get_json()
        resp = c.put(f"/v1/accounts/{account}/traits", json=traits, headers=accounts)
        assert resp.status_code == 200, resp.get_json()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(link, jobs))
    app.extensions["gateway"].indexer.run_until_idle()


def url(live: LiveServer, path: str = "/marketers") -> str:
    return f"http://localhost:{live.port}{path}"


def watched(page: Page) -> list[str]:
    """Script errors of the page, gathered as they happen (a test ends with none)."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def answer_of(path: str) -> Callable[[Response], bool]:
    return lambda r: r.url.endswith(path) and r.request.method in ("POST", "GET", "DELETE")


def sign_in(page: Page, key: str) -> dict[str, Any]:
    """Type the key into the form and submit it; the dashboard's first reads done."""
    page.wait_for_selector("#key")
    page.fill("#key", key)
    with page.expect_response(answer_of("/marketers/api/account")) as account:
        page.click("#signin-button")
    page.wait_for_selector("#recent li")
    data: dict[str, Any] = account.value.json()
    return data


def estimate(page: Page) -> tuple[dict[str, Any], dict[str, Any]]:
    """Press Estimate: the request's filters and the answer the page received."""
    with page.expect_response(answer_of("/marketers/api/estimate")) as resp:
        page.click("#estimate-button")
    page.wait_for_selector('#estimate:not([data-state="working"]):not([data-state="empty"])')
    body = json.loads(resp.value.request.post_data or "{}")
    return body["filters"], resp.value.json()


def breakdown(page: Page, by: str) -> dict[str, Any]:
    """Press a chart's button: the breakdown answer the page received, once drawn."""
    with page.expect_response(answer_of("/marketers/api/breakdown")) as resp:
        page.click(f"#bd-{by}-go")
    page.wait_for_selector(f"#bd-{by}-toggle:not([hidden])")
    data: dict[str, Any] = resp.value.json()
    return data


def thousands(n: int) -> str:
    return f"{n:,}"


def chart(page: Page, by: str) -> tuple[list[str], list[int | None]]:
    canvas = page.locator(f"#bd-{by}-chart")
    labels = json.loads(canvas.get_attribute("data-labels") or "null")
    values = json.loads(canvas.get_attribute("data-values") or "null")
    return labels, values


def no_sideways_scroll(page: Page) -> bool:
    return bool(page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"))


def check(page: Page, dim: str, value: str) -> None:
    """Open a dimension's group and tick one of its values."""
    details = page.locator(f"details#f-{dim}")
    if details.get_attribute("open") is None:
        details.locator("summary").click()
    details.locator(f'input[value="{value}"]').check()


# ---------------------------------------------------------------------- signing in


def test_a_wrong_key_is_refused_inline_and_the_right_one_is_kept_nowhere(
    browser: Browser, live: LiveServer, app: Flask
) -> None:
    key = new_key(app)
    ctx = new_context(browser)
    page = ctx.new_page()
    errors = watched(page)
    page.goto(url(live))
    page.wait_for_selector("#key")
    assert page.evaluate("() => document.activeElement.id") == "key"
    # a key without the scope, then a made-up one: refused where the key was typed
    for wrong in (new_key(app, "backend", "accounts"), "gwk_not-a-key"):
        page.fill("#key", wrong)
        with page.expect_response(answer_of("/marketers/session")) as refused:
            page.press("#key", "Enter")
        assert refused.value.status == 401
        assert refused.value.json()["error"]["code"] == "invalid_api_key"
        page.wait_for_selector("#key-error:not(:empty)")
        assert page.inner_text("#key-error") == "密钥无效，或没有 audiences 权限。"
        assert page.get_attribute("#key-error", "role") == "alert"
        assert page.input_value("#key") == ""  # emptied as soon as it was read
        assert page.get_attribute("#key", "aria-invalid") == "true"

    account = sign_in(page, key)
    assert page.inner_text("#who") == "密钥：marketing team"
    assert account["budget_left"] == account["budget"] == 10.0
    assert page.inner_text("#recent") == "还没有查询。"
    # The key is nowhere a script could read it: not in storage, not in a readable cookie,
    # not in the page. The session is an HttpOnly, SameSite=Strict cookie.
    kept = page.evaluate(
        """() => JSON.stringify([document.cookie, Object.assign({}, localStorage),
                                 Object.assign({}, sessionStorage),
                                 document.documentElement.outerHTML])"""
    )
    assert key not in kept and COOKIE not in kept
    assert page.evaluate("() => document.cookie") == ""
    assert page.evaluate("() => localStorage.length + sessionStorage.length") == 0
    (cookie,) = [c for c in ctx.cookies() if c["name"] == COOKIE]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/marketers"
    assert key not in cookie["value"]

    # A reload resumes the session (GET /marketers/session) without the key.
    with page.expect_response(answer_of("/marketers/session")) as resumed:
        page.reload()
    assert resumed.value.status == 200
    page.wait_for_selector("#filters")
    assert page.inner_text("#who") == "密钥：marketing team"

    # Signing out clears the cookie; a reload shows the sign-in form again.
    with page.expect_response(answer_of("/marketers/session")) as out:
        page.click("#signout")
    assert out.value.request.method == "DELETE" and out.value.status == 204
    page.wait_for_selector("#key")
    assert page.is_hidden("#signout")
    assert [c for c in ctx.cookies() if c["name"] == COOKIE] == []
    page.reload()
    page.wait_for_selector("#key")
    assert page.inner_text("#key-error") == ""
    assert errors == []
    ctx.close()


def test_a_session_that_ended_goes_back_to_the_form_and_an_unavailable_store_keeps_it(
    browser: Browser, live: LiveServer, app: Flask
) -> None:
    ctx = new_context(browser)
    page = ctx.new_page()
    errors = watched(page)
    page.goto(url(live))
    sign_in(page, new_key(app))
    page.fill("#f-city", "苏州、无锡")
    # The store is away (the gateway's 503, as its error handler answers): said, form kept.
    page.route(
        "**/marketers/api/estimate",
        lambda route: route.fulfill(
            status=503,
            headers={"Retry-After": "1"},
            content_type="application/json",
            body=json.dumps({"error": {"code": "storage_unavailable", "message": "x"}}),
        ),
    )
    estimate(page)
    assert "数据存储暂时不可用" in page.inner_text("#estimate-error")
    assert page.input_value("#f-city") == "苏州、无锡"
    page.unroute("**/marketers/api/estimate")
    # The session ends (its cookie is gone): the next query goes back to the sign-in form.
    ctx.clear_cookies()
    with page.expect_response(answer_of("/marketers/api/estimate")) as resp:
        page.click("#estimate-button")
    assert resp.value.status == 401
    page.wait_for_selector("#key")
    assert page.inner_text("#key-error") == "登录已过期，请重新登录。"
    assert page.evaluate("() => document.activeElement.id") == "key"
    assert errors == []
    ctx.close()


# ---------------------------------------------------------------------- what a marketer sees


def test_filters_estimate_charts_budget_and_recent_queries_show_the_apis_numbers(
    browser: Browser, live: LiveServer, app: Flask, audience: None, shots: Path
) -> None:
    ctx = new_context(browser, viewport={"width": DESKTOP[0], "height": 900})
    page = ctx.new_page()
    errors = watched(page)
    page.goto(url(live))
    sign_in(page, new_key(app))
    dims = page.evaluate("() => fetch('/marketers/api/dimensions').then(r => r.json())")
    assert dims["k"] == K

    # Filters: a typed category and a ticked province, over the last 30 days.
    page.fill("#f-category", "BOLT")
    check(page, "province", "江苏省")
    assert page.inner_text("#f-province summary .chosen") == "已选 1 项"
    page.select_option("#f-active", "30")
    filters, got = estimate(page)
    assert filters == {"category": ["BOLT"], "province": ["江苏省"], "active_within_days": 30}
    assert got["below_threshold"] is False and got["estimate"] >= K
    lo, hi = got["range"]
    assert page.inner_text("#estimate-count") == f"约 {thousands(got['estimate'])} 人"
    assert page.get_attribute("#estimate-count", "data-estimate") == str(got["estimate"])
    shown = page.inner_text("#estimate")
    assert f"95% 的可能在 {thousands(lo)}–{thousands(hi)} 人之间" in shown
    assert "人群：产品品类：BOLT；省份：江苏省；最近 30 天" in shown
    assert f"本月剩余 {got['budget_left']:g}" in shown

    # Breakdowns of everyone, one query per chart: the chart holds exactly the API's cells.
    page.click("#clear-button")
    answers = {}
    for by in ("province", "company_size", "industry"):
        answers[by] = got = breakdown(page, by)
        assert got["by"] == by
        labels, values = chart(page, by)
        named = CATALOGUE.traits[by].labels  # the catalogue's words for each value, else it
        assert labels == [named.get(c["value"], {}).get("zh", c["value"]) for c in got["cells"]]
        assert values == [c["estimate"] for c in got["cells"]]
        assert values == [None if c["below_threshold"] else c["estimate"] for c in got["cells"]]
        assert 0 not in values
        rows = page.locator(f"#bd-{by}-table tbody tr")
        assert rows.count() == len(got["cells"])
        for i, cell in enumerate(got["cells"]):
            row = rows.nth(i)
            assert row.get_attribute("data-value") == cell["value"]
            count = row.locator("td").first.inner_text()
            if cell["below_threshold"]:
                assert count == f"少于 {K}"
            else:
                assert count == thousands(cell["estimate"])
        assert f"少于{K}" in page.inner_text(f"#bd-{by} .note")
        assert page.inner_text(f"#bd-{by} .for") == "人群：全部人群"
    cells = {c["value"]: c for c in answers["province"]["cells"]}
    assert len(cells) == 34
    assert not cells["江苏省"]["below_threshold"] and not cells["浙江省"]["below_threshold"]
    assert cells["广东省"]["below_threshold"] and cells["北京市"]["below_threshold"]
    sizes = {c["value"]: c for c in answers["company_size"]["cells"]}
    assert sizes["1000+"]["estimate"] is None and sizes["20-99"]["estimate"] >= K

    # The table is the chart's alternative: in the accessibility tree even while hidden.
    table = page.locator("#bd-province-table table")
    assert "按省份" in table.locator("caption").inner_text()
    tree = table.aria_snapshot()
    assert "caption" in tree or "按省份" in tree
    assert "少于 100" in tree and "北京市" in tree
    page.click("#bd-company_size-toggle")
    assert page.get_attribute("#bd-company_size-toggle", "aria-expanded") == "true"
    assert page.locator("#bd-company_size-table table").is_visible()

    # The budget left, as the last query's answer and the account say.
    with page.expect_response(answer_of("/marketers/api/account")) as acct:
        again = breakdown(page, "industry")  # the same question again today: free
    assert again["epsilon_spent"] == 0 and again["cells"] == answers["industry"]["cells"]
    account = acct.value.json()
    assert account["budget_left"] == again["budget_left"] == 10.0 - 0.5 - 3 * 1.0
    left = f"{account['budget_left']:g}"
    expect(page.locator("#budget-left")).to_have_text(left)
    assert page.get_attribute("#budget", "data-left") == left
    assert f"/ {account['budget']:g}" in page.inner_text("#budget")
    # The key's own recent queries, newest first, as the account lists them.
    items = page.locator("#recent li")
    expect(items).to_have_count(5)
    assert [e["kind"] for e in account["recent"]] == ["breakdown"] * 4 + ["estimate"]
    assert [e.get("by") for e in account["recent"][:4]] == [
        "industry",
        "industry",
        "company_size",
        "province",
    ]
    expect(items.nth(0)).to_contain_text("分布（行业）")
    expect(items.nth(2)).to_contain_text("分布（公司规模）")
    expect(items.nth(3)).to_contain_text("34 项，其中 2 项有数字")
    first = items.nth(4)
    expect(first.locator("strong")).to_have_text("估算")
    expect(first.locator(".recent-audience")).to_have_text(
        "产品品类：BOLT；省份：江苏省；最近 30 天"
    )
    estimated = account["recent"][4]["answer"]["estimate"]
    expect(first.locator(".recent-outcome")).to_have_text(f"约 {thousands(estimated)} 人")

    page.locator("details#f-province summary").click()  # closed again
    page.evaluate("() => window.scrollTo(0, 0)")
    path = shots / "marketers-desktop.png"
    page.screenshot(
        path=str(path),
        full_page=True,
        clip={"x": 0, "y": 0, "width": DESKTOP[0], "height": DESKTOP[1]},
    )
    assert png_size(path) == DESKTOP

    # Fewer than k people: no number at all, never a 0.
    check(page, "province", "广东省")
    filters, got = estimate(page)
    assert filters == {"province": ["广东省"]}
    assert got["below_threshold"] is True and got["estimate"] is None
    assert page.inner_text("#estimate-count") == "少于 100 人"
    assert page.get_attribute("#estimate", "data-state") == "suppressed"
    assert not re.search(r"\d", page.inner_text("#estimate-count").replace("100", ""))

    # A query too close to an earlier one: BOLT is the first estimate's 150 people and the
    # 30 of 广东省. Refused, said why (and which earlier query), nothing spent, listed.
    page.click("#clear-button")
    page.fill("#f-category", "BOLT")
    with page.expect_response(answer_of("/marketers/api/account")) as acct:
        filters, refused = estimate(page)
    assert filters == {"category": ["BOLT"]}
    assert refused["error"]["code"] == "too_close_to_earlier_query"
    assert "相差不到 100 人" in page.inner_text("#estimate-error")
    assert "之前的查询：产品品类：BOLT；省份：江苏省；最近 30 天" in page.inner_text("#estimate")
    account = acct.value.json()
    assert account["recent"][0]["outcome"] == "too_close_to_earlier_query"
    expect(page.locator("#recent li").first).to_contain_text("未回答：与之前的查询太接近")
    assert account["budget_left"] == 10.0 - 0.5 - 3 * 1.0  # the floor's answer cost nothing
    expect(page.locator("#budget-left")).to_have_text(f"{account['budget_left']:g}")
    assert errors == []
    ctx.close()


def test_a_phone_never_scrolls_sideways(
    browser: Browser, live: LiveServer, app: Flask, audience: None, shots: Path
) -> None:
    ctx = new_context(browser, viewport={"width": PHONE[0], "height": 800}, is_mobile=True)
    page = ctx.new_page()
    errors = watched(page)
    page.goto(url(live))
    page.wait_for_selector("#key")
    assert no_sideways_scroll(page)
    sign_in(page, new_key(app, "a-marketing-team-with-a-rather-long-name-that-will-not-fit-0123"))
    assert no_sideways_scroll(page)
    for dim in ("industry", "company_size", "province"):
        page.locator(f"details#f-{dim} summary").click()
    page.fill("#f-city", "a-city-name-without-any-space-that-is-longer-than-the-screen-0123456")
    _, refused = estimate(page)
    assert refused["error"]["code"] == "validation_failed"
    page.wait_for_selector("#f-city-error:not(:empty)")
    assert page.get_attribute("#f-city", "aria-invalid") == "true"
    assert no_sideways_scroll(page)
    page.fill("#f-city", "")
    page.locator("details#f-province summary").click()
    page.locator("details#f-company_size summary").click()
    check(page, "industry", "machinery")
    check(page, "industry", "automation")
    _, got = estimate(page)
    assert page.inner_text("#estimate-count") == f"约 {thousands(got['estimate'])} 人"
    for by in ("province", "company_size", "industry"):
        breakdown(page, by)
        page.click(f"#bd-{by}-toggle")  # the tables shown as well
        assert no_sideways_scroll(page)
    box = page.locator("#bd-province-chart").bounding_box()
    assert box is not None and box["width"] <= PHONE[0] and box["height"] > 34 * 20
    assert no_sideways_scroll(page)
    page.locator("details#f-industry summary").click()
    page.evaluate("() => window.scrollTo(0, 0)")
    path = shots / "marketers-phone.png"
    page.screenshot(
        path=str(path), full_page=True, clip={"x": 0, "y": 0, "width": PHONE[0], "height": PHONE[1]}
    )
    assert png_size(path) == PHONE
    assert errors == []
    ctx.close()


def test_in_english(browser: Browser, live: LiveServer, app: Flask) -> None:
    ctx = new_context(browser)
    page = ctx.new_page()
    errors = watched(page)
    page.goto(url(live, "/marketers?lang=zh"))
    page.wait_for_selector("#key")
    assert page.evaluate("() => document.documentElement.lang") == "zh-CN"
    assert page.inner_text("#lang-switch") == "English"
    page.click("#lang-switch")
    page.wait_for_url("**/marketers?lang=en")
    page.wait_for_selector("#key")
    assert page.evaluate("() => document.documentElement.lang") == "en"
    assert page.inner_text("h1") == "Audience counts"
    assert page.inner_text("#signin-button") == "Sign in"
    assert page.inner_text("label[for=key]") == "API key"
    sign_in(page, new_key(app))
    assert page.inner_text("#who") == "Key: marketing team"
    assert page.inner_text("#filters-h") == "Choose an audience"
    assert page.inner_text("#f-province summary").startswith("Province")
    page.select_option("#f-active", "7")
    assert page.inner_text("#f-active option:checked") == "within 7 days"
    _, got = estimate(page)  # nobody yet: below the floor
    assert got["below_threshold"] is True
    assert page.inner_text("#estimate-count") == "fewer than 100 people"
    assert "Counts under 100 are never shown" in page.inner_text("#estimate")
    with page.expect_response(answer_of("/marketers/api/account")):
        breakdown(page, "company_size")
    page.wait_for_selector("#recent li:nth-child(2)")
    assert page.inner_text("#bd-company_size-toggle") == "Show table"
    rows = page.locator("#bd-company_size-table tbody td.num:first-of-type")
    assert rows.all_inner_texts() == ["fewer than 100"] * 5
    assert "<100" in page.inner_text("#bd-company_size .note")
    assert "Breakdown by company size" in page.inner_text("#recent")
    assert "fewer than 100 people" in page.inner_text("#recent")
    assert page.inner_text("#lang-switch") == "中文"
    page.click("#lang-switch")  # the session stays
    page.wait_for_url("**/marketers?lang=zh")
    page.wait_for_selector("#filters")
    assert page.inner_text("#who") == "密钥：marketing team"
    assert errors == []
    ctx.close()


# ---------------------------------------------------------------------- the keyboard alone


def focused(page: Page) -> dict[str, Any]:
    info: dict[str, Any] = page.evaluate(
        """() => { const e = document.activeElement, s = getComputedStyle(e);
                   return {id: e.id, tag: e.tagName, type: e.type || null,
                           dim: e.closest('details') ? e.closest('details').id : null,
                           value: e.value === undefined ? null : e.value,
                           outline: s.outlineStyle + ' ' + s.outlineWidth}; }"""
    )
    return info


def tab_to(page: Page, wanted: Callable[[dict[str, Any]], bool], back: bool = False) -> None:
    """Press Tab (Shift+Tab) until the focused element is the wanted one; every stop shows
    its focus."""
    for _ in range(80):
        page.keyboard.press("Shift+Tab" if back else "Tab")
        now = focused(page)
        if now["tag"] not in ("BODY", "H2"):
            assert now["outline"] == "solid 3px", now  # a visible focus ring at every stop
        if wanted(now):
            return
    raise AssertionError("never reached the element by Tab")


def test_sign_in_and_estimate_with_the_keyboard_alone(
    browser: Browser, live: LiveServer, app: Flask
) -> None:
    key = new_key(app)
    ctx = new_context(browser)
    page = ctx.new_page()
    errors = watched(page)
    page.goto(url(live))
    page.wait_for_selector("#key")
    # From the top of the page: the language link, then the key's field.
    page.evaluate("() => document.activeElement.blur()")
    tab_to(page, lambda f: f["id"] == "lang-switch")
    tab_to(page, lambda f: f["id"] == "key")
    page.keyboard.type(key)
    with page.expect_response(answer_of("/marketers/api/account")):
        page.keyboard.press("Enter")
    page.wait_for_selector("#recent li")
    assert focused(page)["id"] == "filters-h"  # the dashboard's first heading
    # Type a category, open the company sizes, tick one with Space, estimate with Enter.
    tab_to(page, lambda f: f["id"] == "f-category")
    page.keyboard.type("BOLT、NUT")
    tab_to(page, lambda f: f["tag"] == "SUMMARY" and f["dim"] == "f-company_size")
    page.keyboard.press("Enter")
    tab_to(page, lambda f: f["type"] == "checkbox" and f["value"] == "20-99")
    page.keyboard.press("Space")
    tab_to(page, lambda f: f["id"] == "f-active")
    page.keyboard.press("ArrowDown")  # the first window
    tab_to(page, lambda f: f["id"] == "estimate-button")
    with page.expect_response(answer_of("/marketers/api/estimate")) as resp:
        page.keyboard.press("Enter")
    body = json.loads(resp.value.request.post_data or "{}")
    assert body == {
        "filters": {"category": ["BOLT", "NUT"], "company_size": ["20-99"], "active_within_days": 7}
    }
    page.wait_for_selector("#estimate-count")
    assert page.inner_text("#estimate-count") == "少于 100 人"
    assert focused(page)["id"] == "estimate-button"  # focus stays where it was
    # A breakdown by Enter on its button, then Shift+Tab back up to sign out.
    tab_to(page, lambda f: f["id"] == "bd-province-go")
    with page.expect_response(answer_of("/marketers/api/breakdown")):
        page.keyboard.press("Enter")
    page.wait_for_selector("#bd-province-toggle:not([hidden])")
    tab_to(page, lambda f: f["id"] == "signout", back=True)
    with page.expect_response(answer_of("/marketers/session")):
        page.keyboard.press("Enter")
    page.wait_for_selector("#key")
    assert focused(page)["id"] == "key"
    assert errors == []
    ctx.close()


# ---------------------------------------------------------------------- the screenshots


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize(("name", "size"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_docs_screenshots_are_real_ones(name: str, size: tuple[int, int]) -> None:
    """docs/marketers-*.png are copies of build/screenshots/marketers-*.png, made above."""
    path = ROOT / "docs" / f"marketers-{name}.png"
    assert png_size(path) == size
    assert path.stat().st_size > 30_000
