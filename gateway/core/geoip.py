"""IP -> country / province / city, with Chinese names where the database has them.

Names come from the reader's locale fallback (``zh-CN``, then ``en``), so a city the
database only knows in English still gets a name. Addresses that are not globally routable
(private, loopback, link-local, CGNAT, documentation...) are answered without touching the
database: they can only ever be "unknown", and asking would just cost a tree walk.

Lookups are cached per instance in a bounded LRU: the same client IPs send batch after
batch. ``geoip2`` is imported in ``__init__`` because importing it costs ~0.1 s.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import TracebackType

    from geoip2.database import Reader

__all__ = ["GeoLocator", "default_db_path"]

GeoResult = dict[str, str | None]
_Names = tuple[str | None, str | None, str | None]
_UNKNOWN: _Names = (None, None, None)
LOCALES = ("zh-CN", "en")
FIELDS = ("country", "province", "city")  # what a lookup gives, in this order


def default_db_path() -> str:
    """Path of the GeoLite2-City database shipped in the ``maxminddb-geolite2`` wheel."""
    from _maxminddb_geolite2 import geolite2_database  # type: ignore[import-untyped]

    return str(geolite2_database())


class GeoLocator:
    """Thread-safe GeoIP lookups; build one per process (the reader mmaps the file)."""

    def __init__(self, db_path: str | os.PathLike[str], cache_size: int = 16_384) -> None:
        import geoip2.database
        import geoip2.errors

        self._reader: Reader = geoip2.database.Reader(
            os.fspath(db_path), locales=list(LOCALES), mode=geoip2.database.MODE_AUTO
        )
        # geoip2 refuses city() on a Country file (TypeError on every call), so pick the
        # query the file supports now; a file with no location data fails here, at startup.
        meta = self._reader.metadata()
        kind = next((k for k in ("City", "Enterprise", "Country") if k in meta.database_type), "")
        if not kind:
            self._reader.close()
            raise ValueError(f"{db_path}: {meta.database_type} has no country/city data")
        self._cached: Callable[[str], _Names] = functools.lru_cache(maxsize=cache_size)(
            functools.partial(
                _resolve,
                getattr(self._reader, kind.lower()),
                kind != "Country",
                meta.ip_version == 6,
                geoip2.errors.AddressNotFoundError,
            )
        )

    def lookup(self, ip: str) -> GeoResult:
        """Names for ``ip``; all None for bad, non-public or unknown addresses. Never raises."""
        if not isinstance(ip, str):
            return dict.fromkeys(FIELDS)
        country, province, city = self._cached(ip.strip())
        return {"country": country, "province": province, "city": city}

    def close(self) -> None:
        """Release the database; further lookups raise (a closed reader has no data)."""
        self._cached.cache_clear()  # type: ignore[attr-defined]
        self._reader.close()

    def __enter__(self) -> GeoLocator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _resolve(
    query: Callable[[Any], Any],
    has_city: bool,
    has_ipv6: bool,
    not_found: type[Exception],
    ip: str,
) -> _Names:
    """Uncached lookup; a free function so the LRU holds the reader, not the locator."""
    try:
        addr: Any = ipaddress.ip_address(ip)
    except ValueError:
        return _UNKNOWN
    if addr.version == 6 and addr.ipv4_mapped is not None:  # ::ffff:1.2.3.4
        addr = addr.ipv4_mapped
    if not addr.is_global or (addr.version == 6 and not has_ipv6):
        return _UNKNOWN
    try:
        rec = query(addr)
    except not_found:
        return _UNKNOWN
    if not has_city:
        return (rec.country.name, None, None)
    sub = rec.subdivisions  # largest first: for China that is the province
    return (rec.country.name, sub[0].name if sub else None, rec.city.name)
