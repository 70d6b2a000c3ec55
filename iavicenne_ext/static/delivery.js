/**
 * Delivery bookkeeping, each a small class: the outbox of reliable frames waiting for
 * their ack (written again after a reconnect), the set of refs seen recently (a frame
 * relayed twice is handled once), and a room's position in its history (last seq, epoch).
 */

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
