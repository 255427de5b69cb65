"""The dashboard's session tokens (``core/sessions.py``): signed, timed, one salt of their
own, the CSRF token bound to the session and to the keys."""

from __future__ import annotations

import time

from gateway.core.sessions import Sessions
from gateway.core.tokens import Tokens

DIGEST = "a" * 64


def test_a_session_reads_back_and_its_csrf_token_is_its_own() -> None:
    sessions = Sessions(["k1"])
    value, session = sessions.issue(DIGEST)
    assert sessions.read(value) == session and session.digest == DIGEST
    token = sessions.csrf(session)
    assert sessions.csrf_ok(session, token)
    _, other = sessions.issue(DIGEST)  # a second sign-in of the same key
    assert other.nonce != session.nonce and not sessions.csrf_ok(other, token)
    for wrong in (None, "", token[:-1], token + "x", "x" * 200):
        assert not sessions.csrf_ok(session, wrong)


def test_keys_rotate_and_other_tokens_never_pass_as_sessions() -> None:
    value, session = Sessions(["old"]).issue(DIGEST)
    rotated = Sessions(["new", "old"])  # newest first, as configured
    assert rotated.read(value) == session
    assert rotated.csrf_ok(session, Sessions(["old"]).csrf(session))
    assert Sessions(["new"]).read(value) is None
    # the gateway's other signed values under the same key: not a session
    tokens = Tokens(["old"])
    assert Sessions(["old"]).read(tokens.sign_subject("0" * 32)) is None


def test_malformed_or_expired_sessions_are_nobody() -> None:
    sessions = Sessions(["k"])
    for value in (None, "", "x" * 600, "not.signed", sessions._cookie.dumps({"d": "short"})):
        assert sessions.read(value) is None
    assert sessions.read(sessions._cookie.dumps(["a", "b"])) is None
    value, _ = Sessions(["k"], max_age_s=0).issue(DIGEST)
    time.sleep(1.1)  # itsdangerous counts whole seconds
    assert Sessions(["k"], max_age_s=0).read(value) is None
    assert sessions.read(value) is not None  # within the default lifetime
