"""Event decoding (gateway/events.py): msgspec's refusals explained as every JSON endpoint does."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from ..helpers import app_subject, grant

pytestmark = pytest.mark.stores  # run on the embedded Valkey, Redis 7.0 and a cluster

SURROGATE = b'{"event_id":"abcdefgh1234","type":"search","keyword":"\\ud800"}'


@pytest.mark.parametrize(
    ("body", "code", "names"),
    [
        (SURROGATE, "invalid_string", "$.keyword"),
        (b'{"events":[' + SURROGATE + b"]}", "invalid_string", "$.events[0].keyword"),
        (b'{"event_id":"abcdefgh1234",', "invalid_json", "line 1 column 28"),
    ],
)
def test_events_refusals_name_what_is_wrong(
    client: FlaskClient, body: bytes, code: str, names: str
) -> None:
    grant(client, personalization=True)
    resp = client.post("/v1/events", data=body, content_type="application/json")
    assert resp.status_code == 400
    error = resp.get_json()["error"]
    assert error["code"] == code and names in str(error), error


def test_a_lone_surrogate_in_a_batch_is_named(client: FlaskClient) -> None:
    """msgspec refuses the whole body (even an event it would only skip): the answer says why
    and where, instead of msgspec's "truncated"."""
    _, token = app_subject(client, personalization=True)
    good = b'{"event_id":"abcdefgh0000","type":"screen_view","screen":"home"}'
    body = b'{"events":[' + good + b"," + SURROGATE + b"]}"
    resp = client.post(
        "/v1/batch", data=body, content_type="application/json", headers={"X-Subject": token}
    )
    assert resp.status_code == 400
    error = resp.get_json()["error"]
    assert error["code"] == "invalid_string" and "$.events[1].keyword" in error["fields"]


def test_an_event_the_gateway_makes_is_refused_from_a_client(client: FlaskClient) -> None:
    """``email_open`` is made by the gateway from a signed link (catalogue ``made_by``): a
    site or APP posting one would forge an open, so it is an unknown type to them, and nothing
    is stored of it."""
    _, token = app_subject(client, advertising=True, personalization=True)
    forged = b'{"event_id":"abcdefgh0001","type":"email_open","campaign":"spring"}'
    resp = client.post("/v1/events", data=forged, content_type="application/json")
    assert resp.status_code == 400
    assert resp.get_json()["error"]["fields"] == {"$.type": "Invalid value 'email_open'"}
    resp = client.post(
        "/v1/batch",
        data=b'{"events":[' + forged + b"]}",
        content_type="application/json",
        headers={"X-Subject": token},
    )
    assert resp.status_code == 400
    error = resp.get_json()["error"]
    assert error["code"] == "no_valid_event"
    refused = error["fields"]["$.events[0]"]["fields"]
    assert refused == {"$.events[0].type": "Invalid value 'email_open'"}
