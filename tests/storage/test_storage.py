"""The storage object (gateway/storage/__init__.py): the layout a store was written with."""

from __future__ import annotations

import pytest
import redis

from gateway.core.errors import ConfigError
from gateway.storage.keys import LAYOUT_KEY

from ..conftest import Gateways, Servers
from ..helpers import grant


@pytest.mark.stores
def test_an_empty_store_records_the_layout_and_a_second_gateway_agrees(
    gateways: Gateways, redis_url: str, r: redis.Redis
) -> None:
    gateways(redis_url)
    assert r.get(LAYOUT_KEY) == "3/64"
    gateways(redis_url)  # the same layout: no complaint
    with pytest.raises(ConfigError, match="SLOT_GROUPS") as refused:
        gateways(redis_url, SLOT_GROUPS=32)
    assert "3/64" in str(refused.value) and "3/32" in str(refused.value)


@pytest.mark.stores
def test_an_earlier_versions_store_is_refused_and_other_keys_are_not(
    gateways: Gateways, redis_url: str, r: redis.Redis
) -> None:
    r.set("someone-else:key", "1")  # a store shared with another application
    gateways(redis_url)
    r.flushall()
    r.hset("{s:" + "a" * 32 + "}:consent", "head", "x")  # how the last version kept a subject
    with pytest.raises(ConfigError, match="an earlier version's"):
        gateways(redis_url)
    assert r.get(LAYOUT_KEY) is None  # nothing written into it


def test_a_gateway_started_while_its_store_was_away_checks_the_layout_on_its_first_request(
    gateways: Gateways, servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing written into a store of another layout, pixel or not: 503 until it is fixed."""
    server = servers.valkey("away")
    url, port = server.connection_url, server.port
    store = redis.Redis.from_url(url, decode_responses=True)
    store.set(LAYOUT_KEY, "3/8")
    server.stop()
    app = gateways(url)  # starts: the store does not answer, the check waits
    assert "checked later" in caplog.text
    servers.valkey("away", port=port)
    client = app.test_client()
    assert client.get("/p.gif?url=https%3A%2F%2Fshop.example.com%2F").status_code == 503
    # nor does any job start on it (retention, purges, the indexer, compaction)
    svc = app.extensions["gateway"]
    assert not any(job.running for job in svc.jobs) and not svc.store.compactor.job.running
    resp = client.post("/v1/consent", json={"purposes": {"personalization": True}})
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "storage_unavailable"
    assert "another layout of keys" in caplog.text
    assert sorted(store.keys("*")) == [LAYOUT_KEY]
    store.set(LAYOUT_KEY, "3/64")  # the operator fixes it: served from then on
    grant(client, personalization=True)
    assert client.get("/p.gif?url=https%3A%2F%2Fshop.example.com%2F").status_code == 200
    assert all(job.running for job in svc.jobs) and svc.store.compactor.job.running
    store.close()


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("REDIS_CLUSTER", "maybe"),
        ("SLOT_GROUPS", 0),
        ("SLOT_GROUPS", 2000),
        ("SLOT_GROUPS", "x"),
        ("EVENT_GROUP_MAX", 0),
        ("EVENT_GROUP_MAX", 257),
        ("EVENT_GROUP_MAX", "many"),
        ("REDIS_SOCKET_TIMEOUT_S", 1.0),  # not above AOF_TIMEOUT_MS (1 s) by 0.25 s
    ],
)
def test_bad_store_settings_are_named(
    gateways: Gateways, redis_url: str, setting: str, value: object
) -> None:
    with pytest.raises(ConfigError, match=setting):
        gateways(redis_url, **{setting: value})


@pytest.mark.parametrize("said", ["yes", "auto"])
def test_a_cluster_is_recognised_or_taken_at_its_word(
    gateways: Gateways, cluster_url: str, said: str
) -> None:
    app = gateways(cluster_url, REDIS_CLUSTER=said)
    assert app.extensions["gateway"].store.cluster is True
    assert grant(app.test_client(), personalization=True)["receipt"]["action"] == "consent"


def test_closing_a_gateway_closes_every_connection_its_store_opened(
    gateways: Gateways, servers: Servers
) -> None:
    """The store's clients of their own (the event writer with its kept connection, the
    binary reader) close with it, not only the main client: a gateway stopped and built again
    in one process (a test, a reload) leaves no connections behind on the server."""
    server = servers.valkey("closing")
    watch = redis.Redis.from_url(server.connection_url, decode_responses=True)
    mine = watch.client_id()
    app = gateways(server.connection_url)
    client = app.test_client()
    grant(client, personalization=True)
    for _ in range(3):  # the event writer's line keeps a connection of its own
        assert client.get("/p.gif?url=https%3A%2F%2Fshop.example.com%2F").status_code == 200
    svc = app.extensions["gateway"]
    assert len(watch.client_list()) > 2
    for close in svc.closers:
        close()
    left = [c for c in watch.client_list() if int(c["id"]) != mine]
    assert left == []
    watch.close()
