"""The `IAvicenne` extension app: the whole configuration surface (what it is built into: wiring.py).

Every option is a traitlet here, settable as ``--IAvicenne.<name>=...`` on the command
line or ``c.IAvicenne.<name> = ...`` in ``jupyter_server_config.py``: on the app class
itself, as jupyter_server hands an ExtensionApp's own traits to its handlers
(``iavicenne_config``). The app creates the shared objects (broker, room hub, shared
documents) once and hands them to the handlers.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Dict, Enum, Float, Int, List, TraitError, Unicode, default, validate

import iavicenne_protocol as p

from . import wiring
from .broker.interfaces import Broker, SharedStore
from .handlers.budgets import Quotas
from .handlers.config import RoomsConfigHandler
from .handlers.page import STATIC_DIR, DemoPageHandler, StaticHandler
from .handlers.rest import RoomBudgets, RoomListHandler, RoomMemberHandler, RoomMembersHandler
from .handlers.room_history import RoomExportHandler, RoomReadHandler, SearchHandler
from .handlers.rooms import RoomSocketHandler
from .handlers.service_relay import ServiceRestRelay, ServiceSocketRelay
from .handlers.signaling import SignalingSocketHandler
from .hub import ROOMS_URL_VARIABLE
from .ice import IceConfig
from .identity import default_owner_name
from .names import POLICIES
from .rooms import RoomHub
from .shared_depth import DEPTH_CEILING

if TYPE_CHECKING:  # the MCP SDK is imported only when agents are served (IAvicenne.agents)
    from .agents.service import AgentService


class IAvicenne(ExtensionApp):
    name = "iavicenne"
    description = "Real-time rooms, presence, history and peer-to-peer signaling for Jupyter."
    load_other_extensions = True

    # -- broker ----------------------------------------------------------------------
    broker = Enum(
        ["sqlite", "memory", "redis"],
        default_value="sqlite",
        config=True,
        help="Where rooms live: 'sqlite' (this server only, kept in the file store_path: a "
        "restart keeps history, shared documents, private rooms and invitations), 'memory' "
        "(this server only, forgotten when it stops) or 'redis' (rooms shared by every Jupyter "
        "server that uses the same redis_url and redis_prefix).",
    )
    store_path = Unicode(
        config=True,
        help="The SQLite file of broker='sqlite', one per server. Default: iavicenne/rooms.sqlite3 "
        "in Jupyter's data directory (jupyter --data-dir). A file that is damaged, read-only or "
        "held by another server stops the server at start, naming it.",
    )

    @default("store_path")
    def _default_store_path(self) -> str:
        return os.path.join(jupyter_data_dir(), "iavicenne", "rooms.sqlite3")

    history_days = Float(
        30.0,
        config=True,
        help="With broker='sqlite': days a message is kept, whatever its room; 0 keeps them as "
        "long as the history budgets allow.",
    )
    redis_url = Unicode(
        config=True,
        help="Redis URL for broker='redis' (redis://, rediss:// for TLS, with password "
        "as redis-py accepts them). Default: $IAVICENNE_REDIS_URL or redis://127.0.0.1:6379/0.",
    )

    @default("redis_url")
    def _default_redis_url(self) -> str:
        return os.environ.get("IAVICENNE_REDIS_URL", "redis://127.0.0.1:6379/0")

    redis_prefix = Unicode(
        "iavicenne",
        config=True,
        help="Prefix of every Redis key and channel, so several deployments can share one Redis.",
    )
    presence_refresh = Float(
        5.0,
        config=True,
        help="Seconds between two refreshes of this server's presence entries in Redis.",
    )
    presence_timeout = Float(
        20.0,
        config=True,
        help="Seconds after which a server that stopped refreshing (killed, cut off) is "
        "considered gone: its members are removed and 'user-left' is sent. Keep it above "
        "presence_refresh.",
    )
    redis_retry_interval = Float(
        2.0,
        config=True,
        help="Seconds between two attempts to reach Redis while it is unreachable.",
    )

    # -- rooms -----------------------------------------------------------------------
    history_size = Int(
        1000,
        config=True,
        help="Messages kept per room for 'since' recovery; older ones are dropped.",
    )
    history_ttl = Float(
        config=True,
        help="Seconds a room's history (and shared document) is kept after its last member "
        "left. Default: 3600; with broker='sqlite', history_days (a room nobody is in is kept as "
        "long as its messages).",
    )

    @default("history_ttl")
    def _default_history_ttl(self) -> float:
        if self.broker != "sqlite":
            return 3600.0
        return self.history_days * 86400.0 if self.history_days > 0 else float("inf")

    dedup_ttl = Float(
        600.0,
        config=True,
        help="Seconds a message 'ref' is remembered, so a resend after a reconnect is delivered once.",
    )

    # -- per-connection limits -------------------------------------------------------
    max_frame_bytes = Int(
        1024 * 1024,
        config=True,
        help="Largest frame a client may send, in bytes; a larger one closes the socket with 1009.",
    )
    messages_per_second = Float(
        100.0,
        config=True,
        help="Frames per second a connection may send on average; the excess is dropped with a 'rate-limited' error.",
    )
    burst = Int(
        200,
        config=True,
        help="Frames a connection may send at once above messages_per_second.",
    )
    max_rooms_per_connection = Int(
        32,
        config=True,
        help="Rooms one connection may be in at the same time.",
    )
    max_outbound_bytes = Int(
        8 * 1024 * 1024,
        config=True,
        help="Bytes that may wait for a client to read; beyond this the client is "
        "disconnected (close 1008, 'slow consumer') instead of growing the server's memory.",
    )

    # -- budgets: what one (possibly hostile) user may cost the server ----------------
    # Reaching one answers with an error frame of code 'limit-exceeded' that names the
    # option (frame fields "option" and "limit"); what was accepted before is kept.
    max_message_bytes = Int(
        64 * 1024,
        config=True,
        help="Largest room message (encoded, as kept in history), in bytes. Direct messages, "
        "which are not stored, may be up to max_frame_bytes.",
    )
    history_bytes_per_room = Int(
        4 * 1024 * 1024,
        config=True,
        help="Bytes of history kept per room; the oldest messages are dropped beyond it (as they are beyond history_size).",
    )
    history_bytes_total = Int(
        64 * 1024 * 1024,
        config=True,
        help="Bytes of history kept in all rooms together, each kept room and message counted "
        "with its overhead: per server with broker='sqlite' or 'memory', per deployment (redis_prefix) with "
        "broker='redis'. With broker='sqlite' or 'memory', beyond it the rooms nobody is in are forgotten "
        "first (the one emptied longest ago first), then the server's oldest messages are "
        "dropped, whichever room they are in; new messages are still delivered.",
    )
    max_replay_bytes = Int(
        4 * 1024 * 1024,
        config=True,
        help="Bytes of history one join-room with 'since' may replay; a longer gap is "
        "answered with the newest messages that fit and recovered=false. Replays count towards "
        "max_outbound_bytes (keep this below it, so live frames fit beside a replay), and a new "
        "one is refused while the last is still unread.",
    )
    max_state_bytes = Int(
        4096,
        config=True,
        help="Largest presence state (encoded JSON), in bytes.",
    )
    # -- shared state (shared_state.py): one Yjs document per room --------------------
    max_shared_bytes = Int(
        4 * 1024 * 1024,
        config=True,
        help="Largest shared document of a room (its Yjs updates as kept, compacted when "
        "needed), in bytes; an update that would pass it is refused with 'limit-exceeded'.",
    )
    max_shared_update_bytes = Int(
        256 * 1024,
        config=True,
        help="Largest Yjs update one shared frame may carry, in bytes (keep it below 3/4 of "
        "max_frame_bytes: the update travels as base64).",
    )
    max_shared_depth = Int(
        64,
        config=True,
        help="Deepest nesting of a room's shared document that one update may bring (a root "
        "type is 1, each type or JSON array or object inside one more); a deeper update is "
        "refused with 'limit-exceeded'. Readers convert documents recursively: thousands of "
        f"levels crash browsers and kernels, tens of thousands Yjs itself (at most {DEPTH_CEILING:,}).",
    )

    @validate("max_shared_depth")
    def _bounded_depth(self, proposal: Any) -> int:
        depth = int(proposal["value"])
        if not 1 <= depth <= DEPTH_CEILING:
            raise TraitError(f"max_shared_depth must be 1 to {DEPTH_CEILING}: deeper updates crash the server's Yjs")
        return depth

    shared_compact_every = Int(
        200,
        config=True,
        help="Updates kept in a room's shared document log before they are merged into one.",
    )
    shared_ttl = Float(
        0.0,
        config=True,
        help="Deprecated, ignored: a room's shared document now lives and dies with its room "
        "(it is forgotten with the room's history, history_ttl after its last member left).",
    )
    max_shared_bytes_total = Int(
        256 * 1024 * 1024,
        config=True,
        help="Bytes of the shared documents of all rooms together, as kept by the broker: per "
        "server with broker='sqlite' or 'memory', per deployment (redis_prefix) with broker='redis'. An "
        "update beyond it is refused with 'limit-exceeded'; documents give their bytes back "
        "when they expire with their room or are deleted.",
    )
    # continuity (continuity.py): remembered rooms, kept direct messages
    max_remembered_rooms = Int(
        100,
        config=True,
        help="Rooms remembered per identity (rejoined by its next window); the oldest joined is forgotten first.",
    )
    direct_history_size = Int(
        200, config=True, help="Direct messages kept per conversation (two people in a room); the oldest go first."
    )
    direct_history_bytes = Int(
        256 * 1024, config=True, help="Bytes of direct messages kept per conversation; the oldest go first."
    )
    direct_history_ttl = Float(
        30 * 24 * 3600.0, config=True, help="Seconds a conversation's kept direct messages stay after its last one."
    )
    shared_keep_idle = Float(
        60.0,
        config=True,
        help="Seconds a room's shared document stays decoded in this server's memory after its "
        "last use (so that a sync costs what the client lacks, not the whole document); it is "
        "built again from the broker's log when next needed.",
    )
    shared_keep_bytes = Int(
        64 * 1024 * 1024,
        config=True,
        help="Memory the shared documents kept decoded by this server may take (estimated at 8 "
        "times their encoded size, what a document of many small items takes); beyond it the "
        "least recently used are dropped first (see shared_keep_idle).",
    )
    shared_cpu_per_second = Float(
        0.1,
        config=True,
        help="Seconds of the server's time per second one identity's shared frames may take "
        "(sync requests, updates: measured), over all its sockets; beyond it (and its "
        "shared_cpu_burst) its shared frames are refused with 'rate-limited' for a while, so "
        "that no member can take more than a fair share of the server.",
    )
    shared_cpu_burst = Float(
        1.0,
        config=True,
        help="Seconds of the server's time one identity's shared frames may take at once "
        "before shared_cpu_per_second paces them: a newcomer's first sync of a full document, "
        "built from the broker's log when this server does not hold it yet.",
    )

    max_state_depth = Int(
        4,
        config=True,
        help="Deepest nesting of objects and arrays in a presence state.",
    )
    max_state_keys = Int(
        64,
        config=True,
        help="Most keys and array items, counted over the whole presence state.",
    )
    max_connections_per_identity = Int(
        32,
        config=True,
        help="Room and signaling sockets one identity (Jupyter user) may hold open on this server.",
    )
    max_rooms_per_identity = Int(
        64,
        config=True,
        help="Rooms one identity may be in at the same time on this server, over all its room and "
        "signaling connections; a room counts until its leave is done.",
    )
    bytes_per_second = Int(
        1024 * 1024,
        config=True,
        help="Bytes per second one identity may send on average, over all its connections "
        "(beside messages_per_second), counted before a frame is parsed; the excess is dropped "
        "with a 'rate-limited' error.",
    )
    burst_bytes = Int(
        8 * 1024 * 1024,
        config=True,
        help="Bytes one identity may send at once above bytes_per_second.",
    )
    joins_per_second = Float(
        5.0,
        config=True,
        help="join-room frames per second one identity may send on average, over all its "
        "connections; the excess is refused with a 'rate-limited' error (the client joins again "
        "later). Each join, and the leave that follows it, is a frame to every member of the room: "
        "this bounds what joining and leaving in a loop costs a room of thousands of seed clients.",
    )
    join_burst = Int(
        128,
        config=True,
        help="join-room frames one identity may send at once above joins_per_second: enough for a "
        "client that reconnects to rejoin every room it may be in (max_rooms_per_identity), twice.",
    )

    chat_messages_per_second = Float(
        20.0,
        config=True,
        help="Room and direct messages per second one identity may send on average, over all "
        "its connections (beside messages_per_second, which counts every frame of one "
        "connection); the excess is refused with 'limit-exceeded', each message with its ref. "
        "A person types far fewer; a flood of thousands no longer reaches every member.",
    )
    chat_messages_burst = Int(
        200,
        config=True,
        help="Room and direct messages one identity may send at once above chat_messages_per_second.",
    )

    join_fanout_per_second = Float(
        1_000.0,
        config=True,
        help="Frames one identity's joins and leaves may have this server write to the members of "
        "their rooms per second (a join or leave in a room of 1,000 seed clients counts 1,000; a "
        "quarter of a second's worth at once). Beyond it a join-room or leave-room waits its turn "
        "(never refused): a burst of joins into a room of thousands is spread out instead of "
        "holding up the other users.",
    )

    @validate("join_fanout_per_second")
    def _check_join_fanout_per_second(self, proposal: Any) -> float:
        if not proposal["value"] > 0:
            raise TraitError("join_fanout_per_second must be over 0")
        return float(proposal["value"])

    @validate("joins_per_second")
    def _check_joins_per_second(self, proposal: Any) -> float:
        if not proposal["value"] > 0:
            raise TraitError("joins_per_second must be over 0")
        return float(proposal["value"])

    @validate("chat_messages_per_second")
    def _check_chat_messages_per_second(self, proposal: Any) -> float:
        if not proposal["value"] > 0:
            raise TraitError("chat_messages_per_second must be over 0")
        return float(proposal["value"])

    @validate("join_burst")
    def _check_join_burst(self, proposal: Any) -> int:
        if not proposal["value"] >= 1:
            raise TraitError("join_burst must be at least 1")
        return int(proposal["value"])

    max_dedup_per_identity = Int(
        10_000,
        config=True,
        help="Message refs remembered per identity for resend deduplication; one identity's "
        "oldest refs are forgotten first, never another's.",
    )
    max_outbound_bytes_total = Int(
        64 * 1024 * 1024,
        config=True,
        help="Bytes that may wait to be read by all clients of this server together; beyond "
        "it the connections with the most bytes waiting are closed first (1008, slow consumer).",
    )

    # -- identity and rooms with members (docs/protocol.md, "Identity", "Rooms with members") --
    owner_name = Unicode(
        config=True,
        help="The identity of the server's owner: on jupyter_server's own identity providers, "
        "every authenticated request (the server's token, as kernels use it, and the login "
        "cookie of a browser) is this one user. Default: the login name the server runs under.",
    )

    @default("owner_name")
    def _default_owner_name(self) -> str:
        return default_owner_name()

    name_policy = Enum(
        list(POLICIES),
        default_value=None,
        allow_none=True,
        config=True,
        help="Which user_id / peer_id a connection may use. 'own': its identity's name, or "
        "'<name>#<suffix>' (refused otherwise with 'name-not-yours'). 'free': any name, except one "
        "that looks like (same Unicode confusables skeleton) a name another identity holds in the "
        "room or another identity's username ('name-taken'). Default (unset): 'own' for "
        "connections JupyterHub authenticated, 'free' for the others.",
    )
    max_private_rooms_per_identity = Int(
        100,
        config=True,
        help="Rooms with an access record (private or group) one identity may create "
        "(POST iavicenne/api/rooms); it may delete one to create another.",
    )
    max_room_members = Int(
        1000,
        config=True,
        help="Members (invited usernames) a private room may have.",
    )
    max_search_results = Int(
        50,
        config=True,
        help="Messages one search (GET iavicenne/api/search) answers at most: its default limit, "
        "and a larger limit is refused with limit-exceeded.",
    )

    # -- rooms of thousands (docs/protocol.md, "Large rooms") ----------------------------
    max_snapshot_members = Int(
        1000,
        config=True,
        help="Members a room-joined lists at most when the join-room asks for no members_limit "
        "(seed clients); it then says members_more and members_next, and list-members gives the "
        "rest. Bounds what one join costs the server in a room of thousands.",
    )
    presence_batch_interval = Float(
        0.05,
        config=True,
        help="Seconds between the presence-batch frames of a room, for connections that joined "
        "with presence 'batched': the joins, leaves and state changes of that time in one frame.",
    )
    presence_batch_frames_per_second = Float(
        5_000.0,
        config=True,
        help="presence-batch frames one room may send per second on this server, over all its "
        "batched connections: in a room of more than presence_batch_interval x this many "
        "connections the batches are spaced further apart (a room of 10,000: one every 2 s), so "
        "that a stream of joins cannot take the whole server.",
    )

    @validate("max_snapshot_members")
    def _check_max_snapshot_members(self, proposal: Any) -> int:
        if not 0 <= proposal["value"] <= p.MAX_MEMBERS_PAGE:
            raise TraitError(f"max_snapshot_members must be from 0 to {p.MAX_MEMBERS_PAGE}")
        return int(proposal["value"])

    @validate("presence_batch_frames_per_second")
    def _check_presence_batch_frames_per_second(self, proposal: Any) -> float:
        if not proposal["value"] > 0:
            raise TraitError("presence_batch_frames_per_second must be over 0")
        return float(proposal["value"])

    @validate("presence_batch_interval")
    def _check_presence_batch_interval(self, proposal: Any) -> float:
        if not 0 < proposal["value"] <= 10:
            raise TraitError("presence_batch_interval must be over 0 and at most 10 seconds")
        return float(proposal["value"])

    # -- AI agents over MCP (iavicenne/mcp; docs/agents.md) ------------------------------
    agents = Bool(
        True,
        config=True,
        help="Serve the MCP endpoint (iavicenne/mcp) through which AI agents join rooms with a person's "
        "token. False: no endpoint, and the MCP SDK is not even imported.",
    )
    agent_messages_per_minute = Float(
        20.0,
        config=True,
        help="Messages (room and direct) one agent (a person's MCP client, by its name) may post a minute, "
        "over all its sessions on this server; beyond it: 'limit-exceeded'.",
    )
    agent_bytes_per_minute = Int(
        64 * 1024,
        config=True,
        help="Bytes of text one agent may post a minute (and the most one message may hold).",
    )
    agent_max_consecutive_turns = Int(
        6,
        config=True,
        help="Agents' messages in a row a room accepts; then agents wait for a person to speak (the loop breaker).",
    )
    agent_max_wait_seconds = Float(
        60.0,
        config=True,
        help="Longest wait_for_mention an agent may ask for, in seconds (a long poll holds a request open).",
    )
    agent_max_rooms = Int(16, config=True, help="Rooms one agent session may be in at the same time.")
    agent_max_sessions = Int(
        1000,
        config=True,
        help="MCP sessions this server holds open at once, over all identities; beyond it a new one gets 503.",
    )

    # -- signaling: the ICE servers handed to peers in `joined` -----------------------
    ice_servers = List(
        Dict(),
        config=True,
        help="STUN/TURN servers handed to peers in 'joined', as W3C RTCIceServer dicts, e.g. "
        "[{'urls': ['stun:stun.example.org:3478']}, {'urls': ['turn:turn.example.org:3478?transport=udp']}]. "
        "A TURN entry without 'username' gets time-limited credentials when turn_secret is set. "
        "Default: none (peers on one network need none).",
    )

    @validate("ice_servers")
    def _check_ice_servers(self, proposal: Any) -> list[dict[str, Any]]:
        for server in proposal["value"]:
            urls = server.get("urls")
            if not (isinstance(urls, str) or (isinstance(urls, list) and urls and all(isinstance(u, str) for u in urls))):
                raise TraitError(f"every ICE server needs 'urls', a URL or a list of URLs; got {server!r}")
        return proposal["value"]

    turn_secret = Unicode(
        config=True,
        help="Secret shared with the TURN server (coturn: use-auth-secret, static-auth-secret=...). "
        "TURN entries of ice_servers then get the TURN REST credentials: username "
        "'<expiry unix time>:<peer_id>', credential base64(HMAC-SHA1(secret, username)). "
        "Default: $IAVICENNE_TURN_SECRET.",
    )

    @default("turn_secret")
    def _default_turn_secret(self) -> str:
        return os.environ.get("IAVICENNE_TURN_SECRET", "")

    turn_ttl = Float(
        86400.0,
        config=True,
        help="Seconds the TURN credentials handed out in 'joined' stay valid.",
    )

    # -- JupyterHub: the room service, and what users' servers may do ------------------
    room_service = Unicode(
        "iavicenne",
        config=True,
        help="Under JupyterHub, in a user's server: the name of the Hub-managed service that holds "
        "the rooms (c.JupyterHub.services; `iavicenne-room-service`). This server then serves no "
        "rooms: iavicenne/api/config tells its kernels and pages where the service is, and "
        "iavicenne/ redirects there. '' keeps the rooms in this server, for this user alone "
        "(broker='sqlite' or 'memory'). Ignored outside JupyterHub.",
    )
    room_service_url = Unicode(
        config=True,
        help="Under JupyterHub: the base URL by which kernels reach the room service, when not the "
        "one the Hub knows it by (e.g. through the proxy: http://proxy-public/services/iavicenne/). "
        "Default: $IAVICENNE_ROOMS_URL, else the service's URL from the Hub's API.",
    )

    @default("room_service_url")
    def _default_room_service_url(self) -> str:
        return os.environ.get(ROOMS_URL_VARIABLE, "")

    trust_user_servers = Bool(
        False,
        config=True,
        help="Under JupyterHub, let users' servers use broker='redis' (with room_service=''). "
        "Every such server, and every kernel in it, then holds the Redis URL, and with it every "
        "room's messages and the power to write as anyone: only for deployments whose users all "
        "trust each other. The room service is the way to share rooms between users.",
    )

    # -- wiring (wiring.py) -----------------------------------------------------------
    def initialize_settings(self) -> None:
        self.locator = wiring.hub_wiring(self)
        if self.locator is not None:  # the rooms are in the room service: no broker here
            self.room_broker: Broker | None = None
            return
        self.room_broker = wiring.make_broker(self)
        self.hub = RoomHub(
            self.room_broker,
            self.log,
            max_message_bytes=self.max_message_bytes,
            max_snapshot_members=self.max_snapshot_members,
            presence_batch_interval=self.presence_batch_interval,
            presence_batch_frames_per_second=self.presence_batch_frames_per_second,
        )
        # one per server: every socket counts against the same identities and total
        self.quotas = Quotas(wiring.limits(self))
        assert isinstance(self.room_broker, SharedStore)  # both brokers keep shared documents
        self.shared_docs = wiring.shared_docs(self, self.room_broker)
        if self.agents:  # the MCP SDK is imported only when agents are served
            from .agents.service import AgentService

            self.agent_service: AgentService | None = AgentService.of_app(self)
        else:
            self.agent_service = None

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
                    (r"/iavicenne/api/search(/.*)?", ServiceRestRelay, {**relay, "api": "search"}),
                ]
            )
            return
        shared: dict[str, Any] = {"hub": self.hub, "quotas": self.quotas}
        rest: dict[str, Any] = {
            "hub": self.hub,
            "budgets": RoomBudgets(self.max_private_rooms_per_identity, self.max_room_members, self.max_search_results),
        }
        self.handlers.extend(
            [
                (r"/iavicenne/ws/mcp/?", RoomSocketHandler, {**shared, "shared_docs": self.shared_docs}),
                (r"/iavicenne/ws/signaling/?", SignalingSocketHandler, {**shared, "ice": self.ice}),
                (r"/iavicenne/api/rooms/?", RoomListHandler, rest),
                (r"/iavicenne/api/rooms/([^/]+)/members/([^/]+)/?", RoomMemberHandler, rest),
                (r"/iavicenne/api/rooms/([^/]+)/export/?", RoomExportHandler, rest),
                (r"/iavicenne/api/search/?", SearchHandler, rest),
                (r"/iavicenne/api/rooms/([^/]+)/read/?", RoomReadHandler, rest),
                (r"/iavicenne/api/rooms/([^/]+)/?", RoomMembersHandler, rest),
            ]
        )
        if self.agent_service is not None:
            self.handlers.extend(self.agent_service.routes(rest))

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        await super()._start_jupyter_server_extension(serverapp)
        if self.room_broker is None:
            self.log.info("iavicenne: rooms in JupyterHub's service %r (IAvicenne.room_service)", self.room_service)
            return
        await self.room_broker.start()
        if self.agent_service is not None:
            await self.agent_service.start()
        self.log.info("iavicenne: rooms on the %s broker (server id %s)", self.broker, self.room_broker.server_id)

    async def stop_extension(self) -> None:
        if self.room_broker is None:
            return
        if self.agent_service is not None:
            await self.agent_service.stop()
        try:
            await asyncio.wait_for(self.room_broker.close(), timeout=5)
        except asyncio.TimeoutError:
            self.log.warning("iavicenne: the broker did not close within 5 s")
