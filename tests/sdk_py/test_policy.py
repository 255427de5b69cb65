"""The SDK's reading of GET /v1/policy (the gateway's own document), and minimisation."""

from __future__ import annotations

import pytest

from gateway.core.catalogue import load
from sdk_py.policy import ConsentState, Policy


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.from_document(load(None).policy_document())


def test_it_knows_the_purposes_event_types_and_app_context(policy: Policy) -> None:
    assert policy.optional == {
        "account_security",
        "precise_location",
        "saved_login",
        "personalization",
        "advertising",
    }
    assert policy.events["design_usage"]["software"] == "account_security"
    assert policy.any_event == {"gps": "precise_location"}
    assert policy.app_context["device_id"] == "account_security"
    assert policy.app_context["app_version"] == "account_security"
    assert "ip" not in policy.app_context and "country" not in policy.app_context


def test_minimise_keeps_only_granted_purposes(policy: Policy) -> None:
    fields = {"software": "CAD", "product": "M3", "gps": {"lat": 1, "lon": 2}, "x": 1}
    kept, left = policy.minimise("design_usage", fields, frozenset({"personalization"}))
    assert kept == {}  # design_usage is account security, even its product
    assert sorted(left) == ["gps", "product", "software", "x"]
    kept, _ = policy.minimise(
        "design_usage", fields, frozenset({"account_security", "precise_location"})
    )
    assert kept == {"software": "CAD", "product": "M3", "gps": {"lat": 1, "lon": 2}}


def test_unknown_event_types_raise(policy: Policy) -> None:
    with pytest.raises(KeyError):
        policy.minimise("teleport", {}, frozenset({"personalization"}))


def test_consent_state_from_the_gateways_answer() -> None:
    state = ConsentState.from_answer(
        {
            "policy_version": "2026-11-01",
            "purposes": {"necessary": {"granted": True}, "advertising": {"granted": False}},
            "needs_reconsent": ["personalization"],
        }
    )
    assert state.granted == {"necessary"}
    assert state.needs_reconsent == ("personalization",)
    assert ConsentState.from_answer(state.to_json()) == state
