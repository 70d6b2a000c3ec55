/**
 * The connection core that `RoomClient` and `SignalingClient` share: one WebSocket kept
 * open (`Endpoint`) that restores its session on every new socket, resends what was not
 * acknowledged, and reconnects after a `Backoff`; and `parseFrame`, what it reads.
 */

import { Outbox } from "./delivery.js";
import { Server } from "./discovery.js";
import { AuthenticationError, ConnectionClosed, Disconnected, errorFrom, IAvicenneError, RequestFailed, Superseded } from "./errors.js";
import { Emitter, report } from "./events.js";
import { ACK, CLOSE_NORMAL, CLOSE_SUPERSEDED, ERROR, ErrorCode } from "./protocol.js";

const OPEN = 1; // WebSocket.OPEN, spelled out: an injected constructor may not carry it

/**
 * Delays between reconnect attempts, in milliseconds: `initial * factor ** attempt`, at
 * most `maximum`, of which a random part (`jitter`, 0..1) is drawn anew each time, so a
 * hundred tabs do not knock on a restarting server in the same millisecond.
 */
export class Backoff {
  /** @param {{ initial?: number, factor?: number, maximum?: number, jitter?: number, random?: () => number }} [options] */
  constructor({ initial = 250, factor = 2, maximum = 8000, jitter = 0.5, random = Math.random } = {}) {
    if (!(initial > 0 && factor >= 1 && maximum >= initial && jitter >= 0 && jitter <= 1)) {
      throw new IAvicenneError("Backoff needs initial > 0, factor >= 1, maximum >= initial and 0 <= jitter <= 1");
    }
    this.initial = initial;
    this.factor = factor;
    this.maximum = maximum;
    this.jitter = jitter;
    this.random = random;
  }

  /**
   * The delay before attempt number `attempt` (0 for the first retry).
   * @param {number} attempt
   * @returns {number}
   */
  delay(attempt) {
    const ceiling = Math.min(this.maximum, this.initial * this.factor ** attempt);
    return ceiling * (1 - this.jitter) + this.random() * ceiling * this.jitter;
  }
}



/**
 * A server frame: a JSON object in a text frame, or `null` for anything else.
 * @param {unknown} data
 * @returns {Record<string, any> | null}
 */
export function parseFrame(data) {
  if (typeof data !== "string") return null;
  let frame;
  try {
    frame = JSON.parse(data);
  } catch {
    return null;
  }
  return frame !== null && typeof frame === "object" && !Array.isArray(frame) ? frame : null;
}

/** Random hex, for refs: unique per client so two tabs never share one. */
function randomHex(bytes = 6) {
  const global = /** @type {any} */ (globalThis);
  const values = new Uint8Array(bytes);
  if (global.crypto?.getRandomValues) global.crypto.getRandomValues(values);
  else for (let i = 0; i < bytes; i++) values[i] = Math.floor(Math.random() * 256);
  return [...values].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * @typedef {object} EndpointOptions
 * @property {Server} [server]
 * @property {string} [url] @property {string} [token] @property {string} [baseUrl]
 * @property {Backoff | ConstructorParameters<typeof Backoff>[0]} [backoff]
 * @property {any} [WebSocket] a WebSocket constructor (default: the browser's)
 * @property {(callback: () => void, ms: number) => any} [setTimeout]
 * @property {(handle: any) => void} [clearTimeout]
 * @property {any} [window] where to listen for `online` (reconnect at once); default: the page's
 */

/**
 * One WebSocket endpoint kept open: connects, restores the session (connect, rejoin),
 * resends, reconnects. Nothing is written before the session is restored, and new frames
 * go out only after the unacknowledged ones were written again, so none overtakes an
 * older one.
 */
export class Endpoint {
  /**
   * @param {string} path
   * @param {EndpointOptions} options
   */
  constructor(path, options) {
    const global = /** @type {any} */ (globalThis);
    this.path = path;
    this.server = options.server ?? new Server(options);
    this.backoff = options.backoff instanceof Backoff ? options.backoff : new Backoff(options.backoff);
    this.events = new Emitter();
    /** How many times the connection was re-established. */
    this.reconnects = 0;
    /** "connecting" | "online" | "reconnecting" | "closed" */
    this.state = "connecting";
    this._WebSocket = options.WebSocket ?? global.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new IAvicenneError("no WebSocket here: run in a browser, or pass a WebSocket constructor");
    }
    this._setTimeout = options.setTimeout ?? ((/** @type {() => void} */ f, /** @type {number} */ ms) => setTimeout(f, ms));
    this._clearTimeout = options.clearTimeout ?? ((/** @type {any} */ h) => clearTimeout(h));
    /** @type {any} */
    this._ws = null;
    this._ready = false;
    this._started = false;
    this._everReady = false;
    this._closed = false;
    /** @type {Error | null} */
    this._failure = null;
    this._outbox = new Outbox();
    /** @type {Map<string, { expect: string, resolve: (frame: any) => void, reject: (error: Error) => void }>} */
    this._replies = new Map();
    this._refPrefix = randomHex();
    this._refCount = 0;
    this._attempt = 0;
    /** @type {any} */
    this._retryTimer = null;
    /** @type {any} */
    this._resendTimer = null;
    /** @type {Array<{ resolve: () => void, reject: (error: Error) => void }>} */
    this._readyWaiters = [];
    const win = "window" in options ? options.window : global.window;
    this._onOnline = () => this.reconnectNow();
    this._window = typeof win?.addEventListener === "function" ? win : null;
    this._window?.addEventListener("online", this._onOnline);
  }

  /** Whether the session is restored and frames go out now. */
  get connected() {
    return this._ready;
  }

  /** Reliable frames sent and not yet acknowledged. */
  get unacknowledged() {
    return this._outbox.size;
  }

  /**
   * @param {string} kind
   * @param {(event: any) => void} callback
   */
  on(kind, callback) {
    return this.events.on(kind, callback);
  }

  /** Resolves once connected (now, or after the current reconnect). */
  waitConnected() {
    return this._waitReady();
  }

  /** Skip the backoff wait and try now (the browser says it is back online, or a user asked). */
  reconnectNow() {
    if (this._retryTimer === null || this._closed || this._failure) return;
    this._clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._attempt = 0;
    this._open();
  }

  /** Leave politely and close; what waits for an ack fails with `ConnectionClosed`. */
  close() {
    if (this._closed) return;
    this._closed = true;
    if (this._ready) this._beforeClose(this._ws);
    const ws = this._ws;
    this._stop(new ConnectionClosed("the client was closed"));
    if (ws) ws.close(CLOSE_NORMAL, "client closed");
  }

  // -- subclass hooks ----------------------------------------------------------------

  /**
   * Re-establish the session on a fresh socket.
   * @param {any} ws
   * @returns {Promise<void>}
   */
  async _restore(ws) {}

  /**
   * A server frame that is not an ack or an error.
   * @param {Record<string, any>} frame
   */
  _handle(frame) {}

  /**
   * Say goodbye while the socket is still open.
   * @param {any} ws
   */
  _beforeClose(ws) {}

  // -- connecting --------------------------------------------------------------------

  /**
   * Start connecting (once); resolves when the session is up. `RoomClient.connect()` and
   * `SignalingClient.connect()` call it; call it yourself after `new` to add listeners first.
   * @returns {Promise<void>}
   */
  open() {
    if (!this._started) {
      this._started = true;
      this._open();
    }
    return this._waitReady();
  }

  _open() {
    let ws;
    try {
      ws = new this._WebSocket(this.server.wsUrl(this.path));
    } catch (error) {
      this._stop(new IAvicenneError(`cannot open ${this.server.wsUrl(this.path)}: ${error}`));
      return;
    }
    this._ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      if (this._ws === ws) this._restoreThenFlush(ws);
    };
    ws.onmessage = (/** @type {{ data: unknown }} */ event) => {
      if (this._ws === ws) this._receive(event.data);
    };
    ws.onerror = () => {}; // the close that follows says what happened
    ws.onclose = (/** @type {{ code?: number, reason?: string }} */ event) => this._onClose(ws, event, opened);
  }

  /** @param {any} ws */
  async _restoreThenFlush(ws) {
    try {
      await this._restore(ws);
    } catch (error) {
      if (error instanceof Disconnected) return; // the next socket restores again
      this._stop(/** @type {Error} */ (error)); // fatal (e.g. our name is taken now)
      ws.close(CLOSE_NORMAL, "client stopped");
      return;
    }
    if (this._ws !== ws || ws.readyState !== OPEN || this._closed) return;
    for (const data of this._outbox.frames()) this._write(ws, data);
    if (this._everReady) this.reconnects += 1;
    this._everReady = true;
    this._ready = true;
    this._attempt = 0;
    this.state = "online";
    for (const waiter of this._readyWaiters.splice(0)) waiter.resolve();
    this.events.emit("connected", { url: this.server.url, reconnects: this.reconnects });
  }

  /**
   * @param {any} ws
   * @param {{ code?: number, reason?: string }} event
   * @param {boolean} opened
   */
  _onClose(ws, event, opened) {
    if (this._ws !== ws) return;
    this._ws = null;
    this._ready = false;
    for (const reply of [...this._replies.values()]) reply.reject(new Disconnected());
    this._replies.clear();
    if (this._closed || this._failure) return;
    if (event.code === CLOSE_SUPERSEDED) {
      this._stop(new Superseded({ code: ErrorCode.SUPERSEDED, message: event.reason || "superseded by a newer connection" }));
      return;
    }
    this.events.emit("disconnected", { code: event.code ?? null, reason: event.reason ?? "" });
    if (!opened) this._diagnose();
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    const delay = this.backoff.delay(this._attempt);
    this._attempt += 1;
    this.state = "reconnecting";
    this.events.emit("reconnecting", { attempt: this._attempt, delay });
    this._retryTimer = this._setTimeout(() => {
      this._retryTimer = null;
      if (!this._closed && !this._failure) this._open();
    }, delay);
  }

  /**
   * The browser does not say why a WebSocket handshake failed; ask the REST API, which
   * does, so a wrong token or a disabled extension stops with a clear error instead of
   * retrying for ever.
   */
  async _diagnose() {
    if (!this.server._fetch) return;
    try {
      await this.server.rooms();
    } catch (error) {
      if (error instanceof AuthenticationError) {
        this._stop(error);
      } else if (error instanceof RequestFailed && error.frame.status === 404) {
        this._stop(
          new IAvicenneError(
            `${this.server.url}iavicenne does not exist (HTTP 404): is iAvicenne enabled on that server? ` +
              "(jupyter server extension enable iavicenne_ext, then restart it)",
          ),
        );
      }
      // anything else (the server is down, 503): keep trying
    }
  }

  /** @returns {Promise<void>} */
  _waitReady() {
    if (this._ready) return Promise.resolve();
    if (this._failure) return Promise.reject(this._failure);
    return new Promise((resolve, reject) => this._readyWaiters.push({ resolve, reject }));
  }

  /**
   * Stop for good: every waiting send and request fails with `error`.
   * @param {Error} error
   */
  _stop(error) {
    if (this._failure) return;
    this._failure = error;
    this._ready = false;
    this.state = "closed";
    this._outbox.failAll(error);
    for (const reply of [...this._replies.values()]) reply.reject(error);
    this._replies.clear();
    for (const waiter of this._readyWaiters.splice(0)) waiter.reject(error);
    for (const timer of [this._retryTimer, this._resendTimer]) if (timer !== null) this._clearTimeout(timer);
    this._retryTimer = this._resendTimer = null;
    this._window?.removeEventListener("online", this._onOnline);
    if (this._ws && !this._closed) {
      const ws = this._ws;
      this._ws = null;
      ws.close(CLOSE_NORMAL, "client stopped");
    }
    this.events.emit("closed", error);
  }

  // -- writing -----------------------------------------------------------------------

  _ref() {
    this._refCount += 1;
    return `${this._refPrefix}-${this._refCount}`;
  }

  /**
   * @param {any} ws
   * @param {string} data
   */
  _write(ws, data) {
    if (ws && ws.readyState === OPEN) ws.send(data); // else the outbox keeps it for the next socket
  }

  /**
   * Write `frame` on `ws` now (even before the session is restored); its reply of type `expect`.
   * @param {any} ws
   * @param {Record<string, any>} frame
   * @param {string} expect
   * @returns {Promise<Record<string, any>>}
   */
  _request(ws, frame, expect) {
    const ref = this._ref();
    frame.ref = ref;
    return new Promise((resolve, reject) => {
      this._replies.set(ref, {
        expect,
        resolve: (reply) => {
          this._replies.delete(ref);
          resolve(reply);
        },
        reject: (error) => {
          this._replies.delete(ref);
          reject(error);
        },
      });
      if (!ws || ws.readyState !== OPEN) {
        this._replies.get(ref)?.reject(new Disconnected());
        return;
      }
      ws.send(JSON.stringify(frame));
    });
  }

  /**
   * Queue `frame` until acknowledged, across reconnects; the promise gets the ack.
   * @param {Record<string, any>} frame
   * @param {string | null} [room]
   * @returns {Promise<Record<string, any>>}
   */
  _sendReliable(frame, room = null) {
    if (this._failure) return Promise.reject(this._failure);
    if (this._closed) return Promise.reject(new ConnectionClosed("the client was closed"));
    frame.ref ??= this._ref();
    const data = JSON.stringify(frame);
    const acked = this._outbox.add(frame.ref, data, room);
    if (this._ready) this._write(this._ws, data);
    return acked;
  }

  /**
   * Write the outbox again after `delay` ms (frames were dropped: rate limit, broker down).
   * @param {number} delay
   */
  _resendSoon(delay) {
    if (this._resendTimer !== null) return;
    this._resendTimer = this._setTimeout(() => {
      this._resendTimer = null;
      if (this._ready) for (const data of this._outbox.frames()) this._write(this._ws, data);
    }, delay);
  }

  // -- reading -----------------------------------------------------------------------

  /** @param {unknown} data */
  _receive(data) {
    const frame = parseFrame(data);
    if (frame === null) {
      console.warn("iavicenne: a frame that is not a JSON object:", String(data).slice(0, 80));
      return;
    }
    try {
      this._dispatch(frame);
    } catch (error) {
      report(error);
    }
  }

  /** @param {Record<string, any>} frame */
  _dispatch(frame) {
    const { type, ref } = frame;
    if (type === ACK) {
      if (typeof ref === "string" && !this._outbox.ack(ref, frame)) {
        const waiting = this._replies.get(ref);
        if (waiting?.expect === ACK) waiting.resolve(frame);
      }
      return;
    }
    if (type === ERROR) {
      this._onError(frame);
      return;
    }
    this._handle(frame);
    const waiting = typeof ref === "string" ? this._replies.get(ref) : undefined;
    if (waiting && waiting.expect === type) waiting.resolve(frame);
  }

  /** @param {Record<string, any>} frame */
  _onError(frame) {
    const { ref, code } = frame;
    const waiting = typeof ref === "string" ? this._replies.get(ref) : undefined;
    if (waiting) {
      waiting.reject(errorFrom(frame));
      return;
    }
    if (typeof ref === "string" && this._outbox.has(ref)) {
      if (code === ErrorCode.UNAVAILABLE) {
        this._resendSoon(1000); // the broker is down: the server did not carry it out
        return;
      }
      this._outbox.fail(ref, errorFrom(frame));
      return;
    }
    if (code === ErrorCode.RATE_LIMITED) this._resendSoon(1000); // dropped unread: send again
    this.events.emit("error", errorFrom(frame));
  }
}
