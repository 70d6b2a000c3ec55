"""Signaling: one peer in one signaling room, where peers find each other and relay
the offers, answers and ICE candidates that open a WebRTC link (`iavicenne.peer`).

The same self-healing connection as the room client (`iavicenne.connection`): relays
are reliable (ref, ack, resent after a reconnect), a relay resent after a lost ack is
handled once (a `SeenSet`), and after a reconnect the peers that came or went while we
were away are reported as if we had seen them. The browser's ``signaling.js`` is the same.

**Who is behind a peer id.** The server says it, having verified it: `identities` maps
each peer to its holder's public identity (``peer_identities`` of ``joined``, ``identity``
of ``peer-joined``), and each relayed signal carries its sender's (``source_identity``,
`Signal.identity`). A link checks them (`iavicenne.peer.PeerNetwork`'s `verify_identity`)
before it takes an answer or answers an offer.

**Relay frames** (`send_relay`, ``relay`` events) carry a peer link's messages through the
server when no direct path opens (`iavicenne.relay`): addressed and verified like an
offer, reliable like one, and handed once each to the ``relay`` event as a `Signal`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tornado.websocket import WebSocketClientConnection

import iavicenne_protocol as p

from .connection import Endpoint
from .delivery import SeenSet
from .discovery import ServerInfo, discover_server
from .errors import Superseded
from .events import PeerEvent, Signal


class SignalingClient(Endpoint):
    """One peer (`peer_id`) in one signaling room: peers come and go, signals are relayed.

    ``await SignalingClient.connect("lab", "alice")``; `peers` is who else is there;
    ``peer`` events (`PeerEvent`) and ``signal`` events (`Signal`) follow. Relays are
    reliable like room messages (ref, ack, resent after a reconnect) and a relay to a
    peer that is not there raises `UnknownPeer`.
    """

    path = p.SIGNALING_PATH

    def __init__(self, server: ServerInfo, room: str, peer_id: str, **options: Any) -> None:
        super().__init__(server, **options)
        self.room = p.check_name(room, "room")
        self.peer_id = p.check_name(peer_id, "peer_id")
        self.peers: set[str] = set()
        #: peer_id -> the verified public identity of its holder (as the server said)
        self.identities: dict[str, dict[str, Any]] = {}
        self.ice_servers: list[dict[str, Any]] = []
        self._signals_seen = SeenSet()

    @classmethod
    async def connect(
        cls, room: str, peer_id: str, url: str | None = None, token: str | None = None, **options: Any
    ) -> SignalingClient:
        client = cls(discover_server(url, token), room, peer_id, **options)
        await client.start()
        return client

    async def relay(self, kind: str, target: str, body: dict[str, Any] | None) -> dict[str, Any]:
        """Send an offer, answer or ICE candidate to `target`; returns once the server relayed it."""
        frame = {"type": kind, "room": self.room, "payload": {"target_peer_id": target, p.RELAY_BODY[kind]: body}}
        return await self._send_reliable(frame, self.room)

    async def send_relay(self, target: str, data: dict[str, Any]) -> dict[str, Any]:
        """Send one relay frame (`data`) to peer `target`; returns once the server forwarded it."""
        frame = {"type": p.RELAY, "room": self.room, "payload": {"target_peer_id": target, p.RELAY_DATA: data}}
        return await self._send_reliable(frame, self.room)

    async def wait_for_peer(self, peer_id: str, timeout: float | None = None) -> None:
        """Wait until `peer_id` is in the room."""
        if peer_id in self.peers:
            return
        arrived = asyncio.get_running_loop().create_future()

        def on_peer(event: PeerEvent) -> None:
            if event.kind == "joined" and event.peer_id == peer_id and not arrived.done():
                arrived.set_result(None)

        off = self.on("peer", on_peer)
        try:
            if peer_id not in self.peers:
                await asyncio.wait_for(arrived, timeout)
        finally:
            off()

    async def _restore(self, ws: WebSocketClientConnection) -> None:
        # the snapshot is taken in `_handle`, when the frame is read: a peer-joined read right
        # after it (in the same read) must come after it, not be undone by it here, later
        await self._request(ws, {"type": p.JOIN, "room": self.room, "payload": {"peer_id": self.peer_id}}, expect=p.JOINED)

    def _snapshot(self, joined: dict[str, Any]) -> None:
        """The peers in the room as `joined` lists them; what changed since, as events."""
        self.ice_servers = joined.get("ice_servers") or []
        now = set(joined.get("peers") or [])
        said = joined.get("peer_identities")
        self.identities = (
            {peer: identity for peer, identity in said.items() if peer in now and isinstance(identity, dict)}
            if isinstance(said, dict)
            else {}
        )
        before, self.peers = self.peers, now
        # what changed while we were away, as if we had seen it
        for peer_id in sorted(before - now):
            self.events.emit("peer", PeerEvent(self.room, "left", peer_id))
        for peer_id in sorted(now - before):
            self.events.emit("peer", PeerEvent(self.room, "joined", peer_id, identity=self.identities.get(peer_id)))

    def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == p.JOINED:
            if frame.get("room", self.room) == self.room and frame.get("peer_id", self.peer_id) == self.peer_id:
                self._snapshot(frame)
        elif kind == p.PEER_JOINED:
            peer_id = frame["peer_id"]
            if peer_id == self.peer_id:
                return
            self.peers.add(peer_id)
            identity = frame.get("identity")
            if isinstance(identity, dict):
                self.identities[peer_id] = identity
            else:  # a server that does not say: what we knew of an earlier holder is stale
                self.identities.pop(peer_id, None)
            self.events.emit(
                "peer", PeerEvent(self.room, "joined", peer_id, bool(frame.get("rejoined")), self.identities.get(peer_id))
            )
        elif kind == p.PEER_LEFT:
            peer_id = frame["peer_id"]
            self.peers.discard(peer_id)
            self.identities.pop(peer_id, None)
            self.events.emit("peer", PeerEvent(self.room, "left", peer_id))
        elif kind in p.RELAYED or kind == p.RELAY:
            source = frame.get("source_peer_id", "")
            ref = frame.get("ref")
            # a resend whose ack was lost is relayed twice: handled once
            if ref is None or self._signals_seen.add((source, ref)):
                identity = frame.get("source_identity")
                field = p.RELAY_DATA if kind == p.RELAY else p.RELAY_BODY[kind]
                body, room = frame.get(field), frame.get("room", self.room)
                signal = Signal(kind, source, body, room, identity if isinstance(identity, dict) else None)
                self.events.emit("relay" if kind == p.RELAY else "signal", signal)

    def _on_error(self, frame: dict[str, Any]) -> None:
        if frame.get("code") == p.ErrorCode.SUPERSEDED and frame.get("ref") is None:
            error = Superseded(frame)
            self._stop(error)
            if self._ws is not None:
                self._ws.close()
            return
        super()._on_error(frame)

    async def _before_close(self) -> None:
        if self._ready.is_set() and self._ws is not None:
            self._write(self._ws, json.dumps({"type": p.LEAVE}))


__all__ = ["SignalingClient"]
