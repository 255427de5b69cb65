"""Enrichment: what the gateway derives from the request, one spelling per client address."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient

from gateway.core.catalogue import load
from gateway.core.enrich import Enricher, ipv4_form
from gateway.core.errors import CatalogueError
from gateway.core.useragent import UserAgentParser

from ..helpers import grant, page_view, stream_events


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("::ffff:81.2.69.160", "81.2.69.160"),
        ("::FFFF:81.2.69.160", "81.2.69.160"),
        ("0:0:0:0:0:ffff:5102:45a0", "81.2.69.160"),
        ("81.2.69.160", "81.2.69.160"),
        ("2001:db8::1", "2001:db8::1"),
        ("64:ff9b::81.2.69.160", "64:ff9b::81.2.69.160"),  # NAT64: not a mapped address
        ("not an address", "not an address"),
    ],
)
def test_ipv4_form(given: str, kept: str) -> None:
    assert ipv4_form(given) == kept


def test_an_ipv4_mapped_client_is_stored_in_its_ipv4_form(
    client: FlaskClient, r: redis.Redis
) -> None:
    """A dual-stack server reports IPv4 clients as ``::ffff:a.b.c.d``: stored as ``a.b.c.d``,
    for the events API and the pixel alike, and located as that IPv4 address."""
    client.environ_base["REMOTE_ADDR"] = "::ffff:81.2.69.160"
    grant(client, account_security=True, personalization=True)
    assert client.post("/v1/events", json=page_view()).status_code == 202
    assert client.get("/p.gif?type=page_view&url=https://shop.example.com/").status_code == 200
    ips = [p["ip"] for _, purpose, p in stream_events(r) if purpose == "account_security"]
    assert ips == ["81.2.69.160", "81.2.69.160"]
    places = [p.get("country") for _, kind, p in stream_events(r) if kind == "personalization"]
    assert places == ["英国", "英国"]  # GeoLite2's test network of London, in Chinese


def test_the_hex_spelling_of_a_mapped_address_is_stored_as_ipv4(
    client: FlaskClient, r: redis.Redis
) -> None:
    client.environ_base["REMOTE_ADDR"] = "::ffff:5102:45a0"
    grant(client, account_security=True)
    assert client.post("/v1/events", json=page_view()).status_code == 202
    assert [p["ip"] for _, _, p in stream_events(r)] == ["81.2.69.160"]


@pytest.mark.parametrize(("field", "renamed"), [("browser", "browser_name"), ("city", "town")])
def test_a_derived_field_no_parse_gives_is_a_catalogue_error(
    tmp_path: Path, field: str, renamed: str
) -> None:
    """A catalogue field ``derived_from`` the user agent or GeoIP under a name the parser
    never gives would silently stay empty: refused at start instead, naming it."""
    packaged = resources.files("gateway.core").joinpath("catalogue.toml").read_text("utf-8")
    text = packaged.replace(f"[fields.{field}]", f"[fields.{renamed}]")
    text = text.replace(f'fields = ["{field}"]', f'fields = ["{renamed}"]')  # audiences
    path = tmp_path / "catalogue.toml"
    path.write_text(text, "utf-8")
    with pytest.raises(CatalogueError, match=renamed):
        Enricher(load(str(path)), UserAgentParser(16), None)
