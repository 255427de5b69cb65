"""Event ids (``EVENT_ID_PATTERN``): the whole id is checked, a trailing newline included.

The store joins a request's ids with newlines (``lua/events.lua`` splits them again), so an id
that ends in one would shift every id after it. Python's ``$`` also matches before a final
newline: the check ends in ``\\Z`` (the OpenAPI document keeps ``$``, which ends the text in
ECMA-262).
"""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient

from gateway.core.events import EVENT_ID_CHECK, EVENT_ID_PATTERN

from ..helpers import grant


@pytest.mark.parametrize("bad", ["abcdefgh\n", "abcdefgh1234\n", "\nabcdefgh", "abc\ndefgh"])
def test_an_id_with_a_newline_is_refused(client: FlaskClient, bad: str) -> None:
    grant(client, personalization=True)
    for body in (
        {"event_id": bad, "type": "search", "keyword": "x"},
        {"events": [{"event_id": bad, "type": "search", "keyword": "x"}]},
    ):
        resp = client.post("/v1/events", data=json.dumps(body), content_type="application/json")
        assert resp.status_code == 400, (bad, resp.get_json())
        assert resp.get_json()["error"]["code"] == "validation_failed"
    resp = client.get("/p.gif", query_string={"event_id": bad, "type": "page_view"})
    assert resp.status_code == 400 and resp.headers["X-Error-Code"] == "validation_failed"


def test_good_ids_are_still_taken(client: FlaskClient) -> None:
    grant(client, personalization=True)
    body = {"event_id": "abcdefgh-1234", "type": "search", "keyword": "x"}
    resp = client.post("/v1/events", data=json.dumps(body), content_type="application/json")
    assert resp.status_code == 202 and resp.get_json()["stored"] == 1
    assert EVENT_ID_CHECK.endswith("\\Z") and EVENT_ID_PATTERN.endswith("$")
