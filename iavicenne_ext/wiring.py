"""How an `IAvicenne` app is wired: where its rooms are (JupyterHub's room service or this
server), its broker, its budgets, its shared documents.

The options stay on the app class (jupyter_server hands an ExtensionApp's own traits to
its handlers as ``iavicenne_config``); what they assemble is here, so that app.py is the
configuration surface and this module what is built from it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .broker.interfaces import Broker, SharedStore
from .broker.memory import MemoryBroker
from .broker.sqlite import SQLiteBroker, StoreError
from .handlers.budgets import Limits
from .hub import HUB_API_URL_VARIABLE, HUB_TOKEN_VARIABLE, Deployment, RoomServiceLocator, deployment_of
from .shared_pacing import SharedPacing
from .shared_state import SharedDocs

if TYPE_CHECKING:
    from .app import IAvicenne


def hub_wiring(app: IAvicenne) -> RoomServiceLocator | None:
    """Under JupyterHub, in a user's server that leaves the rooms to the room service, how
    it finds that service; else None (the rooms are in this server). Refuses to start a
    user's server with broker='redis' unless trust_user_servers."""
    if deployment_of(app.serverapp) is not Deployment.USER_SERVER:
        return None
    if app.room_service:
        return RoomServiceLocator(
            app.room_service,
            api_url=os.environ[HUB_API_URL_VARIABLE],
            api_token=os.environ.get(HUB_TOKEN_VARIABLE, ""),
            rooms_url=app.room_service_url,
        )
    if app.broker == "redis" and not app.trust_user_servers:
        app.log.critical(
            "iavicenne: refusing broker='redis' in a user's server under JupyterHub: the user (and every "
            "kernel) could read the Redis URL, and with it every room and write as anyone. Run the rooms "
            "in the room service (IAvicenne.room_service, README 'Deploy on JupyterHub'), or set "
            "IAvicenne.trust_user_servers=True if all users trust each other."
        )
        app.exit(1)
    return None


def make_broker(self: IAvicenne) -> Broker:
    """The broker the options name. (`self` is the app: the body is IAvicenne.make_broker's as it was.)"""
    rooms: dict[str, Any] = {
        "history_size": self.history_size,
        "history_ttl": self.history_ttl,
        "dedup_ttl": self.dedup_ttl,
        "history_bytes_per_room": self.history_bytes_per_room,
        "history_bytes_total": self.history_bytes_total,
        "max_replay_bytes": self.max_replay_bytes,
        "max_dedup_per_identity": self.max_dedup_per_identity,
        "shared_bytes_total": self.max_shared_bytes_total,
        "max_remembered_rooms": self.max_remembered_rooms,
        "direct_history_size": self.direct_history_size,
        "direct_history_bytes": self.direct_history_bytes,
        "direct_history_ttl": self.direct_history_ttl,
    }
    if self.broker == "redis":
        from .broker.redis import RedisBroker  # redis is only imported when used

        try:
            return RedisBroker(
                url=self.redis_url,
                prefix=self.redis_prefix,
                presence_refresh=self.presence_refresh,
                presence_timeout=self.presence_timeout,
                retry_interval=self.redis_retry_interval,
                log=self.log,
                **rooms,
            )
        except ValueError as error:
            # a prefix with a brace, a timeout shorter than the refresh: serving without
            # rooms would only hide it, so the server stops, naming the option
            self.log.critical("iavicenne: %s", error)
            self.exit(1)
    if self.broker == "sqlite":
        try:
            return SQLiteBroker(path=self.store_path, history_days=self.history_days, log=self.log, **rooms)
        except StoreError as error:
            # one line naming the file and the option, not a traceback: the operator's to fix
            self.log.critical("iavicenne: %s", error)
            self.exit(1)
    return MemoryBroker(**rooms)


def limits(app: IAvicenne) -> Limits:
    """The budgets every socket of the server is held to."""
    return Limits(
        max_frame_bytes=app.max_frame_bytes,
        messages_per_second=app.messages_per_second,
        burst=app.burst,
        max_rooms=app.max_rooms_per_connection,
        max_outbound_bytes=app.max_outbound_bytes,
        max_connections_per_identity=app.max_connections_per_identity,
        max_rooms_per_identity=app.max_rooms_per_identity,
        bytes_per_second=app.bytes_per_second,
        burst_bytes=app.burst_bytes,
        max_outbound_bytes_total=app.max_outbound_bytes_total,
        max_replay_bytes=app.max_replay_bytes,
        max_state_bytes=app.max_state_bytes,
        max_state_depth=app.max_state_depth,
        max_state_keys=app.max_state_keys,
        joins_per_second=app.joins_per_second,
        join_burst=app.join_burst,
        join_fanout_per_second=app.join_fanout_per_second,
        chat_messages_per_second=app.chat_messages_per_second,
        chat_messages_burst=app.chat_messages_burst,
    )


def shared_docs(app: IAvicenne, store: SharedStore) -> SharedDocs:
    """The rooms' shared documents over `store`, with the warnings their options call for."""
    # shared documents travel as base64 (4/3 of their size): a newcomer's whole document
    # in one frame, an update in one frame from the client
    if app.max_shared_bytes * 4 // 3 > app.max_outbound_bytes:
        app.log.warning(
            "iavicenne: max_shared_bytes (%d) is over 3/4 of max_outbound_bytes (%d): a newcomer to a full "
            "shared document would be closed as a slow consumer",
            app.max_shared_bytes,
            app.max_outbound_bytes,
        )
    if app.max_shared_update_bytes * 4 // 3 > app.max_frame_bytes:
        app.log.warning(
            "iavicenne: max_shared_update_bytes (%d) is over 3/4 of max_frame_bytes (%d): such an update cannot reach the server",
            app.max_shared_update_bytes,
            app.max_frame_bytes,
        )
    if app.shared_ttl:
        app.log.warning("iavicenne: shared_ttl is ignored: a room's shared document is forgotten with its room (history_ttl)")
    return SharedDocs(
        store,
        app.log,
        max_bytes=app.max_shared_bytes,
        max_bytes_total=app.max_shared_bytes_total,
        max_update_bytes=app.max_shared_update_bytes,
        compact_every=app.shared_compact_every,
        keep_idle=app.shared_keep_idle,
        keep_bytes=app.shared_keep_bytes,
        pacing=SharedPacing(app.shared_cpu_per_second, app.shared_cpu_burst),
        max_depth=app.max_shared_depth,
    )
