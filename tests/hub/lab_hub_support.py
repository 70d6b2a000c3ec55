"""The JupyterHub of tests/hub/test_lab_login.py and a person's browser window on it.

`Hub` runs a real JupyterHub (configurable-http-proxy, the DummyAuthenticator with a
password, SimpleLocalProcessSpawner) configured with the ``jupyterhub_config.py`` block of
docs/jupyterhub.md, read from the docs and run as it is written, between the few settings a
test must make; `Window` is one person's Chromium context, which logs in through the Hub's
form and lands in JupyterLab.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from lab_flood_support import LONG_TASKS
from servers import RedisProcess, stop_with_children

from iavicenne_ext.testing import FOREIGN_SERVER_VARIABLES, LOOPBACK, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "jupyterhub.md"
BUILD = REPO / "iavicenne_ext" / "labextension"
BIN = Path(sys.executable).parent
PASSWORD = "iavicenne-lab-login"
SERVICE = "iavicenne"
REPLICA = "iavicenne-2"  # a second room service on the same Redis (the docs' "Replicas")
TIMEOUT_MS = 90_000  # a first login spawns the user's server and loads JupyterLab, on a busy machine


def docs_block() -> str:
    """The ``jupyterhub_config.py`` block of docs/jupyterhub.md, as written there."""
    text = DOCS.read_text(encoding="utf-8")
    found = re.search(r"`jupyterhub_config\.py`.*?\n\n```python\n(.*?)\n```", text, re.S)
    assert found, "docs/jupyterhub.md has no ```python block after `jupyterhub_config.py`"
    return found.group(1)


def hub_config(workdir: Path, *, ports: dict[str, int], redis_url: str) -> str:
    """The module's jupyterhub_config.py: the docs' block, verbatim, between the tests' own settings."""
    user_config = workdir / "user-config"
    extensions = workdir / "lab-extensions"
    extensions.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        (extensions / "iavicenne-lab").symlink_to(BUILD, target_is_directory=True)
    user_config.mkdir(parents=True, exist_ok=True)
    # users' JupyterLab takes this checkout's build of the extension (an extra path comes first)
    (user_config / "jupyter_server_config.json").write_text(
        json.dumps({"LabApp": {"extra_labextensions_path": [str(extensions)], "expose_app_in_browser": True}})
    )
    settings = {
        "bind_url": f"http://{LOOPBACK}:{ports['proxy']}/",
        "hub_bind_url": f"http://{LOOPBACK}:{ports['hub']}",
        "proxy_api": f"http://{LOOPBACK}:{ports['proxy_api']}",
        "proxy_command": shutil.which("configurable-http-proxy"),
        "service_url": f"http://{LOOPBACK}:{ports['service']}",
        "replica_url": f"http://{LOOPBACK}:{ports['replica']}",
        "redis_url": redis_url,
        "os_user": getpass.getuser(),
        "root": os.geteuid() == 0,
        "homes": str(workdir / "home"),
        "user_config": str(user_config),
        "password": PASSWORD,
        "db": f"sqlite:///{workdir / 'jupyterhub.sqlite'}",
    }
    before = textwrap.dedent(
        f"""
        settings = {settings!r}
        c = get_config()  # noqa: F821
        """
    )
    # what a test must set, and nothing of what the docs say about iAvicenne
    after = textwrap.dedent(
        """
        # -- the tests' own settings
        (service,) = [s for s in c.JupyterHub.services if s["name"] == "iavicenne"]
        assert set(service) >= {"url", "environment", "user"}, service
        service["url"] = settings["service_url"]  # a free port
        service["environment"] = {**service["environment"], "IAVICENNE_REDIS_URL": settings["redis_url"]}
        service["user"] = settings["os_user"]  # one OS user here (see the docs' threat model)
        if settings["root"]:  # CI runs as root
            service["command"] = [*service["command"], "--ServerApp.allow_root=True"]
            c.Spawner.args = ["--ServerApp.allow_root=True"]
        c.JupyterHub.bind_url = settings["bind_url"]
        c.JupyterHub.hub_bind_url = settings["hub_bind_url"]
        c.JupyterHub.db_url = settings["db"]
        c.JupyterHub.cleanup_servers = True
        c.ConfigurableHTTPProxy.api_url = settings["proxy_api"]
        c.ConfigurableHTTPProxy.command = [settings["proxy_command"]]
        c.JupyterHub.authenticator_class = "dummy"
        c.DummyAuthenticator.password = settings["password"]
        c.Authenticator.allowed_users = {"alice", "bob"}
        c.JupyterHub.load_groups = {"oncology": {"users": ["alice"]}}
        c.JupyterHub.spawner_class = "simple"
        c.SimpleLocalProcessSpawner.home_dir_template = settings["homes"] + "/{username}"
        c.Spawner.environment = {"JUPYTER_CONFIG_DIR": settings["user_config"]}
        c.Spawner.start_timeout = 120
        c.Spawner.http_timeout = 120

        # -- a replica, as the docs' "Replicas" says: one more entry on the same Redis, its
        # scopes in the roles; bob's server named "replica" uses it
        replica = {**service, "name": "iavicenne-2", "url": settings["replica_url"]}
        c.JupyterHub.services = [*c.JupyterHub.services, replica]
        replica_scopes = ["access:services!service=iavicenne-2", "read:services!service=iavicenne-2"]
        for role in c.JupyterHub.load_roles:
            if role["name"] == "user":
                role["scopes"] = [*role["scopes"], *replica_scopes]
        c.Spawner.server_token_scopes = [*c.Spawner.server_token_scopes, *replica_scopes]
        c.JupyterHub.allow_named_servers = True

        def room_service_of(spawner):
            # bob's server "replica" uses the replica; "nosuch", an admin's mistake, a service the Hub lacks
            if spawner.name in ("replica", "nosuch"):
                name = "iavicenne-2" if spawner.name == "replica" else "nosuch"
                spawner.args = [*spawner.args, f"--IAvicenne.room_service={name}"]

        c.Spawner.pre_spawn_hook = room_service_of
        """
    )
    return before + "\n# -- docs/jupyterhub.md, verbatim\n" + docs_block() + "\n" + after


class Hub:
    def __init__(self, workdir: Path, redis: RedisProcess) -> None:
        self.workdir = workdir
        self.redis = redis
        self.ports = {name: free_port() for name in ("proxy", "proxy_api", "hub", "service", "replica")}
        self.url = f"http://{LOOPBACK}:{self.ports['proxy']}/"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "jupyterhub.log"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> Hub:
        for user in ("alice", "bob"):
            (self.workdir / "home" / user).mkdir(parents=True, exist_ok=True)
        config = self.workdir / "jupyterhub_config.py"
        config.write_text(hub_config(self.workdir, ports=self.ports, redis_url=self.redis.url))
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in FOREIGN_SERVER_VARIABLES and not k.startswith(("IAVICENNE_", "JUPYTERHUB_"))
        }
        # the docs' commands as written (iavicenne-room-service, jupyterhub-singleuser): on the PATH
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
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
            return all(self.answers(f"services/{name}/iavicenne/api/config") for name in (SERVICE, REPLICA))

        try:
            wait_until(up, 90, "JupyterHub and its room service", interval=0.2)
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n{self.log_text()[-4000:]}") from None
        return self

    def answers(self, path: str) -> bool:
        """Whether the proxy routes `path` to a server that answers (a 403 without a login)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=5):
                return True
        except urllib.error.HTTPError as error:
            return error.code in (302, 403)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_with_children(self.proc)


# -- browsers ----------------------------------------------------------------------------------

PANEL_ONLINE = "() => window.iavicenneLab && window.iavicenneLab.collaboration.state === 'online'"
# online, or failed for good (no point in waiting longer)
PANEL_SETTLED = "() => window.iavicenneLab && ['online', 'failed'].includes(window.iavicenneLab.collaboration.state)"


class Window:
    """One person's browser context: logs in through the Hub's form, lands in JupyterLab."""

    def __init__(self, browser: Any, hub: Hub, user: str) -> None:
        self.hub = hub
        self.user = user
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        # Chromium offers its loopback address as an ICE candidate only to a page that may use
        # the camera (as in tests/lab/test_lab_panel.py)
        self.context.grant_permissions(["camera", "microphone"], origin=hub.url.rstrip("/"))
        self.context.add_init_script(LONG_TASKS)  # the main thread's long tasks, for the flood
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.refused: list[str] = []
        self.page.on("response", self._response)

    def _response(self, response: Any) -> None:
        if response.status in (401, 403):
            self.refused.append(f"{response.status} {response.url}")

    def login(self) -> float:
        """Log in through the form; seconds from submitting it to the panel online."""
        page = self.page
        page.goto(self.hub.url + "hub/login")
        page.fill("input[name=username]", self.user)
        page.fill("input[name=password]", PASSWORD)
        started = time.monotonic()
        page.click("input[type=submit], button[type=submit]")
        # the Hub spawns the server (first login) and sends the browser on to JupyterLab
        page.wait_for_url(re.compile(rf"/user/{self.user}/lab"), timeout=TIMEOUT_MS)
        page.wait_for_function(PANEL_SETTLED, timeout=TIMEOUT_MS)
        seconds = time.monotonic() - started
        if not page.evaluate(PANEL_ONLINE):
            problem = page.evaluate("() => window.iavicenneLab.collaboration.problem")
            raise AssertionError(f"{self.user}'s panel is not online: {problem!r}; refused: {self.refused}")
        return seconds

    def panel_line(self) -> str:
        self.page.evaluate("() => window.jupyterapp.commands.execute('iavicenne:open-panel')")
        line = self.page.locator(".iav-lab-state")
        line.wait_for(state="visible")
        wait = "() => { const l = document.querySelector('.iav-lab-state'); return l && l.dataset.state === 'online'; }"
        self.page.wait_for_function(wait)
        return str(line.text_content())

    def call(self, script: str, arg: Any = None) -> Any:
        """Run `script` (an async function of the window's Collaboration, `c`, and `arg`)."""
        return self.page.evaluate(f"async (arg) => {{ const c = window.iavicenneLab.collaboration; {script} }}", arg)

    def logout(self) -> None:
        self.page.goto(self.hub.url + "hub/logout")
        self.page.wait_for_url(re.compile(r"/hub/(login|logout)"))

    def close(self) -> None:
        self.context.close()
