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

from . import geoip, useragent
from .catalogue import Catalogue
from .errors import CatalogueError
from .geoip import GeoLocator
from .useragent import UserAgentParser


def ipv4_form(ip: str) -> str:
    """``::ffff:81.2.69.160`` (an IPv4-mapped IPv6 address, as a dual-stack socket reports an
    IPv4 client) as ``81.2.69.160``: one client, one spelling; anything else unchanged."""
    try:
        mapped = ipaddress.IPv6Address(ip).ipv4_mapped
    except ValueError:
        return ip
    return str(mapped) if mapped is not None else ip


class Enricher:
    """The request's fields the catalogue declares (``derived_from``: the address, the user
    agent, the address located), each derived only for a granted purpose it serves."""

    def __init__(self, cat: Catalogue, ua: UserAgentParser, geo: GeoLocator | None) -> None:
        self.ua = ua
        self.geo = geo
        self.address = [(f, cat.fields[f].purpose) for f in cat.derived("address")]
        self.ua_fields = frozenset(cat.derived("user_agent"))
        self.geo_fields = frozenset(cat.derived("geoip"))
        for origin, wanted, given in (
            ("user_agent", self.ua_fields, useragent.FIELDS),
            ("geoip", self.geo_fields, frozenset(geoip.FIELDS)),
        ):
            if not wanted <= given:  # a field no parse would ever fill: a catalogue mistake
                raise CatalogueError(
                    f"fields {sorted(wanted - given)} are derived_from {origin}, which gives "
                    f"only {sorted(given)}"
                )
        self.ua_purposes = frozenset(cat.fields[f].purpose for f in self.ua_fields)
        self.geo_purposes = frozenset(cat.fields[f].purpose for f in self.geo_fields)

    def context(
        self, ip: str | None, user_agent: str | None, granted: Collection[str]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if ip and ":" in ip and ("." in ip or "ffff" in ip.lower()):  # IPv4 via an IPv6 socket
            ip = ipv4_form(ip)
        if ip:
            out.update((name, ip) for name, purpose in self.address if purpose in granted)
        if user_agent is not None and not self.ua_purposes.isdisjoint(granted):
            parsed = self.ua.parse(user_agent)
            out.update((k, v) for k, v in parsed.items() if v is not None and k in self.ua_fields)
        if ip and self.geo is not None and not self.geo_purposes.isdisjoint(granted):
            placed = self.geo.lookup(ip)
            out.update((k, v) for k, v in placed.items() if v is not None and k in self.geo_fields)
        return out
