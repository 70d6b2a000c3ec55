/**
 * A room's shared state in the browser: the same Yjs document the kernels see as
 * `room.shared` (the Python client's `iavicenne.shared`), on the `yjs` npm package as it
 * is (vendored in `vendor/`, checked against npm by `python -m iavicenne_ext.vendor_js
 * --check`), synced with the Yjs sync protocol over the room socket (`shared` frames,
 * docs/protocol.md "Shared state").
 *
 * ```js
 * import { share } from "/iavicenne/static/shared.js";
 * const shared = share(room);            // a joined Room of client.js
 * await shared.synced;
 * shared.set("threshold", 0.3);
 * shared.observe(({ keys, local }) => console.log([...keys], shared.toJSON()));
 * ```
 *
 * As in Python: each (re)join sends our state vector (step 1), the server answers what we
 * lack and its own state vector, which we answer with what it lacks (edits made before
 * joining or while disconnected); live edits are batched per task and sent reliably; a
 * refused edit (the document's size bound) resets our copy to the room's. Arrays and
 * plain objects given to `set` become shared arrays and maps. The module is separate from
 * iavicenne.js, so a page that wants no shared state loads no Yjs.
 */

import * as Y from "./vendor/yjs/yjs.mjs";
import { EMPTY_UPDATE_HEX, ErrorCode, SHARED, SHARED_ROOT, SYNC_MESSAGE, SyncStep } from "./protocol.js";

/** @typedef {import("./room.js").Room} Room */
/** @typedef {import("./iavicenne.js").Room} PublicRoom a joined room, as iavicenne.d.ts describes it */

export { Y };

/** The origin of the transactions that apply the server's updates: not ours to send. */
const REMOTE = Symbol("iavicenne-remote");
const EMPTY_UPDATE = Uint8Array.from(EMPTY_UPDATE_HEX.match(/../g) ?? [], (h) => parseInt(h, 16));

/**
 * @param {number} step
 * @param {Uint8Array} payload
 */
export function encodeSync(step, payload) {
  const head = [SYNC_MESSAGE, step];
  let length = payload.length;
  while (length > 127) {
    head.push(128 | (length & 127));
    length >>>= 7;
  }
  head.push(length);
  const bytes = new Uint8Array(head.length + payload.length);
  bytes.set(head);
  bytes.set(payload, head.length);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

/**
 * (step, payload) of a base64 y-sync message, or null when it is not one.
 * @param {unknown} text
 * @returns {[number, Uint8Array] | null}
 */
export function decodeSync(text) {
  if (typeof text !== "string") return null;
  let bytes;
  try {
    bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
  if (bytes.length < 3 || bytes[0] !== SYNC_MESSAGE) return null;
  let length = 0;
  let shift = 0;
  let at = 2;
  for (;;) {
    if (at >= bytes.length || shift > 28) return null;
    const byte = bytes[at++];
    length += (byte & 127) * 2 ** shift;
    shift += 7;
    if (byte < 128) break;
  }
  const payload = bytes.subarray(at);
  return payload.length === length ? [bytes[1], payload] : null;
}

/** @param {Uint8Array} a */
const isEmpty = (a) => a.length === EMPTY_UPDATE.length && a.every((b, i) => b === EMPTY_UPDATE[i]);

/**
 * A plain value as it is kept: arrays and plain objects become shared arrays and maps.
 * @param {any} value
 * @returns {any}
 */
export function toShared(value) {
  if (value instanceof Y.AbstractType) return value;
  if (Array.isArray(value)) return Y.Array.from(value.map(toShared));
  if (value !== null && typeof value === "object") return new Y.Map(Object.entries(value).map(([k, v]) => [k, toShared(v)]));
  return value;
}

/** What stands for the containers `plain` cuts off below its `maxDepth`. */
export const CUT = "…";

/**
 * A shared type (or a JSON value it holds) as plain JSON, one container at a time from an
 * explicit stack: Yjs's own `toJSON` recurses, and a document thousands of levels deep
 * (written before the server bounded depth, or where max_shared_depth is high) throws
 * RangeError there. Containers deeper than `maxDepth` levels (the first is 1) become `CUT`.
 * @param {any} root a Y.Map, Y.Array, plain object or array
 * @param {number} [maxDepth]
 * @returns {any}
 */
export function plain(root, maxDepth = Infinity) {
  // a JSON object: Yjs hands those out as plain objects (bytes are Uint8Array, kept as they are)
  const isObject = (/** @type {any} */ v) =>
    v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Y.AbstractType) && !(v instanceof Uint8Array);
  const isMap = (/** @type {any} */ v) => v instanceof Y.Map || isObject(v);
  const isList = (/** @type {any} */ v) => v instanceof Y.Array || Array.isArray(v);
  /** @type {any} */
  const out = isList(root) ? [] : {};
  /** @type {[any, any, number][]} the container, what its items go to, its level */
  const stack = [[root, out, 1]];
  while (stack.length > 0) {
    const [source, target, level] = /** @type {[any, any, number]} */ (stack.pop());
    /** @type {Iterable<[string | number, any]>} */
    const items =
      source instanceof Y.Map ? source.entries() : source instanceof Y.Array ? source.toArray().entries() : Object.entries(source);
    for (const [key, item] of items) {
      let value = item;
      if (item instanceof Y.Text) value = item.toString();
      else if (isMap(item) || isList(item)) {
        if (level >= maxDepth) value = CUT;
        else {
          value = isList(item) ? [] : {};
          stack.push([item, value, level + 1]);
        }
      } else if (item instanceof Y.AbstractType) value = `<${item.constructor.name}>`; // XML: not written by this API
      if (Array.isArray(target)) target.push(value);
      else target[key] = value;
    }
  }
  return out;
}

/**
 * @typedef {{ keys: Set<string>, local: boolean }} SharedChange
 */

export class SharedState {
  /** @param {string} roomName */
  constructor(roomName) {
    this.roomName = roomName;
    /** @type {number | null} the server's size bound, once it told us */
    this.maxBytes = null;
    /** @type {Error[]} */
    this.errors = [];
    /** @type {Set<(change: SharedChange) => void>} */
    this._observers = new Set();
    /** @type {Room | null} */
    this._room = null;
    /** @type {(() => void)[]} */
    this._unsubscribe = [];
    /** @type {Uint8Array[]} */
    this._pending = [];
    const fresh = this._newDocument();
    this.doc = fresh.doc;
    this.map = fresh.map;
    this._synced = fresh.synced;
    this._resolveSynced = fresh.resolveSynced;
  }

  /** Resolves once the room's state has arrived (after joining). */
  get synced() {
    return this._synced;
  }

  /** A new document, observed, and the promise of its first sync (the constructor's, then `reset`'s). */
  _newDocument() {
    const doc = new Y.Doc();
    const map = doc.getMap(SHARED_ROOT);
    /** @type {(value?: any) => void} */
    let resolve = () => {};
    /** @type {Promise<any>} */
    const synced = new Promise((res) => {
      resolve = res;
    });
    doc.on("update", (/** @type {Uint8Array} */ update, /** @type {any} */ origin) => {
      if (origin === REMOTE || isEmpty(update)) return;
      if (this._pending.length === 0) setTimeout(() => this._flush(), 0);
      this._pending.push(update);
    });
    map.observeDeep((events, transaction) => {
      /** @type {Set<string>} */
      const keys = new Set();
      for (const event of events) {
        if (event.path.length > 0) keys.add(String(event.path[0]));
        else for (const key of /** @type {Y.YMapEvent<any>} */ (event).keysChanged ?? []) keys.add(key);
      }
      this._notify({ keys, local: transaction.origin !== REMOTE });
    });
    return { doc, map, synced, resolveSynced: resolve };
  }

  /** @param {string} key */
  get(key) {
    return this.map.get(key);
  }

  /**
   * @param {string} key
   * @param {any} value
   */
  set(key, value) {
    this.map.set(key, toShared(value));
  }

  /** @param {string} key */
  delete(key) {
    this.map.delete(key);
  }

  /** @param {string} key */
  has(key) {
    return this.map.has(key);
  }

  /**
   * The whole state as plain JSON (converted without recursion: see `plain`); containers
   * deeper than `maxDepth` levels are shown as "…".
   * @param {number} [maxDepth]
   */
  toJSON(maxDepth = Infinity) {
    return plain(this.map, maxDepth);
  }

  /**
   * Call `callback(change)` after every change, ours or another's; returns the unsubscriber.
   * @param {(change: SharedChange) => void} callback
   */
  observe(callback) {
    this._observers.add(callback);
    return () => this._observers.delete(callback);
  }

  /** @param {SharedChange} change */
  _notify(change) {
    for (const callback of this._observers) {
      queueMicrotask(() => {
        try {
          callback(change);
        } catch (error) {
          this.errors.push(/** @type {Error} */ (error));
          console.error("iavicenne: a shared-state observer failed", error);
        }
      });
    }
  }

  // -- the sync with the server ------------------------------------------------------------

  /**
   * Sync with `room` (joined) now and after every rejoin its client makes.
   * @param {PublicRoom} joined
   */
  attach(joined) {
    const room = /** @type {Room} */ (/** @type {unknown} */ (joined)); // what iavicenne.js's Room is
    this.detach();
    this._room = room;
    this._unsubscribe = [
      room.on("shared", (/** @type {Record<string, any>} */ frame) => this._onFrame(frame)),
      room.on("presence", (/** @type {any} */ event) => {
        if (event.kind === "snapshot") this._sendStep1();
      }),
      // a reconnect: the client rejoined the room on the new socket before it is ready
      room.client.on("connected", () => this._sendStep1()),
    ];
    this._sendStep1();
  }

  detach() {
    for (const unsubscribe of this._unsubscribe) unsubscribe();
    this._unsubscribe = [];
    this._room = null;
  }

  _sendStep1() {
    const room = this._room;
    if (!room || room.left || !room.client.connected) return;
    // answered by a shared frame, not an ack: written as it is, sent again on the next rejoin
    const frame = { type: SHARED, room: room.name, payload: { sync: encodeSync(SyncStep.STEP1, Y.encodeStateVector(this.doc)) } };
    room.client._write(room.client._ws, JSON.stringify(frame));
  }

  _flush() {
    const pending = this._pending.splice(0);
    if (pending.length === 0 || !this._room) return; // not joined: the sync on join sends it
    this._send(SyncStep.UPDATE, pending.length === 1 ? pending[0] : Y.mergeUpdates(pending));
  }

  /**
   * @param {number} step
   * @param {Uint8Array} payload
   */
  _send(step, payload) {
    const room = this._room;
    if (!room || room.left) return;
    room
      ._reliable(() => ({ type: SHARED, room: room.name, payload: { sync: encodeSync(step, payload) } }))
      .catch((/** @type {any} */ error) => this._refused(error));
  }

  /** @param {any} error */
  _refused(error) {
    if (!error || typeof error.code !== "string") return; // closed or left: the next join syncs
    this.errors.push(error);
    console.warn(`iavicenne: ${this.roomName}: shared update refused: ${error.message}`);
    if (error.code === ErrorCode.LIMIT_EXCEEDED || error.code === ErrorCode.INVALID_FIELD) this.reset();
  }

  /** Drop our copy and take the room's again (after a refused edit). */
  reset() {
    const keys = new Set(this.map.keys());
    this._pending = [];
    this.doc.destroy();
    const fresh = this._newDocument();
    this.doc = fresh.doc;
    this.map = fresh.map;
    this._synced = fresh.synced;
    this._resolveSynced = fresh.resolveSynced;
    this._notify({ keys, local: true });
    this._sendStep1();
  }

  /** @param {Record<string, any>} frame */
  _onFrame(frame) {
    const message = decodeSync(frame.sync);
    if (!message) {
      console.warn(`iavicenne: ${this.roomName}: a shared frame that is not a Yjs sync message was ignored`);
      return;
    }
    const [step, payload] = message;
    if (step === SyncStep.STEP1) {
      const missing = Y.encodeStateAsUpdate(this.doc, payload);
      if (!isEmpty(missing)) this._send(SyncStep.STEP2, missing);
      return;
    }
    if (typeof frame.max_bytes === "number") this.maxBytes = frame.max_bytes;
    if (!isEmpty(payload)) {
      try {
        Y.applyUpdate(this.doc, payload, REMOTE);
      } catch (error) {
        console.warn(`iavicenne: ${this.roomName}: an update from the server could not be applied`, error);
      }
    }
    if (step === SyncStep.STEP2) this._resolveSynced(this);
  }
}

/**
 * The shared state of a joined room.
 * @param {PublicRoom} room
 */
export function share(room) {
  const state = new SharedState(room.name);
  state.attach(room);
  return state;
}
