"""Device context: the APP's functions are called for granted purposes only."""

from __future__ import annotations

from sdk_py.device import DeviceInfo
from tests.sdk_py.conftest import recording

PURPOSES = {
    "device_model": "account_security",
    "device_id": "account_security",
    "carrier": "account_security",
    "gps": "precise_location",
}


def test_functions_run_only_for_granted_purposes() -> None:
    calls: list[str] = []
    info = DeviceInfo(
        device_model=recording(calls, "model", "vivo X100"),
        device_id=recording(calls, "id", "abc"),
        gps=recording(calls, "gps", {"lat": 1.0, "lon": 2.0}),
    )
    assert info.context(PURPOSES, frozenset({"personalization"})) == {}
    assert info.position(PURPOSES, frozenset({"account_security"})) is None
    assert calls == []
    ctx = info.context(PURPOSES, frozenset({"account_security"}))
    assert ctx == {"device_model": "vivo X100", "device_id": "abc"}
    assert info.position(PURPOSES, frozenset({"precise_location"})) == {"lat": 1.0, "lon": 2.0}
    assert sorted(calls) == ["gps", "id", "model"]


def test_a_failing_or_empty_function_leaves_its_field_out() -> None:
    def broken() -> str:
        raise RuntimeError("no permission")

    info = DeviceInfo(device_model=broken, carrier=lambda: None, device_id=lambda: "x")
    assert info.context(PURPOSES, frozenset({"account_security"})) == {"device_id": "x"}
