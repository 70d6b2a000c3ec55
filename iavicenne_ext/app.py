"""The `IAvicenne` extension app: the wiring.

Its options are `iavicenne_ext.options.IAvicenneOptions`'s traits, inherited: settable as
``--IAvicenne.<name>=...`` on the command line or ``c.IAvicenne.<name> = ...`` in
``jupyter_server_config.py``. The app creates the shared objects (broker, room hub,
shared documents) once and hands them to the handlers.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from jupyter_server.extension.application import ExtensionApp

import iavicenne_protocol as p

from .broker.interfaces import Broker, SharedStore
from .broker.memory import MemoryBroker
from .handlers.budgets import Limits, Quotas
from .handlers.config import RoomsConfigHandler
from .handlers.page import STATIC_DIR, DemoPageHandler, StaticHandler
from .handlers.rest import RoomBudgets, RoomListHandler, RoomMemberHandler, RoomMembersHandler
from .handlers.rooms import RoomSocketHandler
from .handlers.service_relay import ServiceRestRelay, ServiceSocketRelay
from .handlers.signaling import SignalingSocketHandler
from .hub import HUB_API_URL_VARIABLE, HUB_TOKEN_VARIABLE, Deployment, RoomServiceLocator, deployment_of
from .ice import IceConfig
from .options import IAvicenneOptions
from .rooms import RoomHub
from .shared_pacing import SharedPacing
from .shared_state import SharedDocs


class IAvicenne(IAvicenneOptions, ExtensionApp):
    name = "iavicenne"
    description = "Real-time rooms, presence, history and peer-to-peer signaling for Jupyter."
    load_other_extensions = True

    def hub_wiring(self) -> RoomServiceLocator | None:
        """Under JupyterHub, in a user's server that leaves the rooms to the room service, how
        it finds that service; else None (the rooms are in this server). Refuses to start a
        user's server with broker='redis' unless trust_user_servers."""
        self.deployment = deployment_of(self.serverapp)
        if self.deployment is not Deployment.USER_SERVER:
            return None
        if self.room_service:
            return RoomServiceLocator(
                self.room_service,
                api_url=os.environ[HUB_API_URL_VARIABLE],
                api_token=os.environ.get(HUB_TOKEN_VARIABLE, ""),
                rooms_url=self.room_service_url,
            )
        if self.broker == "redis" and not self.trust_user_servers:
            self.log.critical(
                "iavicenne: refusing broker='redis' in a user's server under JupyterHub: the user (and every "
                "kernel) could read the Redis URL, and with it every room and write as anyone. Run the rooms "
                "in the room service (IAvicenne.room_service, README 'Deploy on JupyterHub'), or set "
                "IAvicenne.trust_user_servers=True if all users trust each other."
            )
            self.exit(1)
        return None

    # -- wiring ----------------------------------------------------------------------
    def make_broker(self) -> Broker:
        rooms: dict[str, Any] = {
            "history_size": self.history_size,
            "history_ttl": self.history_ttl,
            "dedup_ttl": self.dedup_ttl,
            "history_bytes_per_room": self.history_bytes_per_room,
            "history_bytes_total": self.history_bytes_total,
            "max_replay_bytes": self.max_replay_bytes,
            "max_dedup_per_identity": self.max_dedup_per_identity,
            "shared_bytes_total": self.max_shared_bytes_total,
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
        return MemoryBroker(**rooms)

    @property
    def limits(self) -> Limits:
        return Limits(
            max_frame_bytes=self.max_frame_bytes,
            messages_per_second=self.messages_per_second,
            burst=self.burst,
            max_rooms=self.max_rooms_per_connection,
            max_outbound_bytes=self.max_outbound_bytes,
            max_connections_per_identity=self.max_connections_per_identity,
            max_rooms_per_identity=self.max_rooms_per_identity,
            bytes_per_second=self.bytes_per_second,
            burst_bytes=self.burst_bytes,
            max_outbound_bytes_total=self.max_outbound_bytes_total,
            max_replay_bytes=self.max_replay_bytes,
            max_state_bytes=self.max_state_bytes,
            max_state_depth=self.max_state_depth,
            max_state_keys=self.max_state_keys,
            joins_per_second=self.joins_per_second,
            join_burst=self.join_burst,
            join_fanout_per_second=self.join_fanout_per_second,
        )

    def initialize_settings(self) -> None:
        self.locator = self.hub_wiring()
        if self.locator is not None:  # the rooms are in the room service: no broker here
            self.room_broker: Broker | None = None
            return
        self.room_broker = self.make_broker()
        self.hub = RoomHub(
            self.room_broker,
            self.log,
            max_message_bytes=self.max_message_bytes,
            max_snapshot_members=self.max_snapshot_members,
            presence_batch_interval=self.presence_batch_interval,
            presence_batch_frames_per_second=self.presence_batch_frames_per_second,
        )
        # one per server: every socket counts against the same identities and total
        self.quotas = Quotas(self.limits)
        assert isinstance(self.room_broker, SharedStore)  # both brokers keep shared documents
        # shared documents travel as base64 (4/3 of their size): a newcomer's whole document
        # in one frame, an update in one frame from the client
        if self.max_shared_bytes * 4 // 3 > self.max_outbound_bytes:
            self.log.warning(
                "iavicenne: max_shared_bytes (%d) is over 3/4 of max_outbound_bytes (%d): a newcomer to a full "
                "shared document would be closed as a slow consumer",
                self.max_shared_bytes,
                self.max_outbound_bytes,
            )
        if self.max_shared_update_bytes * 4 // 3 > self.max_frame_bytes:
            self.log.warning(
                "iavicenne: max_shared_update_bytes (%d) is over 3/4 of max_frame_bytes (%d): such an update "
                "cannot reach the server",
                self.max_shared_update_bytes,
                self.max_frame_bytes,
            )
        if self.shared_ttl:
            self.log.warning(
                "iavicenne: shared_ttl is ignored: a room's shared document is forgotten with its room (history_ttl)"
            )
        self.shared_docs = SharedDocs(
            self.room_broker,
            self.log,
            max_bytes=self.max_shared_bytes,
            max_bytes_total=self.max_shared_bytes_total,
            max_update_bytes=self.max_shared_update_bytes,
            compact_every=self.shared_compact_every,
            keep_idle=self.shared_keep_idle,
            keep_bytes=self.shared_keep_bytes,
            pacing=SharedPacing(self.shared_cpu_per_second, self.shared_cpu_burst),
            max_depth=self.max_shared_depth,
        )

    @property
    def ice(self) -> IceConfig:
        return IceConfig(self.ice_servers, self.turn_secret, self.turn_ttl)

    def initialize_handlers(self) -> None:
        location = {"locator": self.locator}
        self.handlers.extend(
            [
                (r"/iavicenne/api/config/?", RoomsConfigHandler, location),
                (r"/iavicenne/?", DemoPageHandler, location),
                (r"/iavicenne/static/(.+)", StaticHandler, {"path": str(STATIC_DIR)}),
            ]
        )
        if self.locator is not None:  # rooms in the room service: relayed for this server's pages
            relay: dict[str, Any] = {"locator": self.locator}
            sockets = {**relay, "max_frame_bytes": self.max_frame_bytes}
            self.handlers.extend(
                [
                    (r"/iavicenne/ws/mcp/?", ServiceSocketRelay, {**sockets, "path": p.ROOMS_PATH}),
                    (r"/iavicenne/ws/signaling/?", ServiceSocketRelay, {**sockets, "path": p.SIGNALING_PATH}),
                    (r"/iavicenne/api/rooms(/.*)?", ServiceRestRelay, relay),
                ]
            )
            return
        shared: dict[str, Any] = {"hub": self.hub, "quotas": self.quotas}
        rest: dict[str, Any] = {
            "hub": self.hub,
            "budgets": RoomBudgets(self.max_private_rooms_per_identity, self.max_room_members),
        }
        self.handlers.extend(
            [
                (r"/iavicenne/ws/mcp/?", RoomSocketHandler, {**shared, "shared_docs": self.shared_docs}),
                (r"/iavicenne/ws/signaling/?", SignalingSocketHandler, {**shared, "ice": self.ice}),
                (r"/iavicenne/api/rooms/?", RoomListHandler, rest),
                (r"/iavicenne/api/rooms/([^/]+)/members/([^/]+)/?", RoomMemberHandler, rest),
                (r"/iavicenne/api/rooms/([^/]+)/?", RoomMembersHandler, rest),
            ]
        )

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        await super()._start_jupyter_server_extension(serverapp)
        if self.room_broker is None:
            self.log.info("iavicenne: rooms in JupyterHub's service %r (IAvicenne.room_service)", self.room_service)
            return
        await self.room_broker.start()
        self.log.info("iavicenne: rooms on the %s broker (server id %s)", self.broker, self.room_broker.server_id)

    async def stop_extension(self) -> None:
        if self.room_broker is None:
            return
        try:
            await asyncio.wait_for(self.room_broker.close(), timeout=5)
        except asyncio.TimeoutError:
            self.log.warning("iavicenne: the broker did not close within 5 s")
