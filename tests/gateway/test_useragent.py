"""UserAgentParser on the devices and clients this platform actually sees.

Every row states the complete result, so a uap-core update that changes any field of any
row fails here rather than in a dashboard. Strings marked (seen) are copied from public bug
reports and vendor docs; the rest follow the same vendors' formats.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

import pytest

from gateway.core.useragent import MAX_UA_LENGTH, UserAgentParser

KEYS = {"browser", "browser_version", "os", "os_version", "device_brand", "device_model", "is_bot"}


class Case(NamedTuple):
    id: str
    ua: str
    browser: str | None
    browser_version: str | None
    os: str | None
    os_version: str | None
    device_brand: str | None
    device_model: str | None
    is_bot: bool = False


CASES = [
    # --- WeChat in-app browser (MicroMessenger) --------------------------------------
    Case(
        "wechat-android-huawei",
        "Mozilla/5.0 (Linux; Android 12; ELS-AN00 Build/HUAWEIELS-AN00; wv) AppleWebKit/537.36"
        " (KHTML, like Gecko) Version/4.0 Chrome/107.0.5304.141 Mobile Safari/537.36"
        " XWEB/5023 MMWEBSDK/20230202 MMWEBID/6137 MicroMessenger/8.0.33.2320(0x28002151)"
        " WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64",
        "WeChat",
        "8.0.33.2320",
        "Android",
        "12",
        "Huawei",
        "ELS-AN00",
    ),
    Case(
        "wechat-android-xiaomi",
        "Mozilla/5.0 (Linux; Android 13; 22081212C Build/TKQ1.220829.002; wv)"
        " AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/111.0.5563.116"
        " Mobile Safari/537.36 XWEB/1110017 MMWEBSDK/20230805 MMWEBID/2578"
        " MicroMessenger/8.0.42.2460(0x28002A58) WeChat/arm64 Weixin NetType/5G"
        " Language/zh_CN ABI/arm64",
        "WeChat",
        "8.0.42.2460",
        "Android",
        "13",
        "Xiaomi",
        "22081212C",
    ),
    Case(
        "wechat-android-honor-tbs",
        "Mozilla/5.0 (Linux; Android 11; NTH-AN00 Build/HONORNTH-AN00; wv) AppleWebKit/537.36"
        " (KHTML, like Gecko) Version/4.0 Chrome/89.0.4389.72 MQQBrowser/6.2 TBS/045913"
        " Mobile Safari/537.36 MMWEBID/3372 MicroMessenger/8.0.22.2140(0x28001637)"
        " WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64",
        "WeChat",
        "8.0.22.2140",
        "Android",
        "11",
        "Honor",
        "NTH-AN00",
    ),
    Case(
        "wechat-ios",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 16_5 like Mac OS X) AppleWebKit/605.1.15"
        " (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.38(0x1800262c)"
        " NetType/WIFI Language/zh_CN",
        "WeChat",
        "8.0.38",
        "iOS",
        "16.5",
        "Apple",
        "iPhone",
    ),
    Case(  # (seen) HarmonyOS NEXT WeChat; the UA names no phone model
        "wechat-harmonyos-next",
        "Mozilla/5.0 (Phone; OpenHarmony 5.1) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/114.0.0.0 Safari/537.36  ArkWeb/4.1.6.1 Mobile"
        " MicroMessenger/8.0.9.39(0xf3100927) Weixin NetType/WIFI Language/zh_CN"
        " MMWEBID/2777 MMWEBSDK/202507060011 XWEB/1140307",
        "WeChat",
        "8.0.9.39",
        "HarmonyOS",
        "5.1",
        None,
        None,
    ),
    Case(
        "wechat-windows",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/107.0.0.0 Safari/537.36 NetType/WIFI MicroMessenger/7.0.20.1781(0x6700143B)"
        " WindowsWechat(0x63090c11) XWEB/8391",
        "WeChat",
        "7.0.20.1781",
        "Windows",
        "10",
        None,
        None,
    ),
    Case(  # WeCom also sends MicroMessenger/7.0.1: it must not be counted as WeChat
        "wecom-ios",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 16_0 like Mac OS X) AppleWebKit/605.1.15"
        " (KHTML, like Gecko) Mobile/15E148 wxwork/4.1.16 MicroMessenger/7.0.1 Language/zh"
        " ColorScheme/Light",
        "WeCom",
        "4.1.16",
        "iOS",
        "16.0",
        "Apple",
        "iPhone",
    ),
    # --- HarmonyOS ----------------------------------------------------------------------
    Case(  # (seen) HarmonyOS NEXT: OpenHarmony token, no model
        "harmonyos-next-huawei-browser",
        "Mozilla/5.0 (Phone; OpenHarmony 5.0) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/114.0.0.0 Safari/537.36 ArkWeb/4.1.6.1 Mobile HuaweiBrowser/5.1.3.311",
        "Huawei Browser",
        "5.1.3",
        "HarmonyOS",
        "5.0",
        None,
        None,
    ),
    Case(  # (seen) HarmonyOS 6 adds an "Android 10" compat token: still HarmonyOS 6.0
        "harmonyos-6-android-compat-token",
        "Mozilla/5.0 (Phone; OpenHarmony 6.0; Android 10) AppleWebKit/537.36 (KHTML, like"
        " Gecko) Chrome/132.0.0.0 Safari/537.36  ArkWeb/6.0.0.130 Mobile"
        " HuaweiBrowser/5.1.12.351",
        "Huawei Browser",
        "5.1.12",
        "HarmonyOS",
        "6.0",
        None,
        None,
    ),
    Case(  # (seen) the default ArkWeb webview UA, no app token after it
        "harmonyos-next-arkweb-webview",
        "Mozilla/5.0 (Phone; OpenHarmony 5.0) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/114.0.0.0 Safari/537.36  ArkWeb/4.1.6.1 Mobile",
        "ArkWeb",
        "4.1.6.1",
        "HarmonyOS",
        "5.0",
        None,
        None,
    ),
    Case(  # HarmonyOS 2-4, Android-compat UA: no HarmonyOS version in the string
        "harmonyos-compat-huawei",
        "Mozilla/5.0 (Linux; Android 10; HarmonyOS; ANA-AN00; HMSCore 6.11.0.302)"
        " AppleWebKit/537.36 (KHTML, like Gecko) Chrome/99.0.4844.88"
        " HuaweiBrowser/14.0.0.322 Mobile Safari/537.36",
        "Huawei Browser",
        "14.0.0",
        "HarmonyOS",
        None,
        "Huawei",
        "ANA-AN00",
    ),
    Case(  # (seen) Honor 20 Pro on HarmonyOS, compat UA
        "harmonyos-compat-honor",
        "Mozilla/5.0 (Linux; Android 10; HarmonyOS; YAL-AL10; HMSCore 6.3.0.327;"
        " GMSCore 21.48.15) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/92.0.4515.105"
        " HuaweiBrowser/12.0.3.310 Mobile Safari/537.36",
        "Huawei Browser",
        "12.0.3",
        "HarmonyOS",
        None,
        "Honor",
        "YAL-AL10",
    ),
    # --- Huawei / Honor -----------------------------------------------------------------
    Case(
        "huawei-p40-marketing-name",
        "Mozilla/5.0 (Linux; Android 10; HUAWEI P40 Build/HUAWEIANA-AN00) AppleWebKit/537.36"
        " (KHTML, like Gecko) Chrome/88.0.4324.93 Mobile Safari/537.36",
        "Chrome Mobile",
        "88.0.4324.93",
        "Android",
        "10",
        "Huawei",
        "P40",
    ),
    Case(
        "huawei-els-an00-webview",
        "Mozilla/5.0 (Linux; Android 10; ELS-AN00 Build/HUAWEIELS-AN00; wv) AppleWebKit/537.36"
        " (KHTML, like Gecko) Version/4.0 Chrome/88.0.4324.93 Mobile Safari/537.36",
        "Chrome Mobile WebView",
        "88.0.4324.93",
        "Android",
        "10",
        "Huawei",
        "ELS-AN00",
    ),
    Case(  # no Build token at all: the model code alone says Huawei
        "huawei-code-without-build",
        "Mozilla/5.0 (Linux; Android 12; ALN-AL00) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/114.0.5735.196 Mobile Safari/537.36 EdgA/114.0.1823.74",
        "Edge Mobile",
        "114.0.1823.74",
        "Android",
        "12",
        "Huawei",
        "ALN-AL00",
    ),
    Case(
        "honor-any-an00",
        "Mozilla/5.0 (Linux; Android 11; ANY-AN00 Build/HONORANY-AN00) AppleWebKit/537.36"
        " (KHTML, like Gecko) Chrome/92.0.4515.105 Mobile Safari/537.36",
        "Chrome Mobile",
        "92.0.4515.105",
        "Android",
        "11",
        "Honor",
        "ANY-AN00",
    ),
    Case(  # (seen) pre-2020 Honor still says Build/HUAWEI...: the code prefix decides
        "honor-with-huawei-build-token",
        "Mozilla/5.0 (Linux; Android 10; YAL-AL10 Build/HUAWEIYAL-AL10; wv) AppleWebKit/537.36"
        " (KHTML, like Gecko) Version/4.0 Chrome/86.0.4240.99 XWEB/3185 MMWEBSDK/20220105"
        " Mobile Safari/537.36 MMWEBID/553 MicroMessenger/8.0.19.2080(0x28001368)"
        " Process/toolsmp WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64",
        "WeChat",
        "8.0.19.2080",
        "Android",
        "10",
        "Honor",
        "YAL-AL10",
    ),
    Case(  # (seen) Edge sends no Build token
        "honor-edge-no-build",
        "Mozilla/5.0 (Linux; Android 10; YAL-AL10) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/97.0.4692.99 Mobile Safari/537.36 EdgA/97.0.1072.78",
        "Edge Mobile",
        "97.0.1072.78",
        "Android",
        "10",
        "Honor",
        "YAL-AL10",
    ),
    # --- Xiaomi / Redmi -----------------------------------------------------------------
    Case(
        "xiaomi-2201123c-miui-browser",
        "Mozilla/5.0 (Linux; U; Android 12; zh-cn; 2201123C Build/SKQ1.211006.001)"
        " AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/100.0.4896.127"
        " Mobile Safari/537.36 XiaoMi/MiuiBrowser/17.1.60505",
        "MiuiBrowser",
        "17.1.60505",
        "Android",
        "12",
        "Xiaomi",
        "2201123C",
    ),
    Case(
        "redmi-m2012k11ac",
        "Mozilla/5.0 (Linux; Android 11; M2012K11AC Build/RKQ1.200826.002) AppleWebKit/537.36"
        " (KHTML, like Gecko) Chrome/96.0.4664.104 Mobile Safari/537.36",
        "Chrome Mobile",
        "96.0.4664.104",
        "Android",
        "11",
        "Xiaomi",
        "M2012K11AC",
    ),
    Case(
        "redmi-23013rk75c",
        "Mozilla/5.0 (Linux; Android 13; 23013RK75C Build/TKQ1.220905.001) AppleWebKit/537.36"
        " (KHTML, like Gecko) Chrome/116.0.5845.163 Mobile Safari/537.36",
        "Chrome Mobile",
        "116.0.5845.163",
        "Android",
        "13",
        "Xiaomi",
        "23013RK75C",
    ),
    Case(
        "redmi-k50-marketing-name",
        "Mozilla/5.0 (Linux; Android 12; Redmi K50 Build/SKQ1.211006.001) AppleWebKit/537.36"
        " (KHTML, like Gecko) Chrome/103.0.5060.71 Mobile Safari/537.36",
        "Chrome Mobile",
        "103.0.5060.71",
        "Android",
        "12",
        "Xiaomi",
        "Redmi K50",
    ),
    # --- OPPO / realme / vivo -----------------------------------------------------------
    Case(
        "oppo-pgjm10",
        "Mozilla/5.0 (Linux; Android 12; PGJM10 Build/SP1A.210812.016) AppleWebKit/537.36"
        " (KHTML, like Gecko) Chrome/97.0.4692.98 Mobile Safari/537.36 HeyTapBrowser/40.8.10.1",
        "HeyTap Browser",
        "40.8.10.1",
        "Android",
        "12",
        "OPPO",
        "PGJM10",
    ),
    Case(
        "oppo-peem00",
        "Mozilla/5.0 (Linux; U; Android 11; zh-cn; PEEM00 Build/RKQ1.200903.002)"
        " AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/70.0.3538.80"
        " Mobile Safari/537.36 HeyTapBrowser/40.7.24.6",
        "HeyTap Browser",
        "40.7.24.6",
        "Android",
        "11",
        "OPPO",
        "PEEM00",
    ),
    Case(  # uap-core files realme under Oppo
        "realme-rmx3551",
        "Mozilla/5.0 (Linux; Android 13; RMX3551 Build/TP1A.220905.001) AppleWebKit/537.36"
        " (KHTML, like Gecko) Chrome/112.0.5615.136 Mobile Safari/537.36",
        "Chrome Mobile",
        "112.0.5615.136",
        "Android",
        "13",
        "realme",
        "RMX3551",
    ),
    Case(
        "vivo-v2183a",
        "Mozilla/5.0 (Linux; Android 12; V2183A Build/SP1A.210812.003) AppleWebKit/537.36"
        " (KHTML, like Gecko) Chrome/87.0.4280.141 Mobile Safari/537.36 VivoBrowser/10.8.10.0",
        "VivoBrowser",
        "10.8.10.0",
        "Android",
        "12",
        "vivo",
        "V2183A",
    ),
    Case(
        "vivo-x80-marketing-name",
        "Mozilla/5.0 (Linux; Android 13; vivo X80 Build/TP1A.220624.014) AppleWebKit/537.36"
        " (KHTML, like Gecko) Chrome/108.0.5359.128 Mobile Safari/537.36",
        "Chrome Mobile",
        "108.0.5359.128",
        "Android",
        "13",
        "vivo",
        "X80",
    ),
    # --- Apple and desktop --------------------------------------------------------------
    Case(
        "iphone-safari",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15"
        " (KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1",
        "Mobile Safari",
        "17.1.2",
        "iOS",
        "17.1.2",
        "Apple",
        "iPhone",
    ),
    Case(
        "chrome-windows",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/120.0.0.0 Safari/537.36",
        "Chrome",
        "120.0.0.0",
        "Windows",
        "10",
        None,
        None,
    ),
    Case(
        "edge-windows",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
        "Edge",
        "120.0.2210.91",
        "Windows",
        "10",
        None,
        None,
    ),
    Case(
        "firefox-windows",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
        "Firefox",
        "121.0",
        "Windows",
        "10",
        None,
        None,
    ),
    Case(  # Chrome and Safari freeze macOS at 10_15_7
        "chrome-macos",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/120.0.0.0 Safari/537.36",
        "Chrome",
        "120.0.0.0",
        "Mac OS X",
        "10.15.7",
        "Apple",
        "Mac",
    ),
    Case(
        "edge-macos",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
        "Edge",
        "120.0.2210.91",
        "Mac OS X",
        "10.15.7",
        "Apple",
        "Mac",
    ),
    Case(
        "firefox-macos",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.2; rv:121.0) Gecko/20100101 Firefox/121.0",
        "Firefox",
        "121.0",
        "Mac OS X",
        "14.2",
        "Apple",
        "Mac",
    ),
    Case(
        "safari-macos",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like"
        " Gecko) Version/17.2 Safari/605.1.15",
        "Safari",
        "17.2",
        "Mac OS X",
        "10.15.7",
        "Apple",
        "Mac",
    ),
    Case(  # Chrome's reduced UA: the model is the placeholder "K"
        "chrome-android-reduced-ua",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/120.0.0.0 Mobile Safari/537.36",
        "Chrome Mobile",
        "120.0.0.0",
        "Android",
        "10",
        None,
        None,
    ),
    # --- non-browser clients and crawlers -----------------------------------------------
    Case("curl", "curl/8.4.0", "curl", "8.4.0", None, None, None, None, True),
    Case(
        "python-requests",
        "python-requests/2.31.0",
        "Python Requests",
        "2.31",
        None,
        None,
        None,
        None,
        True,
    ),
    Case("okhttp", "okhttp/4.12.0", "okhttp", "4.12.0", None, None, None, None, True),
    Case(
        "go-http-client",
        "Go-http-client/1.1",
        "Go-http-client",
        "1.1",
        None,
        None,
        None,
        None,
        True,
    ),
    Case(
        "headless-chrome",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " HeadlessChrome/120.0.6099.109 Safari/537.36",
        "HeadlessChrome",
        "120.0.6099",
        "Linux",
        None,
        None,
        None,
        True,
    ),
    Case(
        "googlebot",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Googlebot",
        "2.1",
        None,
        None,
        None,
        None,
        True,
    ),
    Case(
        "googlebot-smartphone",
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML,"
        " like Gecko) Chrome/120.0.6099.129 Mobile Safari/537.36 (compatible; Googlebot/2.1;"
        " +http://www.google.com/bot.html)",
        "Googlebot",
        "2.1",
        "Android",
        "6.0.1",
        None,
        None,
        True,
    ),
    Case(
        "baiduspider",
        "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
        "Baiduspider",
        "2.0",
        None,
        None,
        None,
        None,
        True,
    ),
    Case(  # the crawler token sits past uap-core's 100-character spider window
        "bytespider",
        "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile"
        " Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)",
        "Bytespider",
        None,
        "Android",
        "5.0",
        None,
        None,
        True,
    ),
]


@pytest.fixture(scope="module")
def parser() -> UserAgentParser:
    return UserAgentParser()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_parse(parser: UserAgentParser, case: Case) -> None:
    expected = case._asdict()
    del expected["id"], expected["ua"]
    assert parser.parse(case.ua) == expected


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES)


def test_no_bot_the_user_agents_library_knows_is_missed(parser: UserAgentParser) -> None:
    """user-agents' own (slow, legacy) parse is the reference for is_bot; we only add."""
    import user_agents

    for case in CASES:
        if user_agents.parse(case.ua).is_bot:
            assert parser.parse(case.ua)["is_bot"], case.id
    assert sum(user_agents.parse(c.ua).is_bot for c in CASES) >= 3  # the check has teeth


@pytest.mark.parametrize(
    ("ua", "is_bot"),
    [
        ("Wget/1.21.3", True),
        ("Python-urllib/3.11", True),
        ("python-httpx/0.27.0", True),
        ("Python/3.11 aiohttp/3.9.1", True),
        ("Apache-HttpClient/4.5.14 (Java/17.0.9)", True),
        ("Java/17.0.9", True),
        ("axios/1.6.2", True),
        ("node", True),
        ("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", True),
        ("PostmanRuntime/7.36.0", True),
        (
            "Mozilla/5.0 (compatible; Sogou web spider/4.0; +http://www.sogou.com/docs/help/webmasters.htm#07)",
            True,
        ),
        # An Android app's own HTTP stack is a person using the app, not a crawler.
        ("Dalvik/2.1.0 (Linux; U; Android 13; REA-AN00 Build/HONORREA-AN00)", False),
        ("MyB2BApp/3.2.1 (iPhone; iOS 17.1; Scale/3.00)", False),
        ("Mozilla/5.0 (Linux; Android 12; Nodeus X1) AppleWebKit/537.36", False),
    ],
)
def test_is_bot_for_other_clients(parser: UserAgentParser, ua: str, is_bot: bool) -> None:
    assert parser.parse(ua)["is_bot"] is is_bot


def test_dalvik_app_still_gets_its_device(parser: UserAgentParser) -> None:
    result = parser.parse("Dalvik/2.1.0 (Linux; U; Android 13; REA-AN00 Build/HONORREA-AN00)")
    assert (result["os"], result["device_brand"], result["device_model"]) == (
        "Android",
        "Honor",
        "REA-AN00",
    )


@pytest.mark.parametrize(
    "ua",
    ["", "   ", "\t\n"],
    ids=["empty", "spaces", "whitespace"],
)
def test_empty_ua_is_a_bot_with_nothing_known(parser: UserAgentParser, ua: str) -> None:
    assert parser.parse(ua) == dict.fromkeys(KEYS - {"is_bot"}) | {"is_bot": True}


@pytest.mark.parametrize(
    "ua",
    [
        "\x00\x01\xff",
        "((((((((",
        "\ud800 lone surrogate",
        "中文用户代理",
        "Mozilla/5.0 (" * 2000,
        "x" * 100_000,
        None,
        12345,
        b"curl/8.4.0",
    ],
    ids=["control", "parens", "surrogate", "cjk", "nested", "huge", "none", "int", "bytes"],
)
def test_garbage_never_raises(parser: UserAgentParser, ua: Any) -> None:
    result = parser.parse(ua)
    assert set(result) == KEYS
    assert isinstance(result["is_bot"], bool)
    assert all(v is None or isinstance(v, str) for k, v in result.items() if k != "is_bot")


def test_only_the_first_512_chars_are_parsed(parser: UserAgentParser) -> None:
    assert MAX_UA_LENGTH == 512
    head = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) " + "x" * 600
    assert parser.parse(head + " MicroMessenger/8.0.1")["browser"] is None
    # The cap also keys the cache: differences past it cannot grow it.
    assert parser.parse(head + " curl/1") == parser.parse(head + " Firefox/121.0")


def test_results_are_copies(parser: UserAgentParser) -> None:
    ua = CASES[0].ua
    first = parser.parse(ua)
    first["browser"] = "tampered"
    first.clear()
    assert parser.parse(ua)["browser"] == "WeChat"


def test_cache_is_bounded() -> None:
    small = UserAgentParser(cache_size=16)
    for i in range(500):
        assert small.parse(f"curl/{i}.0")["browser_version"] == f"{i}.0"
    cache: Any = small._cache  # S3Fifo: small + main queues hold the live entries
    assert len(cache.small) + len(cache.main) <= 16


def test_tiny_cache_sizes_work() -> None:
    for size in (0, 1, 2):
        p = UserAgentParser(cache_size=size)
        for i in range(50):
            assert p.parse(f"okhttp/{i}.1")["is_bot"] is True


def test_concurrent_parsing_matches_serial(parser: UserAgentParser) -> None:
    fresh = UserAgentParser(cache_size=32)  # small: threads evict while others read
    expected = {c.ua: parser.parse(c.ua) for c in CASES}
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(300):
                case = CASES[(i + offset) % len(CASES)]
                assert fresh.parse(case.ua) == expected[case.ua], case.id
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n * 7,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_wechat_per_user_id_does_not_defeat_the_cache() -> None:
    parser = UserAgentParser(cache_size=64)
    base = (
        "Mozilla/5.0 (Linux; Android 12; 2201123C Build/SKQ1.211006.001; wv) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Version/4.0 Chrome/107.0.5304.141 Mobile Safari/537.36 XWEB/5023 "
        "MMWEBSDK/20230504 MMWEBID/{} MicroMessenger/8.0.37.2380(0x2800253D) WeChat/arm64 "
        "Weixin NetType/WIFI Language/zh_CN ABI/arm64"
    )
    first = parser.parse(base.format(1234))
    assert first["browser"] == "WeChat" and first["device_brand"] == "Xiaomi"
    for n in range(200):
        assert parser.parse(base.format(n)) == first
    assert len(parser._cache.index) == 1  # type: ignore[attr-defined]
