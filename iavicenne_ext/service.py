"""`iavicenne-room-service`: the rooms of a JupyterHub deployment, run by the Hub as a service.

JupyterHub starts it (``c.JupyterHub.services``, README "Deploy on JupyterHub") and proxies
it at ``/services/<name>/``. It is jupyterhub-singleuser, the Jupyter server that
authenticates every request with the Hub (a user's Hub cookie, through the Hub's OAuth,
or a Hub token such as a kernel's ``$JUPYTERHUB_API_TOKEN``), run with iAvicenne alone:

- its authorizer allows the "iavicenne" resource only: nobody, however authenticated,
  gets kernels, contents, sessions or terminals here;
- no other server extension is loaded, terminals are off, and its root directory is an
  empty one of its own;
- broker='redis', with ``$IAVICENNE_REDIS_URL``, which the Hub gives to this service
  alone (the service's ``environment``): no user's server or kernel holds it;
- without ``$IAVICENNE_REDIS_URL``, broker='sqlite': the local store, in the service's own
  Jupyter data directory (``IAvicenne.store_path``), so a small Hub needs no Redis at all.

Several of them (services of other names, or processes behind one address) may share one
Redis: that is how the rooms scale out. Replicas need Redis: each local store is its
own, and a second service on the same file is refused at start (the store's lock);
``iavicenne-migrate`` copies the store into Redis when a Hub grows (docs/redis.md). Options are passed as to any Jupyter server
(``iavicenne-room-service --IAvicenne.history_size=5000``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from typing import Any

from jupyterhub.singleuser.extension import JupyterHubAuthorizer, JupyterHubSingleUser

from .handlers import AUTH_RESOURCE

REDIS_URL_VARIABLE = "IAVICENNE_REDIS_URL"
# what JupyterHub sets for the services it manages; without them this is no Hub service
HUB_SERVICE_VARIABLES = ("JUPYTERHUB_SERVICE_NAME", "JUPYTERHUB_SERVICE_URL", "JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN")


class RoomServiceAuthorizer(JupyterHubAuthorizer):
    """The Hub's check (the user may access this service), and iAvicenne's rooms only."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        if resource != AUTH_RESOURCE:
            return False
        return bool(super().is_authorized(handler, user, action, resource))


class RoomService(JupyterHubSingleUser):
    """jupyterhub-singleuser that loads iAvicenne and no other server extension."""

    load_other_extensions = False
    # read by ExtensionApp.initialize_server: these extensions, and no search for others
    serverapp_config: dict[str, Any] = {"jpserver_extensions": {"iavicenne_ext": True}}  # noqa: RUF012 - ExtensionApp's class attribute

    @classmethod
    def get_extension_package(cls) -> str:
        # the package whose extension point is the server's starter: the Hub's
        return "jupyterhub"


def service_arguments(root_dir: str, *, redis: bool = True) -> list[str]:
    """The server options that make the room service what the module docstring says
    (`redis`: whether it was given ``$IAVICENNE_REDIS_URL``; otherwise the local store)."""
    return [
        f"--ServerApp.root_dir={root_dir}",
        f"--ServerApp.authorizer_class={RoomServiceAuthorizer.__module__}.{RoomServiceAuthorizer.__qualname__}",
        "--ServerApp.terminals_enabled=False",
        "--ServerApp.default_url=/iavicenne/",
        "--IAvicenne.broker=redis" if redis else "--IAvicenne.broker=sqlite",
        "--IAvicenne.room_service=",  # the rooms are here
    ]


def main(argv: list[str] | None = None) -> None:
    """Start the room service (as JupyterHub does: from the service's ``command``)."""
    missing = [name for name in HUB_SERVICE_VARIABLES if not os.environ.get(name)]
    if missing:
        sys.exit(
            "iavicenne-room-service runs as a JupyterHub-managed service (c.JupyterHub.services with "
            "'command': ['iavicenne-room-service'] and a 'url'; README 'Deploy on JupyterHub'); "
            f"missing: ${', $'.join(missing)}"
        )
    redis = bool(os.environ.get(REDIS_URL_VARIABLE))
    if not redis:
        print(
            f"iavicenne-room-service: no ${REDIS_URL_VARIABLE}, the rooms are kept in the local store "
            "(IAvicenne.store_path); replicas need Redis: set it in the service's 'environment' "
            "(c.JupyterHub.services), and nowhere users' servers could read it",
            file=sys.stderr,
        )
    # user-controlled configuration (~/.jupyter) must not shape a shared, trusted process
    os.environ.setdefault("JUPYTERHUB_DISABLE_USER_CONFIG", "1")
    root_dir = tempfile.mkdtemp(prefix="iavicenne-room-service-")
    atexit.register(shutil.rmtree, root_dir, ignore_errors=True)
    RoomService.launch_instance([*service_arguments(root_dir, redis=redis), *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
