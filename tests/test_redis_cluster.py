"""Jupyter servers on a real Redis Cluster (three primaries on loopback): rooms on every
primary, the key layout of /work/notes/cluster-contract.md, recovery across servers, a
primary SIGKILLed and restarted under load, a Jupyter server SIGKILLed, hostile room names.

The cluster is started once for the module (`redis_cluster.RedisClusterProcess`); two
Jupyter servers on it are started once too (each test uses rooms of its own), and the
tests that kill something start their own pair, with a key prefix of their own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis_cluster import RedisClusterProcess, room_slot, room_tag, tag_of


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcess]:
    cluster = RedisClusterProcess(tmp_path_factory.mktemp("redis-cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


# -- the fixture itself -------------------------------------------------------------------------
def test_the_cluster_serves_every_slot_and_keeps_writes_across_a_primary_restart(redis_cluster: RedisClusterProcess) -> None:
    """Three primaries, each serving a share of the slots; a key written before one of them
    is SIGKILLed is there after its restart (appendfsync always), and while it is down its
    slots answer nothing."""
    owners = redis_cluster.slot_map(redis_cluster.ports[0])
    assert len(owners) == REDIS_CLUSTER_HASH_SLOTS
    assert set(owners.values()) == set(redis_cluster.ports)
    rooms = redis_cluster.rooms_on_each_primary("fixture")
    assert [redis_cluster.port_of_room(room) for room in rooms] == redis_cluster.ports
    # the escaping of the contract, and Redis's own reading of a tag
    assert room_tag("a{b}c%7B") == "a%7Bb%7Dc%257B" and room_tag("signaling/x}") == "x%7D"
    assert tag_of(b"p:{x%7D}:meta:x}") == b"x%7D" and tag_of(b"p:{}:meta") is None and tag_of(b"p:servers") is None

    client = redis_cluster.client()
    try:
        for room in rooms:
            client.set(f"fixture:{{{room_tag(room)}}}:kept", room)
        victim = redis_cluster.port_of_room(rooms[1])
        redis_cluster.kill(victim)
        direct = redis_cluster.node(victim, timeout=0.5)
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            direct.get(f"fixture:{{{room_tag(rooms[1])}}}:kept")
        direct.close()
        redis_cluster.restart(victim)
        assert redis_cluster.port_of_room(rooms[1]) == victim, "the restarted node serves its slots again"
        for room in rooms:
            assert client.get(f"fixture:{{{room_tag(room)}}}:kept") == room.encode()
        # each key is on the primary of its slot, found there by a plain SCAN
        on_nodes = redis_cluster.keys("fixture")
        for port, keys in on_nodes.items():
            for key in keys:
                assert owners[key_slot(key)] == port
        assert sorted(len(keys) for keys in on_nodes.values()) == [1, 1, 1]
        assert all(room_slot(room) == key_slot(f"fixture:{{{room_tag(room)}}}:kept".encode()) for room in rooms)
    finally:
        client.close()
        redis_cluster.drop("fixture")
