// @ts-check
/**
 * Peer links: WebRTC data channels to kernels and other browsers. `PeerNetwork` is this
 * page's links in one signaling room (it opens links on request and answers offers);
 * `PeerLink` is one data channel. The conventions are the Python peer link's
 * (`iavicenne.peer`), so a browser and a kernel talk to each other:
 *
 * - Either side may open a link (it offers). When both offer at once (glare), the offer
 *   of the lower peer_id wins (names compared by code point): the higher side drops its
 *   own and answers. An offer for a link that exists means the other side started again:
 *   the old link closes and the new offer is answered. Negotiation steps with one peer
 *   run in order.
 * - The offerer creates one ordered, reliable channel labelled `CHANNEL_LABEL`.
 * - Descriptions are sent whole: the browser waits for ICE gathering to finish (at most
 *   `gatherTimeout`) and sends its SDP with every candidate in it (aiortc, on the other
 *   side, does the same); candidates found later are trickled as ICE_CANDIDATE signals,
 *   ended by a `null` one.
 * - On the channel, the wire format of wire.js; what a peer sends is bounded on arrival
 *   (`maxTransferBytes`).
 * - Who answers is the server's word: each relayed signal carries its sender's verified
 *   identity (`source_identity`), kept as the link's `identity`. Given `verifyIdentity`
 *   (`presenceCheck(room)` makes one: the identity must be the one that holds the peer's
 *   member name in the room's presence), a network takes no answer, answers no offer and
 *   opens no link to a peer whose identity it refuses: the attempt closes with
 *   `PeerIdentityMismatch`, and a refused offer is a `refused` event.
 */

import {
  checkName,
  IAvicenneError,
  PeerIdentityMismatch,
  PeerLeft,
  PeerLinkClosed,
  PeerLinkError,
  PeerUnreachable,
  TransferRefused,
} from "./errors.js";
import { Emitter } from "./events.js";
import { filterSdp, isLoopbackCandidate } from "./ice.js";
import { ANSWER, CHANNEL_LABEL, DEFAULT_REMOTE_MAX_MESSAGE, ICE_CANDIDATE, OFFER, Tag } from "./protocol.js";
import { SignalingClient } from "./signaling.js";
import { DEFAULT_MAX_TRANSFER_BYTES, frameMessages, idFrame, Reassembler, refusalFrame } from "./wire.js";

/** @typedef {import("./connection.js").EndpointOptions} EndpointOptions */

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
 * Whether two public identities (as the server verified them) are one person: the same
 * `username`, the one thing nobody else can have (a name or a display name can).
 * @param {Record<string, any> | null | undefined} a
 * @param {Record<string, any> | null | undefined} b
 */
export function sameIdentity(a, b) {
  const username = a?.username;
  return typeof username === "string" && username !== "" && username === b?.username;
}

const TAGGED = /^(.+)#[0-9a-f]{6}$/;

/**
 * The member (user_id) a peer id belongs to: a kernel's `"bob#3f2a1c"` is bob's, a
 * page's `"bob"` too (the Python client's convention, `iavicenne.connections`).
 * @param {string} peerId
 */
export function userOfPeer(peerId) {
  return TAGGED.exec(peerId)?.[1] ?? peerId;
}

/**
 * A `verifyIdentity` for a `PeerNetwork` of the signaling room beside `room` (a joined
 * `Room` of client.js): a peer is accepted only when the server says it is held by the
 * identity that holds its member name in the room's presence.
 * @param {{ name: string, members: Map<string, Record<string, any>> }} room
 * @param {{ userOf?: (peerId: string) => string }} [options]
 * @returns {(peerId: string, identity: Record<string, any> | null) => void}
 */
export function presenceCheck(room, { userOf = userOfPeer } = {}) {
  return (peerId, identity) => {
    const user = userOf(peerId);
    const expected = room.members.get(user)?.identity ?? null;
    const quoted = JSON.stringify(peerId);
    if (!expected || !Object.keys(expected).length) {
      throw new PeerIdentityMismatch(`${quoted} would be ${JSON.stringify(user)}'s, but nobody holds ${JSON.stringify(user)} in room ${JSON.stringify(room.name)}: link refused`, { found: identity });
    }
    if (!identity) {
      throw new PeerIdentityMismatch(`the server did not say who holds ${quoted} (a server without verified signaling?): link refused`, { expected });
    }
    if (!sameIdentity(expected, identity)) {
      throw new PeerIdentityMismatch(
        `${quoted} is held by ${JSON.stringify(identity.username)}, but ${JSON.stringify(user)} in room ${JSON.stringify(room.name)} is ${JSON.stringify(expected.username)}: link refused (someone took a name that is not theirs)`,
        { expected, found: identity },
      );
    }
  };
}

/**
 * A data channel to one peer (W3C names: `pc` is the RTCPeerConnection, `channel` the
 * RTCDataChannel). States: "connecting" → "open" → "closed" (then `error` says why).
 * Made by `PeerNetwork.connect` or for an offer that arrives, not directly.
 */
export class PeerLink {
  /**
   * @param {PeerNetwork} network
   * @param {string} peerId
   * @param {boolean} offerer
   */
  constructor(network, peerId, offerer) {
    this.network = network;
    this.peerId = peerId;
    this.offerer = offerer;
    /** @type {Record<string, any> | null} who the other end is, as the server verified it (from its offer or answer) */
    this.identity = null;
    /** @type {"connecting" | "open" | "closed"} */
    this.state = "connecting";
    /** @type {PeerLinkError | null} */
    this.error = null;
    this.events = new Emitter();
    this.maxMessageSize = network.chunkSize;
    this.pc = new network._RTCPeerConnection({ iceServers: network._iceServers() });
    /** @type {any} */
    this.channel = null;
    this._reassembler = new Reassembler({
      maxTransferBytes: network.maxTransferBytes,
      peerId,
      onError: (error) => this._refused(error), // refused: the link stays open
    });
    this._ids = 0;
    /** @type {Map<number, { resolve: () => void, reject: (error: Error) => void, refused: Error | null }>} */
    this._done = new Map();
    /** @type {Array<() => void>} */
    this._drainWaiters = [];
    /** @type {Promise<void>} */
    this._sending = Promise.resolve();
    /** @type {false | "complete" | "trickle"} whether (and how) our description went out */
    this._signalled = false;
    /** the SDP we sent (with the candidates gathered by then) */
    this._sentSdp = "";
    /** @type {Array<any>} candidates gathered before our description was sent */
    this._laterCandidates = [];
    /** @type {Array<any>} remote candidates that came before the remote description */
    this._earlyCandidates = [];
    let opened = { resolve: () => {}, reject: (/** @type {Error} */ _e) => {} };
    /** @type {Promise<PeerLink>} */
    this._opened = new Promise((resolve, reject) => {
      opened = { resolve: () => resolve(this), reject };
    });
    this._opened.catch(() => {});
    this._resolveOpened = opened.resolve;
    this._rejectOpened = opened.reject;
    this.pc.onconnectionstatechange = () => this._onConnectionState();
    this.pc.onicecandidate = (/** @type {any} */ event) => this._onLocalCandidate(event.candidate);
    if (offerer) this._attach(this.pc.createDataChannel(CHANNEL_LABEL, { ordered: true }));
    else this.pc.ondatachannel = (/** @type {any} */ event) => this._attach(event.channel);
  }

  get open() {
    return this.state === "open";
  }

  /**
   * Events: `message` (each payload: a string, a Uint8Array or a JSON value), `progress`
   * (`{peerId, direction, done, total}` of transfers), `state` (the new state), `close` (the error).
   * @param {string} kind
   * @param {(event: any) => void} callback
   */
  on(kind, callback) {
    return this.events.on(kind, callback);
  }

  /** Resolves when the channel is open; rejects if the link closes first. */
  waitOpen() {
    return this._opened;
  }

  /**
   * Send a string, bytes (ArrayBuffer or a typed array) or a JSON value. Resolves when it
   * is handed to the channel; for a payload larger than one message (a transfer), when
   * the peer confirmed it has it all. `onProgress({done, total})` follows a transfer.
   * @param {unknown} data
   * @param {{ onProgress?: (progress: { peerId: string, direction: string, done: number, total: number }) => void }} [options]
   * @returns {Promise<void>}
   */
  send(data, { onProgress } = {}) {
    // one send at a time, in order: a transfer's pieces must not interleave with another's
    const sent = this._sending.then(async () => {
      await this.waitOpen();
      this._check();
      this._ids = (this._ids % 0xffffffff) + 1;
      const id = this._ids;
      const { messages, transfer, size } = frameMessages(data, this.maxMessageSize, id);
      if (!transfer) {
        await this._write(messages[0]);
        return;
      }
      /** @type {Promise<void>} */
      /** @type {{ resolve: () => void, reject: (error: Error) => void, refused: Error | null }} */
      const waiter = { resolve: () => {}, reject: () => {}, refused: null };
      /** @type {Promise<void>} */
      const confirmed = new Promise((resolve, reject) => {
        waiter.resolve = resolve;
        waiter.reject = reject;
      });
      this._done.set(id, waiter);
      confirmed.catch(() => {});
      let handed = 0;
      try {
        for (const message of messages) {
          if (waiter.refused) throw waiter.refused; // the peer will not take the rest
          await this._write(message);
          if (message[0] === Tag.DATA && typeof message !== "string") {
            handed = Math.min(size, handed + message.length - 1);
            const progress = { peerId: this.peerId, direction: "send", done: handed, total: size };
            onProgress?.(progress);
            this.events.emit("progress", progress);
          }
        }
        await confirmed;
      } catch (error) {
        if (error instanceof PeerLinkClosed) {
          throw new (/** @type {any} */ (error.constructor))(
            `${error.message} in the middle of a transfer: ${handed} of ${size} bytes handed to the channel, not confirmed by the peer`,
          );
        }
        throw error;
      } finally {
        this._done.delete(id);
      }
    });
    this._sending = sent.catch(() => {});
    return sent;
  }

  /**
   * The reassembler refused one of the peer's transfers: say so here (an `error` event)
   * and to the sender (ABORT with the reason), whose `send` then fails instead of
   * waiting for a DONE that never comes.
   * @param {PeerLinkError} error
   */
  _refused(error) {
    if (error instanceof TransferRefused && this.channel?.readyState === "open") {
      this.channel.send(refusalFrame(error.transfer, error.message));
    }
    this.events.emit("error", error);
  }

  /** Close the channel and the peer connection (the peer sees its link close). */
  close() {
    this._fail(new PeerLinkClosed(`the link to ${JSON.stringify(this.peerId)} was closed by this side`));
  }

  _check() {
    if (this.error) throw this.error;
  }

  /**
   * Hand one message to the channel, waiting while more than highWater bytes are buffered.
   * @param {string | Uint8Array} message
   */
  async _write(message) {
    const channel = this.channel;
    while (channel.bufferedAmount > this.network.highWater) {
      this._check();
      await new Promise((resolve) => this._drainWaiters.push(() => resolve(undefined)));
    }
    this._check();
    channel.send(message);
  }

  /** @param {any} channel */
  _attach(channel) {
    if (this.channel) return; // a second channel: this link uses the first one
    this.channel = channel;
    channel.binaryType = "arraybuffer";
    channel.bufferedAmountLowThreshold = this.network.lowWater;
    channel.onbufferedamountlow = () => {
      for (const wake of this._drainWaiters.splice(0)) wake();
    };
    channel.onmessage = (/** @type {{ data: any }} */ event) => this._onMessage(event.data);
    channel.onclose = () => this._fail(new PeerLinkClosed(`the data channel to ${JSON.stringify(this.peerId)} closed`));
    // the answering side may get the channel already open: no open event would follow
    if (channel.readyState === "open") this._onOpen();
    else channel.onopen = () => this._onOpen();
  }

  _onOpen() {
    if (this.state !== "connecting") return;
    const remote = this.pc.remoteDescription?.sdp ?? "";
    const found = /^a=max-message-size:(\d+)/m.exec(remote);
    const remoteMax = found ? Number(found[1]) : DEFAULT_REMOTE_MAX_MESSAGE;
    const sctpMax = this.pc.sctp?.maxMessageSize;
    let limit = this.network.chunkSize;
    if (remoteMax) limit = Math.min(limit, remoteMax); // 0: any size
    if (typeof sctpMax === "number" && sctpMax > 0) limit = Math.min(limit, sctpMax);
    this.maxMessageSize = limit;
    this._setState("open");
    this._resolveOpened();
    this.network._linkOpen(this);
  }

  /** @param {any} data */
  _onMessage(data) {
    let got;
    try {
      got = this._reassembler.receive(data);
    } catch (error) {
      this.events.emit("error", new PeerLinkError(`malformed message from ${JSON.stringify(this.peerId)}: ${/** @type {Error} */ (error).message}`));
      return;
    }
    if (!got) return;
    if ("value" in got) this._deliver(got.value);
    if (got.progress) this.events.emit("progress", { peerId: this.peerId, direction: "receive", ...got.progress });
    if (got.done !== undefined) this._done.get(got.done)?.resolve();
    if (got.refused !== undefined) {
      const waiter = this._done.get(got.refused);
      if (waiter) {
        waiter.refused = new TransferRefused(
          `${JSON.stringify(this.peerId)} refused transfer ${got.refused}: ${got.reason}`,
          { transfer: got.refused, declared: -1 },
        );
        waiter.reject(waiter.refused);
      }
    }
    if (got.finish) {
      const id = /** @type {number} */ (got.id);
      // decoding may be asynchronous (inflating): keep the order of what follows
      const value = got.finish;
      this._delivering = (this._delivering ?? Promise.resolve()).then(async () => {
        try {
          const decoded = await value;
          if (this.channel?.readyState === "open") this.channel.send(idFrame(Tag.DONE, id));
          this._deliver(decoded, true);
        } catch (error) {
          this._refused(
            error instanceof PeerLinkError // the reassembler's own: it says which transfer, from whom
              ? error
              : new PeerLinkError(`a transfer from ${JSON.stringify(this.peerId)} failed: ${/** @type {Error} */ (error).message}`),
          );
        }
      });
    }
  }

  /**
   * @param {any} value
   * @param {boolean} [ordered] already in the delivery chain
   */
  _deliver(value, ordered = false) {
    if (!ordered && this._delivering) {
      this._delivering = this._delivering.then(() => this.events.emit("message", value));
      return;
    }
    this.events.emit("message", value);
  }

  /**
   * @param {"connecting" | "open" | "closed"} state
   * @param {boolean} [replaced] closed because another link to the same peer takes its place (glare)
   */
  _setState(state, replaced = false) {
    this.state = state;
    this.events.emit("state", state);
    this.network.events.emit("change", { peerId: this.peerId, state, error: this.error, link: this, replaced });
  }

  _onConnectionState() {
    const state = this.pc.connectionState;
    if (state === "failed") {
      this._fail(
        new PeerUnreachable(
          `no network path to ${JSON.stringify(this.peerId)} (ICE failed): across networks, give the server a TURN server (IAvicenne.ice_servers)`,
        ),
      );
    } else if (state === "closed") {
      this._fail(new PeerLinkClosed(`the connection to ${JSON.stringify(this.peerId)} closed`));
    }
  }

  // -- negotiation (run in order by the network) ----------------------------------------

  async _offer() {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    await this._sendDescription(OFFER);
  }

  /** @param {Record<string, any>} offer */
  async _answer(offer) {
    await this.pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
    await this._addEarlyCandidates();
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    await this._sendDescription(ANSWER);
  }

  /** @param {Record<string, any>} answer */
  async _onAnswer(answer) {
    if (this.offerer && this.pc.signalingState === "have-local-offer") {
      await this.pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
      await this._addEarlyCandidates();
    }
  }

  /** @param {Record<string, any> | null} body */
  async _onCandidate(body) {
    const candidate = body && body.candidate ? body : null;
    if (candidate && this.network.loopback && !isLoopbackCandidate(candidate.candidate)) return;
    if (!this.pc.remoteDescription) {
      this._earlyCandidates.push(candidate);
      return;
    }
    await this.pc.addIceCandidate(candidate ?? undefined);
  }

  async _addEarlyCandidates() {
    for (const candidate of this._earlyCandidates.splice(0)) await this.pc.addIceCandidate(candidate ?? undefined);
  }

  /**
   * Send our description once gathering is over (or `gatherTimeout` passed: then the
   * candidates still to come are trickled).
   * @param {typeof OFFER | typeof ANSWER} kind
   */
  async _sendDescription(kind) {
    const complete = await this._gathered();
    if (this.state === "closed") return; // dropped meanwhile (glare): the peer must not see it
    const keep = this.network.loopback ? isLoopbackCandidate : () => true;
    const sdp = filterSdp(this.pc.localDescription.sdp, keep, complete);
    this._signalled = complete ? "complete" : "trickle";
    this._sentSdp = sdp;
    await this.network.signaling.relay(kind, this.peerId, { type: kind, sdp });
    for (const candidate of this._laterCandidates.splice(0)) await this._relayCandidate(candidate);
  }

  /** Resolves true when gathering completed, false after gatherTimeout. */
  _gathered() {
    if (this.pc.iceGatheringState === "complete") return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = this.network._setTimeout(() => resolve(false), this.network.gatherTimeout);
      const previous = this.pc.onicegatheringstatechange;
      this.pc.onicegatheringstatechange = (/** @type {any} */ event) => {
        previous?.call(this.pc, event);
        if (this.pc.iceGatheringState === "complete") {
          this.network._clearTimeout(timer);
          resolve(true);
        }
      };
    });
  }

  /** @param {any} candidate an RTCIceCandidate, or null at the end of gathering */
  _onLocalCandidate(candidate) {
    if (this._signalled === "complete" || this.state === "closed") return; // all in the SDP already
    if (!this._signalled) {
      this._laterCandidates.push(candidate); // in the SDP if gathering completes in time
      return;
    }
    this._relayCandidate(candidate).catch(() => {});
  }

  /** @param {any} candidate */
  async _relayCandidate(candidate) {
    if (this._signalled !== "trickle" || this.state === "closed") return;
    if (candidate && (!candidate.candidate || this._sentSdp.includes(candidate.candidate))) return; // sent already
    if (candidate && this.network.loopback && !isLoopbackCandidate(candidate.candidate)) return;
    const body = candidate ? { candidate: candidate.candidate, sdpMid: candidate.sdpMid, sdpMLineIndex: candidate.sdpMLineIndex } : null;
    await this.network.signaling.relay(ICE_CANDIDATE, this.peerId, body);
  }

  /**
   * Close for good with `error`: every wait ends with it.
   * @param {PeerLinkError} error
   * @param {{ quietly?: boolean }} [options]
   */
  _fail(error, { quietly = false } = {}) {
    if (this.state === "closed") return;
    const incoming = this._reassembler.incoming;
    if (incoming && error instanceof PeerLinkClosed) {
      error = new (/** @type {any} */ (error.constructor))(
        `${error.message} in the middle of a transfer: ${incoming.received} of ${incoming.size} bytes received`,
      );
      this._reassembler.incoming = null;
    }
    this.error = error;
    this._setState("closed", quietly);
    this._rejectOpened(error);
    for (const waiter of this._done.values()) waiter.reject(error);
    for (const wake of this._drainWaiters.splice(0)) wake();
    try {
      this.channel?.close();
      this.pc.close();
    } catch {
      // already closed
    }
    if (!quietly) this.events.emit("close", error);
    this.network._linkClosed(this, error, quietly);
  }
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
    if (event.kind === "left") this.links.get(event.peerId)?._fail(new PeerLeft(`peer ${JSON.stringify(event.peerId)} left the room`));
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
          await link._offer();
        }
      } else if (step.kind === OFFER) {
        const refused = this._refusal(peerId, step.identity ?? null);
        if (refused) {
          console.warn(`iavicenne: an offer from ${peerId} refused: ${refused.message}`);
          if (link && link.state === "connecting") link._fail(refused); // ours goes to the same peer id: not to them either
          this.events.emit("refused", refused);
          return;
        }
        if (link && link.offerer && link.state === "connecting") {
          if (codePointLess(this.peerId, peerId)) return; // glare, and our offer wins: they answer it
          link._fail(new PeerLinkClosed("replaced: both sides offered; the lower peer_id's offer won"), { quietly: true });
        } else if (link) {
          link._fail(new PeerLinkClosed(`peer ${JSON.stringify(peerId)} opened a new link, replacing this one`));
        }
        link = this._newLink(peerId, false);
        link.identity = step.identity ?? null;
        await link._answer(step.body ?? {});
      } else if (link && step.kind === ANSWER) {
        if (link.offerer && link.state === "connecting") {
          const refused = this._refusal(peerId, step.identity ?? null);
          if (refused) {
            link._fail(refused); // closes the attempt: its waiters get the mismatch
            return;
          }
          link.identity = step.identity ?? null;
        }
        await link._onAnswer(step.body ?? {});
      } else if (link && step.kind === ICE_CANDIDATE) {
        if (link.identity && !sameIdentity(link.identity, step.identity)) return; // from someone else: dropped
        await link._onCandidate(step.body);
      }
    } catch (error) {
      console.warn(`iavicenne: negotiating with ${peerId} failed:`, error);
      if (link && link.state === "connecting") {
        link._fail(new PeerUnreachable(`could not negotiate a link with ${JSON.stringify(peerId)}: ${/** @type {Error} */ (error).message}`));
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
