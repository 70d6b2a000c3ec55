/**
 * Rooms: `RoomClient`, a connection to the room endpoint, which joins rooms (room.js's
 * `Room`), keeps them across reconnects and hands each the frames of its room, as the
 * Python client's `RoomClient` does; its `api` is the rooms' REST API (rooms-api.js).
 */

import { Endpoint } from "./connection.js";
import { SeenSet } from "./delivery.js";
import { checkName, Disconnected, IAvicenneError, RequestFailed } from "./errors.js";
import {
  CONNECT,
  DIRECT_MESSAGE,
  DIRECT_SINCE,
  DISCONNECT,
  FORGET_ROOM,
  JOIN_ROOM,
  LEAVE_ROOM,
  LeftReason,
  LIST_MY_ROOMS,
  MEMBERS,
  MESSAGE,
  MESSAGE_DELETED,
  MESSAGE_EDITED,
  MODERATED,
  MY_ROOMS,
  PRESENCE,
  PRESENCE_BATCH,
  PresenceMode,
  ROOM_FORGOTTEN,
  ROOM_JOINED,
  ROOM_LEFT,
  ROOMS_PATH,
  SHARED,
  UNREAD,
  USER_JOINED,
  USER_LEFT,
} from "./protocol.js";
import { changeOf, Room } from "./room.js";
import { RoomsAPI } from "./rooms-api.js";

/** @typedef {import("./connection.js").EndpointOptions} EndpointOptions */

/**
 * What every join asks for (docs/protocol.md, "Large rooms"): a first page of members, the
 * rest page by page, and the others' presence changes one frame per tick.
 */
const LARGE_ROOM_JOIN = Object.freeze({ members_limit: 100, presence: PresenceMode.BATCHED });

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
   * `directHistory`: the kept direct messages of our conversations there too, as `message`
   * events with `direct: true` (docs/protocol.md, "Continuity").
   * @param {string} name
   * @param {{ state?: Record<string, any>, since?: number, directHistory?: boolean }} [options]
   * @returns {Promise<Room>}
   */
  async join(name, { state, since, directHistory } = {}) {
    checkName(name, "room");
    const existing = this.rooms.get(name);
    if (existing) {
      await existing._joined;
      return existing;
    }
    const room = new Room(this, name, state);
    if (directHistory) room.directSeq = 0;
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
   * The rooms our identity is in by its account (any of its windows, tabs or kernels
   * joined them, on any device), newest first: what a new window rejoins.
   * @returns {Promise<string[]>}
   */
  async myRooms() {
    const reply = await this._ask({ type: LIST_MY_ROOMS }, MY_ROOMS);
    return Array.isArray(reply.rooms) ? reply.rooms.filter((/** @type {unknown} */ room) => typeof room === "string") : [];
  }

  /**
   * Leave `name` for good: no window of ours rejoins it. Resolves true if it was remembered.
   * @param {string} name
   * @returns {Promise<boolean>}
   */
  async forget(name) {
    checkName(name, "room");
    await this.leave(name);
    const reply = await this._ask({ type: FORGET_ROOM, room: name }, ROOM_FORGOTTEN);
    return reply.forgotten === true;
  }

  /**
   * `frame`'s answer on the socket connected now (waiting for one, again after a disconnect).
   * @param {Record<string, any>} frame
   * @param {string} expect
   * @returns {Promise<Record<string, any>>}
   */
  async _ask(frame, expect) {
    for (;;) {
      await this._waitReady();
      try {
        return await this._request(this._ws, { ...frame }, expect);
      } catch (error) {
        if (!(error instanceof Disconnected)) throw error;
      }
    }
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
    if (room.directSeq !== null) payload[DIRECT_SINCE] = room.directSeq;
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
      case MODERATED:
        room._onModerated(frame);
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
      case MESSAGE_EDITED:
      case MESSAGE_DELETED:
        room._emit("change", changeOf(room.name, frame));
        break;
      case UNREAD: // our read position, the same on each of our connections
        room._emit("unread", frame);
        break;
      case DIRECT_MESSAGE:
        // no seq: a resend whose ack was lost is recognised by its sender and ref
        if (typeof frame.ref === "string" && !this._directSeen.add(`${frame.user_id}\u0000${frame.ref}`)) return;
        room._onDirectMessage(frame);
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
