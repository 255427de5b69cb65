"""sdk_py's server clients (senders, saved logins, accounts) against the real gateway over HTTP."""

from __future__ import annotations

import pytest
from flask import Flask

from sdk_py import (
    AccountsClient,
    GatewayRefused,
    GatewayUnavailable,
    SavedLoginClient,
    SavedLoginReused,
    SendersClient,
    TelemetryClient,
)


def _app_subject(url: str, **purposes: bool) -> tuple[str, TelemetryClient]:
    """A subject made and consented by the APP's own SDK, as in production."""
    client = TelemetryClient(url)
    client.grant(**purposes)
    token = client.subject()
    return token.split(".")[0], client


def test_a_sender_checks_before_contacting_and_reads_suppressions(app: Flask, url: str) -> None:
    key = app.extensions["gateway"].apikeys.create("mailer", ["senders"])
    sid, app_client = _app_subject(url, advertising=True)
    with SendersClient(url, key) as senders:
        assert senders.may_contact(sid, "email") is True
        links = senders.links(sid, "email", campaign="winter")
        assert links["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert list(senders.suppressions("email")) == []
        app_client.withdraw("advertising")
        assert senders.may_contact(sid, "email") is False
        [(who, at_ms)] = list(senders.suppressions("email"))
        assert who == sid and at_ms > 0
        assert list(senders.suppressions("email", since_ms=at_ms + 1)) == []
        sms = senders.links(sid, "sms", phone="+8613800138000")
        assert len(sms["code"]) == 10
        with pytest.raises(GatewayRefused) as bad:
            senders.contact("nope", "email")
        assert bad.value.status == 400
    app_client.shutdown()
    with SendersClient(url, "gwk_wrong") as wrong, pytest.raises(GatewayRefused) as refused:
        list(wrong.suppressions("email"))
    assert refused.value.code == "invalid_api_key"


def test_the_backend_saves_resumes_and_revokes_logins(app: Flask, url: str) -> None:
    key = app.extensions["gateway"].apikeys.create("backend", ["saved_login"])
    sid, app_client = _app_subject(url, saved_login=True)
    with SavedLoginClient(url, key) as backend:
        saved = backend.issue_saved_login("buyer-7", sid, lifetime_s=3600)
        assert saved.account == "buyer-7" and saved.max_age_s <= 3600
        assert "HttpOnly" in saved.set_cookie
        resumed = backend.resume_saved_login(saved.token)
        assert resumed.account == "buyer-7" and resumed.token != saved.token
        with pytest.raises(SavedLoginReused):
            backend.resume_saved_login(saved.token)  # the old one: all revoked
        with pytest.raises(GatewayRefused) as gone:
            backend.resume_saved_login(resumed.token)
        assert gone.value.code == "invalid_saved_login"
        again = backend.issue_saved_login("buyer-7", sid)
        assert backend.revoke_saved_logins(account="buyer-7") == 1
        with pytest.raises(GatewayRefused):
            backend.resume_saved_login(again.token)
        with pytest.raises(ValueError):
            backend.revoke_saved_logins()
    app_client.shutdown()


def test_a_token_copied_many_resumes_ago_is_still_caught(app: Flask, url: str) -> None:
    key = app.extensions["gateway"].apikeys.create("backend", ["saved_login"])
    sid, app_client = _app_subject(url, saved_login=True)
    with SavedLoginClient(url, key) as backend:
        first = backend.issue_saved_login("buyer-8", sid)
        current = first
        for _ in range(12):
            current = backend.resume_saved_login(current.token)
            assert current.account == "buyer-8" and current.subject == sid
        with pytest.raises(SavedLoginReused) as reused:
            backend.resume_saved_login(first.token)
        assert reused.value.status == 401 and reused.value.fields == {"revoked": "1"}
        with pytest.raises(GatewayRefused):
            backend.resume_saved_login(current.token)
    app_client.shutdown()


def test_an_unreachable_gateway_is_unavailable() -> None:
    backend = SavedLoginClient("http://127.0.0.1:9", "k", timeout=1)
    with backend, pytest.raises(GatewayUnavailable):
        backend.resume_saved_login("a.b")


def test_the_backend_links_accounts_and_sets_their_traits(app: Flask, url: str) -> None:
    key = app.extensions["gateway"].apikeys.create("backend", ["accounts"])
    sid, app_client = _app_subject(url, advertising=True)
    with AccountsClient(url, key) as accounts:
        accounts.link("buyer/7 上海", app_client.subject())  # a token; any account spelling
        kept = accounts.set_traits("buyer/7 上海", {"province": "上海", "company_size": "20-99"})
        assert kept == {"province": "上海市", "company_size": "20-99"}
        assert accounts.set_traits("buyer/7 上海", {"company_size": None}) == {"province": "上海市"}
        with pytest.raises(GatewayRefused) as bad:
            accounts.set_traits("buyer/7 上海", {"company_name": "某某公司"})
        assert bad.value.status == 400 and "company_name" in (bad.value.fields or {})
        assert accounts.unlink("buyer/7 上海", sid) is True
        assert accounts.unlink("buyer/7 上海", sid) is False
    app_client.shutdown()
