"""The deployments fanout.py measures, each made of real processes on 127.0.0.1.

A `Deployment` is what one column of the results measures: one or more server processes
that together carry the room (two Jupyter servers sharing one Redis are one deployment).
Subscribers are spread over its endpoints; RSS and CPU are summed over its processes.
Its Jupyter servers are `iavicenne_ext.testing.JupyterProcess`es, started as the tests
start theirs; the baseline is a `MinimalServer` (minimal_server.py).
"""

from __future__ import annotations

import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import psutil
from loadgen import Endpoint

from iavicenne_ext.testing import LOOPBACK, JupyterProcess, free_port, start_all, wait_until

ROOM_PATH = "/iavicenne/ws/mcp"
HERE = Path(__file__).resolve().parent

# Raised so the benchmark measures fan-out, not the per-connection protections.
# Raised so the benchmark measures fan-out, not the protections: every generator
# connection is the same identity (the server's token).
UNLIMITED = {
    "messages_per_second": 1_000_000_000,
    "burst": 1_000_000_000,
    "chat_messages_per_second": 1_000_000_000,
    "chat_messages_burst": 1_000_000_000,
    "max_outbound_bytes": 1 << 30,
    "max_connections_per_identity": 1_000_000,
    "max_rooms_per_identity": 1_000_000,
    "bytes_per_second": 1 << 40,
    "burst_bytes": 1 << 40,
    "max_outbound_bytes_total": 1 << 40,
    "max_room_members": 1_000_000,  # the memory phase puts 10,000 in one room
    "joins_per_second": 1_000_000_000,  # joins.py joins thousands as one identity
    "join_burst": 1_000_000_000,
    "join_fanout_per_second": 1e15,
}


class MinimalServer:
    """benchmarks/minimal_server.py on a free loopback port: the baseline."""

    def __init__(self, workdir: Path, *, name: str = "minimal", nodelay: bool = False) -> None:
        self.name = name
        self.workdir = workdir
        self.nodelay = nodelay
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not started")
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 30.0) -> MinimalServer:
        """Start it and wait until it accepts connections."""
        args = [sys.executable, str(HERE / "minimal_server.py"), f"--port={self.port}", f"--token={self.token}"]
        if self.nodelay:
            args.append("--nodelay")
        with open(self.log_path, "wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir)

        def accepting() -> bool:
            if not self.running():
                raise RuntimeError(f"{self.name} exited:\n{self.log_text()[-3000:]}")
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=1).close()
            except OSError:
                return False
            return True

        wait_until(accepting, timeout, f"{self.name} on port {self.port}", interval=0.1)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


Server: TypeAlias = JupyterProcess | MinimalServer


@dataclass
class Deployment:
    """One measured system: a name, its server processes, and the cleanup it needs."""

    name: str
    description: str
    servers: list[Server] = field(default_factory=list)
    redis_url: str | None = None
    redis_prefix: str | None = None

    @property
    def endpoints(self) -> list[Endpoint]:
        return [Endpoint(LOOPBACK, s.port, ROOM_PATH, s.token) for s in self.servers]

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.servers]

    def rss(self) -> int:
        return sum(psutil.Process(pid).memory_info().rss for pid in self.pids)

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.pids:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        return total

    def check_alive(self) -> None:
        for server in self.servers:
            if not server.running():
                raise RuntimeError(f"{server.name} died:\n{server.log_text()[-3000:]}")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        if self.redis_url and self.redis_prefix:
            try:
                import redis

                client = redis.Redis.from_url(self.redis_url)
                keys: list[Any] = list(client.scan_iter(match=f"{self.redis_prefix}*", count=1000))
                if keys:
                    client.delete(*keys)
                client.close()
            except Exception as error:  # cleanup only: say so, do not hide the results
                print(f"could not delete the benchmark's Redis keys ({self.redis_prefix}*): {error}", file=sys.stderr)


def iavicenne_sets_nodelay() -> bool:
    """Whether iAvicenne's sockets set TCP_NODELAY, which the baseline then mirrors.

    With Nagle's algorithm, frames queued for one client leave in fewer, larger TCP
    segments; without it every frame is a segment, which costs both sides more per
    delivery. The baseline uses the same option so that the ratio compares the code.
    """
    import inspect

    from iavicenne_ext.handlers.protocol_socket import ProtocolSocket

    return "set_nodelay(True)" in inspect.getsource(ProtocolSocket)


def jupyter(workdir: Path, name: str, **options: Any) -> JupyterProcess:
    """A `jupyter server` with only iAvicenne, its limits raised, logging warnings only (a
    log line per connection would be part of what is measured)."""
    return JupyterProcess(workdir, name=name, options={**UNLIMITED, **options}, log_level="WARN")


def launch(
    name: str, workdir: Path, *, redis_url: str = "redis://127.0.0.1:6379/0", redis_servers: int = 2, nodelay: bool = False
) -> Deployment:
    """Start a deployment by name: ``minimal``, ``memory``, ``sqlite`` or ``redis``; wait until it serves."""
    if name == "minimal":
        description = "minimal Tornado server (baseline)" + (", TCP_NODELAY like iAvicenne" if nodelay else "")
        return Deployment(name, description, [MinimalServer(workdir, nodelay=nodelay).start()])
    if name == "memory":
        return Deployment(name, "iAvicenne, memory broker", list(start_all([jupyter(workdir, "memory", broker="memory")])))
    if name == "sqlite":  # the default: the memory broker, kept in a file (broker/sqlite/)
        return Deployment(name, "iAvicenne, SQLite store", list(start_all([jupyter(workdir, "sqlite", broker="sqlite")])))
    if name == "redis":
        prefix = f"iavbench-{secrets.token_hex(4)}"
        servers = [
            jupyter(workdir, f"redis-{k}", broker="redis", redis_url=redis_url, redis_prefix=prefix) for k in range(redis_servers)
        ]
        description = f"iAvicenne, Redis broker, {redis_servers} servers"
        deployment = Deployment(name, description, redis_url=redis_url, redis_prefix=prefix)
        try:
            deployment.servers.extend(start_all(servers))  # stops them all if one fails
        except BaseException:
            deployment.stop()  # its keys in Redis
            raise
        return deployment
    raise ValueError(f"unknown deployment {name!r}")


def new_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="iavicenne-fanout-"))
