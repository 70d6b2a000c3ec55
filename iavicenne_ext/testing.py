"""Testing iAvicenne: a real Jupyter server with it in a process of its own, on loopback,
and a WebSocket client that waits for the frames a test expects.

`JupyterProcess` is the one way the project starts such a server: for the tests that need
more than pytest-jupyter's in-process server (several servers sharing a Redis, a server
killed or restarted, kernels and browsers that find it as a user's would), for the
notebook runs, and for the benchmarks. It ships with the extension, next to
`pytest_plugin` (whose fixtures hand out `WSClient`s), so the benchmarks, which run
outside pytest, and downstream projects import it as the tests do. It needs nothing the
extension does not (no pytest).

    with JupyterProcess(tmp_path, options={"broker": "memory"}).start() as server:
        urllib.request.urlopen(server.url + "iavicenne/api/rooms?token=" + server.token)
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from tornado.websocket import WebSocketClientConnection

import iavicenne_protocol as p

LOOPBACK = "127.0.0.1"
EXTENSION = "iavicenne_ext"
# variables that would point a kernel this server starts at some other server: a kernel
# must find its own server by itself, as it does in a user's JupyterLab (the JupyterHub
# ones too, when the tests run inside a Hub user's server: its kernels would look for the
# room service)
FOREIGN_SERVER_VARIABLES = (
    "IAVICENNE_URL",
    "IAVICENNE_TOKEN",
    "JUPYTER_SERVER_URL",
    "JUPYTER_TOKEN",
    "IAVICENNE_ROOMS_URL",
    "JUPYTERHUB_API_TOKEN",
    "JUPYTERHUB_SERVICE_URL",
)

FrameFilter = Callable[[dict[str, Any]], bool]


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll `condition` until it holds; `TimeoutError` naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout} s")
        time.sleep(interval)


def other_server_extensions() -> list[str]:
    """The server extensions enabled in this environment besides iAvicenne.

    Each server turns them off: it starts faster (JupyterLab alone takes a second), and
    what runs is iAvicenne on Jupyter Server, not whatever else happens to be installed.
    """
    from jupyter_core.paths import jupyter_config_path
    from jupyter_server.config_manager import BaseJSONConfigManager

    enabled: dict[str, bool] = {}
    for directory in reversed(jupyter_config_path()):
        data = BaseJSONConfigManager(config_dir=directory).get("jupyter_server_config")
        enabled.update(data.get("ServerApp", {}).get("jpserver_extensions", {}))
    return sorted(name for name, on in enabled.items() if on and name != EXTENSION)


class JupyterProcess:
    """``python -m jupyter_server`` (``-m jupyterlab`` with `lab`) with iAvicenne, on a free
    loopback port, authenticated by `token`.

    Everything it writes is in ``workdir / name``: a config folder in which iAvicenne is the
    only server extension (JupyterLab too, with `lab`), a runtime folder (where the kernels
    it starts find it), the root folder it serves, and ``server.log``. `options` are
    ``IAvicenne`` traitlets, over `default_options`. The port stays the same across
    `stop` and `launch`, so a restart is the same server to its clients.
    """

    # tests, notebooks and benchmarks send in bursts; the limits have tests of their own
    default_options: ClassVar[Mapping[str, Any]] = {
        "messages_per_second": 10_000,
        "burst": 10_000,
        "chat_messages_per_second": 10_000,
        "chat_messages_burst": 10_000,
    }

    def __init__(
        self,
        workdir: Path,
        *,
        name: str = "jupyter",
        lab: bool = False,
        token: str | None = None,
        options: Mapping[str, Any] | None = None,
        log_level: str | None = None,
        extensions: Iterable[str] = (),
    ) -> None:
        self.name = name
        #: other server extensions enabled (``notebook``, to serve Notebook 7 beside JupyterLab)
        self.extensions = tuple(extensions)
        self.workdir = workdir / name
        self.lab = lab
        self.token = token or secrets.token_hex(16)
        self.port = free_port()
        self.options: dict[str, Any] = {**self.default_options, **(options or {})}
        self.log_level = log_level
        self.root = self.workdir / "root"
        self.runtime = self.workdir / "runtime"
        self.config = self.workdir / "config"
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<JupyterProcess {self.name} {self.url}>"

    # -- addresses ----------------------------------------------------------------------------
    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``: what a browser grants permissions to, what a path follows."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """The server's URL with its trailing slash, as ``jupyter server list`` prints it."""
        return self.origin + "/"

    def ws_url(self, path: str = p.ROOMS_PATH) -> str:
        """The URL of a socket endpoint: the room socket, or `protocol.SIGNALING_PATH`."""
        return f"ws://{LOOPBACK}:{self.port}/{path.lstrip('/')}"

    @property
    def env(self) -> dict[str, str]:
        """The environment of the process, and of the kernels it starts."""
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(self.config),
            "JUPYTER_RUNTIME_DIR": str(self.runtime),
            "JUPYTER_DATA_DIR": str(self.workdir / "data"),
            "JUPYTER_PLATFORM_DIRS": "0",
            "PYTHONUNBUFFERED": "1",
        }
        for variable in FOREIGN_SERVER_VARIABLES:
            env.pop(variable, None)
        return env

    # -- its log ------------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- its life -----------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not started")
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def launch(self) -> JupyterProcess:
        """Start the process, without waiting for it to serve (see `wait_serving`)."""
        for folder in (self.root, self.runtime, self.config):
            folder.mkdir(parents=True, exist_ok=True)
        extensions = dict.fromkeys(other_server_extensions(), False)
        extensions[EXTENSION] = True
        if self.lab:
            extensions["jupyterlab"] = True
        extensions.update(dict.fromkeys(self.extensions, True))
        # in the config folder, the highest in precedence: it overrides the environment's
        server_config = {"ServerApp": {"jpserver_extensions": extensions}}
        (self.config / "jupyter_server_config.json").write_text(json.dumps(server_config))
        args = [
            sys.executable,
            "-m",
            "jupyterlab" if self.lab else "jupyter_server",
            f"--ServerApp.ip={LOOPBACK}",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            # ServerApp.token is deprecated since jupyter_server 2 in favour of this one
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.open_browser=False",
            "--ServerApp.allow_root=True",  # CI containers run as root
            f"--ServerApp.root_dir={self.root}",
        ]
        if self.log_level:
            args.append(f"--ServerApp.log_level={self.log_level}")
        if self.lab:
            args += self._lab_args()
        args += [f"--IAvicenne.{key}={value}" for key, value in self.options.items()]
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env, cwd=self.root
            )
        return self

    def _lab_args(self) -> list[str]:
        # settings and workspaces of its own; no news pop-up (nothing to fetch from here)
        settings = self.workdir / "lab-settings"
        notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notification.parent.mkdir(parents=True, exist_ok=True)
        notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        return [
            # a test drives the notebook through JupyterLab's own commands (window.jupyterapp)
            "--LabApp.expose_app_in_browser=True",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={self.workdir / 'lab-workspaces'}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]

    def wait_serving(self, timeout: float = 90.0, *, rooms: bool = True) -> JupyterProcess:
        """Wait until the server answers; with `rooms`, until its rooms work (its broker is up)."""
        path = p.REST_PATH + "rooms" if rooms else "api/status"

        def ready() -> bool:
            if not self.running():
                code = self.proc.returncode if self.proc is not None else None
                raise RuntimeError(f"{self.name} exited ({code}):\n{self.log_text()[-3000:]}")
            try:
                return self.get(path, timeout=1.0)[0] == 200
            except (OSError, ValueError):
                return False

        try:
            wait_until(ready, timeout, f"{self.name} serving {path}", interval=0.1)
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n{self.log_text()[-3000:]}") from None
        return self

    def start(self, timeout: float = 90.0) -> JupyterProcess:
        """`launch`, then `wait_serving`: the server, ready for its rooms."""
        return self.launch().wait_serving(timeout)

    def kill(self) -> None:
        """SIGKILL: no goodbye (with Redis, its members stay until another server sweeps them)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self) -> None:
        """SIGTERM without waiting: `stop_all` asks every server first, then waits for each."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (Jupyter stops its extensions and kernels; the broker leaves Redis
        cleanly), SIGKILL if it is still there after `timeout` seconds."""
        self.terminate()
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> JupyterProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.stop()

    # -- requests -----------------------------------------------------------------------------
    def get(self, path: str, timeout: float = 2.0) -> tuple[int, Any]:
        """GET `path` (with or without its leading slash) with the token: status and JSON body."""
        request = urllib.request.Request(f"{self.url}{path.lstrip('/')}", headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            with error:
                return error.code, None


# -- several servers --------------------------------------------------------------------------
def start_all(servers: Iterable[JupyterProcess], timeout: float = 90.0) -> list[JupyterProcess]:
    """Launch every server at once (start-up is mostly imports), then wait for each; if one
    does not come up, stop them all before raising."""
    started = [server.launch() for server in servers]
    try:
        for server in started:
            server.wait_serving(timeout)
    except BaseException:
        stop_all(started)
        raise
    return started


def stop_all(servers: Iterable[JupyterProcess]) -> None:
    """SIGTERM to every server at once, then wait for each."""
    servers = list(servers)
    for server in servers:
        server.terminate()
    for server in servers:
        server.stop()


# -- a client -------------------------------------------------------------------------------
class WSClient:
    """A test client over a real WebSocket: send frames, wait for the ones you expect."""

    def __init__(self, ws: WebSocketClientConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        if isinstance(frame, dict):
            frame = json.dumps(frame)
        await self.ws.write_message(frame, binary=isinstance(frame, bytes))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.read_message(), timeout)
        if raw is None:
            raise ConnectionError(f"closed: {self.ws.close_code} {self.ws.close_reason}")
        frame = json.loads(raw)
        self.seen.append(frame)
        return frame

    async def expect(self, kind: str, timeout: float = 5.0, where: FrameFilter | None = None) -> dict[str, Any]:
        """The next frame of type `kind` (matching `where`), skipping others."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"no {kind!r} frame within {timeout} s; saw {self.seen[-5:]}")
            frame = await self.recv(left)
            if frame.get("type") == kind and (where is None or where(frame)):
                return frame

    async def silent(self, timeout: float = 0.3) -> list[dict[str, Any]]:
        """Frames that arrive within `timeout` (usually asserted to be none of some kind)."""
        got: list[dict[str, Any]] = []
        try:
            while True:
                got.append(await self.recv(timeout))
        except (asyncio.TimeoutError, TimeoutError):
            return got

    async def join(self, room: str, user_id: str | None = None, **payload: Any) -> dict[str, Any]:
        if user_id is not None:
            await self.send({"type": p.CONNECT, "payload": {"user_id": user_id}})
            await self.expect(p.CONNECT)
        await self.send({"type": p.JOIN_ROOM, "room": room, "payload": payload})
        return await self.expect(p.ROOM_JOINED, where=lambda f: f.get("room") == room)

    def close(self) -> None:
        self.ws.close()
