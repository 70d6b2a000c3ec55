"""iAvicenne on a real JupyterHub: two analysts, alice and bob, and the room service.

One Hub for the module (JupyterHub from PyPI, configurable-http-proxy from npm, the
DummyAuthenticator with a password, SimpleLocalProcessSpawner), configured as the README's
"Deploy on JupyterHub" says: the room service (`iavicenne-room-service`) is a Hub-managed
service, the only process given the Redis URL (a `redis-server` of the module's own, with
a password); users' servers and kernels get the scopes to find it and to use it. bob's
server runs with ``USER=alice``, as the issue's forger did.

Kernels are started through each user's server's REST API (through the proxy, with a
token the Hub made for that user) and run code over the kernel's WebSocket, as
JupyterLab does; browsers are Debian's Chromium driven by Playwright, logged in through
the Hub's login form.

Everything runs as one OS user here (SimpleLocalProcessSpawner): that proves the protocol
(who is who, who holds what), not the OS isolation the README's threat model asks of a
deployment (the service and Redis out of the users' reach).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import websocket
from servers import RedisProcess, redis_binary, stop_with_children

from iavicenne_ext.testing import FOREIGN_SERVER_VARIABLES, LOOPBACK, free_port, other_server_extensions, wait_until

PASSWORD = "iavicenne-hub-tests"
SERVICE = "iavicenne"
REPLICA = "iavicenne-2"  # a second room service on the same Redis
USERS = ("alice", "bob")
BIN = Path(sys.executable).parent
# bob's look-alike of alice: CYRILLIC SMALL LETTER A (U+0430) for the Latin 'a'
ALICE_LOOKALIKE = "\u0430lice"
# the scopes the README gives users and their servers' tokens
ROOM_SCOPES = [f"{scope}!service={name}" for name in (SERVICE, REPLICA) for scope in ("access:services", "read:services")]
SERVER_TOKEN_SCOPES = ["users:activity!user", "access:servers!server", "read:users:groups!user", *ROOM_SCOPES]
PROXY_HINT = "npm install -g configurable-http-proxy (.ci/run does)"
TIMEOUT_MS = 30_000


def _missing(reason: str, hint: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the JupyterHub tests: {hint}", pytrace=False)
    pytest.skip(f"{reason}: {hint}")


# -- the Hub ---------------------------------------------------------------------------------


def hub_config(workdir: Path, *, ports: dict[str, int], redis_url: str, tester_token: str) -> str:
    """The jupyterhub_config.py of the module's Hub: the README's lines, and the tests' own."""
    user_config = workdir / "user-config"  # users' servers: iAvicenne alone, no JupyterLab
    user_config.mkdir(parents=True, exist_ok=True)
    extensions = {**dict.fromkeys(other_server_extensions(), False), "iavicenne_ext": True}
    (user_config / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": {"jpserver_extensions": extensions}}))
    # bob's own server config says he is alice, as the forger did
    forger_config = workdir / "bob-config"
    forger_config.mkdir(parents=True, exist_ok=True)
    (forger_config / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": {"jpserver_extensions": extensions}}))
    (forger_config / "jupyter_server_config.py").write_text('import os\nos.environ["USER"] = os.environ["LOGNAME"] = "alice"\n')
    settings = {
        "bind_url": f"http://{LOOPBACK}:{ports['proxy']}/",
        "hub_bind_url": f"http://{LOOPBACK}:{ports['hub']}",
        "proxy_api": f"http://{LOOPBACK}:{ports['proxy_api']}",
        "proxy_command": shutil.which("configurable-http-proxy"),
        "service_url": f"http://{LOOPBACK}:{ports['service']}",
        "replica_url": f"http://{LOOPBACK}:{ports['replica']}",
        "service_command": [
            str(BIN / "iavicenne-room-service"),
            "--ServerApp.allow_root=True",  # CI runs as root
            "--IAvicenne.presence_refresh=0.5",
            "--IAvicenne.presence_timeout=2",
        ],
        "singleuser": str(BIN / "jupyterhub-singleuser"),
        "redis_url": redis_url,
        "tester_token": tester_token,
        "homes": str(workdir / "home"),
        "user_config": str(user_config),
        "forger_config": str(forger_config),
        "room_scopes": ROOM_SCOPES,
        "server_token_scopes": SERVER_TOKEN_SCOPES,
        "password": PASSWORD,
        "db": f"sqlite:///{workdir / 'jupyterhub.sqlite'}",
    }
    return textwrap.dedent(
        f"""
        settings = {settings!r}
        c = get_config()  # noqa: F821
        c.JupyterHub.bind_url = settings["bind_url"]
        c.JupyterHub.hub_bind_url = settings["hub_bind_url"]
        c.JupyterHub.db_url = settings["db"]
        c.JupyterHub.cleanup_servers = True
        c.ConfigurableHTTPProxy.api_url = settings["proxy_api"]
        c.ConfigurableHTTPProxy.command = [settings["proxy_command"]]
        c.JupyterHub.authenticator_class = "dummy"
        c.DummyAuthenticator.password = settings["password"]
        c.Authenticator.allowed_users = {{"alice", "bob"}}
        c.JupyterHub.load_groups = {{"oncology": {{"users": ["alice"]}}}}
        c.JupyterHub.allow_named_servers = True

        # -- the README's lines: the room service, and what users need to use it
        c.JupyterHub.services = [
            {{
                "name": "iavicenne",
                "url": settings["service_url"],
                "command": settings["service_command"],
                "environment": {{"IAVICENNE_REDIS_URL": settings["redis_url"]}},
                "oauth_client_allowed_scopes": ["read:users:groups!user"],
                "oauth_no_confirm": True,
            }},
            # a replica: one more room service on the same Redis (the README's "Replicas")
            {{
                "name": "iavicenne-2",
                "url": settings["replica_url"],
                "command": settings["service_command"],
                "environment": {{"IAVICENNE_REDIS_URL": settings["redis_url"]}},
                "oauth_client_allowed_scopes": ["read:users:groups!user"],
                "oauth_no_confirm": True,
            }},
            # the tests' own: starts servers and makes tokens for alice and bob
            {{"name": "tester", "api_token": settings["tester_token"]}},
        ]
        c.JupyterHub.load_roles = [
            {{"name": "user", "scopes": ["self", *settings["room_scopes"]]}},
            {{"name": "tester", "services": ["tester"], "scopes": ["admin:users", "admin:servers", "tokens", "read:services"]}},
        ]
        c.Spawner.server_token_scopes = settings["server_token_scopes"]

        # -- users' servers: local processes, each with a home of its own
        c.JupyterHub.spawner_class = "simple"
        c.SimpleLocalProcessSpawner.home_dir_template = settings["homes"] + "/{{username}}"
        c.Spawner.cmd = [settings["singleuser"]]
        c.Spawner.args = ["--ServerApp.allow_root=True"]  # CI runs as root
        c.Spawner.environment = {{"JUPYTER_CONFIG_DIR": settings["user_config"]}}
        c.Spawner.start_timeout = 60
        c.Spawner.http_timeout = 60

        def misconfigure(spawner):
            # bob's server's config says he is alice (the issue's forger); his servers named "redis"
            # and "nosuch" are an admin's mistakes: the broker's credential in a user's server, and
            # a room service the Hub does not have
            if spawner.user.name == "bob":
                spawner.environment = {{**spawner.environment, "JUPYTER_CONFIG_DIR": settings["forger_config"]}}
            if spawner.name == "redis":
                spawner.args = [*spawner.args, "--IAvicenne.broker=redis", "--IAvicenne.room_service="]
            if spawner.name == "nosuch":
                spawner.args = [*spawner.args, "--IAvicenne.room_service=nosuch"]

        c.Spawner.pre_spawn_hook = misconfigure
        """
    )


class Hub:
    """The module's JupyterHub: its public URL (the proxy), and the tests' ways in."""

    def __init__(self, workdir: Path, redis: RedisProcess) -> None:
        self.workdir = workdir
        self.redis = redis
        self.ports = {name: free_port() for name in ("proxy", "proxy_api", "hub", "service", "replica")}
        self.url = f"http://{LOOPBACK}:{self.ports['proxy']}/"
        self.service_url = f"http://{LOOPBACK}:{self.ports['service']}/services/{SERVICE}/"
        self.replica_url = f"http://{LOOPBACK}:{self.ports['replica']}/services/{REPLICA}/"
        self.tester_token = secrets.token_hex(16)
        self.tokens: dict[str, str] = {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "jupyterhub.log"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> Hub:
        for user in USERS:
            (self.workdir / "home" / user).mkdir(parents=True, exist_ok=True)
        config = self.workdir / "jupyterhub_config.py"
        config.write_text(hub_config(self.workdir, ports=self.ports, redis_url=self.redis.url, tester_token=self.tester_token))
        # the Hub's environment holds no Redis URL: only the service's `environment` does
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in FOREIGN_SERVER_VARIABLES and not k.startswith(("IAVICENNE_", "JUPYTERHUB_"))
        }
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "jupyterhub"), "-f", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                env=env,
            )

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"jupyterhub exited ({self.proc.returncode}):\n{self.log_text()[-4000:]}")
            try:
                return all(
                    self.request("GET", f"services/{name}/iavicenne/api/config", token=self.tester_token)[0] in (403, 200)
                    for name in (SERVICE, REPLICA)
                )
            except OSError:
                return False

        try:
            wait_until(up, 60, "JupyterHub and its room services", interval=0.2)
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n{self.log_text()[-4000:]}") from None
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None:
            stop_with_children(self.proc)

    # -- HTTP -----------------------------------------------------------------------------------
    def request(
        self, method: str, path: str, body: Any = None, *, token: str | None = None, base: str | None = None
    ) -> tuple[int, Any]:
        """(status, JSON answer or text) of a request through the proxy (or to `base`)."""
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"token {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request((base or self.url) + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode(errors="replace")
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text

    def hub_api(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.request(method, f"hub/api/{path}", body, token=self.tester_token)
        assert status < 300, f"{method} hub/api/{path}: {status} {answer}"
        return answer

    def token(self, user: str) -> str:
        """A token of `user`'s, as one they made on the Hub's token page."""
        if user not in self.tokens:
            self.tokens[user] = self.hub_api("POST", f"users/{user}/tokens", {"note": "iavicenne tests"})["token"]
        return self.tokens[user]

    def start_server(self, user: str, name: str = "") -> dict[str, Any]:
        path = f"users/{user}/servers/{name}" if name else f"users/{user}/server"
        status, answer = self.request("POST", f"hub/api/{path}", token=self.tester_token)
        assert status in (201, 202, 400), (status, answer)  # 400: already running

        def ready() -> bool:
            server = self.hub_api("GET", f"users/{user}").get("servers", {}).get(name)
            return bool(server and server.get("ready"))

        wait_until(ready, 60, f"{user}'s server {name!r}", interval=0.2)
        model: dict[str, Any] = self.hub_api("GET", f"users/{user}")["servers"][name]
        return model


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    if shutil.which("configurable-http-proxy") is None:
        _missing("configurable-http-proxy is not installed", PROXY_HINT)
    redis_binary()  # fails in CI, skips elsewhere, saying how to install it
    workdir = tmp_path_factory.mktemp("jupyterhub")
    redis = RedisProcess(workdir / "redis", password=secrets.token_hex(16)).start()
    instance = Hub(workdir, redis)
    try:
        instance.start()
        for user in USERS:
            instance.start_server(user)
        yield instance
    finally:
        instance.stop()
        redis.stop()


# -- kernels ----------------------------------------------------------------------------------


class Kernel:
    """A kernel started through `user`'s server's REST API, run over its WebSocket."""

    def __init__(self, hub: Hub, user: str) -> None:
        self.hub = hub
        self.user = user
        token = hub.token(user)
        status, model = hub.request("POST", f"user/{user}/api/kernels", {"name": "python3"}, token=token)
        assert status == 201, (status, model)
        self.id = model["id"]
        address = hub.url.replace("http://", "ws://") + f"user/{user}/api/kernels/{self.id}/channels"
        self.ws = websocket.create_connection(address, header=[f"Authorization: token {token}"], timeout=60)
        self.session = uuid.uuid4().hex

    def run(self, code: str, timeout: float = 60.0) -> str:
        """Run `code` (top-level await allowed); what it printed. A failure raises with its traceback."""
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "session": self.session,
            "username": self.user,
            "version": "5.3",
        }
        content = {
            "code": textwrap.dedent(code),
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
        }
        self.ws.send(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}))
        out: list[str] = []
        error: dict[str, Any] | None = None
        replied = idle = False
        deadline = time.monotonic() + timeout
        while not (replied and idle):
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                message = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                raise AssertionError(f"{self.user}'s kernel: no answer within {timeout} s; printed {''.join(out)!r}") from None
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = message["header"]["msg_type"]
            if kind == "stream":
                out.append(message["content"]["text"])
            elif kind == "error":
                error = message["content"]
            elif kind == "execute_reply":
                replied = True
            elif kind == "status" and message["content"]["execution_state"] == "idle":
                idle = True
        if error is not None:
            raise AssertionError(f"{self.user}'s kernel: {error['ename']}: {error['evalue']}\n" + "\n".join(error["traceback"]))
        return "".join(out)

    def json(self, code: str, timeout: float = 60.0) -> Any:
        """Run `code`, whose last printed line is JSON; that value."""
        return json.loads(self.run(code, timeout).strip().splitlines()[-1])

    def pid(self) -> int:
        """The kernel's process: the one of the Hub's descendants that runs this kernel's id."""
        for proc in psutil.Process(self.hub.pid).children(recursive=True):
            if any(self.id in part for part in proc.cmdline()):
                return int(proc.pid)
        raise AssertionError(f"no process for {self.user}'s kernel {self.id}")

    def close(self) -> None:
        self.ws.close()
        self.hub.request("DELETE", f"user/{self.user}/api/kernels/{self.id}", token=self.hub.token(self.user))


@pytest.fixture(scope="module")
def kernels(hub: Hub) -> Iterator[dict[str, Kernel]]:
    """alice's and bob's kernels, each joined to room 'lobby' with no arguments."""
    started = {user: Kernel(hub, user) for user in USERS}
    try:
        for kernel in started.values():
            kernel.run(
                """
                import asyncio, json, os, iavicenne
                client = await iavicenne.connect()
                lobby = await client.join("lobby")
                """
            )
        yield started
    finally:
        for kernel in started.values():
            kernel.close()


def service_members(hub: Hub, room: str, user: str = "alice") -> dict[str, dict[str, Any]]:
    status, answer = hub.request("GET", f"services/{SERVICE}/iavicenne/api/rooms/{room}", token=hub.token(user))
    assert status == 200, (status, answer)
    return {member["user_id"]: member for member in answer["members"]}


# -- the tests ---------------------------------------------------------------------------------


def test_both_kernels_find_the_room_service_and_show_as_their_hub_users(hub: Hub, kernels: dict[str, Kernel]) -> None:
    for user, kernel in kernels.items():
        seen = kernel.json(
            'print(json.dumps({"url": client.server.url, "user_id": client.user_id, "USER": os.environ.get("USER")}))'
        )
        # found by itself: the room service (through the Hub's API), not its own server
        assert seen["url"] == hub.service_url, seen
        assert seen["user_id"] == user, seen
    # bob's server says USER=alice: that changes nothing
    assert kernels["bob"].json('print(json.dumps(os.environ.get("USER")))') == "alice"
    members = service_members(hub, "lobby")
    assert set(members) == {"alice", "bob"}, members
    for user in USERS:
        assert members[user]["identity"]["username"] == user, members[user]
        assert members[user]["identity"]["name"] == user, members[user]


def test_the_room_service_serves_rooms_only(hub: Hub, kernels: dict[str, Kernel]) -> None:
    # nobody gets kernels, files or terminals on the shared process: not bob's kernel with
    # its own token, not alice with hers
    for user in USERS:
        token = hub.token(user)
        for path in ("api/kernels", "api/contents", "api/sessions", "api/terminals", "files/x"):
            assert hub.request("GET", f"services/{SERVICE}/{path}", token=token)[0] in (403, 404), (user, path)
        status, _ = hub.request("POST", f"services/{SERVICE}/api/kernels", {"name": "python3"}, token=token)
        assert status == 403, (user, status)
    code = textwrap.dedent(
        """
        import urllib.request, urllib.error
        codes = {}
        for method, path in (("POST", "api/kernels"), ("GET", "api/contents"), ("GET", "iavicenne/api/rooms")):
            request = urllib.request.Request(client.server.url + path, method=method, data=b"{}" if method == "POST" else None,
                                             headers={"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]})
            try:
                codes[path] = urllib.request.urlopen(request, timeout=10).status
            except urllib.error.HTTPError as error:
                codes[path] = error.code
        print(json.dumps(codes))
        """
    )
    assert kernels["bob"].json(code) == {"api/kernels": 403, "api/contents": 403, "iavicenne/api/rooms": 200}
    # and no Redis credential in the users' servers
    assert hub.request("GET", "user/alice/iavicenne/api/config", token=hub.token("alice"))[1] == {
        "rooms_url": hub.service_url,
        "page_url": f"/services/{SERVICE}/iavicenne/",
        "service": SERVICE,
    }


def test_no_redis_credential_in_bobs_server_or_kernel(hub: Hub, kernels: dict[str, Kernel]) -> None:
    password = hub.redis.password
    assert password
    port = f":{hub.redis.port}"

    def exposed(proc: psutil.Process) -> list[str]:
        """What of the Redis credential a process shows: its /proc environ and cmdline."""
        shown = []
        for what in ("environ", "cmdline"):
            for entry in Path(f"/proc/{proc.pid}/{what}").read_bytes().decode(errors="replace").split("\0"):
                if password in entry or port in entry or entry.startswith("IAVICENNE_REDIS_URL="):
                    shown.append(f"{what}: {entry}")
        return shown

    hub_children = psutil.Process(hub.pid).children(recursive=True)
    servers = [
        proc
        for proc in hub_children
        if proc.environ().get("JUPYTERHUB_USER") == "bob" and "jupyterhub-singleuser" in " ".join(proc.cmdline())
    ]
    assert servers, "bob's server process not found"
    kernel = psutil.Process(kernels["bob"].pid())
    for proc in (*servers, kernel):
        assert exposed(proc) == [], (proc.pid, proc.cmdline())
    # the check sees the URL where it is: in the service's environment, and only there
    service = [proc for proc in hub_children if "iavicenne-room-service" in " ".join(proc.cmdline())]
    assert service and all(exposed(proc) for proc in service)
    # bob's kernel, knowing the port, gets nowhere without the password
    answer = kernels["bob"].json(
        f"""
        import redis
        try:
            redis.Redis(host="{LOOPBACK}", port={hub.redis.port}, socket_timeout=5).get("x")
            print(json.dumps("read"))
        except redis.RedisError as error:
            print(json.dumps(type(error).__name__))
        """
    )
    assert answer == "AuthenticationError"


def test_bob_cannot_post_as_alice(hub: Hub, kernels: dict[str, Kernel]) -> None:
    # in a room where alice is not (nobody holds the name there yet), with her name and with
    # a look-alike of it: the Hub says he is bob
    for name in ("alice", ALICE_LOOKALIKE, "alice#kernel"):
        answer = kernels["bob"].json(
            f"""
            forger = None
            try:
                forger = await asyncio.wait_for(iavicenne.connect(user_id={name!r}), 20)
                await asyncio.wait_for(forger.join("alice-is-not-here"), 20)
                result = "joined"
            except iavicenne.ClientError as error:
                result = [type(error).__name__, getattr(error, "code", None), str(error)]
            finally:
                if forger is not None:
                    await forger.close()
            print(json.dumps(result))
            """
        )
        assert answer != "joined", name
        assert answer[1] == "name-not-yours", answer
        assert "'bob'" in answer[2], answer
    # bob's token does not open alice's server either
    assert hub.request("GET", "user/alice/api/kernels", token=hub.token("bob"))[0] == 403
    assert hub.request("GET", "user/alice/iavicenne/api/config", token=hub.token("bob"))[0] == 403


def test_a_private_room_refuses_bob_on_join_on_replay_and_in_listings(hub: Hub, kernels: dict[str, Kernel]) -> None:
    kernels["alice"].run(
        """
        await client.create_room("q3-private", access="private")
        q3 = await client.join("q3-private")
        await q3.send("the Q3 figures, for alice only")
        """
    )
    refused = kernels["bob"].json(
        """
        import websocket
        import iavicenne_protocol as p
        seen = {}
        try:
            await client.join("q3-private")
            seen["join"] = "joined"
        except iavicenne.RequestFailed as error:
            seen["join"] = [error.code, str(error)]
        # the replay a forger would ask for, on a socket of his own: since 0, all of it
        ws = websocket.create_connection(client.server.ws_url(p.ROOMS_PATH), timeout=10,
                                         header=["Authorization: token " + os.environ["JUPYTERHUB_API_TOKEN"]])
        ws.send(json.dumps({"type": p.JOIN_ROOM, "room": "q3-private", "ref": "r1", "payload": {"since": 0}}))
        frames = []
        while not any(f.get("ref") == "r1" for f in frames):
            frames.append(json.loads(ws.recv()))
        ws.close()
        seen["replay"] = [[f.get("type"), f.get("code")] for f in frames]
        seen["listed"] = [room["room"] for room in await client.list_rooms()]
        print(json.dumps(seen))
        """
    )
    assert refused["join"][0] == "forbidden", refused
    assert "private" in refused["join"][1] and "alice" in refused["join"][1], refused  # whom to ask
    assert ["error", "forbidden"] in refused["replay"] and all(kind != "message" for kind, _ in refused["replay"]), refused
    assert "q3-private" not in refused["listed"] and "lobby" in refused["listed"], refused
    # the REST API through the proxy: as if the room did not exist, for bob only
    status, _ = hub.request("GET", f"services/{SERVICE}/iavicenne/api/rooms/q3-private", token=hub.token("bob"))
    assert status == 404
    assert "alice" in service_members(hub, "q3-private", "alice")
    # once alice invites him, bob joins and reads what was said
    kernels["alice"].run('await client.invite("q3-private", "bob")')
    texts = kernels["bob"].json(
        """
        q3 = await client.join("q3-private")
        print(json.dumps([m.text for m in await q3.recent(10)]))
        """
    )
    assert texts == ["the Q3 figures, for alice only"]


def test_a_group_room_follows_the_hubs_groups(hub: Hub, kernels: dict[str, Kernel]) -> None:
    # alice is in the Hub group "oncology" (load_groups), bob is not: the groups reach the
    # service because the users' tokens may read them (read:users:groups!user)
    kernels["alice"].run(
        """
        await client.create_room("tumour-board", access="group", group="oncology")
        board = await client.join("tumour-board")
        """
    )
    answer = kernels["bob"].json(
        """
        try:
            await client.create_room("bobs-oncology", access="group", group="oncology")
            made = "made"
        except iavicenne.RequestFailed as error:
            made = error.code
        try:
            await client.join("tumour-board")
            joined = "joined"
        except iavicenne.RequestFailed as error:
            joined = error.code
        print(json.dumps([made, joined]))
        """
    )
    assert answer[1] == "forbidden", answer
    assert answer[0] != "made", answer  # a group he is not in is not his to open a room for


def test_a_peer_link_between_alice_and_bob_shows_each_others_verified_identity(hub: Hub, kernels: dict[str, Kernel]) -> None:
    kernels["bob"].run(
        """
        bob_net = await iavicenne.PeerNetwork.join("pair", "bob", loopback=True)
        accepting = asyncio.ensure_future(bob_net.accept(timeout=60))
        """
    )
    alice_sees = kernels["alice"].json(
        """
        alice_net = await iavicenne.PeerNetwork.join("pair", "alice", loopback=True)
        link = await alice_net.connect("bob", timeout=60)
        await link.send("hello bob, directly")
        print(json.dumps({"identity": link.identity, "path": link.path}))
        """,
        timeout=90,
    )
    bob_sees = kernels["bob"].json(
        """
        link = await asyncio.wait_for(accepting, 60)
        text = await asyncio.wait_for(link.recv(), 30)
        print(json.dumps({"identity": link.identity, "text": text}))
        """,
        timeout=90,
    )
    assert alice_sees["identity"]["username"] == "bob", alice_sees
    assert bob_sees["identity"]["username"] == "alice", bob_sees
    assert bob_sees["text"] == "hello bob, directly"
    # and bob cannot take alice's peer_id in signaling
    taken = kernels["bob"].json(
        """
        try:
            forged = await iavicenne.PeerNetwork.join("pair2", "alice", loopback=True)
            await forged.close()
            result = "joined"
        except iavicenne.ClientError as error:
            result = getattr(error, "code", type(error).__name__)
        print(json.dumps(result))
        """
    )
    assert taken == "name-not-yours", taken
    for user, net in (("alice", "alice_net"), ("bob", "bob_net")):
        kernels[user].run(f"await {net}.close()")


def test_two_room_services_on_one_redis_share_the_rooms(hub: Hub, kernels: dict[str, Kernel]) -> None:
    # bob's kernel on the replica, alice's on the first service: one room, verified identities
    seen = kernels["bob"].json(
        f"""
        replica = await iavicenne.connect(url={hub.replica_url!r}, token=os.environ["JUPYTERHUB_API_TOKEN"])
        shared = await replica.join("lobby")
        await shared.send("bob, by the replica")
        print(json.dumps({{"members": sorted(shared.members), "identity": replica.identity}}))
        """
    )
    assert seen["members"] == ["alice", "bob"] and seen["identity"]["username"] == "bob", seen
    heard = kernels["alice"].json(
        """
        async def from_replica():
            while True:
                for message in await lobby.recent(20):
                    if message.text == "bob, by the replica":
                        return message
                await asyncio.sleep(0.2)
        message = await asyncio.wait_for(from_replica(), 20)
        print(json.dumps({"user_id": message.user_id, "identity": message.identity}))
        """
    )
    assert heard["user_id"] == "bob" and heard["identity"]["username"] == "bob", heard
    kernels["bob"].run("await replica.close()")


def test_a_user_server_with_the_redis_broker_refuses_to_start(hub: Hub) -> None:
    # an admin's mistake: bob's server named "redis" is given broker=redis (misconfigure)
    status, answer = hub.request("POST", "hub/api/users/bob/servers/redis", token=hub.tester_token)
    # 500: the Hub saw it exit while it waited for the spawn; 202: it is still waiting
    assert status in (201, 202, 500), (status, answer)

    def redis_server() -> list[psutil.Process]:
        found = []
        for proc in psutil.Process(hub.pid).children(recursive=True):
            try:
                if proc.environ().get("JUPYTERHUB_SERVER_NAME") == "redis" and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except psutil.Error:  # gone meanwhile
                continue
        return found

    # it says why, naming the options, and exits (the Hub then gives up on it)
    wait_until(lambda: "refusing broker='redis'" in hub.log_text() and not redis_server(), 30, "bob's 'redis' server refused")
    refusal = next(line for line in hub.log_text().splitlines() if "refusing broker='redis'" in line)
    assert "IAvicenne.room_service" in refusal and "IAvicenne.trust_user_servers=True" in refusal, refusal
    assert hub.hub_api("GET", "users/bob")["servers"].get("redis", {}).get("ready") is not True


def test_a_user_server_names_the_missing_room_service_and_the_setting_to_fix(hub: Hub) -> None:
    # bob's server named "nosuch" looks for a service the Hub does not have (misconfigure)
    hub.start_server("bob", "nosuch")
    status, answer = hub.request("GET", "user/bob/nosuch/iavicenne/api/config", token=hub.token("bob"))
    assert status == 503, (status, answer)
    assert "no service 'nosuch'" in answer["message"] and "c.JupyterHub.services" in answer["message"], answer
    # and it keeps serving: the page says the same, its kernels too
    assert hub.request("GET", "user/bob/nosuch/api/status", token=hub.token("bob"))[0] == 200
    hub.request("DELETE", "hub/api/users/bob/servers/nosuch", token=hub.tester_token)


def test_the_room_service_outside_a_hub_says_how_to_run_it(tmp_path: Path) -> None:
    command = [str(BIN / "iavicenne-room-service")]
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "IAVICENNE_"))}
    alone = subprocess.run(command, env=bare, capture_output=True, text=True, timeout=60, check=False)
    assert alone.returncode == 1 and "c.JupyterHub.services" in alone.stderr and "$JUPYTERHUB_SERVICE_NAME" in alone.stderr, alone
    as_service = {
        **bare,
        "JUPYTERHUB_SERVICE_NAME": "iavicenne",
        "JUPYTERHUB_SERVICE_URL": f"http://{LOOPBACK}:{free_port()}",
        "JUPYTERHUB_API_URL": f"http://{LOOPBACK}:{free_port()}/hub/api",
        "JUPYTERHUB_API_TOKEN": "x",
    }
    # without a Redis URL it runs on the local store, in its own data directory, and says
    # that replicas need Redis (no Hub answers here: it stops once the store is open)
    log = tmp_path / "service.log"
    with log.open("w") as output:
        service = subprocess.Popen(command, env={**as_service, "JUPYTER_DATA_DIR": str(tmp_path / "data")}, stderr=output)
        try:
            store = tmp_path / "data" / "iavicenne" / "rooms.sqlite3"
            wait_until(store.exists, 60, "the room service's local store")
        finally:
            service.terminate()
            service.wait(30)
    said = log.read_text()
    assert "no $IAVICENNE_REDIS_URL, the rooms are kept in the local store" in said and "replicas need Redis" in said, said


# -- browsers ---------------------------------------------------------------------------------


def logged_in(browser: Any, hub: Hub, user: str) -> Any:
    """A browser context logged in to the Hub as `user`, through its login form."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(hub.url + "hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(lambda url: "/hub/login" not in url)
    return page


def test_alices_browser_and_kernel_are_one_member_and_bob_is_refused_her_page(
    hub: Hub, kernels: dict[str, Kernel], browser: Any
) -> None:
    page = logged_in(browser, hub, "alice")
    refused: list[str] = []
    page.on("response", lambda response: refused.append(response.url) if response.status == 403 else None)
    # her server's page sends her to the room service's page, which logs her in through the Hub
    page.goto(hub.url + "user/alice/iavicenne/?room=lobby&name=alice")
    page.wait_for_url(lambda url: f"/services/{SERVICE}/iavicenne/" in url)
    # the page's own modules ran (behind the Hub's XSRF check on module fetches): they joined
    try:
        page.wait_for_function("() => window.iavicenneDemo && window.iavicenneDemo.room !== null")
    finally:  # a module the Hub refused (no token) is why the page never joins: name it
        assert refused == [], f"the Hub refused: {refused}"
    # the Hub's XSRF check is on: a module fetched without the token is refused, with it served
    fetched = page.evaluate(
        """async () => {
            const token = new URL(document.querySelector('script[type=module]').src).searchParams.get("_xsrf");
            const without = await fetch("static/protocol.js");
            const withToken = await fetch("static/protocol.js?_xsrf=" + encodeURIComponent(token));
            return [without.status, withToken.status];
        }"""
    )
    assert fetched == [403, 200], fetched

    def one_member() -> bool:
        alice = service_members(hub, "lobby").get("alice")
        return alice is not None and alice["connections"] == 2

    wait_until(one_member, 20, "alice's browser and kernel as one member")
    assert service_members(hub, "lobby")["alice"]["identity"]["username"] == "alice"
    # what her browser sends reaches bob's kernel as alice's
    page.fill("#message", "hello from alice's browser")
    page.click("#send")
    got = kernels["bob"].json(
        """
        async def from_browser():
            while True:
                for message in await lobby.recent(20):
                    if message.text == "hello from alice's browser":
                        return message
                await asyncio.sleep(0.2)
        message = await asyncio.wait_for(from_browser(), 20)
        print(json.dumps({"user_id": message.user_id, "identity": message.identity}))
        """
    )
    assert got["user_id"] == "alice" and got["identity"]["username"] == "alice", got

    # the page's REST calls (a POST and a PUT, with the Hub login and its XSRF token) work
    # through the Hub too: alice makes a private room there and invites bob
    from playwright.sync_api import expect

    rooms_page = page.context.new_page()
    refused.clear()  # the fetch above was refused on purpose
    rooms_page.on("response", lambda response: refused.append(response.url) if response.status >= 400 else None)
    rooms_page.goto(hub.url + f"services/{SERVICE}/iavicenne/")
    rooms_page.fill("#room", "made-in-the-page")
    rooms_page.check("#private")
    rooms_page.click("#join")
    expect(rooms_page.locator("#access")).to_have_text("private room of alice: only its members see it", timeout=TIMEOUT_MS)
    assert hub.request("GET", f"services/{SERVICE}/iavicenne/api/rooms/made-in-the-page", token=hub.token("bob"))[0] == 404
    rooms_page.fill("#invitee", "bob")
    rooms_page.click("#invite")
    expect(rooms_page.locator("#access-members li[data-username='bob']")).to_have_count(1, timeout=TIMEOUT_MS)
    assert hub.request("GET", f"services/{SERVICE}/iavicenne/api/rooms/made-in-the-page", token=hub.token("bob"))[0] == 200
    assert refused == [], refused
    page.context.close()

    # bob, logged in to the Hub, is refused alice's server's page
    page = logged_in(browser, hub, "bob")
    response = page.goto(hub.url + "user/alice/iavicenne/")
    assert response is not None and response.status == 403, response and response.status
    page.context.close()
