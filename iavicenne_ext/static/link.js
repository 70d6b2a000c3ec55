/**
 * One peer link: `PeerLink`, a WebRTC data channel to one peer (a kernel or another
 * browser), as the Python `iavicenne.peer.PeerLink`. Made by its `PeerNetwork` (peer.js),
 * which runs its negotiation steps in order; the link needs of it only what `LinkOwner`
 * says, so this module does not import peer.js.
 *
 * - The offerer creates one ordered, reliable channel labelled `CHANNEL_LABEL`.
 * - Descriptions are sent whole: the browser waits for ICE gathering to finish (at most
 *   `gatherTimeout`) and sends its SDP with every candidate in it (aiortc, on the other
 *   side, does the same); candidates found later are trickled as ICE_CANDIDATE signals,
 *   ended by a `null` one.
 * - On the channel, the wire format of wire.js; what a peer sends is bounded on arrival
 *   (`maxTransferBytes`).
 */

import { PeerLinkClosed, PeerLinkError, PeerUnreachable, TransferRefused } from "./errors.js";
import { Emitter } from "./events.js";
import { filterSdp, isLoopbackCandidate } from "./ice.js";
import { ANSWER, CHANNEL_LABEL, DEFAULT_REMOTE_MAX_MESSAGE, ICE_CANDIDATE, OFFER, Tag } from "./protocol.js";
import { frameMessages, idFrame, Reassembler, refusalFrame } from "./wire.js";

/**
 * What a link needs of the network it belongs to (`PeerNetwork` is one): its settings, the
 * signaling that carries the link's descriptions, and to be told when the link opens or closes.
 * @typedef {object} LinkOwner
 * @property {Pick<import("./signaling.js").SignalingClient, "relay">} signaling
 * @property {Emitter} events where every link's `change` is emitted
 * @property {number} chunkSize
 * @property {number} maxTransferBytes
 * @property {number} highWater
 * @property {number} lowWater
 * @property {number} gatherTimeout
 * @property {boolean} loopback
 * @property {new (configuration: { iceServers: any[] }) => any} _RTCPeerConnection
 * @property {() => any[]} _iceServers
 * @property {(callback: () => void, ms: number) => any} _setTimeout
 * @property {(handle: any) => void} _clearTimeout
 * @property {(link: PeerLink) => void} _linkOpen
 * @property {(link: PeerLink, error: PeerLinkError, quietly: boolean) => void} _linkClosed
 */

/**
 * A data channel to one peer (W3C names: `pc` is the RTCPeerConnection, `channel` the
 * RTCDataChannel). States: "connecting" → "open" → "closed" (then `error` says why).
 * Made by `PeerNetwork.connect` or for an offer that arrives, not directly.
 */
export class PeerLink {
  /**
   * @param {LinkOwner} network
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
    this.closeWith(new PeerLinkClosed(`the link to ${JSON.stringify(this.peerId)} was closed by this side`));
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
    channel.onclose = () => this.closeWith(new PeerLinkClosed(`the data channel to ${JSON.stringify(this.peerId)} closed`));
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
      this.closeWith(
        new PeerUnreachable(
          `no network path to ${JSON.stringify(this.peerId)} (ICE failed): across networks, give the server a TURN server (IAvicenne.ice_servers)`,
        ),
      );
    } else if (state === "closed") {
      this.closeWith(new PeerLinkClosed(`the connection to ${JSON.stringify(this.peerId)} closed`));
    }
  }

  // -- negotiation (run in order by the network) ----------------------------------------

  async makeOffer() {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    await this._sendDescription(OFFER);
  }

  /** @param {Record<string, any>} offer */
  async answerOffer(offer) {
    await this.pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
    await this._addEarlyCandidates();
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    await this._sendDescription(ANSWER);
  }

  /** @param {Record<string, any>} answer */
  async takeAnswer(answer) {
    if (this.offerer && this.pc.signalingState === "have-local-offer") {
      await this.pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
      await this._addEarlyCandidates();
    }
  }

  /** @param {Record<string, any> | null} body */
  async addCandidate(body) {
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
  closeWith(error, { quietly = false } = {}) {
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
