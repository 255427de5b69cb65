"""HTTP to the gateway: gzip, errors as data, a client of its own after fork."""

from __future__ import annotations

import os

import pytest

from sdk_py.errors import GatewayRefused, GatewayUnavailable
from sdk_py.transport import Transport


def test_large_bodies_are_gzipped_and_accepted(url) -> None:
    t = Transport(url, gzip_min_bytes=10)
    token = t.call("POST", "/v1/subjects")["token"]
    reply = t.send("POST", "/v1/batch", token=token, body={"events": [{"type": "x"}] * 50})
    assert reply.status == 400  # decoded after inflation: each event is named
    assert reply.body["error"]["code"] == "no_valid_event"
    t.close()


def test_refusals_carry_status_code_and_fields(url) -> None:
    t = Transport(url)
    with pytest.raises(GatewayRefused) as e:
        t.call(
            "POST",
            "/v1/consent",
            body={"purposes": {"telepathy": True}, "policy_version": "2026-11-01"},
        )
    assert (e.value.status, e.value.code) == (400, "validation_failed")
    assert "telepathy" in str(e.value.fields)
    good = {"policy_version": "2026-11-01", "purposes": {"personalization": True}}
    with pytest.raises(GatewayRefused) as e:
        t.call("POST", "/v1/consent", token="forged", body=good)
    assert (e.value.status, e.value.code) == (401, "invalid_subject")
    t.close()


def test_no_answer_is_unavailable() -> None:
    t = Transport("http://127.0.0.1:9", timeout=0.5)  # nothing listens on port 9
    with pytest.raises(GatewayUnavailable):
        t.call("GET", "/v1/policy")


def test_a_forked_process_opens_its_own_client(url) -> None:
    t = Transport(url)
    t.call("GET", "/healthz")
    parent_client = t._client
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            t.call("GET", "/healthz")
            code = 0 if t._client is not parent_client else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert t._client is parent_client
    t.close()


def test_a_fork_while_another_thread_holds_the_client_lock_does_not_hang_the_child(url) -> None:
    import signal

    t = Transport(url)
    t._lock.acquire()  # as if a thread were building the HTTP client at the fork
    try:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.alarm(10)  # a hang ends the child with SIGALRM
                t.call("GET", "/healthz")
                t.close()
                code = 0
            finally:
                os._exit(code)
    finally:
        t._lock.release()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    t.close()
