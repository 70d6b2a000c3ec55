/**
 * One window's collaboration: the room connection, the rooms joined, their members,
 * chat and unread counts, and the presence this window reports. The side panel, the
 * status bar item and the commands all read and drive this one object, so it outlives
 * notebooks and kernels (it is the window's, not a cell's).
 *
 * The browser client is the server's own (`iavicenne_ext/static/iavicenne.js`, one source),
 * bundled at build time (webpack resolves `iavicenne-client` to it; its types are the
 * client's iavicenne.d.ts), and the prebuilt extension ships in the same package as the
 * server, so the two speak one protocol. It is not `import()`ed from the server at run
 * time: under JupyterHub (>= 4.1) a module fetched with the login cookie needs the XSRF
 * token in its address, and the modules the client imports would not carry it.
 *
 * The window speaks to its own server only (`baseUrl`), with the login the page already
 * has. Under JupyterHub that server relays the rooms' sockets and REST calls to the room
 * service as its user (iavicenne_ext/handlers/service_relay.py): the page needs no
 * credential of the service's, and no page of the service's to visit first.
 */

import * as Client from "iavicenne-client";
import { Signal } from "@lumino/signaling";

import {
  type ConnectionInfo,
  type Json,
  type LabPresence,
  UnreadTracker,
  mayReceive,
  mentions,
  messageText,
  parseOffer,
  peopleOnline,
  roomsToRejoin,
  samePresence,
} from "./model";
import { copyFieldsOf } from "./received";
import type { ControlEvent, Offer, Transfer } from "./transfer";

export type { ControlEvent, Offer, Transfer } from "./transfer";

export type ClientModule = typeof Client;

/** The browser client (bundled: see above). */
export async function loadClient(): Promise<ClientModule> {
  return Client;
}

/** A line of a room's chat. */
export interface ChatEntry {
  userId: string;
  /** The sender's verified username (what a mute is about: all their connections and names). */
  username: string;
  /** The sender's name to show (their chosen display name, else the verified one). */
  label: string;
  text: string;
  timestamp: string;
  direct: boolean;
  /** For a direct message: to whom (ours), or null. */
  to: string | null;
  mine: boolean;
  mentionsMe: boolean;
}

/** A room joined in this window. */
export class JoinedRoom {
  /** The newest messages, at most MAX_ENTRIES (and a quarter more before the oldest go at once). */
  readonly entries: ChatEntry[] = [];
  /** How many older entries were dropped: entry `i` is the room's message number `dropped + i`. */
  dropped = 0;
  /** The usernames the room's owner muted (as the listing, then `moderated` events, said). */
  readonly mutedByOwner = new Set<string>();
  readonly unread = new UnreadTracker();
  /** user id -> the connections that described themselves when asked. */
  readonly connections = new Map<string, ConnectionInfo[]>();
  /** A gap in the history shown: some older messages could not be recovered. */
  gap = false;

  constructor(readonly room: Client.Room) {}

  get name(): string {
    return this.room.name;
  }
}

export interface Settings {
  displayName: string;
  rooms: string[];
  notifications: boolean;
  status: string;
  /** Usernames whose messages and notifications this person does not want (their own mute). */
  muted: string[];
}

export interface Notice {
  room: string;
  entry: ChatEntry;
}

const MAX_ENTRIES = 1000;
/** Offers from one person waiting for our answer; more are dropped (not shown). */
const MAX_WAITING_OFFERS = 3;
/** Notifications of one sender in one room: this many at once, then one more every NOTICE_INTERVAL ms. */
const NOTICE_BURST = 3;
const NOTICE_INTERVAL = 10_000;

export class Collaboration {
  readonly changed = new Signal<this, void>(this);
  /** A message that mentions us, or a direct message to us (for notifications). */
  readonly noticed = new Signal<this, Notice>(this);
  /** A new chat line in a room (the panel decides whether it is seen); `position` is
   * the message's number in the room (`JoinedRoom.dropped` + its index). */
  readonly arrived = new Signal<this, { room: JoinedRoom; entry: ChatEntry; position: number }>(this);
  /** Keeps this person's mutes (the settings, in JupyterLab's settings registry). */
  saveMuted: (muted: string[]) => Promise<void> = async () => {};
  /** room NUL sender -> notices they may still raise, and when that was counted (a flood of
   * mentions is a few notifications, not one each). */
  private readonly notices = new Map<string, { left: number; at: number }>();
  readonly rooms = new Map<string, JoinedRoom>();
  listing: Client.RoomListing[] = [];
  client: Client.RoomClient | null = null;
  module: ClientModule | null = null;
  /** Why the connection could not be made, or "". */
  problem = "";
  readonly transfers = new Map<string, Transfer>();
  /** A file offered to us: the window asks where to save it. */
  readonly offered = new Signal<this, Offer>(this);
  /** Saves what arrived (the window's contents service) and answers where it went. */
  save: (path: string, data: Uint8Array, transfer: Transfer) => Promise<string> = async () => {
    throw new Error("nowhere to save files");
  };
  /** A control message no part of the Collaboration handles (plugins: copy requests). */
  readonly control = new Signal<this, ControlEvent>(this);
  /** Claims of offers before they are shown: one answering true takes the offer (a copy we asked for). */
  readonly claims: ((transfer: Transfer) => boolean)[] = [];
  /** room -> this window's peer network there (one peer per window: "<user>#<tag>") */
  private readonly networks = new Map<string, Client.PeerNetwork>();
  private readonly tag = Array.from({ length: 6 }, () => Math.floor(Math.random() * 16).toString(16)).join("");
  private readonly wired = new WeakSet<object>();
  private presence: LabPresence;
  private sentPresence = new Map<string, LabPresence>();

  constructor(
    readonly baseUrl: string,
    public settings: Settings,
    initial: LabPresence,
  ) {
    this.presence = initial;
  }

  /** The loaded client: the protocol's names (CONTROL_KEY, ControlKind, ConnectionKind) and
   * `userOfPeer` are its own, so the extension spells none of them. */
  private get protocol(): ClientModule {
    if (!this.module) throw new Error("iavicenne: the client module is not loaded");
    return this.module;
  }

  get state(): Client.ConnectionState | "loading" | "failed" {
    if (this.problem) return "failed";
    return this.client ? this.client.state : "loading";
  }

  get me(): string | null {
    return this.client?.userId ?? null;
  }

  /** People online in the rooms joined (ourselves not counted). */
  get online(): number {
    return peopleOnline(
      [...this.rooms.values()].map((joined) => joined.room.members.values()),
      this.me,
    );
  }

  /** Connect (once) and join the rooms of the settings. */
  async start(): Promise<void> {
    try {
      const module = await loadClient();
      this.module = module;
      // this window's own server: it holds the rooms, or relays them from the room service
      const server = new module.Server({ baseUrl: this.baseUrl });
      // where the rooms are: under JupyterHub a server that cannot find its room service
      // answers 503 with the setting to fix, which the panel then shows (a socket's refusal
      // says nothing a page can read)
      await server.request(`${module.REST_PATH}config`).catch((error: { code?: string }) => {
        if (error?.code !== "http-404") throw error; // 404: a server of before the config endpoint
      });
      const client = new module.RoomClient({ server });
      this.client = client;
      for (const kind of ["connected", "disconnected", "reconnecting", "closed"]) {
        client.on(kind, () => this.changed.emit());
      }
      await client.open();
    } catch (error) {
      this.problem = String((error as Error)?.message ?? error);
      this.changed.emit();
      return;
    }
    this.changed.emit();
    await this.refreshRooms();
    // the rooms the person is in (remembered by the server across reloads, tabs and
    // devices), and those of the settings
    const remembered = await this.client.myRooms().catch(() => [] as string[]);
    for (const name of roomsToRejoin(remembered, this.settings.rooms)) {
      await this.join(name).catch(() => {});
    }
  }

  async refreshRooms(): Promise<void> {
    if (!this.client) return;
    try {
      this.listing = await this.client.listRooms();
    } catch (error) {
      this.problem = this.problem || "";
    }
    this.changed.emit();
  }

  /** Join `name` with our presence and its recent history; the rooms listing follows. */
  async join(name: string): Promise<JoinedRoom> {
    const client = this.client;
    if (!client) throw new Error("not connected to the rooms yet");
    const existing = this.rooms.get(name);
    if (existing) return existing;
    // the kept history, and our kept direct messages there (both back after a reload)
    const room = await client.join(name, { state: this.presenceState(), since: 0, directHistory: true });
    const joined = new JoinedRoom(room);
    this.rooms.set(name, joined);
    this.sentPresence.set(name, this.presence);
    room.on("message", (message: Client.Message) => this.onMessage(joined, message));
    room.on("control", (message: Client.Message) => this.onControl(joined, message));
    room.on("presence", (event: Client.PresenceEvent) => {
      // the room keeps one state per person, the last any of their connections set: when
      // one of our kernels sets its own, this window says again where we are (a kernel
      // sets its state on join and when asked, so this does not go back and forth)
      if ((event.kind === "state" || event.kind === "joined") && event.userId === this.me && event.state?.kind !== "lab") {
        void room.setState(this.presenceState()).catch((error) => console.warn("iavicenne: presence not sent", error));
      }
      this.changed.emit();
    });
    room.on("moderated", (event: Client.Moderated) => {
      if (event.action === "mute") joined.mutedByOwner.add(event.username);
      else if (event.action === "unmute") joined.mutedByOwner.delete(event.username);
      this.changed.emit();
    });
    for (const name of this.listing.find((listed) => listed.room === joined.name)?.muted ?? []) joined.mutedByOwner.add(name);
    room.on("gap", () => {
      joined.gap = true;
      this.changed.emit();
    });
    // what came before we joined (the history replayed on join) came through `message` already
    this.changed.emit();
    void this.startPeers(joined);
    void this.refreshRooms();
    return joined;
  }

  async leave(name: string): Promise<void> {
    const joined = this.rooms.get(name);
    if (!joined) return;
    this.rooms.delete(name);
    this.sentPresence.delete(name);
    this.networks.get(name)?.close();
    this.networks.delete(name);
    // leaving in the panel is for good: no window of ours rejoins it
    await (this.client ? this.client.forget(name) : joined.room.leave()).catch(() => {});
    this.changed.emit();
    void this.refreshRooms();
  }

  /** Send `text` to the room, or to one member of it (a direct message). */
  async send(name: string, text: string, to: string | null = null): Promise<void> {
    const joined = this.rooms.get(name);
    if (!joined) throw new Error(`not in room ${name}`);
    if (to) {
      await joined.room.direct(to, { content: text });
      // a direct message comes back to its sender's other connections only: show ours here
      this.addEntry(joined, {
        userId: this.me ?? "",
        username: this.username,
        label: this.labelOf(joined, this.me ?? ""),
        text,
        timestamp: new Date().toISOString(),
        direct: true,
        to,
        mine: true,
        mentionsMe: false,
      });
    } else {
      await joined.room.send({ content: text });
    }
  }

  /** Our verified username. */
  get username(): string {
    const identity = this.client?.identity as { username?: unknown } | undefined;
    return typeof identity?.username === "string" ? identity.username : (this.me ?? "");
  }

  /** Whether this person muted `username` for themself. */
  isMuted(username: string): boolean {
    return this.settings.muted.includes(username);
  }

  /** Mute (or unmute) `username` for this person only: their messages and notifications are
   * not shown from now on; kept in the settings, so across reloads. */
  async setMuted(username: string, muted: boolean): Promise<void> {
    const others = this.settings.muted.filter((name) => name !== username);
    this.settings = { ...this.settings, muted: muted ? [...others, username] : others };
    if (muted) {
      // what they said goes too (once, on the click): the entries after it move up
      for (const joined of this.rooms.values()) {
        const kept = joined.entries.filter((entry) => entry.mine || entry.username !== username);
        if (kept.length === joined.entries.length) continue;
        joined.entries.splice(0, joined.entries.length, ...kept);
        joined.unread.clear();
      }
    }
    this.changed.emit();
    await this.saveMuted(this.settings.muted);
  }

  /** The owner of room `name` (from the listing), or null: a room made by joining it has none. */
  ownerOf(name: string): string | null {
    return this.listing.find((listed) => listed.room === name)?.owner ?? null;
  }

  /** As the room's owner: mute, unmute, remove or readmit `username` there (the server enforces it). */
  async moderate(name: string, username: string, action: "mute" | "unmute" | "remove" | "readmit"): Promise<void> {
    const joined = this.rooms.get(name);
    if (!joined) throw new Error(`not in room ${name}`);
    await joined.room.moderate(username, action);
  }

  /** What this window shows changed: report it to every room (only when it differs). */
  setPresence(presence: LabPresence): void {
    this.presence = presence;
    for (const [name, joined] of this.rooms) {
      if (samePresence(this.sentPresence.get(name) as unknown as Record<string, unknown>, presence as unknown as Record<string, unknown>)) continue;
      this.sentPresence.set(name, presence);
      void joined.room.setState(this.presenceState()).catch(() => {});
    }
  }

  get currentPresence(): LabPresence {
    return this.presence;
  }

  /** Ask a member's connections to describe themselves; their answers fill `connections`. */
  async describe(name: string, userId: string): Promise<void> {
    const joined = this.rooms.get(name);
    if (!joined) return;
    joined.connections.set(userId, []);
    const q = Math.random().toString(16).slice(2, 10);
    const { CONTROL_KEY, ControlKind } = this.protocol;
    await joined.room.direct(userId, { [CONTROL_KEY]: ControlKind.DESCRIBE, q }).catch(() => {});
  }

  labelOf(joined: JoinedRoom, userId: string): string {
    const member = joined.room.members.get(userId);
    const chosen = member?.state?.display_name;
    if (typeof chosen === "string" && chosen.trim()) return chosen.trim();
    return member?.identity?.display_name || userId;
  }

  private presenceState(): Record<string, Json> {
    return { ...this.presence } as unknown as Record<string, Json>;
  }

  private onMessage(joined: JoinedRoom, message: Client.Message): void {
    const me = this.me;
    const text = messageText(message.content as Record<string, Json>);
    const mine = message.userId === me;
    const username = typeof message.identity?.username === "string" ? message.identity.username : message.userId;
    // muted by this person: not kept, not shown, not notified (a flood of theirs costs nothing)
    if (!mine && this.isMuted(username)) return;
    const entry: ChatEntry = {
      userId: message.userId,
      username,
      label: this.labelOf(joined, message.userId),
      text,
      timestamp: message.timestamp || new Date().toISOString(),
      direct: message.direct,
      to: message.direct ? (typeof message.raw?.to === "string" ? message.raw.to : me) : null,
      mine,
      mentionsMe: !mine && (message.direct || mentions(text, me)),
    };
    this.addEntry(joined, entry);
    // a replayed message (history on join) is old news: no notification for it
    const replayed = Date.now() - new Date(entry.timestamp).getTime() > 60_000;
    if (entry.mentionsMe && !replayed && this.mayNotice(joined.name, username)) this.noticed.emit({ room: joined.name, entry });
  }

  /** NOTICE_BURST notices per sender and room, then one per NOTICE_INTERVAL: a flood of
   * mentions is not a flood of notifications (each message is still in the panel). */
  private mayNotice(room: string, username: string): boolean {
    const key = `${room}\u0000${username}`;
    const now = Date.now();
    const known = this.notices.get(key) ?? { left: NOTICE_BURST, at: now };
    const left = Math.min(NOTICE_BURST, known.left + (now - known.at) / NOTICE_INTERVAL);
    if (this.notices.size > 1000) this.notices.clear();
    this.notices.set(key, { left: left >= 1 ? left - 1 : left, at: now });
    return left >= 1;
  }

  private addEntry(joined: JoinedRoom, entry: ChatEntry): void {
    const entries = joined.entries;
    entries.push(entry);
    // the oldest go a quarter at a time: a message costs the same however many came before
    if (entries.length > MAX_ENTRIES + MAX_ENTRIES / 4) {
      const excess = entries.length - MAX_ENTRIES;
      entries.splice(0, excess);
      joined.dropped += excess;
    }
    this.arrived.emit({ room: joined, entry, position: joined.dropped + entries.length - 1 });
  }

  private onControl(joined: JoinedRoom, message: Client.Message): void {
    const { CONTROL_KEY, ControlKind, ConnectionKind, userOfPeer } = this.protocol;
    const content = message.content as Record<string, Json>;
    const kind = content[CONTROL_KEY];
    if (kind === ControlKind.DESCRIBE && typeof content.q === "string") {
      // we are a connection of our user too: say which document this window shows
      void joined.room
        .direct(message.userId, {
          [CONTROL_KEY]: ControlKind.CONNECTION,
          q: content.q,
          peer_id: this.me ?? "",
          kind: ConnectionKind.LAB,
          document: this.presence.document,
        })
        .catch(() => {});
      return;
    }
    if (kind === ControlKind.FILE_OFFER || kind === ControlKind.FILE_ACCEPT || kind === ControlKind.FILE_DECLINE || kind === ControlKind.FILE_OUTCOME) {
      this.onFileControl(joined, message.userId, kind, content);
      return;
    }
    if (kind === ControlKind.CONNECTION && typeof content.peer_id === "string") {
      const list = joined.connections.get(message.userId) ?? [];
      // an answer is believed only about the sender's own peers
      const peerId = content.peer_id;
      if (userOfPeer(peerId) !== message.userId) return;
      if (!list.some((known) => known.peer_id === peerId)) {
        list.push({
          peer_id: peerId,
          kind: typeof content.kind === "string" ? content.kind : ConnectionKind.PAGE,
          document: typeof content.document === "string" ? content.document : null,
          notebook: typeof content.notebook === "string" ? content.notebook : null,
        });
      }
      joined.connections.set(message.userId, list);
      this.changed.emit();
      return;
    }
    // the kinds handled elsewhere (copy requests: copies.ts) go to whoever listens
    if (typeof kind === "string") this.control.emit({ room: joined, from: message.userId, kind, content });
  }

  // -- files over peer links ------------------------------------------------------------

  get peerId(): string {
    return `${this.me ?? ""}#${this.tag}`;
  }

  private async startPeers(joined: JoinedRoom): Promise<void> {
    const module = this.module;
    const client = this.client;
    if (!module || !client) return;
    try {
      const network = await module.PeerNetwork.join({
        server: client.server,
        room: joined.name,
        peerId: this.peerId,
        // a link only with whoever holds that member's name in the room
        verifyIdentity: module.presenceCheck(joined.room),
      });
      if (!this.rooms.has(joined.name)) {
        network.close();
        return;
      }
      this.networks.set(joined.name, network);
      network.on("link", (link: Client.PeerLink) => this.wire(link));
    } catch {
      // files cannot go peer to peer in this room; chat and presence go on
    }
  }

  /** Offer `data` (the file `name`) to `userId` in room `name`; it goes once they accept. */
  async offerFile(room: string, userId: string, name: string, data: Uint8Array, extra: Record<string, Json> = {}): Promise<Transfer> {
    const joined = this.rooms.get(room);
    if (!joined) throw new Error(`not in room ${room}`);
    if (!this.networks.has(room)) throw new Error(`no peer links in ${room}: files cannot be sent there`);
    const id = `${this.tag}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
    const transfer: Transfer = { id, direction: "send", userId, name, size: data.byteLength, done: 0, state: "offered", path: null, error: null, room, data };
    this.transfers.set(id, transfer);
    this.changed.emit();
    const { CONTROL_KEY, ControlKind } = this.protocol;
    await joined.room.direct(userId, { ...extra, [CONTROL_KEY]: ControlKind.FILE_OFFER, id, name, size: data.byteLength, peer_id: this.peerId });
    return transfer;
  }

  /** Accept an offer: the sender sends, and what arrives is saved at `path`. */
  async acceptFile(id: string, path: string, onExisting: "replace" | "keep-both" = "keep-both"): Promise<void> {
    const transfer = this.transfers.get(id);
    const joined = transfer ? this.rooms.get(transfer.room) : undefined;
    if (!transfer || !joined || transfer.direction !== "receive" || transfer.state !== "offered") return;
    transfer.path = path;
    transfer.onExisting = onExisting;
    transfer.state = "accepted";
    this.changed.emit();
    const { CONTROL_KEY, ControlKind } = this.protocol;
    await joined.room.direct(transfer.userId, { [CONTROL_KEY]: ControlKind.FILE_ACCEPT, id, peer_id: this.peerId });
  }

  /** Decline an offer; `reason` (the path could not be made...) is told to the sender. */
  async declineFile(id: string, reason = ""): Promise<void> {
    const transfer = this.transfers.get(id);
    const joined = transfer ? this.rooms.get(transfer.room) : undefined;
    if (!transfer || !joined || transfer.state !== "offered") return;
    transfer.state = reason ? "failed" : "declined";
    transfer.error = reason || null;
    this.changed.emit();
    const { CONTROL_KEY, ControlKind, REASON_MAX_LENGTH } = this.protocol;
    const message: Record<string, Json> = { [CONTROL_KEY]: ControlKind.FILE_DECLINE, id };
    if (reason) message.reason = reason.slice(0, REASON_MAX_LENGTH);
    await joined.room.direct(transfer.userId, message).catch(() => {});
  }

  /** Tell the sender what became of the bytes it sent: saved at `path`, or not and why. */
  private async tellOutcome(transfer: Transfer): Promise<void> {
    const joined = this.rooms.get(transfer.room);
    if (!joined) return;
    const { CONTROL_KEY, ControlKind, REASON_MAX_LENGTH } = this.protocol;
    const outcome: Record<string, Json> =
      transfer.state === "done"
        ? { [CONTROL_KEY]: ControlKind.FILE_OUTCOME, id: transfer.id, ok: true, path: transfer.path ?? "" }
        : { [CONTROL_KEY]: ControlKind.FILE_OUTCOME, id: transfer.id, ok: false, error: (transfer.error ?? "not saved").slice(0, REASON_MAX_LENGTH) };
    await joined.room.direct(transfer.userId, outcome).catch(() => {});
  }

  private onFileControl(joined: JoinedRoom, from: string, kind: string, content: Record<string, Json>): void {
    const { ControlKind, FILE_ID_MAX_LENGTH } = this.protocol;
    const id = typeof content.id === "string" ? content.id.slice(0, FILE_ID_MAX_LENGTH) : "";
    if (!id) return;
    if (kind === ControlKind.FILE_OFFER) {
      const offer = parseOffer(content);
      if (!offer || this.transfers.has(offer.id)) return;
      // a member cannot pile offers on our screen: a few waiting per person, the rest dropped
      const waiting = [...this.transfers.values()].filter((one) => one.direction === "receive" && one.userId === from && one.state === "offered");
      if (waiting.length >= MAX_WAITING_OFFERS) return;
      const transfer: Transfer = {
        id: offer.id, direction: "receive", userId: from, name: offer.name, size: offer.size, done: 0, state: "offered",
        path: null, error: null, room: joined.name, peerId: offer.peerId ?? undefined,
        ...copyFieldsOf(content),
      };
      this.transfers.set(id, transfer);
      // a copy we asked for is taken by whoever asked (no question again); an offer naming a
      // request of no window's here (another window of ours asked, or a made-up one) is dropped
      if (transfer.request) {
        if (!this.claims.some((claim) => claim(transfer))) this.transfers.delete(id);
        this.changed.emit();
        return;
      }
      this.changed.emit();
      this.offered.emit({ transfer });
      return;
    }
    const transfer = this.transfers.get(id);
    // only the person it was offered to answers for it
    if (!transfer || transfer.direction !== "send" || transfer.userId !== from) return;
    if (kind === ControlKind.FILE_OUTCOME) {
      // believed once, about bytes we sent that person
      if (transfer.state !== "sent" && transfer.state !== "sending") return;
      const ok = content.ok === true;
      transfer.state = ok ? "done" : "failed";
      transfer.path = ok && typeof content.path === "string" ? content.path : transfer.path;
      transfer.error = ok ? null : `not saved: ${typeof content.error === "string" ? content.error : "the receiver did not say why"}`;
      this.changed.emit();
      return;
    }
    if (transfer.state !== "offered") return;
    if (kind === ControlKind.FILE_DECLINE) {
      transfer.state = "declined";
      transfer.error = typeof content.reason === "string" && content.reason ? content.reason : null;
      transfer.data = undefined;
      this.changed.emit();
      return;
    }
    const peerId = typeof content.peer_id === "string" ? content.peer_id : "";
    void this.sendFile(transfer, peerId);
  }

  private async sendFile(transfer: Transfer, peerId: string): Promise<void> {
    const network = this.networks.get(transfer.room);
    const data = transfer.data;
    if (!network || !data) return;
    transfer.state = "sending";
    transfer.peerId = peerId;
    this.changed.emit();
    try {
      const link = await network.connect(peerId, { timeout: 30_000 });
      this.wire(link);
      const { CONTROL_KEY, ControlKind } = this.protocol;
      await link.send({ [CONTROL_KEY]: ControlKind.FILE, id: transfer.id, name: transfer.name, size: data.byteLength });
      await link.send(data, {
        onProgress: (progress) => {
          transfer.done = progress.done;
          this.changed.emit();
        },
      });
      transfer.done = data.byteLength;
      // sent is not saved: the receiver's file-outcome says what became of it (it may have come already)
      if (transfer.state === "sending") transfer.state = "sent";
    } catch (error) {
      transfer.state = "failed";
      transfer.error = String((error as Error)?.message ?? error);
    }
    transfer.data = undefined;
    this.changed.emit();
  }

  /** A link's messages: a file's header, then its bytes (with progress on the way). */
  private wire(link: Client.PeerLink): void {
    if (this.wired.has(link)) return;
    this.wired.add(link);
    let expecting: Transfer | null = null;
    link.on("progress", (progress: Client.Progress) => {
      if (progress.direction !== "receive" || !expecting) return;
      expecting.done = progress.done;
      this.changed.emit();
    });
    link.on("message", (payload: Client.PeerPayload) => {
      if (payload instanceof Uint8Array) {
        const transfer = expecting;
        expecting = null;
        if (!transfer || !transfer.path) return;
        transfer.done = payload.byteLength;
        const saved =
          payload.byteLength === transfer.size
            ? this.save(transfer.path, payload, transfer)
            : Promise.reject(new Error(`${payload.byteLength} bytes arrived, ${transfer.size} were offered: not saved`));
        void saved
          .then(
            (path) => {
              transfer.state = "done";
              transfer.path = path;
            },
            (error) => {
              transfer.state = "failed";
              transfer.error = String(error?.message ?? error);
            },
          )
          .then(() => {
            this.changed.emit();
            return this.tellOutcome(transfer);
          });
        return;
      }
      const { CONTROL_KEY, ControlKind, userOfPeer } = this.protocol;
      const header = payload as Record<string, Json> | null;
      if (!header || typeof header !== "object" || header[CONTROL_KEY] !== ControlKind.FILE || typeof header.id !== "string") return;
      const transfer = this.transfers.get(header.id);
      // a file comes only as one we accepted, from the person who offered it
      const from = userOfPeer(link.peerId);
      if (!transfer || !mayReceive(transfer, from)) return;
      transfer.state = "receiving";
      expecting = transfer;
      this.changed.emit();
    });
  }
}
