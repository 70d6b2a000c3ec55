// @ts-check
/**
 * iAvicenne in the browser: rooms, presence, history recovery, direct messages and
 * WebRTC data channels to kernels and other browsers, through a Jupyter server.
 *
 * An ES module with no dependencies and no build step, served by the extension at
 * `{base_url}iavicenne/static/iavicenne.js` (types in `iavicenne.d.ts` beside it):
 *
 * ```js
 * import { RoomClient } from "/iavicenne/static/iavicenne.js";
 * const client = await RoomClient.connect({ userId: "alice" });
 * const room = await client.join("analysis");
 * room.on("message", (m) => console.log(m.userId, m.text));
 * await room.send("hello");            // resolves with the server's ack (and seq)
 * ```
 *
 * It behaves as the Python client (`widgets/iavicenne/client.py`) does, over the same protocol
 * (docs/protocol.md):
 *
 * - **reconnects** by itself with exponential backoff and jitter (`Backoff`);
 * - **rejoins** its rooms and **recovers** missed messages: each room remembers the last
 *   `seq` it delivered and the room's `epoch`, and asks `since` that seq; a replayed seq
 *   already delivered is skipped, and a `gap` event says when the server could not
 *   replay everything;
 * - **resends** what was not acknowledged: every reliable frame carries a `ref`, waits
 *   in an outbox until its `ack`, and is written again (same `ref`, so the server
 *   delivers it once) after a reconnect.
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

export const ROOMS_PATH = "iavicenne/ws/mcp";
export const SIGNALING_PATH = "iavicenne/ws/signaling";
export const REST_PATH = "iavicenne/api/";

/** WebSocket close codes the server uses. */
export const CLOSE_NORMAL = 1000;
/** A newer connection of the same user took this peer_id over: do not reconnect. */
export const CLOSE_SUPERSEDED = 4000;

/** Error codes of the protocol (`code` of an `error` frame). */
export const ErrorCode = Object.freeze({
  INVALID_JSON: "invalid-json",
  INVALID_FRAME: "invalid-frame",
  TYPE_REQUIRED: "type-required",
  UNKNOWN_TYPE: "unknown-type",
  BINARY_FRAME: "binary-frame",
  USER_ID_REQUIRED: "user-id-required",
  PEER_ID_REQUIRED: "peer-id-required",
  TARGET_REQUIRED: "target-required",
  ROOM_REQUIRED: "room-required",
  INVALID_FIELD: "invalid-field",
  NOT_IN_ROOM: "not-in-room",
  ALREADY_CONNECTED: "already-connected",
  NAME_TAKEN: "name-taken",
  SUPERSEDED: "superseded",
  UNKNOWN_USER: "unknown-user",
  UNKNOWN_PEER: "unknown-peer",
  TOO_MANY_ROOMS: "too-many-rooms",
  RATE_LIMITED: "rate-limited",
  UNAVAILABLE: "unavailable",
  INTERNAL: "internal-error",
});

const OPEN = 1; // WebSocket.OPEN, spelled out: an injected constructor may not carry it

// -- errors ---------------------------------------------------------------------------

/** Something the client cannot do; the message says what to fix. */
export class IAvicenneError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

/** The client was closed, or stopped for good after a fatal error. */
export class ConnectionClosed extends IAvicenneError {}

/** The server refused our credentials (HTTP 403). */
export class AuthenticationError extends IAvicenneError {}

/** The server answered a request with an `error` frame (`code`, `frame`). */
export class RequestFailed extends IAvicenneError {
  /** @param {Record<string, any>} frame */
  constructor(frame) {
    const code = typeof frame.code === "string" ? frame.code : "";
    super(`${frame.message ?? "request failed"} (code ${code || "?"})`);
    this.code = code;
    this.frame = frame;
  }
}

/** The user_id or peer_id is held in that room by another user. */
export class NameTaken extends RequestFailed {}
/** The target of a relay or a direct message is not in the room. */
export class UnknownPeer extends RequestFailed {}
/** A newer connection of the same user took this peer_id over; this one stopped. */
export class Superseded extends RequestFailed {}

/** The socket closed while a request waited; the reconnect repeats what matters. */
class Disconnected extends Error {}

/**
 * The exception for an error frame.
 * @param {Record<string, any>} frame
 * @returns {RequestFailed}
 */
export function errorFrom(frame) {
  switch (frame.code) {
    case ErrorCode.NAME_TAKEN:
      return new NameTaken(frame);
    case ErrorCode.UNKNOWN_PEER:
    case ErrorCode.UNKNOWN_USER:
      return new UnknownPeer(frame);
    case ErrorCode.SUPERSEDED:
      return new Superseded(frame);
    default:
      return new RequestFailed(frame);
  }
}

// -- names and frames -----------------------------------------------------------------

// the server's rule (iavicenne_ext/protocol.py): 1-64 letters or digits of any script,
// inner spaces, and . @ : + # ~ - _
const NAME = /^[\p{L}\p{N}_.@:+#~-](?:[\p{L}\p{N}_ .@:+#~-]{0,62}[\p{L}\p{N}_.@:+#~-])?$/u;

/**
 * Check a room, user or peer name as the server does; returns it or throws.
 * @param {unknown} value
 * @param {string} field
 * @returns {string}
 */
export function checkName(value, field) {
  if (typeof value !== "string") throw new IAvicenneError(`${field} must be a string`);
  if (!NAME.test(value)) {
    throw new IAvicenneError(
      `invalid ${field} ${JSON.stringify(value.slice(0, 64))}: use 1 to 64 letters, digits, inner spaces or .@:+#~-_`,
    );
  }
  return value;
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

/**
 * The payload of a message: a string is the seed's `{"content": text}`.
 * @param {string | Record<string, any>} content
 * @returns {Record<string, any>}
 */
export function payloadOf(content) {
  if (typeof content === "string") return { content };
  if (content !== null && typeof content === "object" && !Array.isArray(content)) return content;
  throw new IAvicenneError("a message is a string or a JSON object");
}

// -- events ---------------------------------------------------------------------------

/** One small event emitter: `on(kind, callback)` returns the function that removes it. */
export class Emitter {
  constructor() {
    /** @type {Map<string, Set<(event: any) => void>>} */
    this._listeners = new Map();
  }

  /**
   * @param {string} kind
   * @param {(event: any) => void} callback
   * @returns {() => void}
   */
  on(kind, callback) {
    let listeners = this._listeners.get(kind);
    if (!listeners) this._listeners.set(kind, (listeners = new Set()));
    const entry = (/** @type {any} */ event) => callback(event);
    listeners.add(entry);
    return () => {
      listeners?.delete(entry);
    };
  }

  /**
   * The next event of `kind` (that `where` accepts), as a promise; rejects after `timeout` ms.
   * @param {string} kind
   * @param {{ where?: (event: any) => boolean, timeout?: number }} [options]
   * @returns {Promise<any>}
   */
  next(kind, { where, timeout } = {}) {
    return new Promise((resolve, reject) => {
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      let timer;
      const off = this.on(kind, (event) => {
        if (where && !where(event)) return;
        off();
        if (timer !== undefined) clearTimeout(timer);
        resolve(event);
      });
      if (timeout !== undefined) {
        timer = setTimeout(() => {
          off();
          reject(new IAvicenneError(`no ${kind} event within ${timeout} ms`));
        }, timeout);
      }
    });
  }

  /**
   * Call every listener of `kind`; one that throws is reported and does not stop the others.
   * @param {string} kind
   * @param {any} event
   */
  emit(kind, event) {
    const listeners = this._listeners.get(kind);
    if (!listeners) return;
    for (const listener of [...listeners]) {
      try {
        listener(event);
      } catch (error) {
        report(error);
      }
    }
  }

  clear() {
    this._listeners.clear();
  }
}

/** @param {unknown} error */
function report(error) {
  const global = /** @type {any} */ (globalThis);
  if (typeof global.reportError === "function") global.reportError(error);
  else console.error(error);
}

// -- reconnecting ---------------------------------------------------------------------

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

// -- bookkeeping: outbox, seen refs, seq ----------------------------------------------

/**
 * Reliable frames waiting for their `ack`, in the order they were sent (the order they
 * are written again after a reconnect).
 */
export class Outbox {
  constructor() {
    /** @type {Map<string, { data: string, room: string | null, resolve: (ack: any) => void, reject: (error: Error) => void }>} */
    this._items = new Map();
  }

  get size() {
    return this._items.size;
  }

  /**
   * Keep `data` (the encoded frame) until `ack(ref)`; the promise gets the ack frame.
   * @param {string} ref
   * @param {string} data
   * @param {string | null} [room]
   * @returns {Promise<Record<string, any>>}
   */
  add(ref, data, room = null) {
    /** @type {Promise<Record<string, any>>} */
    const promise = new Promise((resolve, reject) => {
      this._items.set(ref, { data, room, resolve, reject });
    });
    promise.catch(() => {}); // a caller that does not wait for the ack gets no unhandled rejection
    return promise;
  }

  /** @param {string} ref */
  has(ref) {
    return this._items.has(ref);
  }

  /**
   * @param {string} ref
   * @param {Record<string, any>} frame
   * @returns {boolean} whether `ref` was waiting
   */
  ack(ref, frame) {
    const item = this._items.get(ref);
    if (!item) return false;
    this._items.delete(ref);
    item.resolve(frame);
    return true;
  }

  /**
   * @param {string} ref
   * @param {Error} error
   * @returns {boolean}
   */
  fail(ref, error) {
    const item = this._items.get(ref);
    if (!item) return false;
    this._items.delete(ref);
    item.reject(error);
    return true;
  }

  /**
   * Fail what was sent to `room` (the room was left or refused us).
   * @param {string} room
   * @param {Error} error
   */
  dropRoom(room, error) {
    for (const [ref, item] of [...this._items]) {
      if (item.room === room) this.fail(ref, error);
    }
  }

  /** @param {Error} error */
  failAll(error) {
    for (const ref of [...this._items.keys()]) this.fail(ref, error);
  }

  /** The encoded frames, oldest first. @returns {string[]} */
  frames() {
    return [...this._items.values()].map((item) => item.data);
  }
}

/**
 * Keys seen recently (at most `limit`, oldest forgotten first): a frame relayed twice
 * (a resend whose ack was lost) is handled once.
 */
export class SeenSet {
  /** @param {number} [limit] */
  constructor(limit = 10000) {
    this.limit = limit;
    /** @type {Set<string>} */
    this._keys = new Set();
  }

  /**
   * @param {string} key
   * @returns {boolean} true the first time `key` is seen
   */
  add(key) {
    if (this._keys.has(key)) return false;
    this._keys.add(key);
    if (this._keys.size > this.limit) {
      const oldest = this._keys.values().next().value;
      if (oldest !== undefined) this._keys.delete(oldest);
    }
    return true;
  }
}

/**
 * Where a room's history stands for this client: the last `seq` delivered and the
 * room's `epoch` (a new epoch is a new life of the room, whose seqs start again).
 */
export class SeqTracker {
  constructor() {
    /** @type {number | null} the last seq delivered; null before the first join */
    this.seq = null;
    /** @type {string | null} */
    this.epoch = null;
  }

  /** What a (re)join asks for: `since` and `epoch` once something was seen. */
  resume() {
    /** @type {{ since?: number, epoch?: string }} */
    const payload = {};
    if (this.seq !== null) {
      payload.since = this.seq;
      if (this.epoch !== null) payload.epoch = this.epoch;
    }
    return payload;
  }

  /**
   * Take in a `room-joined` frame; returns the gap it reveals, if any.
   * @param {Record<string, any>} frame
   * @returns {{ since: number | null, epochChanged: boolean } | null}
   */
  joined(frame) {
    const epoch = typeof frame.epoch === "string" ? frame.epoch : null;
    const epochChanged = this.epoch !== null && epoch !== this.epoch;
    if (epochChanged) this.seq = 0; // replayed messages of the new life are all new to us
    if (this.seq === null) this.seq = Number.isInteger(frame.seq) ? frame.seq : 0;
    this.epoch = epoch;
    if (frame.recovered === false || epochChanged) {
      return { since: Number.isInteger(frame.since) ? frame.since : null, epochChanged };
    }
    return null;
  }

  /**
   * Whether a message with this seq is new (and then remember it as delivered).
   * @param {unknown} seq
   * @returns {boolean}
   */
  accept(seq) {
    if (typeof seq !== "number" || !Number.isInteger(seq)) return true; // no seq: not ours to judge
    if (this.seq !== null && seq <= this.seq) return false; // replayed, already delivered
    this.seq = seq;
    return true;
  }
}

// -- the server: addresses, credentials, REST -------------------------------------------

/**
 * @param {string} name
 * @param {string} cookies the `document.cookie` string
 * @returns {string | null}
 */
export function readCookie(name, cookies) {
  for (const part of cookies.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) {
      const value = part.slice(eq + 1).trim();
      try {
        return decodeURIComponent(value);
      } catch {
        return value;
      }
    }
  }
  return null;
}

/**
 * The base URL of the Jupyter server of the current page: `<meta name="iavicenne-base-url">`
 * (the demo page), Jupyter's page config (`#jupyter-config-data`, JupyterLab and Notebook
 * pages), or `/`.
 * @param {any} [doc]
 * @returns {string}
 */
function pageBaseUrl(doc) {
  if (!doc) return "/";
  const meta = doc.querySelector?.('meta[name="iavicenne-base-url"]');
  if (meta?.content) return meta.content;
  const config = doc.getElementById?.("jupyter-config-data");
  if (config?.textContent) {
    try {
      const parsed = JSON.parse(config.textContent);
      if (typeof parsed.baseUrl === "string") return parsed.baseUrl;
    } catch {
      // not JSON: ignore it
    }
  }
  return "/";
}

/**
 * A Jupyter server as the client sees it: its base URL (ending in `/`) and, optionally,
 * a token. Builds the WebSocket addresses and makes the REST calls.
 */
export class Server {
  /**
   * @param {{ url?: string, baseUrl?: string, token?: string, location?: string,
   *           document?: any, fetch?: typeof fetch, cookies?: () => string }} [options]
   *   `url`: what Jupyter prints (`http://host:8888/lab?token=...`) or a base URL; without
   *   it, the base URL of the current page (`baseUrl`, else read from the page).
   *   `token`: the server's token; else the one in `url`, else `?token=` of the page's
   *   address; else none (the login cookie does it).
   */
  constructor(options = {}) {
    const global = /** @type {any} */ (globalThis);
    const location = options.location ?? global.location?.href;
    const doc = options.document ?? global.document;
    let token = options.token;
    let base;
    if (options.url !== undefined) {
      const parsed = new URL(options.url, location);
      token ??= parsed.searchParams.get("token") ?? undefined;
      let path = parsed.pathname;
      for (const tail of ["/lab", "/tree", "/notebooks", "/iavicenne"]) {
        const at = path.indexOf(tail + "/");
        if (path.endsWith(tail)) path = path.slice(0, path.length - tail.length);
        else if (at >= 0) path = path.slice(0, at);
      }
      if (!path.endsWith("/")) path += "/";
      base = new URL(path, parsed);
    } else {
      if (location === undefined) {
        throw new IAvicenneError("no server address: pass url (e.g. http://127.0.0.1:8888/) outside a browser page");
      }
      base = new URL(options.baseUrl ?? pageBaseUrl(doc), location);
      if (!base.pathname.endsWith("/")) base.pathname += "/";
      if (token === undefined) token = new URL(location).searchParams.get("token") ?? undefined;
    }
    base.search = "";
    base.hash = "";
    if (base.protocol === "ws:" || base.protocol === "wss:") base.protocol = base.protocol === "wss:" ? "https:" : "http:";
    /** The base URL (http or https), ending in `/`. */
    this.url = base.href;
    /** The token, or "" when the login cookie authenticates. */
    this.token = token ?? "";
    this._fetch = options.fetch ?? (typeof global.fetch === "function" ? global.fetch.bind(global) : null);
    this._cookies = options.cookies ?? (() => (typeof doc?.cookie === "string" ? doc.cookie : ""));
  }

  /**
   * The WebSocket address of `path` (relative to the base URL), with `?token=` if any.
   * @param {string} path
   */
  wsUrl(path) {
    const url = new URL(path, this.url);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (this.token) url.searchParams.set("token", this.token);
    return url.href;
  }

  /**
   * Headers of a REST call: the token, and the XSRF header Jupyter checks on a browser's
   * requests (the `_xsrf` cookie's value as `X-XSRFToken`).
   * @returns {Record<string, string>}
   */
  headers() {
    /** @type {Record<string, string>} */
    const headers = { Accept: "application/json" };
    if (this.token) headers.Authorization = `token ${this.token}`;
    const xsrf = readCookie("_xsrf", this._cookies());
    if (xsrf) headers["X-XSRFToken"] = xsrf;
    return headers;
  }

  /**
   * A REST call on the server; the parsed JSON answer. 403 is an `AuthenticationError`.
   * @param {string} path relative to the base URL
   * @param {{ method?: string, body?: unknown }} [options]
   * @returns {Promise<any>}
   */
  async request(path, { method = "GET", body } = {}) {
    if (!this._fetch) throw new IAvicenneError("no fetch() here: pass one as the fetch option");
    const headers = this.headers();
    /** @type {RequestInit} */
    const init = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await this._fetch(new URL(path, this.url).href, init);
    if (response.status === 403) {
      throw new AuthenticationError(
        `${this.url} refused the request (HTTP 403): log in to Jupyter in this browser, or pass the server's token`,
      );
    }
    if (!response.ok) {
      let message = `HTTP ${response.status}`;
      try {
        const answer = await response.json();
        if (answer?.message) message += `: ${answer.message}`;
      } catch {
        // no JSON body
      }
      throw new RequestFailed({ code: `http-${response.status}`, message, status: response.status });
    }
    return response.json();
  }

  /** Rooms that have members now: `[{room, members, connections}]`. */
  async rooms() {
    return (await this.request(`${REST_PATH}rooms`)).rooms;
  }

  /**
   * One room's members, with their presence state.
   * @param {string} room
   */
  async members(room) {
    checkName(room, "room");
    return (await this.request(`${REST_PATH}rooms/${encodeURIComponent(room)}`)).members;
  }
}

// -- the connection core ----------------------------------------------------------------

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
class Endpoint {
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
  async _restore(ws) {} // eslint-disable-line no-unused-vars

  /**
   * A server frame that is not an ack or an error.
   * @param {Record<string, any>} frame
   */
  _handle(frame) {} // eslint-disable-line no-unused-vars

  /**
   * Say goodbye while the socket is still open.
   * @param {any} ws
   */
  _beforeClose(ws) {} // eslint-disable-line no-unused-vars

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
    if (type === "ack") {
      if (typeof ref === "string" && !this._outbox.ack(ref, frame)) {
        const waiting = this._replies.get(ref);
        if (waiting?.expect === "ack") waiting.resolve(frame);
      }
      return;
    }
    if (type === "error") {
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

// -- rooms ------------------------------------------------------------------------------

/**
 * @typedef {object} Member
 * @property {string} user_id
 * @property {Record<string, any>} identity
 * @property {Record<string, any>} state
 * @property {number} connections
 */

/**
 * @typedef {object} Message
 * @property {string} room
 * @property {string} userId
 * @property {Record<string, any>} content the sender's payload
 * @property {any} text `content.content`, where the seed's clients put their text
 * @property {number | null} seq null for direct messages (not kept in history)
 * @property {Record<string, any>} identity
 * @property {string} timestamp
 * @property {boolean} direct
 * @property {string | null} ref
 * @property {Record<string, any>} raw
 */

/**
 * @param {string} room
 * @param {Record<string, any>} frame
 * @param {boolean} direct
 * @returns {Message}
 */
function messageOf(room, frame, direct) {
  const content = frame.message !== null && typeof frame.message === "object" ? frame.message : {};
  return {
    room,
    userId: frame.user_id ?? "",
    content,
    text: content.content,
    seq: direct ? null : Number.isInteger(frame.seq) ? frame.seq : null,
    identity: frame.identity ?? {},
    timestamp: frame.timestamp ?? "",
    direct,
    ref: typeof frame.ref === "string" ? frame.ref : null,
    raw: frame,
  };
}

/** One joined room of a `RoomClient`: send, direct, presence, and its own events. */
export class Room {
  /**
   * @param {RoomClient} client
   * @param {string} name
   * @param {Record<string, any> | undefined} state
   */
  constructor(client, name, state) {
    this.client = client;
    this.name = name;
    /** This connection's presence state (kept across reconnects). */
    this.state = state ?? {};
    /** @type {Map<string, Member>} */
    this.members = new Map();
    this.history = new SeqTracker();
    this.events = new Emitter();
    this.left = false;
    this._settled = false;
    /** @type {(value?: any) => void} */
    let resolve = () => {};
    /** @type {(error: Error) => void} */
    let reject = () => {};
    /** @type {Promise<void>} */
    this._joined = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this._joined.catch(() => {});
    this._resolveJoined = () => {
      this._settled = true;
      resolve();
    };
    /** @param {Error} error */
    this._rejectJoined = (error) => {
      this._settled = true;
      reject(error);
    };
  }

  /** The last seq delivered (null before the first join). */
  get seq() {
    return this.history.seq;
  }

  get epoch() {
    return this.history.epoch;
  }

  /**
   * Events: `message` (`Message`), `presence`, `gap`, `error`.
   * @param {string} kind
   * @param {(event: any) => void} callback
   */
  on(kind, callback) {
    return this.events.on(kind, callback);
  }

  /**
   * Publish to the room; resolves with the server's ack (with the message's `seq`) once
   * it has it, however many reconnects that takes.
   * @param {string | Record<string, any>} content
   * @returns {Promise<Record<string, any>>}
   */
  send(content) {
    return this._reliable(() => ({ type: "message", room: this.name, payload: payloadOf(content) }));
  }

  /**
   * Send to every connection of member `to` only; rejects with `UnknownPeer` if it is not here.
   * @param {string} to
   * @param {string | Record<string, any>} content
   * @returns {Promise<Record<string, any>>}
   */
  direct(to, content) {
    return this._reliable(() => ({ type: "direct-message", room: this.name, to: checkName(to, "to"), payload: payloadOf(content) }));
  }

  /**
   * Set this connection's presence state (kept across reconnects).
   * @param {Record<string, any>} state
   * @returns {Promise<Record<string, any>>}
   */
  setState(state) {
    return this._reliable(() => {
      if (state === null || typeof state !== "object" || Array.isArray(state)) throw new IAvicenneError("a presence state is a JSON object");
      this.state = state;
      return { type: "presence", room: this.name, payload: { state } };
    });
  }

  leave() {
    return this.client.leave(this.name);
  }

  /**
   * Send the frame `make` builds, reliably; whatever goes wrong (a left room, a bad
   * argument) is a rejected promise, never a throw.
   * @param {() => Record<string, any>} make
   * @returns {Promise<Record<string, any>>}
   */
  _reliable(make) {
    try {
      if (this.left) throw new IAvicenneError(`left room ${JSON.stringify(this.name)}; join it again to send`);
      return this.client._sendReliable(make(), this.name);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  // -- frames from the client ----------------------------------------------------------

  /** @param {Record<string, any>} frame */
  _onJoined(frame) {
    const gap = this.history.joined(frame);
    if (gap) this._emit("gap", { room: this.name, ...gap });
    this.members = new Map((Array.isArray(frame.members) ? frame.members : []).map((m) => [m.user_id, m]));
    this._emit("presence", { room: this.name, kind: "snapshot", userId: null, state: {}, members: [...this.members.values()] });
    if (!this._settled) this._resolveJoined();
  }

  /** @param {Record<string, any>} frame */
  _onMessage(frame) {
    if (!this.history.accept(frame.seq)) return;
    this._emit("message", messageOf(this.name, frame, false));
  }

  /** @param {Record<string, any>} frame */
  _onPresence(frame) {
    const userId = frame.user_id;
    if (typeof userId !== "string") return;
    let kind;
    if (frame.type === "user-left") {
      this.members.delete(userId);
      kind = "left";
    } else {
      const member = this.members.get(userId) ?? { user_id: userId, identity: {}, state: {}, connections: 1 };
      if (frame.identity) member.identity = frame.identity;
      if (frame.state) member.state = frame.state;
      this.members.set(userId, member);
      kind = frame.type === "user-joined" ? "joined" : "state";
    }
    this._emit("presence", { room: this.name, kind, userId, state: frame.state ?? {}, members: [...this.members.values()] });
  }

  /**
   * @param {string} kind
   * @param {any} event
   */
  _emit(kind, event) {
    this.events.emit(kind, event);
    this.client.events.emit(kind, event);
  }
}

/**
 * A connection to the room endpoint; `join` rooms, then `room.send(...)`.
 * `await RoomClient.connect({ userId: "alice" })` on a page served by Jupyter; elsewhere
 * pass `url` (and `token`).
 */
export class RoomClient extends Endpoint {
  /**
   * @param {EndpointOptions & { userId?: string }} [options]
   */
  constructor(options = {}) {
    super(ROOMS_PATH, options);
    if (options.userId !== undefined) checkName(options.userId, "user_id");
    /** @type {string | null} our user_id (the Jupyter user's name if none was chosen) */
    this.userId = options.userId ?? null;
    /** @type {Record<string, any>} */
    this.identity = {};
    /** @type {Map<string, Room>} */
    this.rooms = new Map();
    this._directSeen = new SeenSet();
  }

  /**
   * Connect (resolves once the session is up).
   * @param {EndpointOptions & { userId?: string }} [options]
   */
  static async connect(options = {}) {
    const client = new RoomClient(options);
    await client.open();
    return client;
  }

  /**
   * Join `name` (kept across reconnects); rejects with `NameTaken` if another user holds our user_id there.
   * @param {string} name
   * @param {{ state?: Record<string, any> }} [options]
   * @returns {Promise<Room>}
   */
  async join(name, { state } = {}) {
    checkName(name, "room");
    const existing = this.rooms.get(name);
    if (existing) {
      await existing._joined;
      return existing;
    }
    const room = new Room(this, name, state);
    this.rooms.set(name, room);
    try {
      while (!room._settled) {
        // while disconnected, the restore of the next socket joins it (or we do, if that
        // restore had started before the room was added)
        await this._waitReady();
        if (!room._settled) await this._joinQuietly(this._ws, room);
      }
      await room._joined;
    } catch (error) {
      if (this.rooms.get(name) === room) this.rooms.delete(name);
      throw error;
    }
    return room;
  }

  /**
   * Leave `name`: what was sent there and not acknowledged fails.
   * @param {string} name
   */
  async leave(name) {
    const room = this.rooms.get(name);
    if (!room) return;
    this.rooms.delete(name);
    room.left = true;
    this._outbox.dropRoom(name, new IAvicenneError(`left room ${JSON.stringify(name)} before this was acknowledged`));
    if (this._ready) {
      try {
        await this._request(this._ws, { type: "leave-room", room: name }, "room-left");
      } catch {
        // disconnected or not in the room: either way we are out
      }
    }
    room.events.clear();
  }

  /** @param {any} ws */
  async _restore(ws) {
    if (this.userId !== null) {
      const reply = await this._request(ws, { type: "connect", payload: { user_id: this.userId } }, "connect");
      this.identity = reply.identity ?? {};
    }
    await Promise.all([...this.rooms.values()].map((room) => this._joinQuietly(ws, room)));
  }

  /**
   * Join on `ws`; a refusal fails that room only, a disconnect is left to the reconnect.
   * @param {any} ws
   * @param {Room} room
   */
  async _joinQuietly(ws, room) {
    /** @type {Record<string, any>} */
    const payload = { ...room.history.resume() };
    if (Object.keys(room.state).length) payload.state = room.state;
    let reply;
    try {
      reply = await this._request(ws, { type: "join-room", room: room.name, payload }, "room-joined");
    } catch (error) {
      if (error instanceof Disconnected || !(error instanceof RequestFailed)) {
        if (error instanceof Disconnected) return;
        throw error;
      }
      if (this.rooms.get(room.name) === room) this.rooms.delete(room.name);
      room.left = true;
      this._outbox.dropRoom(room.name, error);
      if (!room._settled) room._rejectJoined(error);
      else room._emit("error", error); // refused on a rejoin: the room is gone from this client
      return;
    }
    if (this.userId === null && typeof reply.user_id === "string") this.userId = reply.user_id;
  }

  /** @param {Record<string, any>} frame */
  _handle(frame) {
    const room = this.rooms.get(typeof frame.room === "string" ? frame.room : "");
    if (!room) return;
    switch (frame.type) {
      case "message":
        room._onMessage(frame);
        break;
      case "room-joined":
        room._onJoined(frame);
        break;
      case "user-joined":
      case "user-left":
      case "presence":
        room._onPresence(frame);
        break;
      case "direct-message":
        // no seq: a resend whose ack was lost is recognised by its sender and ref
        if (typeof frame.ref === "string" && !this._directSeen.add(`${frame.user_id}\u0000${frame.ref}`)) return;
        room._emit("message", messageOf(room.name, frame, true));
        break;
      default:
        break;
    }
  }

  /** @param {any} ws */
  _beforeClose(ws) {
    this._write(ws, JSON.stringify({ type: "disconnect" }));
  }
}

// -- signaling --------------------------------------------------------------------------

/** The field of a relayed frame that carries its body. */
const BODY = /** @type {const} */ ({ offer: "offer", answer: "answer", "ice-candidate": "candidate" });

/**
 * One peer (`peerId`) in one signaling room: peers come and go, signals are relayed.
 * Events: `peer` (`{room, kind: "joined"|"left", peerId, rejoined}`), `signal`
 * (`{kind, source, body, room}`), and the connection events. Relays are reliable like
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
   * @param {"offer" | "answer" | "ice-candidate"} kind
   * @param {string} target
   * @param {Record<string, any> | null} body
   */
  relay(kind, target, body) {
    const field = BODY[kind];
    if (!field) throw new IAvicenneError(`cannot relay ${kind}: offer, answer or ice-candidate`);
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
    const joined = await this._request(ws, { type: "join", room: this.room, payload: { peer_id: this.peerId } }, "joined");
    this.iceServers = Array.isArray(joined.ice_servers) ? joined.ice_servers : [];
    const now = new Set(Array.isArray(joined.peers) ? joined.peers : []);
    const before = this.peers;
    this.peers = now;
    // what changed while we were away, as if we had seen it
    for (const peerId of [...before].filter((p) => !now.has(p)).sort()) {
      this.events.emit("peer", { room: this.room, kind: "left", peerId, rejoined: false });
    }
    for (const peerId of [...now].filter((p) => !before.has(p)).sort()) {
      this.events.emit("peer", { room: this.room, kind: "joined", peerId, rejoined: false });
    }
  }

  /** @param {Record<string, any>} frame */
  _handle(frame) {
    const { type } = frame;
    if (type === "peer-joined" || type === "peer-left") {
      const peerId = frame.peer_id;
      if (typeof peerId !== "string" || peerId === this.peerId) return;
      if (type === "peer-joined") this.peers.add(peerId);
      else this.peers.delete(peerId);
      this.events.emit("peer", {
        room: this.room,
        kind: type === "peer-joined" ? "joined" : "left",
        peerId,
        rejoined: Boolean(frame.rejoined),
      });
    } else if (type in BODY) {
      const source = typeof frame.source_peer_id === "string" ? frame.source_peer_id : "";
      // a resend whose ack was lost is relayed twice: handle it once
      if (typeof frame.ref === "string" && !this._signalsSeen.add(`${source}\u0000${frame.ref}`)) return;
      const body = frame[BODY[/** @type {keyof typeof BODY} */ (type)]] ?? null;
      this.events.emit("signal", { kind: type, source, body, room: frame.room ?? this.room });
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
    this._write(ws, JSON.stringify({ type: "leave" }));
  }
}

// -- peer links: WebRTC data channels ---------------------------------------------------------
//
// The conventions are the Python peer link's (widgets/iavicenne/peer.py), so a browser and a kernel
// talk to each other:
//
// - Either side may open a link (it offers). When both offer at once (glare), the offer of
//   the lower peer_id wins (names compared by code point): the higher side drops its own
//   and answers. An offer for a link that exists means the other side started again: the
//   old link closes and the new offer is answered. Negotiation steps with one peer run in
//   order.
// - The offerer creates one ordered, reliable channel labelled "iavicenne".
// - Descriptions are sent whole: the browser waits for ICE gathering to finish (at most
//   `gatherTimeout`) and sends its SDP with every candidate in it (aiortc, on the other
//   side, does the same); candidates found later are trickled as `ice-candidate`, ended
//   by a `null` one.
// - On the channel, a string message is text. A binary message starts with a tag byte:
//   0x00 bytes; 0x01 a JSON value (UTF-8); a payload larger than one message is a
//   transfer: 0x02 START (id u32, kind u8: 0 bytes 1 JSON 2 text, flags u8: 1 zlib,
//   size u64 before compression, big-endian), 0x03 DATA pieces, 0x04 END (id); the
//   receiver answers 0x06 DONE (id) once it has it all, and 0x05 ABORT (id) tells it to
//   drop a transfer the sender gave up.

export const CHANNEL_LABEL = "iavicenne";
export const Tag = Object.freeze({ BYTES: 0x00, JSON: 0x01, START: 0x02, DATA: 0x03, END: 0x04, ABORT: 0x05, DONE: 0x06 });
export const Kind = Object.freeze({ BYTES: 0, JSON: 1, TEXT: 2 });
const FLAG_ZLIB = 1;
/** What a peer may receive when its SDP names no size (RFC 8841's default). */
export const DEFAULT_REMOTE_MAX_MESSAGE = 65536;

/** A peer link could not be opened or used. */
export class PeerLinkError extends IAvicenneError {}
/** No network path to the peer (ICE failed), or it did not answer in time. */
export class PeerUnreachable extends PeerLinkError {}
/** The link is closed (by either side); pending sends end with this. */
export class PeerLinkClosed extends PeerLinkError {}
/** The peer left the signaling room. */
export class PeerLeft extends PeerLinkClosed {}

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

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * @param {number} tag
 * @param {number} id
 */
function idFrame(tag, id) {
  const frame = new Uint8Array(5);
  frame[0] = tag;
  new DataView(frame.buffer).setUint32(1, id);
  return frame;
}

/**
 * @param {number} id
 * @param {number} kind
 * @param {number} flags
 * @param {number} size
 */
function startFrame(id, kind, flags, size) {
  const frame = new Uint8Array(15);
  const view = new DataView(frame.buffer);
  frame[0] = Tag.START;
  view.setUint32(1, id);
  view.setUint8(5, kind);
  view.setUint8(6, flags);
  view.setBigUint64(7, BigInt(size));
  return frame;
}

/**
 * @param {Uint8Array} head
 * @param {Uint8Array} body
 */
function concat(head, body) {
  const out = new Uint8Array(head.length + body.length);
  out.set(head, 0);
  out.set(body, head.length);
  return out;
}

/**
 * What `send` puts on the wire for `data`: its kind and its payload bytes (text stays a
 * string when it fits in one message).
 * @param {unknown} data
 * @returns {{ kind: number, payload: Uint8Array, text?: string }}
 */
export function encodePayload(data) {
  if (typeof data === "string") return { kind: Kind.TEXT, payload: encoder.encode(data), text: data };
  if (data instanceof ArrayBuffer) return { kind: Kind.BYTES, payload: new Uint8Array(data) };
  if (ArrayBuffer.isView(data)) return { kind: Kind.BYTES, payload: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  let json;
  try {
    json = JSON.stringify(data);
  } catch (error) {
    throw new TypeError(`a peer link sends strings, bytes or JSON values; this is not one: ${error}`);
  }
  if (json === undefined) throw new TypeError(`a peer link sends strings, bytes or JSON values; not ${typeof data}`);
  return { kind: Kind.JSON, payload: encoder.encode(json) };
}

/**
 * The channel messages that carry one payload: one message when it fits in
 * `maxMessageSize`, else a transfer (START, DATA pieces, END) with id `id`.
 * @param {unknown} data
 * @param {number} maxMessageSize
 * @param {number} id the transfer's id, used only if it is one
 * @returns {{ messages: Array<string | Uint8Array>, transfer: boolean, size: number }}
 */
export function frameMessages(data, maxMessageSize, id) {
  const { kind, payload, text } = encodePayload(data);
  const tagged = kind !== Kind.TEXT;
  if (payload.length + (tagged ? 1 : 0) <= maxMessageSize) {
    if (!tagged) return { messages: [/** @type {string} */ (text)], transfer: false, size: payload.length };
    const tag = new Uint8Array([kind === Kind.BYTES ? Tag.BYTES : Tag.JSON]);
    return { messages: [concat(tag, payload)], transfer: false, size: payload.length };
  }
  const piece = maxMessageSize - 1;
  /** @type {Array<string | Uint8Array>} */
  const messages = [startFrame(id, kind, 0, payload.length)];
  const dataTag = new Uint8Array([Tag.DATA]);
  for (let offset = 0; offset < payload.length; offset += piece) {
    messages.push(concat(dataTag, payload.subarray(offset, offset + piece)));
  }
  messages.push(idFrame(Tag.END, id));
  return { messages, transfer: true, size: payload.length };
}

/**
 * Inflate zlib data (what Python's zlib.compress writes).
 * @param {Uint8Array[]} pieces
 * @returns {Promise<Uint8Array>}
 */
async function inflate(pieces) {
  const global = /** @type {any} */ (globalThis);
  if (typeof global.DecompressionStream !== "function") {
    throw new PeerLinkError("a compressed transfer arrived and this browser has no DecompressionStream");
  }
  const stream = new Blob(/** @type {BlobPart[]} */ (/** @type {unknown} */ (pieces))).stream().pipeThrough(new global.DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * Reads the messages of a channel back into payloads: `receive(message)` returns what
 * it completes (see the framing above). Transfers arrive one at a time per sender.
 */
export class Reassembler {
  constructor() {
    /** @type {{ id: number, kind: number, flags: number, size: number, pieces: Uint8Array[], received: number } | null} */
    this.incoming = null;
  }

  /**
   * @param {string | ArrayBuffer | Uint8Array} message
   * @returns {{ value?: any, done?: number, progress?: { done: number, total: number }, finish?: Promise<any>, id?: number } | null}
   *   `value`: a payload now; `finish` + `id`: a transfer complete (its value once
   *   decoded, then answer DONE id); `done`: the peer confirmed transfer `done`;
   *   `progress`: how far the incoming transfer is.
   */
  receive(message) {
    if (typeof message === "string") return { value: message };
    const bytes = message instanceof Uint8Array ? message : new Uint8Array(message);
    if (!bytes.length) return null;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    switch (bytes[0]) {
      case Tag.BYTES:
        return { value: bytes.slice(1) };
      case Tag.JSON:
        return { value: JSON.parse(decoder.decode(bytes.subarray(1))) };
      case Tag.START: {
        if (bytes.length < 15) throw new PeerLinkError("malformed START");
        const size = Number(view.getBigUint64(7));
        this.incoming = { id: view.getUint32(1), kind: bytes[5], flags: bytes[6], size, pieces: [], received: 0 };
        return { progress: { done: 0, total: size } };
      }
      case Tag.DATA: {
        const incoming = this.incoming;
        if (!incoming) return null;
        const piece = bytes.slice(1);
        incoming.pieces.push(piece);
        incoming.received += piece.length;
        const done = incoming.flags & FLAG_ZLIB ? Math.min(incoming.size, incoming.received) : incoming.received;
        return { progress: { done, total: incoming.size } };
      }
      case Tag.END: {
        const id = view.getUint32(1);
        const incoming = this.incoming;
        this.incoming = null;
        if (!incoming || incoming.id !== id) return null;
        return { id, finish: this._decode(incoming) };
      }
      case Tag.ABORT: {
        if (this.incoming?.id === view.getUint32(1)) this.incoming = null;
        return null;
      }
      case Tag.DONE:
        return { done: view.getUint32(1) };
      default:
        throw new PeerLinkError(`unknown tag 0x${bytes[0].toString(16)}`);
    }
  }

  /**
   * @param {{ id: number, kind: number, flags: number, size: number, pieces: Uint8Array[] }} incoming
   */
  async _decode(incoming) {
    let payload;
    if (incoming.flags & FLAG_ZLIB) {
      payload = await inflate(incoming.pieces);
    } else {
      payload = new Uint8Array(incoming.size);
      let offset = 0;
      for (const piece of incoming.pieces) {
        if (offset + piece.length > incoming.size) throw new PeerLinkError(`transfer ${incoming.id}: more bytes than announced`);
        payload.set(piece, offset);
        offset += piece.length;
      }
      if (offset !== incoming.size) throw new PeerLinkError(`transfer ${incoming.id}: ${offset} bytes instead of ${incoming.size}`);
    }
    if (payload.length !== incoming.size) {
      throw new PeerLinkError(`transfer ${incoming.id}: ${payload.length} bytes instead of ${incoming.size}`);
    }
    if (incoming.kind === Kind.BYTES) return payload;
    const text = decoder.decode(payload);
    return incoming.kind === Kind.TEXT ? text : JSON.parse(text);
  }
}

/** @param {string} candidate an SDP candidate line's value ("candidate:... <address> <port> typ ...") */
function candidateAddress(candidate) {
  const bits = candidate.replace(/^a=/, "").replace(/^candidate:/, "").trim().split(/\s+/);
  return { transport: (bits[2] ?? "").toLowerCase(), address: bits[4] ?? "" };
}

/** @param {string} candidate */
function isLoopbackCandidate(candidate) {
  const { transport, address } = candidateAddress(candidate);
  return transport === "udp" && (address === "::1" || address.startsWith("127."));
}

/**
 * The SDP with only the candidates `keep` accepts, and `a=end-of-candidates` when `complete`.
 * @param {string} sdp
 * @param {(candidate: string) => boolean} keep
 * @param {boolean} complete
 */
export function filterSdp(sdp, keep, complete) {
  const lines = sdp.split(/\r\n/).filter((line) => !line.startsWith("a=candidate:") || keep(line.slice(2)));
  if (complete && !lines.includes("a=end-of-candidates")) {
    // after the last line of the (single) media section; the SDP ends with an empty line
    const end = lines[lines.length - 1] === "" ? lines.length - 1 : lines.length;
    lines.splice(end, 0, "a=end-of-candidates");
  }
  return lines.join("\r\n");
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
    /** @type {"connecting" | "open" | "closed"} */
    this.state = "connecting";
    /** @type {PeerLinkError | null} */
    this.error = null;
    this.events = new Emitter();
    this.maxMessageSize = network.chunkSize;
    this.pc = new network._RTCPeerConnection({ iceServers: network._iceServers() });
    /** @type {any} */
    this.channel = null;
    this._reassembler = new Reassembler();
    this._ids = 0;
    /** @type {Map<number, { resolve: () => void, reject: (error: Error) => void }>} */
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
      const confirmed = new Promise((resolve, reject) => this._done.set(id, { resolve, reject }));
      confirmed.catch(() => {});
      let handed = 0;
      try {
        for (const message of messages) {
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
          this.events.emit("error", new PeerLinkError(`a transfer from ${JSON.stringify(this.peerId)} failed: ${/** @type {Error} */ (error).message}`));
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
    await this._sendDescription("offer");
  }

  /** @param {Record<string, any>} offer */
  async _answer(offer) {
    await this.pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
    await this._addEarlyCandidates();
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    await this._sendDescription("answer");
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
   * @param {"offer" | "answer"} kind
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
    await this.network.signaling.relay("ice-candidate", this.peerId, body);
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
 * the Python `PeerNetwork` (widgets/iavicenne/peer.py). Options: `loopback` (use 127.0.0.1 / ::1
 * candidates only: peers on one machine, as the tests do), `iceServers` (default: what the
 * server hands out), `chunkSize`, `highWater`, `lowWater` (bytes), `gatherTimeout` (ms),
 * `RTCPeerConnection` (a constructor; default: the browser's).
 */
export class PeerNetwork {
  /**
   * @param {SignalingClient} signaling
   * @param {{ loopback?: boolean, iceServers?: RTCIceServer[], chunkSize?: number, highWater?: number,
   *           lowWater?: number, gatherTimeout?: number, RTCPeerConnection?: any,
   *           setTimeout?: (callback: () => void, ms: number) => any, clearTimeout?: (handle: any) => void,
   *           ownsSignaling?: boolean }} [options]
   */
  constructor(signaling, options = {}) {
    const global = /** @type {any} */ (globalThis);
    const { chunkSize = 65536, highWater = 1 << 20, lowWater = 256 * 1024, gatherTimeout = 3000 } = options;
    if (!(lowWater >= 0 && lowWater < highWater)) throw new IAvicenneError("need 0 <= lowWater < highWater");
    if (!(chunkSize > 16)) throw new IAvicenneError("chunkSize is too small");
    this.signaling = signaling;
    this.loopback = Boolean(options.loopback);
    this.iceServersOverride = options.iceServers ?? null;
    this.chunkSize = chunkSize;
    this.highWater = highWater;
    this.lowWater = lowWater;
    this.gatherTimeout = gatherTimeout;
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
   *         RTCPeerConnection?: any, chunkSize?: number, highWater?: number, lowWater?: number, gatherTimeout?: number }} options
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
      const link = this.links.get(peerId);
      if (link?.open) return link;
      const waiting = new Promise((resolve, reject) => {
        const list = this._waiters.get(peerId) ?? [];
        list.push({ resolve, reject });
        this._waiters.set(peerId, list);
      });
      if (!link) this._step(peerId, "connect");
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

  _iceServers() {
    return this.iceServersOverride ?? this.signaling.iceServers ?? [];
  }

  /** @param {any} event */
  _onPeer(event) {
    this.events.emit("peer", event);
    if (event.kind === "left") this.links.get(event.peerId)?._fail(new PeerLeft(`peer ${JSON.stringify(event.peerId)} left the room`));
  }

  /**
   * Queue one negotiation step with `peerId` ("connect", or a signal); steps run in order.
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
      if (step === "connect") {
        if (!link) {
          link = this._newLink(peerId, true);
          await link._offer();
        }
      } else if (step.kind === "offer") {
        if (link && link.offerer && link.state === "connecting") {
          if (codePointLess(this.peerId, peerId)) return; // glare, and our offer wins: they answer it
          link._fail(new PeerLinkClosed("replaced: both sides offered; the lower peer_id's offer won"), { quietly: true });
        } else if (link) {
          link._fail(new PeerLinkClosed(`peer ${JSON.stringify(peerId)} opened a new link, replacing this one`));
        }
        link = this._newLink(peerId, false);
        await link._answer(step.body ?? {});
      } else if (link && step.kind === "answer") {
        await link._onAnswer(step.body ?? {});
      } else if (link && step.kind === "ice-candidate") {
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
