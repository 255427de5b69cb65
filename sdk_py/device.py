"""Device context, read through the APP's own callables, for granted purposes only.

The SDK reads nothing about the device by itself: the APP hands it functions (it knows how
to ask its platform, and asks the person for location permission). A function is called only
when the purpose of its field is granted, so no device identifier is even read without
``account_security`` and no position without ``precise_location``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

log = logging.getLogger("sdk_py")

Source = Callable[[], Any] | None


@dataclass(frozen=True)
class DeviceInfo:
    """Each attribute: a function returning the value (or None when unknown), or None."""

    device_model: Source = None
    device_brand: Source = None
    os: Source = None
    os_version: Source = None
    device_id: Source = None
    carrier: Source = None
    app_version: Source = None
    gps: Source = None  # returns {"lat": ..., "lon": ..., "accuracy": ...}: sent per event

    def context(
        self,
        purposes: Mapping[str, str],
        granted: frozenset[str],
        limits: Mapping[str, int] | None = None,
    ) -> dict[str, Any]:
        """The batch context fields (all but gps) whose purpose is granted.

        A value the gateway would refuse (not a string, longer than the policy allows) is
        left out with a warning: the gateway refuses a batch whose context is bad, and one
        odd device string must not cost every event.
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "gps":
                continue
            value = self._read(f.name, purposes, granted)
            if value is None:
                continue
            limit = (limits or {}).get(f.name, 256)
            if not isinstance(value, str) or not 0 < len(value) <= limit:
                log.warning("device context %s left out: not a string of 1-%d", f.name, limit)
                continue
            out[f.name] = value
        return out

    def position(self, purposes: Mapping[str, str], granted: frozenset[str]) -> Any:
        """The current position, only with ``precise_location`` granted (and when valid)."""
        value = self._read("gps", purposes, granted)
        if value is None:
            return None
        if not _valid_position(value):
            log.warning("device position left out: not {lat, lon[, accuracy]} in range")
            return None
        return value

    def _read(self, name: str, purposes: Mapping[str, str], granted: frozenset[str]) -> Any:
        source = getattr(self, name)
        purpose = purposes.get(name)
        if source is None or purpose is None or purpose not in granted:
            return None
        try:
            return source()
        except Exception:  # the APP's function failed: leave the field out, keep going
            log.warning("device context %s could not be read", name, exc_info=True)
            return None


def _valid_position(value: Any) -> bool:
    if not isinstance(value, Mapping) or not {"lat", "lon"} <= set(value):
        return False
    if set(value) - {"lat", "lon", "accuracy"}:
        return False
    bounds = {"lat": (-90, 90), "lon": (-180, 180), "accuracy": (0, 100_000)}
    for key, v in value.items():
        lo, hi = bounds[key]
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            return False
    return True
