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

    def context(self, purposes: Mapping[str, str], granted: frozenset[str]) -> dict[str, Any]:
        """The batch context fields (all but gps) whose purpose is granted."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "gps":
                continue
            value = self._read(f.name, purposes, granted)
            if value is not None:
                out[f.name] = value
        return out

    def position(self, purposes: Mapping[str, str], granted: frozenset[str]) -> Any:
        """The current position, only with ``precise_location`` granted."""
        return self._read("gps", purposes, granted)

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
