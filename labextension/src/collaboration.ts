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

export type ClientModule = typeof Client;

/** The browser client (bundled: see above). */
export async function loadClient(): Promise<ClientModule> {
  return Client;
}

/** A line of a room's chat. */
export interface ChatEntry {
  userId: string;
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
  readonly entries: ChatEntry[] = [];
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

/** A file on its way between two windows (or a window and a kernel), as both sides show it. */
export interface Transfer {
  id: string;
  direction: "send" | "receive";
  /** The other person. */
  userId: string;
  name: string;
  size: number;
  done: number;
  state: "offered" | "accepted" | "sending" | "receiving" | "done" | "declined" | "failed";
  /** Where it is saved (the receiver's choice). */
  path: string | null;
  error: string | null;
  room: string;
  /** the bytes, on the sender's side until sent */
  data?: Uint8Array;
  /** the other side's peer id (the receiver's, once it accepted) */
  peerId?: string;
}

/** An offer of a file, handed to the window to accept (and choose where it goes) or decline. */
export interface Offer {
  transfer: Transfer;
}

export interface Settings {
  displayName: string;
  rooms: string[];
  notifications: boolean;
  status: string;
}

export interface Notice {
  room: string;
  entry: ChatEntry;
}

const MAX_ENTRIES = 1000;

export class Collaboration {
  readonly changed = new Signal<this, void>(this);
  /** A message that mentions us, or a direct message to us (for notifications). */
  readonly noticed = new Signal<this, Notice>(this);
  /** A new chat line in a room (the panel decides whether it is seen). */
  readonly arrived = new Signal<this, { room: JoinedRoom; entry: ChatEntry; index: number }>(this);
  readonly rooms = new Map<string, JoinedRoom>();
  listing: Client.RoomListing[] = [];
  client: Client.RoomClient | null = null;
  module: ClientModule | null = null;
  /** Why the connection could not be made, or "". */
  problem = "";
  readonly transfers = new Map<string, Transfer>();
  /** A file offered to us: the window asks where to save it. */
  readonly offered = new Signal<this, Offer>(this);
  /** Saves what arrived (the window's contents service). */
  save: (path: string, data: Uint8Array) => Promise<void> = async () => {
    throw new Error("nowhere to save files");
  };
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
    const entry: ChatEntry = {
      userId: message.userId,
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
    if (entry.mentionsMe && !replayed) this.noticed.emit({ room: joined.name, entry });
  }

  private addEntry(joined: JoinedRoom, entry: ChatEntry): void {
    joined.entries.push(entry);
    if (joined.entries.length > MAX_ENTRIES) joined.entries.splice(0, joined.entries.length - MAX_ENTRIES);
    this.arrived.emit({ room: joined, entry, index: joined.entries.length - 1 });
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
    if (kind === ControlKind.FILE_OFFER || kind === ControlKind.FILE_ACCEPT || kind === ControlKind.FILE_DECLINE) {
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
    }
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
  async offerFile(room: string, userId: string, name: string, data: Uint8Array): Promise<Transfer> {
    const joined = this.rooms.get(room);
    if (!joined) throw new Error(`not in room ${room}`);
    if (!this.networks.has(room)) throw new Error(`no peer links in ${room}: files cannot be sent there`);
    const id = `${this.tag}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
    const transfer: Transfer = { id, direction: "send", userId, name, size: data.byteLength, done: 0, state: "offered", path: null, error: null, room, data };
    this.transfers.set(id, transfer);
    this.changed.emit();
    const { CONTROL_KEY, ControlKind } = this.protocol;
    await joined.room.direct(userId, { [CONTROL_KEY]: ControlKind.FILE_OFFER, id, name, size: data.byteLength, peer_id: this.peerId });
    return transfer;
  }

  /** Accept an offer: the sender sends, and what arrives is saved at `path`. */
  async acceptFile(id: string, path: string): Promise<void> {
    const transfer = this.transfers.get(id);
    const joined = transfer ? this.rooms.get(transfer.room) : undefined;
    if (!transfer || !joined || transfer.direction !== "receive") return;
    transfer.path = path;
    transfer.state = "accepted";
    this.changed.emit();
    const { CONTROL_KEY, ControlKind } = this.protocol;
    await joined.room.direct(transfer.userId, { [CONTROL_KEY]: ControlKind.FILE_ACCEPT, id, peer_id: this.peerId });
  }

  async declineFile(id: string): Promise<void> {
    const transfer = this.transfers.get(id);
    const joined = transfer ? this.rooms.get(transfer.room) : undefined;
    if (!transfer || !joined) return;
    transfer.state = "declined";
    this.changed.emit();
    const { CONTROL_KEY, ControlKind } = this.protocol;
    await joined.room.direct(transfer.userId, { [CONTROL_KEY]: ControlKind.FILE_DECLINE, id }).catch(() => {});
  }

  private onFileControl(joined: JoinedRoom, from: string, kind: string, content: Record<string, Json>): void {
    const { ControlKind, FILE_ID_MAX_LENGTH } = this.protocol;
    const id = typeof content.id === "string" ? content.id.slice(0, FILE_ID_MAX_LENGTH) : "";
    if (!id) return;
    if (kind === ControlKind.FILE_OFFER) {
      const offer = parseOffer(content);
      if (!offer || this.transfers.has(offer.id)) return;
      const transfer: Transfer = {
        id: offer.id, direction: "receive", userId: from, name: offer.name, size: offer.size, done: 0, state: "offered",
        path: null, error: null, room: joined.name, peerId: offer.peerId ?? undefined,
      };
      this.transfers.set(id, transfer);
      this.changed.emit();
      this.offered.emit({ transfer });
      return;
    }
    const transfer = this.transfers.get(id);
    // only the person it was offered to answers for it
    if (!transfer || transfer.direction !== "send" || transfer.userId !== from || transfer.state !== "offered") return;
    if (kind === ControlKind.FILE_DECLINE) {
      transfer.state = "declined";
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
      transfer.state = "done";
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
        void this.save(transfer.path, payload).then(
          () => {
            transfer.state = "done";
            this.changed.emit();
          },
          (error) => {
            transfer.state = "failed";
            transfer.error = String(error?.message ?? error);
            this.changed.emit();
          },
        );
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
