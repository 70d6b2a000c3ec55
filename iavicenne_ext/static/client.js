// @ts-check
/**
 * Rooms: `RoomClient`, a connection to the room endpoint, and `Room`, one room joined
 * through it (send, direct messages, presence, and its own events), as the Python
 * client's `RoomClient` and `Room` do it; `RoomsAPI`, the REST calls that make private
 * and group rooms and change who may enter them (the Python `RoomsAPI`).
 */

import { Endpoint } from "./connection.js";
import { SeenSet, SeqTracker } from "./delivery.js";
import { AuthenticationError, checkName, Disconnected, errorFrom, IAvicenneError, RequestFailed } from "./errors.js";
import { Emitter } from "./events.js";
import {
  AccessKind,
  CONNECT,
  CONTROL_KEY,
  DIRECT_MESSAGE,
  DISCONNECT,
  JOIN_ROOM,
  LEAVE_ROOM,
  LeftReason,
  LIST_MEMBERS,
  MEMBERS,
  MEMBERS_CURSOR_PREFIX,
  MESSAGE,
  PRESENCE,
  PRESENCE_BATCH,
  PresenceMode,
  ROOM_JOINED,
  ROOM_LEFT,
  REST_PATH,
  ROOMS_PATH,
  SHARED,
  USER_JOINED,
  USER_LEFT,
} from "./protocol.js";

/** @typedef {import("./connection.js").EndpointOptions} EndpointOptions */
/** @typedef {import("./discovery.js").Server} Server */

/** Who may enter a room (`access` of `createRoom`). */
export const ACCESS_KINDS = Object.freeze([AccessKind.PUBLIC, AccessKind.GROUP, AccessKind.PRIVATE]);

/**
 * The rooms' REST API on one server (`{base}iavicenne/api/rooms`): list the rooms we may
 * enter, make a private or group room, invite and remove members. Each call sends the
 * token, or the login cookie with the `X-XSRFToken` header read from the `_xsrf` cookie
 * (Jupyter checks it on a browser's POST, PUT and DELETE); a refusal rejects with the
 * server's own sentence: `Forbidden` (not yours, not a member), `RequestFailed` (its
 * `code` says which), `AuthenticationError` (not logged in).
 */
export class RoomsAPI {
  /** @param {Server} server */
  constructor(server) {
    this.server = server;
  }

  /** The rooms we may enter that have members now, each with its `access` kind. */
  async listRooms() {
    const answer = await this._call("GET", "rooms");
    return Array.isArray(answer?.rooms) ? answer.rooms : [];
  }

  /**
   * Make `room` private (ours; `members` invited), a Hub group's, or public; the record.
   * @param {string} room
   * @param {{ access?: "public" | "group" | "private", members?: string[], group?: string }} [options]
   */
  async createRoom(room, { access = AccessKind.PRIVATE, members = [], group } = {}) {
    checkName(room, "room");
    if (!ACCESS_KINDS.includes(access)) throw new IAvicenneError(`access is one of ${ACCESS_KINDS.join(", ")}, not ${JSON.stringify(access)}`);
    if (access === AccessKind.GROUP && !group) throw new IAvicenneError("a group room needs group: the Hub group whose members may enter");
    if (!Array.isArray(members)) throw new IAvicenneError("members is a list of usernames");
    /** @type {Record<string, any>} */
    const body = { room, access, members };
    if (group !== undefined) body.group = group;
    return this._call("POST", "rooms", body);
  }

  /**
   * Let `username` (an identity's name) enter our private `room`; the record.
   * @param {string} room
   * @param {string} username
   */
  invite(room, username) {
    return this._call("PUT", memberPath(room, username));
  }

  /**
   * Take `username` off `room`'s members (evicted at once); the record.
   * @param {string} room
   * @param {string} username
   */
  removeMember(room, username) {
    return this._call("DELETE", memberPath(room, username));
  }

  /**
   * End our `room`: its record goes, everyone in it is evicted.
   * @param {string} room
   */
  async deleteRoom(room) {
    checkName(room, "room");
    await this._call("DELETE", `rooms/${encodeURIComponent(room)}`);
  }

  /**
   * @param {string} method
   * @param {string} path under `iavicenne/api/`
   * @param {unknown} [body]
   */
  async _call(method, path, body) {
    const server = /** @type {any} */ (this.server);
    if (!server._fetch) throw new IAvicenneError("no fetch() here: pass one as the fetch option");
    const headers = server.headers(); // the token, and X-XSRFToken from the _xsrf cookie
    /** @type {RequestInit} */
    const init = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const url = new URL(`${REST_PATH}${path}`, server.url).href;
    const response = await server._fetch(url, init);
    /** @type {any} */
    let answer = null;
    try {
      answer = response.status === 204 ? null : await response.json();
    } catch {
      answer = null; // no JSON body
    }
    if (response.ok) return answer;
    const said = answer && typeof answer.message === "string" ? answer.message.trim() : "";
    // Jupyter's own refusal of the credentials comes with no sentence of ours (its message
    // is the bare status): that is no login or a wrong token, not a room's refusal
    const jupytersOwn = (response.status === 401 || response.status === 403) && (!said || said === String(response.status) || said === answer?.reason);
    if (answer && typeof answer.error === "string" && !jupytersOwn) {
      throw errorFrom({ ...answer, code: answer.error, message: String(answer.message ?? `HTTP ${response.status}`), status: response.status });
    }
    if (response.status === 401 || response.status === 403) {
      throw new AuthenticationError(`${server.url} refused the request (HTTP ${response.status}): log in to Jupyter in this browser, or pass the server's token`);
    }
    throw new RequestFailed({ code: `http-${response.status}`, message: `HTTP ${response.status}${said ? `: ${said}` : ""}`, status: response.status });
  }
}

/**
 * @param {string} room
 * @param {string} username
 */
function memberPath(room, username) {
  checkName(room, "room");
  if (typeof username !== "string" || !username) throw new IAvicenneError("username is the member's identity name, a non-empty string");
  return `rooms/${encodeURIComponent(room)}/members/${encodeURIComponent(username)}`;
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
    raw: frame,
  };
}

/**
 * What every join asks for (docs/protocol.md, "Large rooms"): a first page of members, the
 * rest page by page, and the others' presence changes one frame per tick.
 */
const LARGE_ROOM_JOIN = Object.freeze({ members_limit: 100, presence: PresenceMode.BATCHED });

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
   * Send to every connection of member `to` only; rejects with `UnknownPeer` if it is not here.
   * @param {string} to
   * @param {string | Record<string, any>} content
   * @returns {Promise<Record<string, any>>}
   */
  direct(to, content) {
    return this._reliable(() => ({ type: DIRECT_MESSAGE, room: this.name, to: checkName(to, "to"), payload: payloadOf(content) }));
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
      } else if (JSON.stringify(known.state ?? {}) !== JSON.stringify(state) || JSON.stringify(known.identity) !== JSON.stringify(entry.identity)) {
        Object.assign(known, entry);
        this._emit("presence", { room: this.name, kind: "state", userId, state, members: [...this.members.values()] });
      }
    }
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
    /** @type {string | null} our user_id (the name of our verified identity if none was chosen) */
    this.userId = options.userId ?? null;
    /** @type {Record<string, any>} ours, as the server verified it (the connect reply, or our entry in the join reply) */
    this.identity = {};
    /** @type {Map<string, Room>} */
    this.rooms = new Map();
    /** The rooms' REST API on the same server. */
    this.api = new RoomsAPI(this.server);
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
   * `since`: the room's messages after that seq are replayed on join (0: the history the
   * server still keeps, e.g. a chat's recent messages), as `message` events.
   * @param {string} name
   * @param {{ state?: Record<string, any>, since?: number }} [options]
   * @returns {Promise<Room>}
   */
  async join(name, { state, since } = {}) {
    checkName(name, "room");
    const existing = this.rooms.get(name);
    if (existing) {
      await existing._joined;
      return existing;
    }
    const room = new Room(this, name, state);
    if (Number.isInteger(since) && /** @type {number} */ (since) >= 0) room.history.seq = /** @type {number} */ (since);
    this.rooms.set(name, room);
    try {
      while (!room._settled) {
        // while disconnected, the restore of the next socket joins it (or we do, if that
        // restore had started before the room was added)
        await this._waitReady();
        // answered: in a large room the other pages follow, then `_joined` settles
        if (!room._settled && (await this._joinQuietly(this._ws, room))) break;
      }
      await room._joined;
    } catch (error) {
      if (this.rooms.get(name) === room) this.rooms.delete(name);
      throw error;
    }
    return room;
  }

  /** The rooms we may enter that have members now, with their access kind (`RoomsAPI`). */
  listRooms() {
    return this.api.listRooms();
  }

  /**
   * Make `room` private (ours, `members` invited), a group's, or public (`RoomsAPI`).
   * @param {string} room
   * @param {{ access?: "public" | "group" | "private", members?: string[], group?: string }} [options]
   */
  createRoom(room, options) {
    return this.api.createRoom(room, options);
  }

  /**
   * @param {string} room
   * @param {string} username
   */
  invite(room, username) {
    return this.api.invite(room, username);
  }

  /**
   * @param {string} room
   * @param {string} username
   */
  removeMember(room, username) {
    return this.api.removeMember(room, username);
  }

  /** @param {string} room */
  deleteRoom(room) {
    return this.api.deleteRoom(room);
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
        await this._request(this._ws, { type: LEAVE_ROOM, room: name }, ROOM_LEFT);
      } catch {
        // disconnected or not in the room: either way we are out
      }
    }
    room.events.clear();
  }

  /** @param {any} ws */
  async _restore(ws) {
    if (this.userId !== null) {
      const reply = await this._request(ws, { type: CONNECT, payload: { user_id: this.userId } }, CONNECT);
      this.identity = reply.identity ?? {};
    }
    await Promise.all([...this.rooms.values()].map((room) => this._joinQuietly(ws, room)));
  }

  /**
   * Join on `ws`; a refusal fails that room only, a disconnect is left to the reconnect.
   * True once the server answered (with the first page of members, in a large room).
   * @param {any} ws
   * @param {Room} room
   * @returns {Promise<boolean>}
   */
  async _joinQuietly(ws, room) {
    /** @type {Record<string, any>} */
    const payload = { ...LARGE_ROOM_JOIN, ...room.history.resume() };
    if (Object.keys(room.state).length) payload.state = room.state;
    let reply;
    try {
      reply = await this._request(ws, { type: JOIN_ROOM, room: room.name, payload }, ROOM_JOINED);
    } catch (error) {
      if (error instanceof Disconnected || !(error instanceof RequestFailed)) {
        if (error instanceof Disconnected) return false;
        throw error;
      }
      if (this.rooms.get(room.name) === room) this.rooms.delete(room.name);
      room.left = true;
      this._outbox.dropRoom(room.name, error);
      if (!room._settled) room._rejectJoined(error);
      else room._emit("error", error); // refused on a rejoin: the room is gone from this client
      return true;
    }
    if (this.userId === null && typeof reply.user_id === "string") this.userId = reply.user_id;
    if (!Object.keys(this.identity).length && Array.isArray(reply.members)) {
      // joined without `connect`: our entry in the snapshot says who we are
      const mine = reply.members.find((/** @type {any} */ m) => m?.user_id === this.userId);
      if (mine && typeof mine.identity === "object" && mine.identity !== null) this.identity = mine.identity;
    }
    return true;
  }

  /** @param {Record<string, any>} frame */
  _handle(frame) {
    const room = this.rooms.get(typeof frame.room === "string" ? frame.room : "");
    if (!room) return;
    switch (frame.type) {
      case MESSAGE:
        room._onMessage(frame);
        break;
      case ROOM_JOINED:
        room._onJoined(frame);
        break;
      case USER_JOINED:
      case USER_LEFT:
      case PRESENCE:
        room._onPresence(frame);
        break;
      case PRESENCE_BATCH:
        room._onPresenceBatch(frame);
        break;
      case MEMBERS:
        room._onMembers(frame);
        break;
      case ROOM_LEFT: {
        // the server took us out (the owner removed us, or deleted the room); our own
        // leave() forgets the room before its room-left arrives, so that one is not here
        this.rooms.delete(room.name);
        room.left = true;
        const reason = typeof frame.reason === "string" ? frame.reason : LeftReason.REMOVED;
        this._outbox.dropRoom(room.name, new IAvicenneError(`taken out of room ${JSON.stringify(room.name)} (${reason}) before this was acknowledged`));
        room._emit("removed", { room: room.name, reason });
        break;
      }
      case SHARED: // the room's shared document: shared.js's
        room._emit("shared", frame);
        break;
      case DIRECT_MESSAGE:
        // no seq: a resend whose ack was lost is recognised by its sender and ref
        if (typeof frame.ref === "string" && !this._directSeen.add(`${frame.user_id}\u0000${frame.ref}`)) return;
        if (isControl(frame.message)) room._emit("control", messageOf(room.name, frame, true));
        else room._emit("message", messageOf(room.name, frame, true));
        break;
      default:
        break;
    }
  }

  /** @param {any} ws */
  _beforeClose(ws) {
    this._write(ws, JSON.stringify({ type: DISCONNECT }));
  }
}
