/**
 * Peer links: WebRTC data channels to kernels and other browsers. `PeerNetwork` is this
 * page's links in one signaling room (it opens links on request and answers offers);
 * `PeerLink` (link.js) is one data channel. The conventions are the Python peer
 * network's (`iavicenne.peer`), so a browser and a kernel talk to each other:
 *
 * - Either side may open a link (it offers). When both offer at once (glare), the offer
 *   of the lower peer_id wins (names compared by code point): the higher side drops its
 *   own and answers. An offer for a link that exists means the other side started again:
 *   the old link closes and the new offer is answered. Negotiation steps with one peer
 *   run in order.
 * - Each link's channel, descriptions and wire format: link.js.
 * - Who answers is the server's word: each relayed signal carries its sender's verified
 *   identity (`source_identity`), kept as the link's `identity`. Given `verifyIdentity`
 *   (`presenceCheck(room)` makes one: the identity must be the one that holds the peer's
 *   member name in the room's presence), a network takes no answer, answers no offer and
 *   opens no link to a peer whose identity it refuses: the attempt closes with
 *   `PeerIdentityMismatch`, and a refused offer is a `refused` event.
 */

import { checkName, IAvicenneError, PeerIdentityMismatch, PeerLeft, PeerLinkClosed, PeerUnreachable } from "./errors.js";
import { Emitter } from "./events.js";
import { sameIdentity } from "./identity.js";
import { PeerLink } from "./link.js";
import { ANSWER, ICE_CANDIDATE, OFFER } from "./protocol.js";
import { SignalingClient } from "./signaling.js";
import { DEFAULT_MAX_TRANSFER_BYTES } from "./wire.js";

/** @typedef {import("./connection.js").EndpointOptions} EndpointOptions */
/** @typedef {import("./errors.js").PeerLinkError} PeerLinkError */

/** The negotiation step that opens a link (the other steps are the signals that arrive). */
const OPEN_LINK = Symbol("open a link");

/**
 * `a < b` comparing code points, as Python compares strings (JavaScript's `<` compares
 * UTF-16 code units, which orders characters beyond U+FFFF differently).
 * @param {string} a
 * @param {string} b
 */
export function codePointLess(a, b) {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const cx = /** @type {number} */ (x[i].codePointAt(0));
    const cy = /** @type {number} */ (y[i].codePointAt(0));
    if (cx !== cy) return cx < cy;
  }
  return x.length < y.length;
}

/**
 * This page's links in one signaling room: opens links on request, answers offers. Mirrors
 * the Python `PeerNetwork` (`iavicenne.peer`). Options: `loopback` (use 127.0.0.1 / ::1
 * candidates only: peers on one machine, as the tests do), `iceServers` (default: what the
 * server hands out), `chunkSize`, `highWater`, `lowWater` (bytes), `gatherTimeout` (ms),
 * `maxTransferBytes` (the largest transfer a peer may send us, 256 MiB; a larger one is
 * refused with a `TransferRefused` error event on its link), `RTCPeerConnection` (a
 * constructor; default: the browser's).
 */
export class PeerNetwork {
  /**
   * @param {SignalingClient} signaling
   * @param {{ loopback?: boolean, iceServers?: RTCIceServer[], chunkSize?: number, highWater?: number,
   *           lowWater?: number, gatherTimeout?: number, maxTransferBytes?: number, RTCPeerConnection?: any,
   *           setTimeout?: (callback: () => void, ms: number) => any, clearTimeout?: (handle: any) => void,
   *           ownsSignaling?: boolean,
   *           verifyIdentity?: (peerId: string, identity: Record<string, any> | null) => void }} [options]
   *   `verifyIdentity` throws `PeerIdentityMismatch` for an identity that may not hold a
   *   peer id (`presenceCheck(room)`); without it every identity is taken (and kept as the
   *   link's `identity`).
   */
  constructor(signaling, options = {}) {
    const global = /** @type {any} */ (globalThis);
    const { chunkSize = 65536, highWater = 1 << 20, lowWater = 256 * 1024, gatherTimeout = 3000 } = options;
    const { maxTransferBytes = DEFAULT_MAX_TRANSFER_BYTES } = options;
    if (!(lowWater >= 0 && lowWater < highWater)) throw new IAvicenneError("need 0 <= lowWater < highWater");
    if (!(chunkSize > 16)) throw new IAvicenneError("chunkSize is too small");
    if (!(typeof maxTransferBytes === "number" && maxTransferBytes >= 0)) {
      throw new IAvicenneError(`maxTransferBytes is a number of bytes (0 or more), not ${maxTransferBytes}`);
    }
    this.signaling = signaling;
    this.loopback = Boolean(options.loopback);
    this.iceServersOverride = options.iceServers ?? null;
    this.chunkSize = chunkSize;
    this.highWater = highWater;
    this.lowWater = lowWater;
    this.gatherTimeout = gatherTimeout;
    /** The largest transfer a peer may send to a link of this network (bytes). */
    this.maxTransferBytes = maxTransferBytes;
    this._RTCPeerConnection = options.RTCPeerConnection ?? global.RTCPeerConnection;
    if (typeof this._RTCPeerConnection !== "function") {
      throw new IAvicenneError("no RTCPeerConnection here: run in a browser, or pass one");
    }
    this._setTimeout = options.setTimeout ?? ((/** @type {() => void} */ f, /** @type {number} */ ms) => setTimeout(f, ms));
    this._clearTimeout = options.clearTimeout ?? ((/** @type {any} */ h) => clearTimeout(h));
    /** @type {Map<string, PeerLink>} */
    this.links = new Map();
    this.events = new Emitter();
    this._ownsSignaling = Boolean(options.ownsSignaling);
    this.verifyIdentity = options.verifyIdentity ?? null;
    /** @type {Map<string, Array<{ resolve: (link: PeerLink) => void, reject: (error: Error) => void }>>} */
    this._waiters = new Map();
    /** @type {PeerLink[]} */
    this._accepted = [];
    /** @type {Array<(link: PeerLink) => void>} */
    this._acceptors = [];
    /** @type {Map<string, Promise<void>>} */
    this._steps = new Map();
    this._closed = false;
    this._off = [
      signaling.on("signal", (/** @type {any} */ signal) => this._step(signal.source, signal)),
      signaling.on("peer", (/** @type {any} */ event) => this._onPeer(event)),
      signaling.on("closed", () => this.close()),
    ];
  }

  /**
   * Join signaling room `room` as `peerId`, and take part in it.
   * @param {EndpointOptions & { room: string, peerId: string, loopback?: boolean, iceServers?: RTCIceServer[],
   *         RTCPeerConnection?: any, chunkSize?: number, highWater?: number, lowWater?: number, gatherTimeout?: number,
   *         maxTransferBytes?: number }} options
   */
  static async join(options) {
    const signaling = await SignalingClient.connect(options);
    return new PeerNetwork(signaling, { ...options, ownsSignaling: true });
  }

  get peerId() {
    return this.signaling.peerId;
  }

  get room() {
    return this.signaling.room;
  }

  /** The other peers in the room now. */
  get peers() {
    return new Set(this.signaling.peers);
  }

  /**
   * Events: `link` (a PeerLink that opened), `change` (`{peerId, state, error, link}` of any
   * link, for a UI), `peer` (from signaling).
   * @param {string} kind
   * @param {(event: any) => void} callback
   */
  on(kind, callback) {
    return this.events.on(kind, callback);
  }

  /**
   * An open link to `peerId`: waits for it to be in the room, then for the channel.
   * @param {string} peerId
   * @param {{ timeout?: number }} [options] ms (default 30 s)
   * @returns {Promise<PeerLink>}
   */
  async connect(peerId, { timeout = 30000 } = {}) {
    checkName(peerId, "peer_id");
    if (peerId === this.peerId) throw new IAvicenneError("cannot open a link to oneself");
    this._check();
    /** @type {any} */
    let timer;
    const opened = (async () => {
      await this.signaling.waitForPeer(peerId);
      const known = this.signaling.identities?.get(peerId);
      const refused = known ? this._refusal(peerId, known) : null;
      if (refused) throw refused; // the server already says who holds it: no offer to them
      const link = this.links.get(peerId);
      if (link?.open) return link;
      const waiting = new Promise((resolve, reject) => {
        const list = this._waiters.get(peerId) ?? [];
        list.push({ resolve, reject });
        this._waiters.set(peerId, list);
      });
      if (!link) this._step(peerId, OPEN_LINK);
      return /** @type {Promise<PeerLink>} */ (waiting);
    })();
    opened.catch(() => {}); // after a timeout, nobody waits for it any more
    const expired = new Promise((_, reject) => {
      timer = this._setTimeout(() => {
        const where = this.signaling.peers.has(peerId) ? "did not open" : "is not in the room";
        reject(new PeerUnreachable(`the link to ${JSON.stringify(peerId)} ${where} within ${timeout} ms`));
      }, timeout);
    });
    try {
      return await Promise.race([opened, expired]);
    } finally {
      this._clearTimeout(timer);
    }
  }

  /** The next link another peer opened to us. @returns {Promise<PeerLink>} */
  accept() {
    this._check();
    const ready = this._accepted.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve) => this._acceptors.push(resolve));
  }

  /** Close every link (and the signaling connection when `join` made it). */
  close() {
    if (this._closed) return;
    this._closed = true;
    for (const off of this._off) off();
    for (const link of [...this.links.values()]) link.close();
    for (const [, waiters] of this._waiters) for (const w of waiters) w.reject(new PeerLinkClosed("the peer network was closed"));
    this._waiters.clear();
    if (this._ownsSignaling) this.signaling.close();
  }

  _check() {
    if (this._closed) throw new PeerLinkClosed("the peer network was closed");
  }

  /**
   * What `verifyIdentity` says of `identity` holding `peerId`: the refusal, or null.
   * @param {string} peerId
   * @param {Record<string, any> | null} identity
   * @returns {PeerIdentityMismatch | null}
   */
  _refusal(peerId, identity) {
    if (!this.verifyIdentity) return null;
    try {
      this.verifyIdentity(peerId, identity);
    } catch (error) {
      if (error instanceof PeerIdentityMismatch) return error;
      throw error;
    }
    return null;
  }

  _iceServers() {
    return this.iceServersOverride ?? this.signaling.iceServers ?? [];
  }

  /** @param {any} event */
  _onPeer(event) {
    this.events.emit("peer", event);
    if (event.kind === "left") this.links.get(event.peerId)?.closeWith(new PeerLeft(`peer ${JSON.stringify(event.peerId)} left the room`));
  }

  /**
   * Queue one negotiation step with `peerId` (OPEN_LINK, or a signal); steps run in order.
   * @param {string} peerId
   * @param {any} step
   */
  _step(peerId, step) {
    if (this._closed) return;
    const previous = this._steps.get(peerId) ?? Promise.resolve();
    const next = previous.then(() => this._negotiate(peerId, step));
    this._steps.set(peerId, next);
  }

  /**
   * @param {string} peerId
   * @param {any} step
   */
  async _negotiate(peerId, step) {
    if (this._closed) return;
    let link = this.links.get(peerId);
    try {
      if (step === OPEN_LINK) {
        if (!link) {
          link = this._newLink(peerId, true);
          await link.makeOffer();
        }
      } else if (step.kind === OFFER) {
        const refused = this._refusal(peerId, step.identity ?? null);
        if (refused) {
          console.warn(`iavicenne: an offer from ${peerId} refused: ${refused.message}`);
          if (link && link.state === "connecting") link.closeWith(refused); // ours goes to the same peer id: not to them either
          this.events.emit("refused", refused);
          return;
        }
        if (link && link.offerer && link.state === "connecting") {
          if (codePointLess(this.peerId, peerId)) return; // glare, and our offer wins: they answer it
          link.closeWith(new PeerLinkClosed("replaced: both sides offered; the lower peer_id's offer won"), { quietly: true });
        } else if (link) {
          link.closeWith(new PeerLinkClosed(`peer ${JSON.stringify(peerId)} opened a new link, replacing this one`));
        }
        link = this._newLink(peerId, false);
        link.identity = step.identity ?? null;
        await link.answerOffer(step.body ?? {});
      } else if (link && step.kind === ANSWER) {
        if (link.offerer && link.state === "connecting") {
          const refused = this._refusal(peerId, step.identity ?? null);
          if (refused) {
            link.closeWith(refused); // closes the attempt: its waiters get the mismatch
            return;
          }
          link.identity = step.identity ?? null;
        }
        await link.takeAnswer(step.body ?? {});
      } else if (link && step.kind === ICE_CANDIDATE) {
        if (link.identity && !sameIdentity(link.identity, step.identity)) return; // from someone else: dropped
        await link.addCandidate(step.body);
      }
    } catch (error) {
      console.warn(`iavicenne: negotiating with ${peerId} failed:`, error);
      if (link && link.state === "connecting") {
        link.closeWith(new PeerUnreachable(`could not negotiate a link with ${JSON.stringify(peerId)}: ${/** @type {Error} */ (error).message}`));
      }
    }
  }

  /**
   * @param {string} peerId
   * @param {boolean} offerer
   */
  _newLink(peerId, offerer) {
    const link = new PeerLink(this, peerId, offerer);
    this.links.set(peerId, link);
    this.events.emit("change", { peerId, state: link.state, error: null, link });
    return link;
  }

  /** @param {PeerLink} link */
  _linkOpen(link) {
    if (this.links.get(link.peerId) !== link) return;
    const waiters = this._waiters.get(link.peerId) ?? [];
    this._waiters.delete(link.peerId);
    for (const waiter of waiters) waiter.resolve(link);
    if (!link.offerer && !waiters.length) {
      const acceptor = this._acceptors.shift();
      if (acceptor) acceptor(link);
      else this._accepted.push(link);
    }
    this.events.emit("link", link);
  }

  /**
   * @param {PeerLink} link
   * @param {PeerLinkError} error
   * @param {boolean} quietly
   */
  _linkClosed(link, error, quietly) {
    if (this.links.get(link.peerId) === link) this.links.delete(link.peerId);
    if (quietly) return; // replaced by another link to the same peer: its waiters wait for that one
    for (const waiter of this._waiters.get(link.peerId) ?? []) waiter.reject(error);
    this._waiters.delete(link.peerId);
  }
}
