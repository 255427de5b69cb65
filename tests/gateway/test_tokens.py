"""Signed tokens: rotation, tampering, salts."""

from __future__ import annotations

from gateway.core.tokens import Tokens, new_subject_id


def test_subject_ids_are_128_bit_hex() -> None:
    ids = {new_subject_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 32 and i.isalnum() and i == i.lower() for i in ids)


def test_round_trip_and_tampering() -> None:
    t = Tokens(["k1"])
    sid = new_subject_id()
    token = t.sign_subject(sid)
    assert t.verify_subject(token) == sid
    other = new_subject_id()
    assert t.verify_subject(other + token[32:]) is None  # someone else's id, our signature
    # Flip a signature character that carries only data bits: the last base64 character of
    # a 32-byte MAC also holds two padding bits, so changing only those is not tampering.
    i = len(token) - 5
    assert t.verify_subject(token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]) is None
    assert t.verify_subject(sid) is None  # unsigned
    assert t.verify_subject("") is None and t.verify_subject(None) is None
    assert t.verify_subject("x" * 5000) is None


def test_key_rotation_newest_first() -> None:
    old = Tokens(["old"])
    rotated = Tokens(["new", "old"])
    sid = new_subject_id()
    assert rotated.verify_subject(old.sign_subject(sid)) == sid  # old cookies still verify
    assert old.verify_subject(rotated.sign_subject(sid)) is None  # new ones use the new key
    assert Tokens(["new"]).verify_subject(old.sign_subject(sid)) is None  # retired key


def test_salts_separate_token_kinds() -> None:
    t = Tokens(["k"])
    consent = t.sign_consent("v1", ["personalization"], "ab" * 8)
    assert t.verify_subject(consent) is None
    assert t.read_consent(consent) == {"v": "v1", "p": ["personalization"], "h": "ab" * 8}
    assert t.read_consent(t.sign_subject(new_subject_id())) is None
    assert t.read_consent(consent + "x") is None


def test_non_hex_payload_is_refused_even_when_signed() -> None:
    t = Tokens(["k"])
    assert t.verify_subject(t._subject.sign("../../etc").decode()) is None
