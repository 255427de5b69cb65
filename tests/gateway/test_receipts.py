"""Receipts: a JWS (EdDSA, Ed25519) anyone verifies with the published keys, offline."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwcrypto import jwk, jws

from gateway.core.ledger import build_entry
from gateway.core.receipts import ReceiptKeyError, Receipts, canonical, development_key


def pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


ENTRY = build_entry(
    seq=1,
    receipt_id="a" * 32,
    subject="b" * 32,
    time="2026-12-02T03:33:18.756+00:00",
    policy_version="2026-11-01",
    purposes={"necessary": True, "personalization": True},
    source="banner",
    action="consent",
    prev="",
)


def issued(receipts: Receipts, entry: dict[str, str] = ENTRY) -> dict[str, object]:
    """The receipt of an entry written as the gateway writes it: signed once, at write."""
    return receipts.issue({**entry, "sig": receipts.sign(entry)})


def test_a_receipt_verifies_with_another_library_and_the_jwks() -> None:
    key = Ed25519PrivateKey.generate()
    receipts = Receipts([pem(key)])
    receipt = issued(receipts)
    keyset = jwk.JWKSet.from_json(json.dumps(receipts.jwks()))
    token = jws.JWS()
    token.deserialize(receipt["jws"])
    header = token.jose_header
    assert header["alg"] == "EdDSA" and header["kid"] == receipts.kid
    token.verify(keyset.get_key(header["kid"]))  # raises if the signature is wrong
    payload = json.loads(token.payload)
    assert payload == {k: v for k, v in receipt.items() if k != "jws"}
    assert payload["hash"] == ENTRY["hash"] and payload["entry_id"] == "1"
    # the kid is the RFC 7638 thumbprint, as another library computes it
    assert jwk.JWK.from_pyca(key.public_key()).thumbprint() == receipts.kid
    # and PyJWT, with the key from the published set
    found = jwt.PyJWKSet.from_dict(receipts.jwks())[receipts.kid]
    assert jwt.api_jws.decode(receipt["jws"], found.key, algorithms=["EdDSA"]) == canonical(receipt)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("time", "2020-01-01T00:00:00.000+00:00"),
        ("policy_version", "2018-02-04"),
        ("source", "api"),
        ("action", "withdraw"),
        ("purposes", {"necessary": True, "personalization": False}),
        ("entry_id", "2"),
        ("subject", "c" * 32),
    ],
)
def test_any_altered_field_fails_both_checks(field: str, value: object) -> None:
    receipts = Receipts([pem(Ed25519PrivateKey.generate())])
    receipt = issued(receipts)
    genuine = receipts.check(receipt)
    assert genuine.signature and genuine.hash and genuine.entry == ENTRY
    altered = receipts.check(dict(receipt, **{field: value}))
    assert not altered.signature and not altered.hash


def test_rotation_keeps_old_receipts_verifiable() -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    before = issued(Receipts([pem(old)]))
    after = Receipts([pem(new), public_pem(old)])  # the old key's public half is enough
    assert after.check(before).signature
    assert [k["kid"] for k in after.jwks()["keys"]] == [after.kid, Receipts([pem(old)]).kid]
    assert jwt.get_unverified_header(issued(after)["jws"])["kid"] == after.kid
    assert not Receipts([pem(new)]).check(before).signature  # an unknown kid


def test_keys_from_files_and_bad_keys(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "k.pem"
    path.write_text(pem(key))
    assert Receipts([str(path)]).kid == Receipts([pem(key)]).kid
    with pytest.raises(ReceiptKeyError, match="private key"):
        Receipts([public_pem(key)])
    with pytest.raises(ReceiptKeyError, match="not a PEM key"):
        Receipts(["-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----"])
    with pytest.raises(ReceiptKeyError, match="receipt key file"):
        Receipts([str(tmp_path / "missing.pem")])


def test_the_development_key_is_made_once(tmp_path: Path) -> None:
    first = development_key(tmp_path)
    assert development_key(tmp_path) == first
    assert (tmp_path / "receipt_key.pem").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("token", [None, 3, "", "a.b.c", "x" * 10_000, "\ud800.e30.x"])
def test_junk_is_no_signature(token: object) -> None:
    receipts = Receipts([pem(Ed25519PrivateKey.generate())])
    assert receipts.payload(token) is None


def test_signed_at_write_an_entry_altered_later_does_not_verify() -> None:
    """Someone who can edit the store cannot get a genuine receipt for an entry they made up:
    the signature was made when the entry was written, and reading never signs."""
    receipts = Receipts([pem(Ed25519PrivateKey.generate())])
    stored = {**ENTRY, "sig": receipts.sign(ENTRY)}
    assert receipts.check(receipts.issue(stored)).signature
    forged = dict(stored, source="api", purposes='{"advertising":true,"necessary":true}')
    receipt = receipts.issue(forged)
    assert not receipts.check(receipt).signature
    assert "jws" not in receipts.issue(ENTRY)  # an entry stored without its signature
    header, _, signature = stored["sig"].partition("..")
    assert header and signature and len(stored["sig"]) < 200


def test_workers_starting_together_agree_on_one_development_key(tmp_path: Path) -> None:
    """Several workers may build the app at once: none may read a half-written key."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        keys = list(pool.map(lambda _: development_key(tmp_path), range(64)))
    assert len(set(keys)) == 1 and "PRIVATE KEY" in keys[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["receipt_key.pem"]  # no temp left


def test_crafted_tokens_are_no_signature() -> None:
    """alg none, HMAC keyed with the public key, a deep header, parts missing or swapped."""
    from .test_fuzz import crafted_jws

    receipts = Receipts([pem(Ed25519PrivateKey.generate())])
    receipt = issued(receipts)
    assert receipts.check(receipt).signature
    for token in crafted_jws(str(receipt["jws"])):
        assert receipts.payload(token) is None, token[:60]
        assert not receipts.check(dict(receipt, jws=token)).signature
