/**
 * The rooms' REST API (`RoomsAPI`, as the Python client's): list the rooms we may enter,
 * make private and group rooms, change who may enter them.
 */

import { AuthenticationError, checkName, errorFrom, IAvicenneError, RequestFailed } from "./errors.js";
import { AccessKind, REST_PATH } from "./protocol.js";

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
    let answer;
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
