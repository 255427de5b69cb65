"""The accounts API (scope ``accounts``): links of subjects to accounts and the accounts'
coarse traits, kept as keyed hashes, shown to the person, gone with unlinking and erasure."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import quote

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from ..conftest import KEYS, snapshot
from ..helpers import K, app_subject, grant

pytestmark = pytest.mark.stores

ACCOUNT = "buyer-1001"


@pytest.fixture
def auth(app: Flask) -> dict[str, str]:
    key = app.extensions["gateway"].apikeys.create("platform backend", ["accounts"])
    return {"Authorization": f"Bearer {key}"}


def _link(client: FlaskClient, auth: dict[str, str], subject: str, account: str = ACCOUNT) -> Any:
    resp = client.post(f"/v1/accounts/{account}/subjects", json={"subject": subject}, headers=auth)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def _traits(client: FlaskClient, auth: dict[str, str], body: Any, account: str = ACCOUNT) -> Any:
    return client.put(f"/v1/accounts/{account}/traits", json=body, headers=auth)


def test_a_subject_is_linked_by_id_or_token_and_the_account_is_never_stored(
    client: FlaskClient, auth: dict[str, str], r: redis.Redis
) -> None:
    sid, token = app_subject(client, advertising=True)
    assert _link(client, auth, sid) == {"account": ACCOUNT, "subject": sid, "linked": True}
    other, other_token = app_subject(client, advertising=True)
    assert _link(client, auth, other_token)["subject"] == other  # a signed token works too
    resp = _traits(client, auth, {"company_size": "20-99", "province": "广东"})
    assert resp.status_code == 200
    assert resp.get_json()["traits"] == {"company_size": "20-99", "province": "广东省"}
    everything = repr(snapshot(r))
    assert ACCOUNT not in everything  # only its keyed hash, under the newest key:
    keyed = hmac.new(KEYS[0].encode(), b"gateway.account:" + ACCOUNT.encode(), hashlib.sha256)
    assert r.zscore(f"acct:{{{keyed.hexdigest()}}}:subjects", sid) is not None
    for sid_ in (sid, other):
        assert 0 < r.pttl(K.subject(sid_, "account")) <= 180 * 86_400_000
    held = client.get("/v1/subject", headers={"X-Subject": token}).get_json()["held"]
    assert held["account"] == {
        "linked": True,
        "traits": {"company_size": "20-99", "province": "广东省"},
    }


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"company_name": "深圳某某五金有限公司"}, "company_name"),
        ({"licence": "91440300MA5XXXXX"}, "licence"),
        ({"company_size": "250"}, "company_size"),
        ({"province": "Guangdong"}, "province"),
        ({"industry": "Acme"}, "industry"),
        ({"industry": 3}, "industry"),
        ({}, "traits"),
    ],
)
def test_anything_but_a_catalogue_trait_is_refused_naming_it(
    client: FlaskClient, auth: dict[str, str], r: redis.Redis, body: Any, named: str
) -> None:
    before = snapshot(r)
    resp = _traits(client, auth, body)
    assert resp.status_code == 400
    assert named in resp.get_json()["error"]["fields"]
    assert snapshot(r) == before


def test_unlinking_the_last_subject_takes_the_traits_and_erasure_unlinks(
    client: FlaskClient, auth: dict[str, str], r: redis.Redis
) -> None:
    first, _ = app_subject(client, advertising=True)
    _link(client, auth, first)
    grant(client, advertising=True)  # a browser, erased below
    second = client.get_cookie("_vid").value.split(".")[0]  # type: ignore[union-attr]
    _link(client, auth, second)
    assert _traits(client, auth, {"industry": "machinery"}).status_code == 200
    assert client.delete("/v1/subject").status_code == 200  # the browser erases itself
    assert r.get(K.subject(second, "account")) is None
    [members] = [k for k in r.scan_iter("acct:*:subjects")]
    assert r.zscore(members, second) is None and r.zscore(members, first) is not None
    gone = client.delete(f"/v1/accounts/{ACCOUNT}/subjects/{first}", headers=auth).get_json()
    assert gone == {"account": ACCOUNT, "subject": first, "linked": False, "was_linked": True}
    assert not [k for k in r.scan_iter("acct:*")]  # no subject left: no traits either
    again = client.delete(f"/v1/accounts/{ACCOUNT}/subjects/{first}", headers=auth).get_json()
    assert again["was_linked"] is False


def test_linking_elsewhere_moves_the_subject(
    client: FlaskClient, auth: dict[str, str], r: redis.Redis
) -> None:
    sid, token = app_subject(client, advertising=True)
    _link(client, auth, sid, "a-1")
    _traits(client, auth, {"company_size": "1-19"}, "a-1")
    _link(client, auth, sid, "a-2")
    held = client.get("/v1/subject", headers={"X-Subject": token}).get_json()["held"]
    assert held["account"] == {"linked": True, "traits": {}}
    assert len([k for k in r.scan_iter("acct:*")]) == 1  # a-1 held only sid: gone, traits too


def test_traits_survive_a_key_rotation(
    redis_url: str, gateways: Any, client: FlaskClient, auth: dict[str, str]
) -> None:
    sid, _ = app_subject(client, advertising=True)
    _link(client, auth, sid)
    _traits(client, auth, {"company_size": "1000+"})
    rotated = gateways(redis_url, SECRET_KEYS=["a-new-key-" + "x" * 32, *KEYS])
    kept = rotated.extensions["gateway"].accounts.set_traits(ACCOUNT, {"industry": "energy"})
    assert kept == {"company_size": "1000+", "industry": "energy"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", f"/v1/accounts/{ACCOUNT}/subjects", {"subject": "nobody"}),
        ("post", f"/v1/accounts/{ACCOUNT}/subjects", {}),
        ("post", f"/v1/accounts/{ACCOUNT}/subjects", ["x"]),
        ("delete", f"/v1/accounts/{ACCOUNT}/subjects/not-a-subject", None),
        ("put", f"/v1/accounts/{'a' * 300}/traits", {"industry": "energy"}),
    ],
)
def test_bad_requests_are_400(
    client: FlaskClient, auth: dict[str, str], method: str, path: str, body: Any
) -> None:
    assert getattr(client, method)(path, json=body, headers=auth).status_code == 400


def test_the_api_needs_an_accounts_key(app: Flask, client: FlaskClient) -> None:
    other = app.extensions["gateway"].apikeys.create("senders", ["senders"])
    for headers in ({}, {"Authorization": f"Bearer {other}"}):
        resp = client.put(
            f"/v1/accounts/{ACCOUNT}/traits", json={"industry": "energy"}, headers=headers
        )
        assert resp.status_code == 401


def test_the_policy_lists_the_traits_and_their_values(client: FlaskClient) -> None:
    traits = client.get("/v1/policy").get_json()["traits"]
    assert traits["company_size"]["values"] == ["1-19", "20-99", "100-499", "500-999", "1000+"]
    assert (
        len(traits["province"]["values"]) == 34 and "广西壮族自治区" in traits["province"]["values"]
    )
    assert len(traits["industry"]["values"]) == 20


def test_traits_of_nobody_are_not_kept_and_end_with_the_newest_link(
    client: FlaskClient, auth: dict[str, str], r: redis.Redis
) -> None:
    before = snapshot(r)
    resp = _traits(client, auth, {"industry": "energy"}, "nobody-linked")
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "no_linked_subject"
    assert snapshot(r) == before
    sid, _ = app_subject(client, advertising=True)
    _link(client, auth, sid)
    _traits(client, auth, {"industry": "energy"})
    [members] = [k for k in r.scan_iter("acct:*:subjects")]
    traits = members.replace(":subjects", ":traits")
    ends = r.zscore(members, sid)
    assert ends is not None and abs(r.pexpiretime(traits) - ends) <= 1
    assert abs(r.pexpiretime(members) - ends) <= 1  # the set, the traits: the newest link's end


@pytest.mark.parametrize("account", ["..", ".", "a//b", "/a", "a/", "a/../b", "tab\there"])
def test_accounts_a_path_would_rewrite_are_refused(
    client: FlaskClient, auth: dict[str, str], r: redis.Redis, account: str
) -> None:
    before = snapshot(r)
    path = "/v1/accounts/" + quote(account, safe="").replace(".", "%2E") + "/traits"
    resp = client.put(path, json={"industry": "energy"}, headers=auth)
    assert resp.status_code in (400, 404, 308), resp.status_code
    assert resp.status_code != 200 and snapshot(r) == before
