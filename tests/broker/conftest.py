"""Fixtures of the broker tests: a real Redis Cluster (tests/redis_cluster.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis_cluster import RedisClusterProcess


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcess]:
    """A Redis Cluster of three primaries for the module (tests/redis_cluster.py), started
    only when a test of the module asks for it."""
    store = RedisClusterProcess(tmp_path_factory.mktemp("redis-cluster")).start()
    try:
        yield store
    finally:
        store.stop()
