"""GeoLocator against small databases with known answers, and the shipped GeoLite2 file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from gateway.core.geoip import GeoLocator, default_db_path

NOTHING = {"country": None, "province": None, "city": None}


def names(en: str, zh: str | None = None) -> dict[str, Any]:
    return {"names": {"en": en} | ({"zh-CN": zh} if zh else {})}


NANJING = {
    "country": {"iso_code": "CN", **names("China", "中国")},
    "subdivisions": [{"iso_code": "JS", **names("Jiangsu", "江苏省")}],
    "city": names("Nanjing", "南京"),
}
HANGZHOU = {
    "country": {"iso_code": "CN", **names("China", "中国")},
    "subdivisions": [{"iso_code": "ZJ", **names("Zhejiang", "浙江省")}],
    "city": names("Hangzhou", "杭州"),
}
# Chinese only for the country: province and city must fall back to English.
WINTERTHUR = {
    "country": {"iso_code": "CH", **names("Switzerland", "瑞士")},
    "subdivisions": [{"iso_code": "ZH", **names("Zurich")}],
    "city": names("Winterthur"),
}
COUNTRY_ONLY = {"country": {"iso_code": "JP", **names("Japan", "日本")}}


def write_db(path: Path, *, ip_version: int = 6, database_type: str = "GeoIP2-City") -> Path:
    writer = MMDBWriter(
        ip_version=ip_version,
        ipv4_compatible=ip_version == 6,
        database_type=database_type,
        languages=["en", "zh-CN"],
        description="test",
    )
    writer.insert_network(IPSet(["1.2.3.0/24"]), NANJING)
    writer.insert_network(IPSet(["5.6.7.0/24"]), WINTERTHUR)
    writer.insert_network(IPSet(["9.9.9.0/24"]), COUNTRY_ONLY)
    # A record for a private range: the locator must never even ask for it.
    writer.insert_network(IPSet(["10.0.0.0/8", "192.168.0.0/16"]), NANJING)
    if ip_version == 6:
        writer.insert_network(IPSet(["2400:3200::/32"]), HANGZHOU)
    writer.to_db_file(str(path))
    return path


@pytest.fixture
def geo(tmp_path: Path) -> Iterator[GeoLocator]:
    locator = GeoLocator(write_db(tmp_path / "city.mmdb"))
    yield locator
    locator.close()


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("1.2.3.4", {"country": "中国", "province": "江苏省", "city": "南京"}),
        ("1.2.3.255", {"country": "中国", "province": "江苏省", "city": "南京"}),
        (" 1.2.3.4\n", {"country": "中国", "province": "江苏省", "city": "南京"}),
        ("::ffff:1.2.3.4", {"country": "中国", "province": "江苏省", "city": "南京"}),
        ("2400:3200::1", {"country": "中国", "province": "浙江省", "city": "杭州"}),
        ("2400:3200:ffff::1", {"country": "中国", "province": "浙江省", "city": "杭州"}),
        ("5.6.7.8", {"country": "瑞士", "province": "Zurich", "city": "Winterthur"}),
        ("9.9.9.9", {"country": "日本", "province": None, "city": None}),
        ("1.2.4.1", NOTHING),  # public, but not in the database
        ("2400:3201::1", NOTHING),
    ],
)
def test_lookup(geo: GeoLocator, ip: str, expected: dict[str, str | None]) -> None:
    assert geo.lookup(ip) == expected


@pytest.mark.parametrize(
    "ip",
    [
        "10.1.2.3",  # private, and present in the test database
        "192.168.1.1",
        "::ffff:10.1.2.3",
        "127.0.0.1",
        "::1",
        "169.254.1.1",
        "fe80::1",
        "fe80::1%eth0",
        "fc00::1",
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
    ],
)
def test_non_public_addresses_are_unknown(geo: GeoLocator, ip: str) -> None:
    assert geo.lookup(ip) == NOTHING


@pytest.mark.parametrize(
    "ip",
    [
        "",
        "   ",
        "abc",
        "1.2.3",
        "1.2.3.4.5",
        "999.1.1.1",
        "1.2.3.4:80",
        "1.2.3.4/24",
        "2400:3200::1::1",
        "中国",
        "\x00",
        "1" * 10_000,
        None,
        16909060,
        b"1.2.3.4",
    ],
)
def test_invalid_input_is_unknown_and_never_raises(geo: GeoLocator, ip: Any) -> None:
    assert geo.lookup(ip) == NOTHING


def test_results_are_copies(geo: GeoLocator) -> None:
    first = geo.lookup("1.2.3.4")
    first["city"] = "tampered"
    assert geo.lookup("1.2.3.4")["city"] == "南京"


def test_ipv6_against_an_ipv4_only_database(tmp_path: Path) -> None:
    with GeoLocator(write_db(tmp_path / "v4.mmdb", ip_version=4)) as geo:
        assert geo.lookup("1.2.3.4")["city"] == "南京"
        assert geo.lookup("2400:3200::1") == NOTHING


def test_country_database(tmp_path: Path) -> None:
    path = write_db(tmp_path / "country.mmdb", database_type="GeoIP2-Country")
    with GeoLocator(path) as geo:
        assert geo.lookup("1.2.3.4") == {"country": "中国", "province": None, "city": None}


def test_accepts_pathlike_and_str(tmp_path: Path) -> None:
    path = write_db(tmp_path / "city.mmdb")
    for arg in (path, str(path)):
        with GeoLocator(arg) as geo:
            assert geo.lookup("1.2.3.4")["country"] == "中国"


def test_close_releases_the_database(tmp_path: Path) -> None:
    geo = GeoLocator(write_db(tmp_path / "city.mmdb"))
    assert geo.lookup("1.2.3.4")["city"] == "南京"
    geo.close()
    with pytest.raises(ValueError, match="closed"):  # not a stale answer from the cache
        geo.lookup("1.2.3.4")


def test_missing_database_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        GeoLocator(tmp_path / "nope.mmdb")


def test_default_db_path_is_the_shipped_geolite2_city() -> None:
    path = default_db_path()
    assert os.path.basename(path) == "GeoLite2-City.mmdb"
    assert os.path.getsize(path) > 10_000_000


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        # Values checked against the maxminddb-geolite2 2018.703 file.
        ("114.114.114.114", {"country": "中国", "province": "江苏省", "city": "南京"}),
        ("223.5.5.5", {"country": "中国", "province": "浙江省", "city": "杭州"}),
        ("180.76.76.76", {"country": "中国", "province": "北京市", "city": "北京"}),
        ("2400:3200::1", {"country": "中国", "province": None, "city": None}),
        ("8.8.8.8", {"country": "美国", "province": None, "city": None}),
        ("10.0.0.1", NOTHING),
    ],
)
def test_real_geolite2_database(ip: str, expected: dict[str, str | None]) -> None:
    with GeoLocator(default_db_path()) as geo:
        assert geo.lookup(ip) == expected


def test_database_without_locations_is_refused_at_construction(tmp_path: Path) -> None:
    path = write_db(tmp_path / "asn.mmdb", database_type="GeoLite2-ASN")
    with pytest.raises(ValueError, match="GeoLite2-ASN"):
        GeoLocator(path)
