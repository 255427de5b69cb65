"""The proofs: ledger history a page at a time, receipts verified as given, the JWKS."""

from __future__ import annotations

import json
from typing import Any

import redis
from flask import Flask
from flask.testing import FlaskClient
from jwcrypto import jwk, jws

from ..helpers import K, grant


def test_history_is_a_verifiable_chain(client: FlaskClient) -> None:
    first = grant(client, personalization=True)["receipt"]
    second = grant(client, advertising=True)["receipt"]
    client.delete("/v1/consent")
    hist = client.get("/v1/consent/history").get_json()
    assert hist["chain"] == {
        "intact": True,
        "problems": [],
        "checked": {"from": 1, "to": 3, "head": True},
    }
    assert hist["length"] == 3 and hist["next_cursor"] is None
    entries = hist["entries"]
    assert [e["action"] for e in entries] == ["consent", "consent", "withdraw"]
    assert [e["entry_id"] for e in entries] == ["1", "2", "3"]
    assert entries[1]["prev"] == first["hash"] and entries[2]["prev"] == second["hash"]
    assert entries[1] == second  # the same receipt, signed again the same way
    check = client.post("/v1/consent/verify", json=second).get_json()
    assert check == {
        "valid": True,
        "checks": {"signature": True, "hash": True, "on_ledger": True, "chain_intact": True},
        "problems": [],
    }


def test_any_altered_field_of_a_receipt_is_refused(client: FlaskClient) -> None:
    receipt = grant(client, personalization=True)["receipt"]
    for field, value in [
        ("time", "2020-01-01T00:00:00.000+00:00"),
        ("policy_version", "2018-02-04"),
        ("source", "api"),
        ("action", "withdraw"),
        ("purposes", {"necessary": True, "personalization": False}),
    ]:
        altered = dict(receipt, **{field: value})
        check = client.post("/v1/consent/verify", json=altered).get_json()
        assert check["valid"] is False, field
        assert check["checks"]["signature"] is False and check["checks"]["hash"] is False, field
    bad = dict(receipt, jws=receipt["jws"][:-4] + "AAAA")
    check = client.post("/v1/consent/verify", json=bad).get_json()
    assert check["checks"] == {
        "signature": False,
        "hash": True,
        "on_ledger": False,
        "chain_intact": None,  # a forged receipt costs the store nothing
    }


def test_an_edited_ledger_fails_verification_and_history(
    client: FlaskClient, r: redis.Redis
) -> None:
    grant(client, personalization=True)
    second = grant(client, advertising=True)["receipt"]
    key = K.ledger(second["subject"])
    entry = json.loads(r.lindex(key, 1))
    r.lset(key, 1, json.dumps(dict(entry, purposes='{"advertising":false,"necessary":true}')))
    check = client.post("/v1/consent/verify", json=second).get_json()
    assert check["valid"] is False and check["checks"]["on_ledger"] is False
    assert check["problems"] == ["entry 2 was altered after it was written"]
    hist = client.get("/v1/consent/history").get_json()
    assert hist["chain"]["intact"] is False


def test_removing_the_newest_entry_is_reported(client: FlaskClient, r: redis.Redis) -> None:
    """A withdrawal deleted from the store: the ledger still chains, the head says otherwise."""
    first = grant(client, personalization=True)["receipt"]
    client.delete("/v1/consent")
    r.rpop(K.ledger(first["subject"]))
    hist = client.get("/v1/consent/history").get_json()
    assert hist["chain"]["intact"] is False
    assert hist["chain"]["problems"] == [
        "entry 2 (the newest) is missing: the ledger holds 1 of the 2 entries its head records"
    ]
    check = client.post("/v1/consent/verify", json=first).get_json()
    assert check["valid"] is False and check["checks"]["on_ledger"] is True
    assert check["checks"]["chain_intact"] is False


def test_history_pages(client: FlaskClient, r: redis.Redis) -> None:
    for i in range(7):
        grant(client, personalization=i % 2 == 0)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = client.get("/v1/consent/history" + query).get_json()
        assert page["chain"]["intact"] is True and page["length"] == 7
        seen += [e["entry_id"] for e in page["entries"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(i) for i in range(1, 8)] and pages == 3
    # a page's first entry is checked against the entry before it
    sid = client.get("/v1/subject").get_json()["subject"]
    entry = json.loads(r.lindex(K.ledger(sid), 2))
    r.lset(K.ledger(sid), 2, json.dumps(dict(entry, hash="0" * 64)))
    page = client.get("/v1/consent/history?limit=3&cursor=3").get_json()
    assert page["chain"]["problems"] == ["entry 4 does not link to the entry before it"]


def test_paging_parameters_are_checked(client: FlaskClient) -> None:
    grant(client, personalization=True)
    for query in ("limit=0", "limit=1001", "limit=x", "limit=-1", "limit=１"):  # noqa: RUF001
        resp = client.get("/v1/consent/history?" + query)
        assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "validation_failed"
    for query in ("cursor=x", "cursor=1.2", "cursor=-1", "cursor=" + "9" * 20):
        resp = client.get("/v1/consent/history?" + query)
        assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_cursor"
    assert client.get("/v1/consent/history?limit=1000").status_code == 200
    far = client.get("/v1/consent/history?cursor=50").get_json()
    assert far["entries"] == [] and far["next_cursor"] is None


def test_verify_refuses_incomplete_receipts(client: FlaskClient) -> None:
    receipt = grant(client, personalization=True)["receipt"]
    del receipt["jws"]
    resp = client.post("/v1/consent/verify", json=receipt)
    assert resp.status_code == 400 and resp.get_json()["error"]["fields"] == {"jws": "required"}
    assert client.post("/v1/consent/verify", json=[1]).status_code == 400


def test_jwks_verifies_a_receipt_offline(client: FlaskClient, app: Flask) -> None:
    receipt = grant(client, personalization=True)["receipt"]
    resp = client.get("/.well-known/jwks.json")
    assert resp.status_code == 200 and "max-age" in resp.headers["Cache-Control"]
    keyset = jwk.JWKSet.from_json(resp.get_data(as_text=True))
    token = jws.JWS()
    token.deserialize(receipt["jws"])
    token.verify(keyset.get_key(token.jose_header["kid"]))
    assert json.loads(token.payload) == {k: v for k, v in receipt.items() if k != "jws"}
    (key,) = resp.get_json()["keys"]
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and "d" not in key
    assert key["kid"] == app.extensions["gateway"].receipts.kid


def test_the_verification_in_the_privacy_docs_works(client: FlaskClient, app: Flask) -> None:
    """docs/privacy.md shows a third party checking a receipt with PyJWT: run that block."""
    from pathlib import Path

    from ..conftest import LiveServer

    text = (Path(__file__).resolve().parents[2] / "docs" / "privacy.md").read_text("utf-8")
    block = text.split("## Verifying a receipt offline", 1)[1].split("```python\n", 1)[1]
    namespace: dict[str, Any] = {}
    exec(block.split("```", 1)[0], namespace)  # the documentation's own code
    receipt = grant(client, personalization=True)["receipt"]
    server = LiveServer(app)
    try:
        url = f"http://127.0.0.1:{server.port}/.well-known/jwks.json"
        assert namespace["verify"](receipt, url) is True
        assert namespace["verify"](dict(receipt, source="api"), url) is False
    finally:
        server.close()


def test_a_rewritten_chain_gets_no_genuine_receipt(client: FlaskClient, r: redis.Redis) -> None:
    """Someone who can write the store rewrites an entry, its hash, the links after it and the
    recorded head consistently (no key needed for any of that): the chain checks pass, but
    receipts are signed when entries are written, so none of the history verifies."""
    from gateway.core.ledger import entry_hash, purposes_text

    grant(client, personalization=True)
    client.delete("/v1/consent")
    sid = client.get("/v1/subject").get_json()["subject"]
    key = K.ledger(sid)
    entries = [json.loads(raw) for raw in r.lrange(key, 0, -1)]
    forged = {"necessary": True, "advertising": True, "precise_location": True}
    entries[0] = dict(entries[0], purposes=purposes_text(forged), time="2020-01-01T00:00:00Z")
    prev = ""
    for i, entry in enumerate(entries):
        entry["prev"] = prev
        entry["hash"] = prev = entry_hash(entry)
        r.lset(key, i, json.dumps(entry))
    r.hset(K.consent(sid), "head", prev)
    hist = client.get("/v1/consent/history").get_json()
    assert hist["chain"]["intact"] is True  # the rewrite is consistent...
    made_up = hist["entries"][0]
    assert made_up["purposes"] == forged
    check = client.post("/v1/consent/verify", json=made_up).get_json()
    assert check["valid"] is False and check["checks"]["signature"] is False  # ...but unsigned
    assert check["checks"]["chain_intact"] is None  # and costs the store nothing more


def test_verify_reads_a_few_entries_whatever_the_ledger_length(
    client: FlaskClient, r: redis.Redis
) -> None:
    receipts = [grant(client, personalization=i % 2 == 0)["receipt"] for i in range(12)]
    r.config_resetstat()
    check = client.post("/v1/consent/verify", json=receipts[5]).get_json()
    assert check["valid"] is True, check
    stats = r.info("commandstats")
    assert stats["cmdstat_lrange"]["calls"] == 1 and "cmdstat_xrange" not in stats
    # an entry next to the receipt's, altered: its place no longer checks out
    sid = receipts[5]["subject"]
    entry = json.loads(r.lindex(K.ledger(sid), 6))
    r.lset(K.ledger(sid), 6, json.dumps(dict(entry, source="api")))
    check = client.post("/v1/consent/verify", json=receipts[5]).get_json()
    assert check["valid"] is False and check["problems"] == [
        "entry 7 was altered after it was written"
    ]
