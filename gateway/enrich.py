"""Enrichment: what the gateway derives from the request itself, for consented purposes only.

The client IP (as ProxyFix settled it from the trusted hops) and the user agent are turned
into catalogue fields (IP, browser, OS, device, bot flag; country, province, city). Each
derivation runs only when a purpose one of its fields serves is granted: no user-agent parse
without account security, no GeoIP lookup without personalisation, and the raw user-agent
string is never returned.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from typing import Any

from .catalogue import Catalogue
from .geoip import GeoLocator
from .useragent import UserAgentParser

UA_FIELDS = (
    "browser",
    "browser_version",
    "os",
    "os_version",
    "device_brand",
    "device_model",
    "is_bot",
)
GEO_FIELDS = ("country", "province", "city")


def ipv4_form(ip: str) -> str:
    """``::ffff:81.2.69.160`` (an IPv4-mapped IPv6 address, as a dual-stack socket reports an
    IPv4 client) as ``81.2.69.160``: one client, one spelling; anything else unchanged."""
    try:
        mapped = ipaddress.IPv6Address(ip).ipv4_mapped
    except ValueError:
        return ip
    return str(mapped) if mapped is not None else ip


class Enricher:
    def __init__(self, cat: Catalogue, ua: UserAgentParser, geo: GeoLocator | None) -> None:
        self.ua = ua
        self.geo = geo
        self.ip_purpose = cat.fields["ip"].purpose
        self.ua_purposes = frozenset(cat.fields[f].purpose for f in UA_FIELDS)
        self.geo_purposes = frozenset(cat.fields[f].purpose for f in GEO_FIELDS)

    def context(
        self, ip: str | None, user_agent: str | None, granted: Collection[str]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if ip and ":" in ip and ("." in ip or "ffff" in ip.lower()):  # IPv4 via an IPv6 socket
            ip = ipv4_form(ip)
        if ip and self.ip_purpose in granted:
            out["ip"] = ip
        if user_agent is not None and not self.ua_purposes.isdisjoint(granted):
            out.update((k, v) for k, v in self.ua.parse(user_agent).items() if v is not None)
        if ip and self.geo is not None and not self.geo_purposes.isdisjoint(granted):
            out.update((k, v) for k, v in self.geo.lookup(ip).items() if v is not None)
        return out
