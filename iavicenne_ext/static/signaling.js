/**
 * Signaling: `SignalingClient`, one peer (`peerId`) in one signaling room. It sees peers
 * come and go and relays offers, answers and ICE candidates, reliably (ref, ack, resent
 * after a reconnect) like room messages; `PeerNetwork` (peer.js) builds on it.
 *
 * Who is behind a peer id is the server's word, verified by it: `identities` maps each
 * peer to its holder's public identity (`peer_identities` of `joined`, `identity` of
 * `peer-joined`), and each relayed signal carries its sender's (`source_identity`, the
 * signal's `identity`), which `PeerNetwork` checks before it takes a link.
 */

import { Endpoint } from "./connection.js";
import { SeenSet } from "./delivery.js";
import { checkName, IAvicenneError, Superseded } from "./errors.js";
import { ErrorCode, JOIN, JOINED, LEAVE, PEER_JOINED, PEER_LEFT, RELAY_BODY, RELAYED, SIGNALING_PATH } from "./protocol.js";

/** @typedef {import("./connection.js").EndpointOptions} EndpointOptions */

/**
 * The payload field that carries the body of a relayed frame of type `type`, or undefined
 * for any other type (an own property only: "toString" is no frame type).
 * @param {unknown} type
 * @returns {string | undefined}
 */
function bodyField(type) {
  return typeof type === "string" && Object.hasOwn(RELAY_BODY, type) ? RELAY_BODY[/** @type {keyof typeof RELAY_BODY} */ (type)] : undefined;
}

/**
 * @param {unknown} value
 * @returns {value is Record<string, any>}
 */
function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * One peer (`peerId`) in one signaling room: peers come and go, signals are relayed.
 * Events: `peer` (`{room, kind: "joined"|"left", peerId, rejoined, identity}`), `signal`
 * (`{kind, source, body, room, identity}`), and the connection events. Relays are reliable like
 * room messages (ref, ack, resent after a reconnect).
 */
export class SignalingClient extends Endpoint {
  /**
   * @param {EndpointOptions & { room: string, peerId: string }} options
   */
  constructor(options) {
    super(SIGNALING_PATH, options);
    this.room = checkName(options.room, "room");
    this.peerId = checkName(options.peerId, "peer_id");
    /** @type {Set<string>} the other peers in the room */
    this.peers = new Set();
    /** @type {Map<string, Record<string, any>>} peer id -> its holder's verified public identity */
    this.identities = new Map();
    /** @type {RTCIceServer[]} the ICE servers the server hands out */
    this.iceServers = [];
    this._signalsSeen = new SeenSet();
  }

  /** @param {EndpointOptions & { room: string, peerId: string }} options */
  static async connect(options) {
    const client = new SignalingClient(options);
    await client.open();
    return client;
  }

  /**
   * Send an offer, answer or ICE candidate to `target`; resolves once the server relayed it.
   * @param {(typeof RELAYED)[number]} kind
   * @param {string} target
   * @param {Record<string, any> | null} body
   */
  relay(kind, target, body) {
    const field = bodyField(kind);
    if (!field) throw new IAvicenneError(`cannot relay ${kind}: ${RELAYED.join(", ")}`);
    return this._sendReliable({ type: kind, room: this.room, payload: { target_peer_id: target, [field]: body } }, this.room);
  }

  /**
   * Resolves when `peerId` is in the room.
   * @param {string} peerId
   * @param {number} [timeout] ms
   */
  async waitForPeer(peerId, timeout) {
    if (this.peers.has(peerId)) return;
    await this.events.next("peer", { where: (e) => e.kind === "joined" && e.peerId === peerId, timeout });
  }

  /** @param {any} ws */
  async _restore(ws) {
    const joined = await this._request(ws, { type: JOIN, room: this.room, payload: { peer_id: this.peerId } }, JOINED);
    this.iceServers = Array.isArray(joined.ice_servers) ? joined.ice_servers : [];
    const now = new Set(Array.isArray(joined.peers) ? joined.peers : []);
    const said = isObject(joined.peer_identities) ? joined.peer_identities : {};
    this.identities = new Map(
      [...now].filter((p) => Object.hasOwn(said, p) && isObject(said[p])).map((p) => [p, said[p]]),
    );
    const before = this.peers;
    this.peers = now;
    // what changed while we were away, as if we had seen it
    for (const peerId of [...before].filter((p) => !now.has(p)).sort()) {
      this.events.emit("peer", { room: this.room, kind: "left", peerId, rejoined: false, identity: null });
    }
    for (const peerId of [...now].filter((p) => !before.has(p)).sort()) {
      this.events.emit("peer", { room: this.room, kind: "joined", peerId, rejoined: false, identity: this.identities.get(peerId) ?? null });
    }
  }

  /** @param {Record<string, any>} frame */
  _handle(frame) {
    const { type } = frame;
    const field = bodyField(type);
    if (type === PEER_JOINED || type === PEER_LEFT) {
      const peerId = frame.peer_id;
      if (typeof peerId !== "string" || peerId === this.peerId) return;
      if (type === PEER_JOINED) {
        this.peers.add(peerId);
        // a server that does not say: what we knew of an earlier holder is stale
        if (isObject(frame.identity)) this.identities.set(peerId, frame.identity);
        else this.identities.delete(peerId);
      } else {
        this.peers.delete(peerId);
        this.identities.delete(peerId);
      }
      this.events.emit("peer", {
        room: this.room,
        kind: type === PEER_JOINED ? "joined" : "left",
        peerId,
        rejoined: Boolean(frame.rejoined),
        identity: this.identities.get(peerId) ?? null,
      });
    } else if (field) {
      const source = typeof frame.source_peer_id === "string" ? frame.source_peer_id : "";
      // a resend whose ack was lost is relayed twice: handle it once
      if (typeof frame.ref === "string" && !this._signalsSeen.add(`${source}\u0000${frame.ref}`)) return;
      const body = frame[field] ?? null;
      const identity = isObject(frame.source_identity) ? frame.source_identity : null;
      this.events.emit("signal", { kind: type, source, body, room: frame.room ?? this.room, identity });
    }
  }

  /** @param {Record<string, any>} frame */
  _onError(frame) {
    if (frame.code === ErrorCode.SUPERSEDED && frame.ref === undefined) {
      this._stop(new Superseded(frame));
      return;
    }
    super._onError(frame);
  }

  /** @param {any} ws */
  _beforeClose(ws) {
    this._write(ws, JSON.stringify({ type: LEAVE }));
  }
}
