/**
 * Finding the server and speaking to it over HTTP: a Jupyter server's base URL (from
 * what Jupyter prints, or the current page), its token or login cookie, the WebSocket
 * addresses, and the REST calls with the `X-XSRFToken` header Jupyter requires of a
 * browser's requests.
 *
 * Under JupyterHub the rooms are not in the user's own server but in the room service (a
 * Hub-managed service, at `/services/<name>/`): `discoverRooms` asks the page's server
 * where they are (`iavicenne/api/config`) and answers the `Server` to use. The browser
 * reaches the service through the Hub's proxy with its Hub login (the service's page logs
 * it in there once; the demo page of a user's server redirects to it).
 */

import { AuthenticationError, checkName, IAvicenneError, RequestFailed } from "./errors.js";
import { REST_PATH } from "./protocol.js";

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

/**
 * The server that holds the rooms, as the page's server says in `iavicenne/api/config`:
 * the page's server itself (a plain Jupyter server, or the room service's own page), or,
 * in a user's server under JupyterHub, the room service, reached through the Hub's proxy
 * with the browser's Hub login (no token: a user server's token is not the service's).
 * A server without that endpoint (404) holds its rooms itself.
 * @param {ConstructorParameters<typeof Server>[0]} [options] as for `new Server`
 * @returns {Promise<Server>}
 */
export async function discoverRooms(options = {}) {
  const own = new Server(options);
  /** @type {any} */
  let config;
  try {
    config = await own.request(`${REST_PATH}config`);
  } catch (error) {
    if (error instanceof RequestFailed && error.code === "http-404") return own;
    throw error;
  }
  const page = typeof config?.page_url === "string" ? config.page_url : "";
  const tail = "iavicenne/";
  if (!page.endsWith(tail)) {
    throw new IAvicenneError(`${own.url}${REST_PATH}config named no page_url of the rooms (got ${JSON.stringify(page)})`);
  }
  const base = new URL(page.slice(0, page.length - tail.length), own.url).href;
  if (base === own.url) return own;
  return new Server({ baseUrl: base, location: base, fetch: options.fetch, cookies: options.cookies, document: options.document });
}
