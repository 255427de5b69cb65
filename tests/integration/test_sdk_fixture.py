"""The SDK's unit tests run on a snapshot of GET /v1/policy: it must be the current one."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.core.catalogue import load

FIXTURE = Path(__file__).resolve().parents[2] / "sdk_js" / "test" / "fixtures" / "policy.json"


def test_sdk_policy_fixture_matches_the_catalogue() -> None:
    snapshot = json.loads(FIXTURE.read_text(encoding="utf-8"))
    live = json.loads(json.dumps(load(None).policy_document(), ensure_ascii=False))
    assert snapshot == live, (
        "sdk_js/test/fixtures/policy.json is out of date: save GET /v1/policy over it"
    )
