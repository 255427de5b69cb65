"""``GET /openapi.json``: a valid OpenAPI 3.1 document of every route the application serves,
its bodies' schemas taken from the gateway's own validators and catalogue; the reference page
under ``--dev`` only. Contract fuzzing against it: tests/integration/test_contract.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from gateway.app import create_app
from gateway.web.openapi import SKIPPED_METHODS, Undocumented, document, openapi_path
from gateway.web.openapi.operations import OPERATIONS

from ..conftest import make_config


@pytest.fixture
def app(redis_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = create_app(make_config(redis_url, tmp_path, DEV=True))
    yield application
    for close in application.extensions["gateway"].closers:
        close()


def doc_of(client: FlaskClient) -> dict[str, Any]:
    resp = client.get("/openapi.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    found: dict[str, Any] = resp.get_json()
    return found


def test_the_document_is_valid_openapi_3_1_and_names_every_route(
    app: Flask, client: FlaskClient
) -> None:
    doc = doc_of(client)
    validate(doc)  # openapi-spec-validator: raises on any fault
    assert doc["openapi"] == "3.1.0"
    served = {
        (openapi_path(rule.rule), m.lower())
        for rule in app.url_map.iter_rules()
        for m in (rule.methods or set()) - SKIPPED_METHODS
    }
    listed = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert listed == served | {("/p.gif", "get")}
    for group in (
        "/v1/consent",
        "/v1/events",
        "/v1/batch",
        "/v1/subject",
        "/v1/optout",
        "/v1/senders/links",
        "/v1/saved-login",
        "/v1/accounts/{account}/traits",
        "/v1/audiences/estimate",
        "/healthz",
        "/marketers/api/estimate",
    ):
        assert group in doc["paths"], group
    ids = [o["operationId"] for ops in doc["paths"].values() for o in ops.values()]
    assert len(ids) == len(set(ids))
    # every refusal is the uniform error body, its code one of its status's
    for path, ops in doc["paths"].items():
        for o in ops.values():
            for status, answer in o["responses"].items():
                json_answer = answer.get("content", {}).get("application/json")
                if status.startswith(("4", "5")) and json_answer and path != "/healthz":
                    assert json_answer["schema"] == {"$ref": f"#/components/schemas/Error{status}"}
    schemas = doc["components"]["schemas"]

    def enum(status: int) -> set[str]:
        narrowed = schemas[f"Error{status}"]["allOf"][1]
        return set(narrowed["properties"]["error"]["properties"]["code"]["enum"])

    assert {
        "validation_failed",
        "invalid_json",
        "no_valid_event",
        "too_close_to_earlier_query",
        "separate_consent_required",
        "invalid_cursor",
    } <= enum(400)
    assert {"invalid_api_key", "invalid_subject", "not_signed_in"} <= enum(401)
    assert {"cross_site_refused", "csrf_failed", "saved_login_not_granted"} <= enum(403)
    assert {"payload_too_large", "too_many_events", "inflated_too_large"} <= enum(413)
    assert {"rate_limited", "budget_exhausted"} <= enum(429)
    assert enum(503) == {"service_unavailable", "storage_unavailable"}
    assert "storage_unavailable" not in enum(400)


def test_the_bodies_come_from_the_validators_and_the_catalogue(
    app: Flask, client: FlaskClient
) -> None:
    doc = doc_of(client)
    schemas = doc["components"]["schemas"]
    cat = app.extensions["gateway"].catalogue
    consent = schemas["ConsentRequest"]  # marshmallow, through apispec
    assert set(consent["required"]) == {"policy_version", "purposes"}
    assert consent["properties"]["purposes"]["propertyNames"]["enum"] == sorted(cat.purposes)
    assert consent["properties"]["policy_version"]["enum"] == [v.version for v in cat.versions]
    assert consent["additionalProperties"] is False  # unknown = RAISE
    event_types = {s["$ref"].rsplit("/", 1)[1] for s in schemas["Event"]["anyOf"]}
    assert event_types == {f"{name}_event" for name in cat.client_events}  # msgspec's
    search = schemas["search_event"]
    assert search["properties"]["type"] == {"enum": ["search"]}
    assert "keyword" in search["properties"] and "ip" not in search["properties"]
    assert search["additionalProperties"] is False
    sizes = schemas["TraitsRequest"]["properties"]["company_size"]["anyOf"][0]["enum"]
    assert sizes == list(cat.traits["company_size"].values)
    assert "广东" in schemas["TraitsRequest"]["properties"]["province"]["anyOf"][0]["enum"]
    dims = schemas["AudienceFilters"]["properties"]
    assert set(dims) == {*cat.audiences.dimensions, "active_within_days"}
    assert dims["active_within_days"]["enum"] == list(cat.audiences.windows)
    assert schemas["BatchRequest"] == {"$ref": "#/components/schemas/valid_batch"}
    batch = schemas["valid_batch"]
    assert batch["required"] == ["events"] and batch["additionalProperties"] is False
    assert set(schemas["app_context"]["properties"]) == set(cat.app_context_fields)


def test_a_route_without_a_description_stops_the_build(app: Flask) -> None:
    @app.get("/v1/undocumented")
    def undocumented() -> str:
        return ""

    with pytest.raises(Undocumented) as caught:
        document(app, app.extensions["gateway"])
    assert caught.value.routes == ["GET /v1/undocumented (undocumented)"]


def test_a_description_of_no_route_stops_the_build(app: Flask) -> None:
    OPERATIONS["gone.endpoint"] = {"get": {"summary": "removed", "responses": {}}}
    try:
        with pytest.raises(Undocumented) as caught:
            document(app, app.extensions["gateway"])
        assert caught.value.routes == ["GET (gone.endpoint: no such route)"]
    finally:
        del OPERATIONS["gone.endpoint"]


def test_the_reference_page_is_for_development_only(
    app: Flask, client: FlaskClient, redis_url: str, tmp_path: Path
) -> None:
    page = client.get("/docs/api")
    assert page.status_code == 200 and "/v1/audiences/estimate" in page.get_data(as_text=True)
    assert 'href="/openapi.json"' in page.get_data(as_text=True)
    prod = create_app(make_config(redis_url, tmp_path / "prod"))
    try:
        resp = prod.test_client().get("/docs/api")
        assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "not_found"
        assert prod.test_client().get("/openapi.json").status_code == 200
    finally:
        for close in prod.extensions["gateway"].closers:
            close()
