"""The servers fanout.py measures, each a real process on 127.0.0.1.

A `Deployment` is what one column of the results measures: one or more server processes
that together carry the room (two Jupyter servers sharing one Redis are one deployment).
Subscribers are spread over its endpoints; RSS and CPU are summed over its processes.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from loadgen import Endpoint

HOST = "127.0.0.1"
ROOM_PATH = "/iavicenne/ws/mcp"
HERE = Path(__file__).resolve().parent

# Raised so the benchmark measures fan-out, not the protections: every generator
# connection is the same identity (the server's token).
UNLIMITED = [
    "--IAvicenne.messages_per_second=1000000000",
    "--IAvicenne.burst=1000000000",
    "--IAvicenne.max_outbound_bytes=1073741824",
    "--IAvicenne.max_connections_per_identity=1000000",
    "--IAvicenne.max_rooms_per_identity=1000000",
    "--IAvicenne.bytes_per_second=1000000000000",
    "--IAvicenne.burst_bytes=1000000000000",
    "--IAvicenne.max_outbound_bytes_total=1000000000000",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """One server subprocess: its endpoint, its pid for psutil, its log file."""

    label: str
    proc: subprocess.Popen
    endpoint: Endpoint
    log_path: Path
    ready_url: str | None = None  # HTTP URL that answers 200 once the server is ready

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.ready_url is None:
                    socket.create_connection((HOST, self.endpoint.port), timeout=1).close()
                    return
                with urllib.request.urlopen(self.ready_url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.label} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class Deployment:
    """One measured system: a name, its server processes, and the cleanup it needs."""

    name: str
    description: str
    servers: list[ServerProcess] = field(default_factory=list)
    redis_url: str | None = None
    redis_prefix: str | None = None

    @property
    def endpoints(self) -> list[Endpoint]:
        return [s.endpoint for s in self.servers]

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
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.label} died ({server.proc.returncode}):\n{server.log_tail()}")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        if self.redis_url and self.redis_prefix:
            try:
                import redis

                client = redis.Redis.from_url(self.redis_url)
                keys = list(client.scan_iter(match=f"{self.redis_prefix}*", count=1000))
                if keys:
                    client.delete(*keys)
                client.close()
            except Exception as error:  # cleanup only: say so, do not hide the results
                print(f"could not delete the benchmark's Redis keys ({self.redis_prefix}*): {error}", file=sys.stderr)


def _server_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["JUPYTER_RUNTIME_DIR"] = str(workdir / "runtime")  # no jpserver-*.json left behind
    env["PYTHONUNBUFFERED"] = "1"
    return env


def other_extensions() -> list[str]:
    """Server extensions enabled in this environment besides ours: switched off for the run."""
    try:
        from jupyter_core.paths import jupyter_config_path
        from jupyter_server.config_manager import BaseJSONConfigManager
    except ImportError:
        return []
    enabled: dict[str, bool] = {}
    for directory in reversed(jupyter_config_path()):
        data = BaseJSONConfigManager(config_dir=directory).get("jupyter_server_config")
        enabled.update(data.get("ServerApp", {}).get("jpserver_extensions", {}))
    return sorted(name for name, on in enabled.items() if on and name != "iavicenne_ext")


def start_jupyter(label: str, workdir: Path, extra: list[str]) -> ServerProcess:
    """A real `jupyter server` with only the iAvicenne extension, on a free loopback port."""
    port, token = free_port(), secrets.token_hex(16)
    root = workdir / "root"
    root.mkdir(exist_ok=True)
    log_path = workdir / f"{label}.log"
    args = [
        sys.executable,
        "-m",
        "jupyter_server",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.ip={HOST}",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.open_browser=False",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.log_level=WARN",
        "--ServerApp.jpserver_extensions=iavicenne_ext=True",
        *(f"--ServerApp.jpserver_extensions={name}=False" for name in other_extensions()),
        *UNLIMITED,
        *extra,
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-root")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_server_env(workdir), cwd=workdir)
    server = ServerProcess(label, proc, Endpoint(HOST, port, ROOM_PATH, token), log_path, f"http://{HOST}:{port}/api/status?token={token}")
    return server


def iavicenne_sets_nodelay() -> bool:
    """Whether iAvicenne's sockets set TCP_NODELAY, which the baseline then mirrors.

    With Nagle's algorithm, frames queued for one client leave in fewer, larger TCP
    segments; without it every frame is a segment, which costs both sides more per
    delivery. The baseline uses the same option so that the ratio compares the code.
    """
    import inspect

    from iavicenne_ext.handlers.base import ProtocolSocket

    return "set_nodelay(True)" in inspect.getsource(ProtocolSocket)


def start_minimal(label: str, workdir: Path, nodelay: bool) -> ServerProcess:
    port, token = free_port(), secrets.token_hex(16)
    log_path = workdir / f"{label}.log"
    args = [sys.executable, str(HERE / "minimal_server.py"), f"--port={port}", f"--token={token}"]
    if nodelay:
        args.append("--nodelay")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_server_env(workdir), cwd=workdir)
    return ServerProcess(label, proc, Endpoint(HOST, port, ROOM_PATH, token), log_path)


def launch(
    name: str, workdir: Path, *, redis_url: str = "redis://127.0.0.1:6379/0", redis_servers: int = 2, nodelay: bool = False
) -> Deployment:
    """Start a deployment by name: ``minimal``, ``memory`` or ``redis``; wait until it serves."""
    if name == "minimal":
        description = "minimal Tornado server (baseline)" + (", TCP_NODELAY like iAvicenne" if nodelay else "")
        deployment = Deployment(name, description, [start_minimal("minimal", workdir, nodelay)])
    elif name == "memory":
        deployment = Deployment(name, "iAvicenne, memory broker", [start_jupyter("memory", workdir, [])])
    elif name == "redis":
        prefix = f"iavbench-{secrets.token_hex(4)}"
        extra = ["--IAvicenne.broker=redis", f"--IAvicenne.redis_url={redis_url}", f"--IAvicenne.redis_prefix={prefix}"]
        servers = [start_jupyter(f"redis-{k}", workdir, extra) for k in range(redis_servers)]
        deployment = Deployment(
            name, f"iAvicenne, Redis broker, {redis_servers} servers", servers, redis_url=redis_url, redis_prefix=prefix
        )
    else:
        raise ValueError(f"unknown deployment {name!r}")
    try:
        for server in deployment.servers:
            server.wait_ready()
    except BaseException:
        deployment.stop()
        raise
    return deployment


def new_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="iavicenne-fanout-"))
