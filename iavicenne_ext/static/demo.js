/**
 * The demo page: join a room with a name, see who is there (kernels included, with their
 * presence state), chat through the server, and open a direct WebRTC data channel to a
 * member. Everything here goes through the public API of `iavicenne.js`.
 *
 * Rooms with members: the page lists the rooms you may enter with their access kind,
 * makes a new private room ("new private room"), and shows the owner of a private room
 * its members, with Invite and Remove. Names come from other people, so every one of them
 * reaches the page as text (`textContent`, `Option`), never as markup. Beside a name that
 * is not its holder's username, the verified username shows (`@bob`; before the name in the
 * log, so a message never reads as another person's), and a data channel is taken only from
 * the identity that holds the member's name (`presenceCheck`). Every name shown passes
 * `safeName`: bidi and invisible characters are written out (`report[U+202E]fdp.py`).
 * An AI agent (identity.kind "agent", docs/agents.md) gets an "agent" badge beside its name.
 * Messages are text: nothing in one is fetched (no image, no link followed) when shown.
 *
 * `?room=...&name=...` in the address fills the form and joins at once.
 */

import { PeerLinkClosed, PeerNetwork, presenceCheck, RoomClient, RoomsAPI, Server, SignalingClient } from "./iavicenne.js";
import { MemberKind } from "./protocol.js";
import { share } from "./shared.js";

/** Levels of the shared document the page shows (max_shared_depth is 64 by default). */
const SHOWN_DEPTH = 64;

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

const ui = {
  connection: $("connection"),
  joinForm: /** @type {HTMLFormElement} */ ($("join-form")),
  name: /** @type {HTMLInputElement} */ ($("name")),
  room: /** @type {HTMLInputElement} */ ($("room")),
  private: /** @type {HTMLInputElement} */ ($("private")),
  rooms: $("rooms"),
  myRooms: $("my-rooms"),
  roomsRefresh: $("rooms-refresh"),
  access: $("access"),
  accessMembers: $("access-members"),
  inviteForm: /** @type {HTMLFormElement} */ ($("invite-form")),
  invitee: /** @type {HTMLInputElement} */ ($("invitee")),
  joinButton: /** @type {HTMLButtonElement} */ ($("join")),
  joinError: $("join-error"),
  roomView: $("room-view"),
  roomName: $("room-name"),
  members: $("members"),
  log: $("log"),
  sendForm: /** @type {HTMLFormElement} */ ($("send-form")),
  sendTo: /** @type {HTMLSelectElement} */ ($("send-to")),
  message: /** @type {HTMLInputElement} */ ($("message")),
  leave: $("leave"),
  sharedState: $("shared-state"),
};

/** What the page is connected to; also on `window.iavicenneDemo` for the console (and tests). */
const demo = {
  /** @type {RoomClient | null} */ client: null,
  /** @type {import("./iavicenne.js").Room | null} */ room: null,
  /** @type {SignalingClient | null} */ signaling: null,
  /** @type {PeerNetwork | null} */ peers: null,
  /** @type {Record<string, any> | null} the joined room's entry in the listing (access, owner, members) */ access: null,
  /** @type {import("./shared.js").SharedState | null} */ shared: null,
  /** joins started (the newest one stands) */ joins: 0,
  /** invitations and removals made here (a listing read before one is stale) */ accessChanges: 0,
};
/** The REST API of the page's server, before and after joining. */
const api = new RoomsAPI(new Server());
/** @type {any} */ (window).iavicenneDemo = demo;

// -- names ------------------------------------------------------------------------------

/**
 * What changes how a name reads without being seen: C0 and C1 controls, bidi marks,
 * embeddings, overrides and isolates, zero-width and other invisible format characters,
 * tags (as the JupyterLab panel's names.ts and the notebook panel's `safe_name`).
 */
const HIDDEN =
  // eslint-disable-next-line no-control-regex, no-misleading-character-class -- what it finds are those characters
  /[\u0000-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufeff\uffa0\ufff0-\ufffb]|[\u{e0000}-\u{e0fff}]/gu;

/**
 * A name (of a person, a room, a file) as it may be shown: every hidden character written
 * out, `report\u202Efdp.py` as `report[U+202E]fdp.py` (not `reportyp.pdf`).
 * @param {unknown} value
 */
function safeName(value) {
  const text = typeof value === "string" ? value : value === null || value === undefined ? "" : String(value);
  return text.replace(HIDDEN, (char) => `[U+${(char.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0")}]`);
}

// -- the log --------------------------------------------------------------------------

/** @param {string} [timestamp] */
function clock(timestamp) {
  const date = timestamp ? new Date(timestamp) : new Date();
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** The log's kept messages by seq (this room's), so that an edit or a deletion finds its line. */
const logged = new Map();

/**
 * A message's text as the log shows it: an edited one marked, a deleted one without text.
 * @param {HTMLElement} body
 * @param {string} text
 * @param {{ edited?: boolean, deleted?: boolean }} state
 */
function showText(body, text, { edited, deleted }) {
  body.textContent = deleted ? "(deleted)" : edited ? `${text} (edited)` : text;
  body.classList.toggle("deleted", Boolean(deleted));
}

/**
 * @param {string} who
 * @param {string} text
 * @param {{ via?: string, timestamp?: string, identity?: Record<string, any>, seq?: number | null,
 *   reply?: Record<string, any> | null, edited?: boolean, deleted?: boolean }} [options]
 */
function logMessage(who, text, { via, timestamp, identity, seq, reply, edited, deleted } = {}) {
  const item = document.createElement("li");
  item.className = "message";
  const when = document.createElement("span");
  when.className = "when";
  when.textContent = clock(timestamp);
  const name = document.createElement("span");
  name.className = "who";
  name.textContent = `${safeName(who)}: `;
  const body = document.createElement("span");
  body.className = "text";
  showText(body, text, { edited, deleted });
  // the sender's verified username first, when their name is not it: "@bob alice: …"
  const verified = verifiedTag(who, identity).map((tag) => Object.assign(tag, { textContent: `${tag.textContent?.trim()} ` }));
  item.append(when, ...verified, name);
  if (reply) {
    // the replied-to author as the server verified it, and its quote: text, never markup
    const quote = document.createElement("span");
    quote.className = "reply";
    const author = safeName(reply.identity?.username ?? reply.user_id ?? "");
    quote.textContent = reply.deleted || !reply.quote ? `(re @${author}, deleted) ` : `(re @${author}: ${reply.quote}) `;
    if (Number.isInteger(reply.seq)) {
      quote.dataset.replyTo = String(reply.seq);
      quote.dataset.author = author;
    }
    item.append(quote);
  }
  item.append(body);
  if (typeof seq === "number") logged.set(seq, { body, text });
  if (via) {
    const tag = document.createElement("span");
    tag.className = "via";
    tag.textContent = via;
    item.append(tag);
  }
  append(item);
}

/**
 * @param {string} text
 * @param {boolean} [bad]
 */
function notice(text, bad = false) {
  const item = document.createElement("li");
  item.className = bad ? "notice bad" : "notice";
  item.textContent = `${clock()} ${safeName(text)}`;
  append(item);
}

/** Lines the log keeps (the oldest go): a flood of messages costs the page a bounded DOM. */
const LOG_LINES = 300;
/** @type {HTMLElement[]} lines waiting for the next frame */
const pendingLines = [];

/**
 * Add a line to the log with the others of this animation frame: one layout and one
 * scroll per frame, not per message, so a flood never holds the page's main thread.
 * @param {HTMLElement} item
 */
function append(item) {
  pendingLines.push(item);
  if (pendingLines.length === 1) requestAnimationFrame(flushLines);
}

function flushLines() {
  const lines = pendingLines.splice(0).slice(-LOG_LINES);
  const atBottom = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 40;
  ui.log.append(...lines);
  for (let extra = ui.log.childElementCount - LOG_LINES; extra > 0; extra--) ui.log.firstElementChild?.remove();
  if (atBottom) ui.log.scrollTop = ui.log.scrollHeight;
}

/** @param {unknown} content */
function display(content) {
  if (typeof content === "string") return content;
  if (content instanceof Uint8Array || content instanceof ArrayBuffer) return `(${content.byteLength} bytes)`;
  return JSON.stringify(content);
}

// -- connection state -------------------------------------------------------------------

/** @param {string} state */
function showConnection(state) {
  ui.connection.dataset.state = state;
  ui.connection.textContent = state;
}

// -- members ----------------------------------------------------------------------------

/** @param {Record<string, any>} state */
function describe(state) {
  const parts = [];
  for (const [key, value] of Object.entries(state ?? {})) {
    parts.push(`${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`);
  }
  return parts.join(" · ");
}

/**
 * A span with the verified username of `identity` when it is not `name` (text only).
 * @param {string} name
 * @param {Record<string, any> | undefined} identity
 */
function verifiedTag(name, identity) {
  const username = typeof identity?.username === "string" ? identity.username : "";
  /** @type {HTMLElement[]} */
  const tags = [];
  if (username && username !== name) {
    const tag = document.createElement("span");
    tag.className = "member-identity";
    tag.title = "verified identity";
    tag.textContent = ` @${safeName(username)}`;
    tags.push(tag);
  }
  // an AI agent (the server says so, never its client): badged wherever its name shows
  if (identity?.kind === MemberKind.AGENT) {
    const badge = document.createElement("span");
    badge.className = "agent-badge";
    badge.title = `an AI agent, acting for @${safeName(username)}`;
    badge.textContent = " agent";
    tags.push(badge);
  }
  return tags;
}

// -- rooms and who may enter them ---------------------------------------------------------

async function renderRooms() {
  /** @type {any[]} */
  let rooms;
  const changes = demo.accessChanges; // a listing read before an invitation must not undo it
  try {
    rooms = await api.listRooms();
  } catch (error) {
    ui.rooms.replaceChildren(Object.assign(document.createElement("li"), { className: "error", textContent: /** @type {Error} */ (error).message }));
    return;
  }
  ui.rooms.replaceChildren(
    ...rooms.map((/** @type {any} */ entry) => {
      const item = document.createElement("li");
      item.dataset.room = String(entry.room);
      item.dataset.access = String(entry.access ?? "public");
      const pick = document.createElement("button");
      pick.type = "button";
      pick.className = "quiet room-pick";
      pick.textContent = safeName(entry.room);
      pick.addEventListener("click", () => {
        ui.room.value = String(entry.room);
        ui.private.checked = false;
      });
      const detail = document.createElement("span");
      detail.className = "room-access";
      const owner = entry.owner ? `, owner ${safeName(entry.owner)}` : "";
      const group = entry.group ? `, group ${safeName(entry.group)}` : "";
      detail.textContent = ` ${entry.access ?? "public"}${owner}${group} · ${entry.members} member${entry.members === 1 ? "" : "s"}`;
      item.append(pick, detail);
      return item;
    }),
  );
  if (!rooms.length) ui.rooms.replaceChildren(Object.assign(document.createElement("li"), { className: "hint", textContent: "none with members now" }));
  const joined = demo.room && rooms.find((/** @type {any} */ r) => r.room === demo.room?.name);
  if (joined && changes === demo.accessChanges) {
    demo.access = joined;
    renderAccess();
  }
}

/** The joined room's access kind; for its owner, its members with Remove, and Invite. */
function renderAccess() {
  const access = demo.access;
  const kind = access?.access ?? "public";
  const mine = demo.client?.identity?.username;
  const owner = typeof access?.owner === "string" ? access.owner : "";
  ui.access.dataset.access = kind;
  ui.access.textContent =
    kind === "private"
      ? `private room of ${safeName(owner) || "?"}: only its members see it`
      : kind === "group"
        ? `group room: the members of ${safeName(access?.group ?? "?")}`
        : "public room: anyone on this server may enter";
  const owning = kind === "private" && Boolean(mine) && owner === mine;
  ui.inviteForm.hidden = !owning;
  // a record (create, invite) says `members`; the listing says `invited` (`members` is a count there)
  const invited = Array.isArray(access?.members) ? access.members : Array.isArray(access?.invited) ? access.invited : [];
  const members = owning ? invited : [];
  ui.accessMembers.replaceChildren(
    ...members.map((/** @type {unknown} */ username) => {
      const item = document.createElement("li");
      item.dataset.username = String(username);
      const name = document.createElement("span");
      name.textContent = safeName(username);
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "quiet remove-member";
      remove.textContent = "Remove";
      remove.addEventListener("click", () => changeMembers("remove", String(username)));
      item.append(name, " ", remove);
      return item;
    }),
  );
}

/**
 * @param {"invite" | "remove"} what
 * @param {string} username
 */
async function changeMembers(what, username) {
  const room = demo.room;
  if (!room || !username) return;
  try {
    demo.access = what === "invite" ? await api.invite(room.name, username) : await api.removeMember(room.name, username);
    demo.accessChanges += 1;
    notice(what === "invite" ? `${username} may enter ${room.name} now` : `${username} removed from ${room.name}`);
    renderAccess();
  } catch (error) {
    notice(`${what === "invite" ? "could not invite" : "could not remove"} ${username}: ${/** @type {Error} */ (error).message}`, true);
  }
}

function renderMembers() {
  const room = demo.room;
  if (!room) return;
  const me = demo.client?.userId;
  const myUsername = demo.client?.identity?.username;
  const members = [...room.members.values()].sort((a, b) => a.user_id.localeCompare(b.user_id));
  ui.members.replaceChildren(
    ...members.map((member) => {
      const item = document.createElement("li");
      item.dataset.member = member.user_id;
      const name = document.createElement("span");
      name.className = "member-name";
      name.textContent = safeName(member.user_id);
      name.append(...verifiedTag(member.user_id, member.identity));
      if (member.user_id === me || (myUsername && member.identity?.username === myUsername)) {
        const you = document.createElement("span");
        you.className = "you";
        you.textContent = " (you)";
        name.append(you);
      }
      const peer = document.createElement("span");
      peer.className = "member-peer";
      if (member.user_id !== me) peer.append(...peerControls(member.user_id));
      const detail = document.createElement("span");
      detail.className = "member-detail";
      const who = safeName(member.identity?.display_name || "");
      const connections = member.connections > 1 ? `${member.connections} connections` : "";
      detail.textContent = [who && who !== safeName(member.user_id) && who !== safeName(member.identity?.username) ? who : "", safeName(describe(member.state)), connections]
        .filter(Boolean)
        .join(" · ");
      item.append(name, peer, detail);
      return item;
    }),
  );
  // the "send to" choices: the room, and every open data channel
  const chosen = ui.sendTo.value;
  const options = [new Option("Everyone (room)", "")];
  for (const member of members) {
    if (member.user_id === me) continue;
    const link = demo.peers?.links.get(member.user_id);
    const shown = `${safeName(member.user_id)}${verifiedTag(member.user_id, member.identity).map((tag) => tag.textContent).join("")}`;
    if (link?.state === "open") options.push(new Option(`${shown} (data channel)`, `peer:${member.user_id}`));
    options.push(new Option(`${shown} (direct, via server)`, `direct:${member.user_id}`));
  }
  ui.sendTo.replaceChildren(...options);
  if (Array.from(ui.sendTo.options).some((o) => o.value === chosen)) ui.sendTo.value = chosen;
}

/** The last state of the link with each member, and why it closed: shown until a new one. */
/** @type {Map<string, { state: string, error: Error | null }>} */
const linkStates = new Map();

/** @param {string} userId */
function peerControls(userId) {
  const link = demo.peers?.links.get(userId);
  const last = linkStates.get(userId);
  const failed = last?.state === "closed" && last.error && !(last.error instanceof PeerLinkClosed);
  const state = link?.state ?? (failed ? "failed" : last?.state ?? "none");
  const badge = document.createElement("span");
  badge.className = "badge link-state";
  badge.dataset.state = state;
  badge.textContent = state === "none" ? "no link" : state;
  if (last?.error) badge.title = last.error.message;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "connect-peer";
  const live = state === "open" || state === "connecting";
  button.textContent = live ? "Disconnect" : "Connect";
  button.disabled = !demo.peers || !demo.signaling?.peers.has(userId);
  button.title = button.disabled ? "not taking peer connections (not in this room's signaling)" : "";
  button.addEventListener("click", () => (live ? link?.close() : connectPeer(userId)));
  return [badge, button];
}

// -- peers --------------------------------------------------------------------------------

/** @param {string} userId */
async function connectPeer(userId) {
  const peers = demo.peers;
  if (!peers) return;
  if (!demo.signaling?.peers.has(userId)) {
    notice(`${userId} takes no peer connections (it is not in this room's signaling); direct messages still work`, true);
    return;
  }
  notice(`opening a data channel with ${userId}…`);
  try {
    await peers.connect(userId);
  } catch (error) {
    notice(`no data channel with ${userId}: ${/** @type {Error} */ (error).message}`, true);
  }
}

/**
 * Follow a link from its creation (ours, or one a peer opens): its messages and states.
 * @param {{ peerId: string, state: string, error: Error | null, link: import("./iavicenne.js").PeerLink, replaced: boolean }} change
 */
function onLinkChange({ peerId, state, error, link, replaced }) {
  if (replaced) return; // glare: the other side's offer won, its link follows
  linkStates.set(peerId, { state, error });
  if (state === "connecting" && !watched.has(link)) {
    watched.add(link);
    link.on("message", (/** @type {unknown} */ data) => logMessage(peerId, display(data), { via: "data channel" }));
    // a transfer refused (too large, or more than it declared): the link stays open
    link.on("error", (/** @type {Error} */ error) => notice(error.message, true));
  }
  if (state === "open") notice(`data channel with ${peerId} open`);
  if (state === "closed" && watched.has(link)) notice(`data channel with ${peerId} closed: ${error?.message ?? ""}`, !(error instanceof PeerLinkClosed));
  renderMembers();
}

/** @type {WeakSet<object>} */
const watched = new WeakSet();

// -- joining ------------------------------------------------------------------------------

/**
 * @param {string} name
 * @param {string} roomName
 */
async function join(name, roomName) {
  // a newer join (the form used again before this one is done) takes over: this one stops
  const generation = ++demo.joins;
  const superseded = () => generation !== demo.joins;
  ui.joinError.textContent = "";
  ui.joinButton.disabled = true;
  showConnection("connecting");
  try {
    await leave();
    // no name: the server's, the name of the identity it verified (your login)
    const client = new RoomClient(name ? { userId: name } : {});
    demo.client = client;
    for (const state of ["connected", "disconnected", "reconnecting", "closed"]) {
      client.on(state, (/** @type {any} */ event) => {
        showConnection(client.state);
        if (state === "disconnected" && demo.room) notice("connection lost; reconnecting…", true);
        if (state === "connected" && event.reconnects > 0) notice("reconnected");
        if (state === "closed" && event?.name !== "ConnectionClosed") notice(`stopped: ${event.message}`, true);
      });
    }
    await client.open();
    if (superseded()) {
      client.close();
      return;
    }
    if (ui.private.checked) {
      demo.access = await client.createRoom(roomName, { access: "private" });
      notice(`made ${roomName} private: invite who may enter`);
    }
    // directHistory: our kept direct messages there come back too (after a reload, on another device)
    const room = await client.join(roomName, { state: { kind: "browser", page: "demo" }, directHistory: true });
    if (superseded()) {
      client.close();
      return;
    }
    demo.room = room;
    renderAccess();
    ui.roomName.textContent = safeName(roomName);
    ui.roomView.hidden = false;
    ui.log.replaceChildren();
    pendingLines.length = 0; // the last room's lines still waiting for a frame
    notice(`joined ${roomName} as ${client.userId}`);
    renderRooms();
    renderMyRooms();
    room.on("presence", (/** @type {any} */ event) => {
      if (event.kind === "joined" && event.userId !== client.userId) notice(`${event.userId} joined`);
      if (event.kind === "left") notice(`${event.userId} left`);
      renderMembers();
    });
    room.on("removed", (/** @type {any} */ event) => {
      notice(`you are no longer in ${event.room}: ${event.reason === "removed" ? "its owner removed you" : event.reason}`, true);
      renderRooms();
    });
    logged.clear();
    room.on("message", (/** @type {import("./iavicenne.js").Message} */ message) => {
      logMessage(message.userId, display(message.text ?? message.content), {
        via: message.direct ? "direct" : undefined,
        timestamp: message.timestamp,
        identity: message.identity,
        seq: message.direct ? null : message.seq,
        reply: message.reply,
        edited: message.edited,
        deleted: message.deleted,
      });
    });
    room.on("change", (/** @type {import("./iavicenne.js").MessageChange} */ change) => {
      const line = change.seq === null ? undefined : logged.get(change.seq);
      if (!line) return; // not shown here (before what this page replayed)
      const text = change.kind === "edited" ? display(change.text ?? change.content) : line.text;
      showText(line.body, text, { edited: change.kind === "edited", deleted: change.kind === "deleted" });
      if (change.kind !== "deleted") return;
      // the replies shown lose their quote of it, as the kept ones do
      for (const quote of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll(`#log .reply[data-reply-to="${change.seq}"]`))) {
        quote.textContent = `(re @${quote.dataset.author ?? ""}, deleted) `;
      }
    });
    room.on("gap", (/** @type {any} */ gap) => {
      notice(
        gap.epochChanged
          ? "the server restarted: messages sent before may be missing"
          : "some messages could not be recovered (older than the kept history)",
        true,
      );
    });
    room.on("error", (/** @type {Error} */ error) => notice(error.message, true));
    renderMembers();
    // the room's shared document, shown as text (what others wrote is never markup)
    const shared = share(room);
    demo.shared = shared;
    const renderShared = () => {
      // cut to SHOWN_DEPTH levels: a deeper document is shown with "…", never a RangeError
      ui.sharedState.textContent = JSON.stringify(shared.toJSON(SHOWN_DEPTH), null, 2);
    };
    shared.observe(renderShared);
    shared.synced.then(renderShared);
    await startPeers(client.userId ?? name, roomName);
    const url = new URL(location.href);
    url.searchParams.set("room", roomName);
    if (name) url.searchParams.set("name", name);
    else url.searchParams.delete("name");
    history.replaceState(null, "", url);
    localStorage.setItem("iavicenne-demo", JSON.stringify({ name, room: roomName }));
    ui.message.focus();
  } catch (error) {
    if (superseded()) return; // its client was closed by the newer join
    ui.joinError.textContent = /** @type {Error} */ (error).message;
    showConnection(demo.client?.state ?? "closed");
    await leave();
  } finally {
    ui.joinButton.disabled = false;
  }
}

/**
 * Join the room's signaling as `name`, so members can open data channels with us (and we with them).
 * @param {string} name
 * @param {string} roomName
 */
async function startPeers(name, roomName) {
  try {
    const signaling = new SignalingClient({ room: roomName, peerId: name });
    demo.signaling = signaling;
    await signaling.open();
    // `?loopback=1`: offer loopback candidates only (peers on this machine, as the tests are)
    // a data channel only with the identity that holds the member's name in the room
    const verifyIdentity = demo.room ? presenceCheck(demo.room) : undefined;
    demo.peers = new PeerNetwork(signaling, { loopback: params.get("loopback") === "1", verifyIdentity });
    demo.peers.on("change", onLinkChange);
    demo.peers.on("refused", (/** @type {Error} */ error) => notice(error.message, true));
    signaling.on("peer", () => renderMembers());
    signaling.on("closed", (/** @type {Error} */ error) => {
      if (error.name === "Superseded") notice("peer-to-peer moved to your newer tab or window with the same name", true);
      renderMembers();
    });
    renderMembers();
  } catch (error) {
    notice(`peer-to-peer unavailable: ${/** @type {Error} */ (error).message}`, true);
  }
}

async function leave() {
  const { client, peers, signaling, shared } = demo;
  demo.client = demo.room = demo.signaling = demo.peers = demo.access = demo.shared = null;
  shared?.detach();
  peers?.close();
  signaling?.close();
  client?.close();
  ui.roomView.hidden = true;
}

// -- sending ------------------------------------------------------------------------------

async function send() {
  const text = ui.message.value;
  const room = demo.room;
  if (!text || !room) return;
  const target = ui.sendTo.value;
  ui.message.value = "";
  try {
    if (target.startsWith("peer:")) {
      const peerId = target.slice(5);
      const link = demo.peers?.links.get(peerId);
      if (!link) throw new Error(`no data channel with ${peerId}`);
      await link.send(text);
      logMessage(demo.client?.userId ?? "me", text, { via: `data channel → ${peerId}` });
    } else if (target.startsWith("direct:")) {
      const to = target.slice(7);
      await room.direct(to, text);
      logMessage(demo.client?.userId ?? "me", text, { via: `direct → ${to}` });
    } else {
      await room.send(text); // our own message comes back from the room, in order
    }
  } catch (error) {
    notice(`not sent: ${/** @type {Error} */ (error).message}`, true);
  }
}

// -- wiring -------------------------------------------------------------------------------

ui.joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  join(ui.name.value.trim(), ui.room.value.trim());
});
ui.sendForm.addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});
ui.inviteForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const username = ui.invitee.value.trim();
  ui.invitee.value = "";
  changeMembers("invite", username);
});
ui.roomsRefresh.addEventListener("click", () => renderRooms());
ui.leave.addEventListener("click", async () => {
  // leaving here is for good: the server forgets the room for us (no window rejoins it)
  const { client, room } = demo;
  if (client && room) await client.forget(room.name).catch((/** @type {Error} */ error) => notice(error.message, true));
  localStorage.removeItem("iavicenne-demo");
  await leave();
  renderMyRooms();
  showConnection("idle");
  ui.connection.textContent = "not connected";
});

const params = new URLSearchParams(location.search);
/** @type {Record<string, any>} */
let saved;
try {
  saved = JSON.parse(localStorage.getItem("iavicenne-demo") ?? "{}");
} catch {
  saved = {};
}
ui.name.value = params.get("name") ?? /** @type {any} */ (saved).name ?? "";
ui.room.value = params.get("room") ?? /** @type {any} */ (saved).room ?? "";
if (params.get("room")) join(ui.name.value, ui.room.value);
else renderRooms();
renderMyRooms();

/**
 * The rooms the server remembers for us (joined in any tab, on any device, by a kernel too),
 * newest first, each rejoined with one click; the newest fills an empty Room field. (Not
 * joined unasked: the page is one room at a time, and the form is the person's.)
 */
async function renderMyRooms() {
  const probe = new RoomClient({});
  try {
    await probe.open();
    const rooms = await probe.myRooms();
    if (rooms.length && !ui.room.value) ui.room.value = rooms[0];
    ui.myRooms.replaceChildren(
      ...rooms.map((name) => {
        const item = document.createElement("li");
        item.dataset.room = name;
        const rejoin = document.createElement("button");
        rejoin.type = "button";
        rejoin.className = "quiet my-room";
        rejoin.textContent = safeName(name);
        rejoin.title = `rejoin ${name}`;
        rejoin.addEventListener("click", () => {
          ui.room.value = name;
          ui.private.checked = false;
          join(ui.name.value.trim(), name);
        });
        item.append(rejoin);
        return item;
      }),
    );
    if (!rooms.length) ui.myRooms.replaceChildren(Object.assign(document.createElement("li"), { className: "hint", textContent: "none yet" }));
  } catch {
    // not connected: the form is there
  } finally {
    probe.close();
  }
}
