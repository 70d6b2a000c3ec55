/**
 * One joined room: `Room` (send, direct messages, presence, and its own events), as the
 * Python client's `Room`. Its `RoomClient` (client.js) makes it, hands it the frames of its
 * room and sends what it asks to; the room keeps the members' view and the history's seq.
 */

import { SeenSet, SeqTracker } from "./delivery.js";
import { checkName, IAvicenneError } from "./errors.js";
import { Emitter } from "./events.js";
import {
  CONTROL_KEY,
  DELETE_MESSAGE,
  DIRECT_MESSAGE,
  EDIT_MESSAGE,
  DIRECT_SEQ,
  LIST_MEMBERS,
  MEMBERS,
  MEMBERS_CURSOR_PREFIX,
  MESSAGE,
  MESSAGE_EDITED,
  MODERATE,
  PRESENCE,
  REPLY_TO,
  USER_JOINED,
  USER_LEFT,
} from "./protocol.js";

/** @typedef {import("./client.js").RoomClient} RoomClient */

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
 * @property {Record<string, any> | null} reply the server's: what it replies to (verified author, quote)
 * @property {boolean} edited
 * @property {boolean} deleted its text is gone (deleted by its author or the room's owner)
 * @property {Record<string, any>} raw
 */

/**
 * A direct message the libraries send each other (a relayed peer link, a kernel
 * describing itself): a `control` event, never a chat `message` (as in the Python client).
 * @param {unknown} payload
 */
function isControl(payload) {
  return payload !== null && typeof payload === "object" && typeof (/** @type {any} */ (payload)[CONTROL_KEY]) === "string";
}

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
    // the server's: what it replies to (the replied-to author as verified, a quote)
    reply: frame.reply !== null && typeof frame.reply === "object" ? frame.reply : null,
    edited: "edited_at" in frame,
    deleted: "deleted" in frame,
    raw: frame,
  };
}

/**
 * A kept message edited or deleted (`message-edited`, `message-deleted`), as a `change` event.
 * @param {string} room
 * @param {Record<string, any>} frame
 */
export function changeOf(room, frame) {
  const edited = frame.type === MESSAGE_EDITED;
  const content = edited && frame.message !== null && typeof frame.message === "object" ? frame.message : {};
  return {
    room,
    seq: Number.isInteger(frame.seq) ? frame.seq : null,
    kind: edited ? "edited" : "deleted",
    userId: frame.user_id ?? "",
    content,
    text: content.content,
    identity: frame.identity ?? {},
    raw: frame,
  };
}

/**
 * The user_id a members cursor points after, or null (no cursor: nothing follows).
 * @param {unknown} cursor
 * @returns {string | null}
 */
function cursorAfter(cursor) {
  return typeof cursor === "string" && cursor.startsWith(MEMBERS_CURSOR_PREFIX) ? cursor.slice(MEMBERS_CURSOR_PREFIX.length) : null;
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
    /**
     * The last kept direct message's `direct_seq` delivered (docs/protocol.md, "Continuity"):
     * null until known (a join with `directHistory`, or a live one); each rejoin asks for
     * what came after it, and each is delivered once.
     * @type {number | null}
     */
    this.directSeq = null;
    /** @type {Set<number>} the direct_seq of the kept direct messages we sent from here */
    this._sentDirect = new Set();
    this._directSeen = new SeenSet(1000);
    this._settled = false;
    // large rooms: list-members requests under way (ref -> the user_id their page starts
    // after), and which room-joined they follow (a newer one drops them)
    /** @type {Map<string, string>} */
    this._pages = new Map();
    this._generation = 0;
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
    return this._reliable(() => ({ type: MESSAGE, room: this.name, payload: payloadOf(content) }));
  }

  /**
   * Publish a reply to message `seq`: the server adds `reply` (its verified author, a quote).
   * @param {number} seq
   * @param {string | Record<string, any>} content
   * @returns {Promise<Record<string, any>>}
   */
  reply(seq, content) {
    return this._reliable(() => ({ type: MESSAGE, room: this.name, [REPLY_TO]: seq, payload: payloadOf(content) }));
  }

  /**
   * Replace the text of our message `seq`; the room gets a `change` event.
   * @param {number} seq
   * @param {string | Record<string, any>} content
   * @returns {Promise<Record<string, any>>}
   */
  edit(seq, content) {
    return this._reliable(() => ({ type: EDIT_MESSAGE, room: this.name, seq, payload: payloadOf(content) }));
  }

  /**
   * Delete message `seq` (ours, or any in a room we own): its text leaves the history.
   * @param {number} seq
   * @returns {Promise<Record<string, any>>}
   */
  delete(seq) {
    return this._reliable(() => ({ type: DELETE_MESSAGE, room: this.name, seq }));
  }

  /**
   * Send to every connection of member `to` only; rejects with `UnknownPeer` if it is not here.
   * @param {string} to
   * @param {string | Record<string, any>} content
   * @returns {Promise<Record<string, any>>}
   */
  direct(to, content) {
    return this._reliable(() => ({ type: DIRECT_MESSAGE, room: this.name, to: checkName(to, "to"), payload: payloadOf(content) })).then(
      (ack) => {
        // kept: a replay after a reconnect brings it back to us; we sent it, so it is not news
        if (Number.isInteger(ack?.[DIRECT_SEQ])) this._sentDirect.add(ack[DIRECT_SEQ]);
        return ack;
      },
    );
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
      return { type: PRESENCE, room: this.name, payload: { state } };
    });
  }

  /**
   * As the room's owner: mute, unmute, remove or readmit identity `username` (a
   * `ModerationAction`); kept by the server, so their reconnecting does not lift it. The
   * room then gets a `moderated` event. Anyone else is refused (`Forbidden`).
   * @param {string} username
   * @param {string} action
   * @returns {Promise<Record<string, any>>}
   */
  moderate(username, action) {
    return this._reliable(() => ({ type: MODERATE, room: this.name, payload: { username, action } }));
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
    if (this.directSeq === null && Number.isInteger(frame[DIRECT_SEQ])) this.directSeq = frame[DIRECT_SEQ];
    const gap = this.history.joined(frame);
    if (gap) this._emit("gap", { room: this.name, ...gap });
    this._generation += 1;
    this._pages.clear();
    this._applyPage(frame.members, "", frame.members_next);
    if (typeof frame.members_next === "string") {
      // a large room: the rest, page by page, before the snapshot event
      void this._pageRest(frame.members_next, this._generation);
      return;
    }
    this._snapshotDone();
  }

  _snapshotDone() {
    this._emit("presence", { room: this.name, kind: "snapshot", userId: null, state: {}, members: [...this.members.values()] });
    if (!this._settled) this._resolveJoined();
  }

  /**
   * Ask for the pages after the first; each is applied as it arrives (`_onMembers`), in
   * order with the presence frames, so the view is the room's once the last is in.
   * @param {string} cursor
   * @param {number} generation
   */
  async _pageRest(cursor, generation) {
    const client = this.client;
    const ws = client._ws;
    /** @type {unknown} */
    let next = cursor;
    try {
      while (typeof next === "string" && ws && generation === this._generation) {
        /** @type {Record<string, any>} */
        const frame = { type: LIST_MEMBERS, room: this.name, payload: { after: next } };
        const reply = client._request(ws, frame, MEMBERS);
        this._pages.set(frame.ref, cursorAfter(next) ?? "");
        next = (await reply).members_next;
      }
    } catch {
      return; // disconnected or closed: the next socket joins again, and pages again
    }
    if (generation === this._generation && !this.left) this._snapshotDone();
  }

  /**
   * Make the view's members between user_id `after` and the page's end the page's: pages
   * are in user_id order, so a member of that range that is not in the page has left.
   * @param {unknown} members
   * @param {string} after
   * @param {unknown} cursor
   */
  _applyPage(members, after, cursor) {
    const last = cursorAfter(cursor);
    const listed = new Map(
      (Array.isArray(members) ? members : []).filter((m) => m && typeof m.user_id === "string").map((m) => [m.user_id, m]),
    );
    for (const userId of [...this.members.keys()]) {
      if (userId > after && (last === null || userId <= last) && !listed.has(userId)) this.members.delete(userId);
    }
    for (const [userId, member] of listed) this.members.set(userId, member);
  }

  /** @param {Record<string, any>} frame */
  _onMembers(frame) {
    const after = this._pages.get(frame.ref);
    if (after === undefined) return;
    this._pages.delete(frame.ref);
    this._applyPage(frame.members, after, frame.members_next);
  }

  /**
   * A presence-batch: the same events, one per user, as the seed's frames would give.
   * @param {Record<string, any>} frame
   */
  _onPresenceBatch(frame) {
    for (const userId of Array.isArray(frame.left) ? frame.left : []) {
      if (this.members.delete(userId)) {
        this._emit("presence", { room: this.name, kind: "left", userId, state: {}, members: [...this.members.values()] });
      }
    }
    const entries = [...(Array.isArray(frame.joined) ? frame.joined : []), ...(Array.isArray(frame.updated) ? frame.updated : [])];
    for (const entry of entries) {
      const userId = entry?.user_id;
      if (typeof userId !== "string") continue;
      const state = entry.state ?? {};
      const known = this.members.get(userId);
      if (!known) {
        this.members.set(userId, { user_id: userId, identity: {}, state: {}, connections: 1, ...entry });
        this._emit("presence", { room: this.name, kind: "joined", userId, state, members: [...this.members.values()] });
      } else if (
        JSON.stringify(known.state ?? {}) !== JSON.stringify(state) ||
        JSON.stringify(known.identity) !== JSON.stringify(entry.identity) ||
        (Number.isInteger(entry.connections) && entry.connections !== known.connections)
      ) {
        Object.assign(known, entry);
        this._emit("presence", { room: this.name, kind: "state", userId, state, members: [...this.members.values()] });
      }
    }
  }

  /**
   * A direct message (no seq, not kept in history): a library's `control` message, or a `message`.
   * @param {Record<string, any>} frame
   */
  _onDirectMessage(frame) {
    const directSeq = frame[DIRECT_SEQ];
    if (Number.isInteger(directSeq)) {
      // a kept one: live or replayed, once
      // each once (live ones from two servers may come out of order: a set, not the highest)
      if (!this._directSeen.add(String(directSeq))) return;
      this.directSeq = Math.max(this.directSeq ?? 0, directSeq); // a rejoin asks for what follows
      if (this._sentDirect.has(directSeq)) return;
    }
    this._emit(isControl(frame.message) ? "control" : "message", messageOf(this.name, frame, true));
  }

  /** @param {Record<string, any>} frame */
  _onMessage(frame) {
    if (!this.history.accept(frame.seq)) return;
    this._emit("message", messageOf(this.name, frame, false));
  }

  /**
   * The room's owner moderated someone: `{room, username, action, by}`.
   * @param {Record<string, any>} frame
   */
  _onModerated(frame) {
    if (typeof frame.username !== "string" || typeof frame.action !== "string") return;
    this._emit("moderated", { room: this.name, username: frame.username, action: frame.action, by: typeof frame.by === "string" ? frame.by : "" });
  }

  /** @param {Record<string, any>} frame */
  _onPresence(frame) {
    const userId = frame.user_id;
    if (typeof userId !== "string") return;
    if (frame.type === USER_JOINED && userId === this.client.userId && !Object.keys(this.client.identity).length) {
      // joined without `connect` into a room larger than the first page: our own user-joined says who we are
      if (frame.identity && typeof frame.identity === "object") this.client.identity = frame.identity;
    }
    let kind;
    if (frame.type === USER_LEFT) {
      this.members.delete(userId);
      kind = "left";
    } else {
      const member = this.members.get(userId) ?? { user_id: userId, identity: {}, state: {}, connections: 1 };
      if (frame.identity) member.identity = frame.identity;
      if (frame.state) member.state = frame.state;
      if (Number.isInteger(frame.connections)) member.connections = frame.connections; // each connection counts
      this.members.set(userId, member);
      kind = frame.type === USER_JOINED ? "joined" : "state";
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
