"""User-agent enrichment: browser, OS, device and bot flag for one UA string.

Design choices, and why:

* Parsing runs on the native ua-parser-rs extractors over the uap-core rules (what
  ``ua_parser.regex.Resolver`` wraps). ``user_agents.parse()``, which the design names,
  calls ua-parser's legacy pure-Python ``user_agent_parser.Parse`` (~1,000 Python regexes
  per string, milliseconds per first-seen UA), and even using ``user_agents.UserAgent`` as a
  wrapper around the native result cost ~10 us per UA (its version-tuple helpers) out of a
  50 us budget. The one piece of user-agents logic the output needs is its bot rule,
  ``is_bot == (device.family == "Spider")``; it is applied to the native result here, and
  the tests check that every UA ``user_agents.parse`` calls a bot is a bot here too. So
  user-agents is not imported at run time.
* The extractors are called directly rather than through ``Resolver.__call__``: building
  its ``PartialResult``/dataclasses per call cost about as much as the regex work.
* uap-core gets several things wrong for the devices this platform's users have, so a
  small supplement is *prepended* to its rules (the first matching rule wins):

  - browser: WeChat (``MicroMessenger``) is "WeChat Browser" on iOS and loses to
    "Chrome Mobile WebView" on Android; WeCom (``wxwork``) also carries MicroMessenger and
    must not count as WeChat; a bare HarmonyOS NEXT ArkWeb webview parses as Chrome.
  - OS: HarmonyOS NEXT says ``OpenHarmony 5.0`` (uap-core: no OS, or "Android 10" from a
    compat token); HarmonyOS 2-4 in Android-compat mode says ``Android 10; HarmonyOS``.
    The version is the OpenHarmony/HarmonyOS token's; compat UAs carry none (None).
  - device: Honor (independent of Huawei since 2020) comes out as brand Huawei; bare
    Huawei/Honor codes without ``Build/HUAWEI`` ("YAL-AL10", HarmonyOS compat UAs),
    Xiaomi model numbers ("2201123C", "M2012K11AC"), "Xiaomi 13", vivo "V2183A" and iQOO
    models come out unbranded; realme "RMX3551" is filed under Oppo; Bytespider is not
    seen as a crawler (uap-core's catch-all spider rule reads only the first 100 chars).

  After parsing, brands are normalised ("XiaoMi" -> "Xiaomi", "Oppo" -> "OPPO"), the
  ``HuaweiBrowser`` token that uap-core reads as device model "Browser" is dropped, and a
  table of Honor model-code prefixes re-brands Huawei-looking codes: pre-2020 Honor phones
  send ``Build/HUAWEIYAL-AL10`` and compat UAs carry no brand token at all.
* ``is_bot`` is user-agents' rule, or a browser-automation family (HeadlessChrome...), or
  a non-browser HTTP client named at the start of the UA (curl, python-requests, okhttp,
  Go-http-client...). An empty UA is a bot: browsers always send one. Unrecognised
  strings are not: apps with home-made UAs are still people.
* Results are built once per distinct (length-capped) UA and kept in ua-parser's S3-FIFO
  cache: WeChat's per-user ``MMWEBID/<n>`` token is removed from the key first, and S3-FIFO
  keeps the remaining one-hit wonders from flushing the popular ones the way an LRU would. Reads are
  lock-free, writes take the cache's lock; the native extractors are safe to share.
"""

from __future__ import annotations

import re
from operator import attrgetter
from typing import Literal, Protocol

__all__ = ["UserAgentParser"]

UAResult = dict[str, str | bool | None]

MAX_UA_LENGTH = 512
_MMWEBID = re.compile(r"\s*MMWEBID/\d+")

# (regex, family, major, minor, patch, patch_minor); None versions mean groups 2..5.
_UA_RULES: tuple[tuple[str, str | None, None, None, None, None], ...] = (
    (r"(wxwork)/(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?", "WeCom", None, None, None, None),
    (r"(MicroMessenger)/(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?", "WeChat", None, None, None, None),
    # Only when nothing but "Mobile" follows: app/browser tokens after it are matched by
    # the regular rules (HuaweiBrowser, WeChat...).
    (
        r"(ArkWeb)/(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?(?: Mobile)?\s*$",
        "ArkWeb",
        None,
        None,
        None,
        None,
    ),
)

# (regex, family, major, minor, patch, patch_minor); "$n" refers to a capture group.
_OS_RULES: tuple[tuple[str, str, str | None, str | None, str | None, None], ...] = (
    (
        r"(?:OpenHarmony|HarmonyOS)[ /](\d+)(?:\.(\d+))?(?:\.(\d+))?",
        "HarmonyOS",
        "$1",
        "$2",
        "$3",
        None,
    ),
    (r"; ?HarmonyOS[;)]", "HarmonyOS", None, None, None, None),
)

_MODEL_END = r"(?: Build|;|\))"
# (regex, flag, family, brand, model)
_DEVICE_RULES: tuple[tuple[str, Literal["i"] | None, str, str, str], ...] = (
    # uap-core's generic spider rule only looks at the first 100 chars.
    (
        r"(Bytespider|Baiduspider|YisouSpider|360Spider|Sogou web spider|PetalBot|Googlebot"
        r"|bingbot|Applebot|YandexBot|GPTBot)",
        "i",
        "Spider",
        "Spider",
        "Desktop",
    ),
    (
        r"; *(?:HONOR |Honor )?([^;/]{1,100}?) Build/(?:HONOR|Honor)",
        None,
        "Honor $1",
        "Honor",
        "$1",
    ),
    (r"; *(?:HONOR|Honor) ([^;/)]{1,40}?)" + _MODEL_END, None, "Honor $1", "Honor", "$1"),
    # Huawei/Honor model codes: 3-4 letters, dash, market suffix ("ELS-AN00", "YAL-L21").
    (
        r"; *([A-Z]{3}[A-Z0-9]?-(?:AN|AL|TN|TL|CL|DL|NX|LX|L|N)\d{1,2}[A-Z]{0,2})" + _MODEL_END,
        None,
        "Huawei $1",
        "Huawei",
        "$1",
    ),
    # Xiaomi/Redmi/POCO model numbers: "M" + YYMM + code (2019-22), or YYMM + code +
    # region letter (2022+): "M2012K11AC", "2201123C", "22081212C", "23013RK75C".
    (
        r"; *(M(?:19|2[0-2])(?:0[1-9]|1[0-2])[A-Z]\d{1,2}[A-Z]{1,3}"
        r"|(?:19|2\d)(?:0[1-9]|1[0-2])[0-9A-Z]{2,6}[A-Z])" + _MODEL_END,
        None,
        "Xiaomi $1",
        "Xiaomi",
        "$1",
    ),
    (r"; *Xiaomi ([^;/)]{1,40}?)" + _MODEL_END, None, "Xiaomi $1", "Xiaomi", "$1"),
    (r"; *((?:POCO|Redmi) [^;/)]{1,40}?)" + _MODEL_END, None, "Xiaomi $1", "Xiaomi", "$1"),
    # realme model numbers; uap-core files them under Oppo.
    (r"; *(RMX\d{4})" + _MODEL_END, None, "realme $1", "realme", "$1"),
    # vivo (and its iQOO line) model numbers: "V2183A", "V2049A".
    (r"; *(V[12]\d{3}[A-Z]{1,2}|iQOO [^;/)]{1,40}?)" + _MODEL_END, None, "vivo $1", "vivo", "$1"),
)

# uap-core brand spellings -> the brand's own spelling.
_BRANDS = {"XiaoMi": "Xiaomi", "Oppo": "OPPO", "Vivo": "vivo", "HONOR": "Honor"}

# Honor model-code prefixes (the part before "-"). Huawei and Honor share the code
# scheme, so without a brand token only the prefix tells them apart. Post-2020 models,
# plus pre-split Honor phones that still say Build/HUAWEI. Unlisted codes stay Huawei.
_HONOR_CODE_PREFIXES = frozenset(
    {
        # 2020+ (MagicOS / MagicUI)
        "ADT",
        "AGM3",
        "AGT",
        "ALA",
        "ALI",
        "ALP",
        "ANY",
        "BRT",
        "BVL",
        "CHL",
        "CMA",
        "DIO",
        "ELI",
        "ELP",
        "ELZ",
        "FNE",
        "FRI",
        "GIA",
        "HEY",
        "HJC",
        "HPB",
        "JLH",
        "KJR",
        "KKG",
        "KOB2",
        "KOZ",
        "KRJ2",
        "LGE",
        "LSA",
        "MAA",
        "MGI",
        "NEW",
        "NTH",
        "NTN",
        "NTX",
        "NZA",
        "PGT",
        "REA",
        "REP",
        "RKY",
        "RMO",
        "RNA",
        "SDY",
        "TFY",
        "TNA",
        "VER",
        "VNE",
        "YOK",
        "YOR",
        # pre-2020 Honor-branded phones
        "BKL",
        "BMH",
        "BND",
        "COL",
        "DUK",
        "EBG",
        "HLK",
        "JSN",
        "KSA",
        "LLD",
        "OXF",
        "PCT",
        "RVL",
        "STF",
        "TEL",
        "TNNH",
        "YAL",
    }
)
_MODEL_CODE = re.compile(r"([A-Z]{3}[A-Z0-9]?)-[A-Z]{1,2}\d")

# Non-browser HTTP clients, matched at the start of the UA (where they put their name).
_HTTP_CLIENT = re.compile(
    r"(?:curl|wget|python-|python/|aiohttp|httpx|okhttp|go-http-client|java/|apache-httpclient"
    r"|axios|node-fetch|node(?:/|$)|undici|got |libwww-perl|lwp-|httpie|postmanruntime|insomnia"
    r"|scrapy|guzzlehttp|ruby|faraday|dart/|deno/|bun/|reqwest|wordpress|php/)",
    re.IGNORECASE,
)
_EMPTY: UAResult = dict.fromkeys(
    ("browser", "browser_version", "os", "os_version", "device_brand", "device_model"),
) | {"is_bot": False}

FIELDS = frozenset(_EMPTY)  # what a parse gives: the names a catalogue field may derive

# user_agents.parsers.UserAgent.is_bot is exactly `device.family == "Spider"`.
_USER_AGENTS_BOT_FAMILY = "Spider"
# Browser automation that uap-core names as a browser family.
_AUTOMATION_FAMILIES = frozenset({"HeadlessChrome", "PhantomJS", "SlimerJS"})


class _Cache(Protocol):
    def __getitem__(self, key: str) -> UAResult | None: ...
    def __setitem__(self, key: str, value: UAResult) -> None: ...


def _version(*parts: str | None) -> str | None:
    """Join the version components that exist: "8.0.33.2320", "16.5", None."""
    return ".".join(p for p in parts if p is not None) or None


class UserAgentParser:
    """Thread-safe, cached UA -> enrichment dict; build one per process and share it."""

    def __init__(self, cache_size: int = 10_000) -> None:
        import ua_parser
        import ua_parser_rs

        # Same construction as ua_parser.regex.Resolver, with the supplement in front;
        # calling the extractors directly skips Resolver's per-call dataclass building,
        # which costs about as much as the regex work itself.
        ua_rules, os_rules, device_rules = ua_parser.load_lazy_builtins()
        fields = attrgetter("regex", "family", "major", "minor", "patch", "patch_minor")
        self._ua = ua_parser_rs.UserAgentExtractor([*_UA_RULES, *map(fields, ua_rules)])
        self._os = ua_parser_rs.OSExtractor([*_OS_RULES, *map(fields, os_rules)])
        self._device = ua_parser_rs.DeviceExtractor(
            [
                *_DEVICE_RULES,
                *map(attrgetter("regex", "regex_flag", "family", "brand", "model"), device_rules),
            ]
        )
        # S3Fifo needs room for its small and main queues (maxsize=1 crashes on eviction).
        self._cache: _Cache = ua_parser.Cache(max(cache_size, 16))  # type: ignore[assignment]

    def parse(self, ua: str) -> UAResult:
        """Return browser/OS/device/bot for ``ua``; never raises, unknowns are None."""
        if not isinstance(ua, str):
            ua = ""
        ua = ua[:MAX_UA_LENGTH]
        if "MMWEBID/" in ua:  # WeChat's per-user id: one cache entry per user otherwise
            ua = _MMWEBID.sub("", ua)
        hit = self._cache[ua]
        if hit is None:
            hit = self._build(ua)
            self._cache[ua] = hit
        return dict(hit)  # a copy: callers may mutate their event dicts

    def _build(self, ua: str) -> UAResult:
        if not ua.strip():
            return {**_EMPTY, "is_bot": True}
        try:
            agent, os_, dev = self._ua.extract(ua), self._os.extract(ua), self._device.extract(ua)
        except UnicodeEncodeError:  # lone surrogates cannot cross into Rust
            return self._build(ua.encode("utf-8", "replace").decode("utf-8"))

        result = dict(_EMPTY)
        if agent and agent.family != "Other":
            result["browser"] = agent.family
            result["browser_version"] = _version(
                agent.major, agent.minor, agent.patch, agent.patch_minor
            )
        if os_ and os_.family != "Other":
            result["os"] = os_.family
            result["os_version"] = _version(os_.major, os_.minor, os_.patch, os_.patch_minor)
        if dev and dev.family != "Other":
            result["device_brand"], result["device_model"] = _device(dev.brand, dev.model)
        result["is_bot"] = bool(
            (dev and dev.family == _USER_AGENTS_BOT_FAMILY)
            or (agent and agent.family in _AUTOMATION_FAMILIES)
            or _HTTP_CLIENT.match(ua)
        )
        return result


def _device(brand: str | None, model: str | None) -> tuple[str | None, str | None]:
    """Normalise uap-core's brand/model pair; placeholders become None."""
    if brand is None or brand == "Spider" or brand.startswith("Generic"):
        # Catch-all rules: brand unknown, and "model" is a placeholder ("Smartphone"),
        # Chrome's frozen "K", or the raw token, which is worth keeping.
        if brand in (None, "Spider", "Generic") or model in (None, "K"):
            return None, None
        return None, model
    brand = _BRANDS.get(brand, brand)
    if brand == "Huawei" and model == "Browser":  # the HuaweiBrowser token, not a phone
        return None, None
    if brand == "Huawei" and model:
        if model.startswith(("Honor ", "HONOR ")):
            return "Honor", model[6:]
        code = _MODEL_CODE.match(model)
        if code and code.group(1) in _HONOR_CODE_PREFIXES:
            return "Honor", model
    return brand, model
