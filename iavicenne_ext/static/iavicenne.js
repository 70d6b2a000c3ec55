/**
 * iAvicenne in the browser: rooms, presence, history recovery, direct messages and
 * WebRTC data channels to kernels and other browsers, through a Jupyter server.
 *
 * ES modules with no dependencies and no build step, served by the extension at
 * `{base_url}iavicenne/static/` (types in `iavicenne.d.ts` beside this one). This is the
 * entry module: it exports the public API of the others, which a page, or a bundled
 * JupyterLab extension, imports from here:
 *
 * ```js
 * import { RoomClient } from "/iavicenne/static/iavicenne.js";
 * const client = await RoomClient.connect({ userId: "alice" });
 * const room = await client.join("analysis");
 * room.on("message", (m) => console.log(m.userId, m.text));
 * await room.send("hello");            // resolves with the server's ack (and seq)
 * ```
 *
 * It behaves as the Python client (the `iavicenne` package) does, over the same protocol
 * (docs/protocol.md), module for module:
 *
 * - protocol.js: the protocol's values, emitted from the package iavicenne_protocol;
 * - errors.js: the errors, `errorFrom` (an error frame's), `checkName`;
 * - events.js: `Emitter`;
 * - delivery.js: `Outbox`, `SeenSet`, `SeqTracker`;
 * - discovery.js: `Server` (addresses, token or login cookie, XSRF, REST), `discoverRooms`
 *   (the room service under JupyterHub);
 * - connection.js: `Backoff` and the connection core every client shares, which
 *   **reconnects** by itself with exponential backoff and jitter, **rejoins** and
 *   **recovers** what was missed (each room remembers its last `seq` and `epoch`, a
 *   replayed seq already delivered is skipped, a `gap` event says when the server could
 *   not replay everything), and **resends** what was not acknowledged (same `ref`, so
 *   the server delivers it once);
 * - client.js: `RoomClient`; room.js: `Room`, one joined room; rooms-api.js: `RoomsAPI`
 *   (private and group rooms, invitations);
 * - signaling.js: `SignalingClient`;
 * - wire.js: the data channels' wire format (`frameMessages`, `Reassembler`);
 * - ice.js: candidate and SDP filtering;
 * - peer.js: `PeerNetwork`; link.js: `PeerLink` (its `identity`: who the server says the
 *   other end is); identity.js: `presenceCheck` (a link only with who holds that name in
 *   the room), `sameIdentity`, `userOfPeer`.
 *
 * Authentication is Jupyter's: a page served by the Jupyter server sends its login
 * cookie on the WebSockets by itself; a `token` option (or `?token=` in the page's
 * address) is sent as `?token=` instead. REST calls carry the `_xsrf` cookie as the
 * `X-XSRFToken` header, as Jupyter requires of browser requests.
 *
 * Everything that touches the outside (WebSocket, RTCPeerConnection, fetch, timers,
 * randomness) can be passed in, so the logic runs under node's test runner without a
 * browser.
 */

export * from "./protocol.js";
export { RoomClient } from "./client.js";
export { Backoff, parseFrame } from "./connection.js";
export { Outbox, SeenSet, SeqTracker } from "./delivery.js";
export { discoverRooms, Server, readCookie } from "./discovery.js";
export {
  AuthenticationError,
  checkName,
  ConnectionClosed,
  errorFrom,
  Forbidden,
  IAvicenneError,
  NameTaken,
  PeerIdentityMismatch,
  PeerLeft,
  PeerLinkClosed,
  PeerLinkError,
  PeerUnreachable,
  RequestFailed,
  Superseded,
  TransferRefused,
  UnknownPeer,
} from "./errors.js";
export { Emitter } from "./events.js";
export { filterSdp } from "./ice.js";
export { presenceCheck, sameIdentity, userOfPeer } from "./identity.js";
export { PeerLink } from "./link.js";
export { codePointLess, PeerNetwork } from "./peer.js";
export { payloadOf, Room } from "./room.js";
export { ACCESS_KINDS, RoomsAPI } from "./rooms-api.js";
export { SignalingClient } from "./signaling.js";
export { DEFAULT_MAX_TRANSFER_BYTES, encodePayload, frameMessages, Reassembler } from "./wire.js";
