"""The dashboard's sessions (``core/sessions.py`` over ``storage/sessions.py``, on the real
stores): a random id kept in the store, a signed cookie naming it, the CSRF token bound to it;
ended at sign-out and by its lifetime, never made from the keys alone."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from gateway.core.sessions import Sessions
from gateway.core.tokens import Tokens
from gateway.storage.client import connect
from gateway.storage.sessions import RedisSessionStore

pytestmark = pytest.mark.stores

DIGEST = "a" * 64


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisSessionStore]:
    client = connect(redis_url)
    yield RedisSessionStore(client)
    client.close()


def test_a_session_reads_back_and_its_csrf_token_is_its_own(store: RedisSessionStore) -> None:
    sessions = Sessions(["k1"], store)
    value, session = sessions.issue(DIGEST)
    assert sessions.read(value) == session and session.digest == DIGEST
    assert session.id not in (DIGEST,) and DIGEST not in value  # the cookie names the session
    token = sessions.csrf(session)
    assert sessions.csrf_ok(session, token)
    _, other = sessions.issue(DIGEST)  # a second sign-in of the same key
    assert other.id != session.id and not sessions.csrf_ok(other, token)
    for wrong in (None, "", token[:-1], token + "x", "x" * 200):
        assert not sessions.csrf_ok(session, wrong)


def test_ending_a_session_ends_it_for_every_copy_of_the_cookie(store: RedisSessionStore) -> None:
    sessions = Sessions(["k1"], store)
    value, session = sessions.issue(DIGEST)
    sessions.end(session)
    assert sessions.read(value) is None


def test_keys_rotate_and_nothing_but_a_stored_session_passes(store: RedisSessionStore) -> None:
    value, session = Sessions(["old"], store).issue(DIGEST)
    rotated = Sessions(["new", "old"], store)  # newest first, as configured
    assert rotated.read(value) == session
    assert rotated.csrf_ok(session, Sessions(["old"], store).csrf(session))
    assert Sessions(["new"], store).read(value) is None
    # the gateway's other signed values under the same key: not a session
    assert Sessions(["old"], store).read(Tokens(["old"]).sign_subject("0" * 32)) is None
    # the keys alone make nothing: a well-signed id the store does not hold is nobody
    forged = Sessions(["old"], store)._cookie.sign("made-up-session-id").decode()
    assert Sessions(["old"], store).read(forged) is None
    for junk in (None, "", "x" * 300, "not.signed"):
        assert rotated.read(junk) is None


def test_a_session_lasts_its_lifetime(store: RedisSessionStore, r: redis.Redis) -> None:
    sessions = Sessions(["k"], store, max_age_s=1)
    value, session = sessions.issue(DIGEST)
    assert 0 < r.pttl(f"mks:{{{session.id}}}") <= 1000
    time.sleep(1.1)
    assert sessions.read(value) is None
