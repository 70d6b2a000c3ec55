// Types of iavicenne.js, the entry module of the iAvicenne browser client (served at
// {base_url}iavicenne/static/). The client is plain JavaScript (ES modules, no build step);
// this file is for TypeScript users: `import type { RoomClient } from "./iavicenne.js"` with
// this file beside it, or a `declare module` path mapping in a JupyterLab extension. The
// protocol's values and their types come from protocol.d.ts, emitted with protocol.js.

export * from "./protocol.js";
import type { ACK, ErrorCodeValue, RELAYED } from "./protocol.js";

// -- errors -----------------------------------------------------------------------------

/** Something the client cannot do; the message says what to fix. */
export declare class IAvicenneError extends Error {
  constructor(message: string);
}
/** The client was closed, or stopped for good after a fatal error. */
export declare class ConnectionClosed extends IAvicenneError {}
/** The server refused our credentials (HTTP 403). */
export declare class AuthenticationError extends IAvicenneError {}
/** The server answered a request with an `error` frame. */
export declare class RequestFailed extends IAvicenneError {
  constructor(frame: ServerFrame);
  readonly code: ErrorCodeValue | string;
  readonly frame: ServerFrame;
}
export declare class NameTaken extends RequestFailed {}
export declare class UnknownPeer extends RequestFailed {}
export declare class Superseded extends RequestFailed {}
/** The room is private (or a group's) and we are not in it, or only its owner may do that. */
export declare class Forbidden extends RequestFailed {}
export declare class PeerLinkError extends IAvicenneError {}
export declare class PeerUnreachable extends PeerLinkError {}
export declare class PeerLinkClosed extends PeerLinkError {}
export declare class PeerLeft extends PeerLinkClosed {}
/** The other end of a link is not the identity that holds that name in the room: refused. */
export declare class PeerIdentityMismatch extends PeerLinkError {
  constructor(message: string, details?: { expected?: Identity | null; found?: Identity | null });
  readonly expected: Identity | null;
  readonly found: Identity | null;
}
/** A peer's transfer was dropped: larger than `maxTransferBytes` (`option`), or than it declared. */
export declare class TransferRefused extends PeerLinkError {
  constructor(message: string, details: { transfer: number; declared: number; option?: string | null; limit?: number | null });
  /** The transfer's id. */
  readonly transfer: number;
  /** The size it declared, in bytes. */
  readonly declared: number;
  /** The option that raises the limit it hit ("maxTransferBytes"), or null. */
  readonly option: string | null;
  readonly limit: number | null;
}

export declare function errorFrom(frame: ServerFrame): RequestFailed;

// -- frames and helpers -----------------------------------------------------------------

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
/** Any frame the server sends: `type`, `timestamp`, and the fields of that type. */
export type ServerFrame = { type?: string; timestamp?: string; ref?: string; [field: string]: any };

export declare function checkName(value: unknown, field: string): string;
export declare function parseFrame(data: unknown): ServerFrame | null;
export declare function payloadOf(content: string | Record<string, Json>): Record<string, Json>;
export declare function readCookie(name: string, cookies: string): string | null;
export declare function codePointLess(a: string, b: string): boolean;

export type Unsubscribe = () => void;

export declare class Emitter {
  on(kind: string, callback: (event: any) => void): Unsubscribe;
  next(kind: string, options?: { where?: (event: any) => boolean; timeout?: number }): Promise<any>;
  emit(kind: string, event: unknown): void;
  clear(): void;
}

export interface BackoffOptions {
  /** First delay, ms (250). */
  initial?: number;
  /** Growth per attempt (2). */
  factor?: number;
  /** Largest delay, ms (8000). */
  maximum?: number;
  /** Random part of each delay, 0..1 (0.5). */
  jitter?: number;
  random?: () => number;
}

/** Delays between reconnect attempts, in ms: exponential, capped, with jitter. */
export declare class Backoff {
  constructor(options?: BackoffOptions);
  readonly initial: number;
  readonly factor: number;
  readonly maximum: number;
  readonly jitter: number;
  delay(attempt: number): number;
}

/** Reliable frames waiting for their ack, oldest first. */
export declare class Outbox {
  readonly size: number;
  add(ref: string, data: string, room?: string | null): Promise<ServerFrame>;
  has(ref: string): boolean;
  ack(ref: string, frame: ServerFrame): boolean;
  fail(ref: string, error: Error): boolean;
  dropRoom(room: string, error: Error): void;
  failAll(error: Error): void;
  frames(): string[];
}

/** Keys seen recently (bounded): a frame relayed twice is handled once. */
export declare class SeenSet {
  constructor(limit?: number);
  add(key: string): boolean;
}

/** A room's history position: last `seq` delivered and the room's `epoch`. */
export declare class SeqTracker {
  seq: number | null;
  epoch: string | null;
  resume(): { since?: number; epoch?: string };
  joined(frame: ServerFrame): Gap | null;
  accept(seq: unknown): boolean;
}

// -- the server -------------------------------------------------------------------------

export interface ServerOptions {
  /** What Jupyter prints (`http://host:8888/lab?token=...`) or a base URL; default: the current page's server. */
  url?: string;
  /** The base URL path of the page's server; default: read from the page. */
  baseUrl?: string;
  /** The server's token; default: in `url`, else `?token=` of the page; none: the login cookie. */
  token?: string;
  location?: string;
  document?: Document | any;
  fetch?: typeof fetch;
  cookies?: () => string;
}

export interface RoomSummary {
  room: string;
  members: number;
  connections: number;
}

export declare class Server {
  constructor(options?: ServerOptions);
  /** The base URL (http or https), ending in `/`. */
  readonly url: string;
  /** The token, or "" when the login cookie authenticates. */
  readonly token: string;
  wsUrl(path: string): string;
  /** `Authorization` (with a token) and `X-XSRFToken` (from the `_xsrf` cookie). */
  headers(): Record<string, string>;
  request(path: string, options?: { method?: string; body?: unknown }): Promise<any>;
  rooms(): Promise<RoomSummary[]>;
  members(room: string): Promise<Member[]>;
}

/**
 * The server that holds the rooms, as the page's server says (`iavicenne/api/config`):
 * itself, or under JupyterHub the room service (through the Hub's proxy, with the Hub login).
 */
export declare function discoverRooms(options?: ServerOptions): Promise<Server>;

// -- connections ------------------------------------------------------------------------

export type ConnectionState = "connecting" | "online" | "reconnecting" | "closed";

export interface EndpointOptions extends ServerOptions {
  server?: Server;
  backoff?: Backoff | BackoffOptions;
  /** A WebSocket constructor (default: the browser's). */
  WebSocket?: any;
  setTimeout?: (callback: () => void, ms: number) => any;
  clearTimeout?: (handle: any) => void;
  /** Where to listen for `online` (to reconnect at once); null: nowhere. */
  window?: any;
}

export interface ConnectedEvent {
  url: string;
  reconnects: number;
}
export interface DisconnectedEvent {
  code: number | null;
  reason: string;
}
export interface ReconnectingEvent {
  attempt: number;
  /** ms */
  delay: number;
}

interface Endpoint {
  readonly server: Server;
  readonly backoff: Backoff;
  readonly events: Emitter;
  readonly reconnects: number;
  readonly state: ConnectionState;
  readonly connected: boolean;
  /** Reliable frames sent and not yet acknowledged. */
  readonly unacknowledged: number;
  /** Start connecting (once); resolves when the session is up. */
  open(): Promise<void>;
  waitConnected(): Promise<void>;
  reconnectNow(): void;
  close(): void;
  on(kind: "connected", callback: (event: ConnectedEvent) => void): Unsubscribe;
  on(kind: "disconnected", callback: (event: DisconnectedEvent) => void): Unsubscribe;
  on(kind: "reconnecting", callback: (event: ReconnectingEvent) => void): Unsubscribe;
  on(kind: "closed", callback: (error: Error) => void): Unsubscribe;
  on(kind: "error", callback: (error: RequestFailed) => void): Unsubscribe;
  on(kind: string, callback: (event: any) => void): Unsubscribe;
}

// -- rooms ------------------------------------------------------------------------------

export interface Identity {
  username: string;
  name: string;
  display_name: string;
  [field: string]: any;
}

/** A member of a room, as the server describes it. */
export interface Member {
  user_id: string;
  identity: Identity;
  state: Record<string, Json>;
  connections: number;
}

export interface Message {
  room: string;
  userId: string;
  /** The sender's payload. */
  content: Record<string, Json>;
  /** `content.content`, where the seed's clients put their text. */
  text: any;
  /** null for direct messages (not kept in history). */
  seq: number | null;
  identity: Identity | Record<string, never>;
  timestamp: string;
  direct: boolean;
  ref: string | null;
  /** The server's: what this message replies to (the replied-to author as verified, a quote). */
  reply: { seq: number; user_id: string; identity: Identity; quote: string; deleted?: boolean } | null;
  edited: boolean;
  /** Deleted by its author or the room's owner: its text is gone. */
  deleted: boolean;
  raw: ServerFrame;
}

/** A kept message changed (`message-edited`, `message-deleted`): `identity` is who changed it. */
export interface MessageChange {
  room: string;
  seq: number | null;
  kind: "edited" | "deleted";
  /** The message's author. */
  userId: string;
  content: Record<string, Json>;
  text: any;
  identity: Identity | Record<string, never>;
  raw: ServerFrame;
}

export interface PresenceEvent {
  room: string;
  kind: "snapshot" | "joined" | "left" | "state";
  userId: string | null;
  state: Record<string, Json>;
  members: Member[];
}

/** Messages after `since` could not all be recovered (history gone, or a restarted server: `epochChanged`). */
export interface Gap {
  since: number | null;
  epochChanged: boolean;
}

export interface Ack extends ServerFrame {
  type: typeof ACK;
  ref: string;
  room: string;
  seq?: number;
  duplicate?: boolean;
}

/** The room's owner (`by`) moderated identity `username` (a `ModerationAction`). */
export interface Moderated {
  room: string;
  username: string;
  action: string;
  by: string;
}

export declare class Room {
  readonly client: RoomClient;
  readonly name: string;
  state: Record<string, Json>;
  members: Map<string, Member>;
  readonly history: SeqTracker;
  readonly events: Emitter;
  left: boolean;
  readonly seq: number | null;
  readonly epoch: string | null;
  /** The last kept direct message's direct_seq delivered (null: not known yet). */
  directSeq: number | null;
  on(kind: "message", callback: (message: Message) => void): Unsubscribe;
  /** Direct messages the libraries send each other (payload key `CONTROL_KEY`): never chat. */
  on(kind: "control", callback: (message: Message) => void): Unsubscribe;
  on(kind: "presence", callback: (event: PresenceEvent) => void): Unsubscribe;
  on(kind: "gap", callback: (gap: Gap & { room: string }) => void): Unsubscribe;
  on(kind: "change", callback: (change: MessageChange) => void): Unsubscribe;
  on(kind: "error", callback: (error: RequestFailed) => void): Unsubscribe;
  /** The room's owner muted, unmuted, removed or readmitted `username`. */
  on(kind: "moderated", callback: (event: Moderated) => void): Unsubscribe;
  on(kind: string, callback: (event: any) => void): Unsubscribe;
  /** Resolves with the server's ack (with the message's seq), however many reconnects that takes. */
  send(content: string | Record<string, Json>): Promise<Ack>;
  reply(seq: number, content: string | Record<string, Json>): Promise<Ack>;
  edit(seq: number, content: string | Record<string, Json>): Promise<Ack>;
  delete(seq: number): Promise<Ack>;
  direct(to: string, content: string | Record<string, Json>): Promise<Ack>;
  setState(state: Record<string, Json>): Promise<Ack>;
  /** As the room's owner (else `Forbidden`): a `ModerationAction` on identity `username`. */
  moderate(username: string, action: "mute" | "unmute" | "remove" | "readmit"): Promise<Ack>;
  leave(): Promise<void>;
}

export type AccessKind = "public" | "group" | "private";
export declare const ACCESS_KINDS: readonly AccessKind[];

/** A room's access record, as the server keeps it. */
export interface RoomAccess {
  room: string;
  access: AccessKind;
  owner?: string;
  members?: string[];
  group?: string | null;
  /** The usernames its owner muted, and removed. */
  muted?: string[];
  removed?: string[];
  [field: string]: any;
}

/** A room in the listing: what it holds now, and who may enter (owner, members, group: when we may). */
export interface RoomListing {
  room: string;
  members: number;
  connections: number;
  access: AccessKind;
  owner?: string;
  group?: string | null;
  /** The usernames invited to a private room (to those who may enter it). */
  invited?: string[];
  [field: string]: any;
}

/** The rooms' REST API (`{base}iavicenne/api/rooms`): token or login cookie with X-XSRFToken. */
export declare class RoomsAPI {
  constructor(server: Server);
  readonly server: Server;
  listRooms(): Promise<RoomListing[]>;
  createRoom(room: string, options?: { access?: AccessKind; members?: string[]; group?: string }): Promise<RoomAccess>;
  invite(room: string, username: string): Promise<RoomAccess>;
  removeMember(room: string, username: string): Promise<RoomAccess>;
  deleteRoom(room: string): Promise<void>;
}

export declare class RoomClient implements Endpoint {
  constructor(options?: EndpointOptions & { userId?: string });
  static connect(options?: EndpointOptions & { userId?: string }): Promise<RoomClient>;
  readonly server: Server;
  readonly backoff: Backoff;
  readonly events: Emitter;
  readonly reconnects: number;
  readonly state: ConnectionState;
  readonly connected: boolean;
  readonly unacknowledged: number;
  /** Our user_id (the name of our verified identity when none was chosen). */
  userId: string | null;
  /** Ours, as the server verified it. */
  identity: Identity | Record<string, never>;
  readonly rooms: Map<string, Room>;
  readonly api: RoomsAPI;
  listRooms(): Promise<RoomListing[]>;
  createRoom(room: string, options?: { access?: AccessKind; members?: string[]; group?: string }): Promise<RoomAccess>;
  invite(room: string, username: string): Promise<RoomAccess>;
  removeMember(room: string, username: string): Promise<RoomAccess>;
  deleteRoom(room: string): Promise<void>;
  open(): Promise<void>;
  waitConnected(): Promise<void>;
  reconnectNow(): void;
  close(): void;
  /**
   * `since`: replay the room's messages after that seq on join (0: all the history the server keeps).
   * `directHistory`: the kept direct messages of our conversations there too (`direct: true`).
   */
  join(room: string, options?: { state?: Record<string, Json>; since?: number; directHistory?: boolean }): Promise<Room>;
  leave(room: string): Promise<void>;
  /** The rooms our identity is in by its account (any window, tab, kernel, device), newest first. */
  myRooms(): Promise<string[]>;
  /** Leave `room` for good (no window of ours rejoins it); true if it was remembered. */
  forget(room: string): Promise<boolean>;
  on(kind: "connected", callback: (event: ConnectedEvent) => void): Unsubscribe;
  on(kind: "disconnected", callback: (event: DisconnectedEvent) => void): Unsubscribe;
  on(kind: "reconnecting", callback: (event: ReconnectingEvent) => void): Unsubscribe;
  on(kind: "closed", callback: (error: Error) => void): Unsubscribe;
  on(kind: "error", callback: (error: RequestFailed) => void): Unsubscribe;
  on(kind: "message", callback: (message: Message) => void): Unsubscribe;
  on(kind: "presence", callback: (event: PresenceEvent) => void): Unsubscribe;
  on(kind: "gap", callback: (gap: Gap & { room: string }) => void): Unsubscribe;
  on(kind: string, callback: (event: any) => void): Unsubscribe;
}

// -- signaling --------------------------------------------------------------------------

export type SignalKind = (typeof RELAYED)[number];

export interface PeerEvent {
  room: string;
  kind: "joined" | "left";
  peerId: string;
  rejoined: boolean;
  /** Whose peer it is, as the server verified it (null on `left`, or when it does not say). */
  identity: Identity | null;
}

export interface Signal {
  kind: SignalKind;
  source: string;
  body: Record<string, any> | null;
  room: string;
  /** Who sent it, as the server verified it (`source_identity`). */
  identity: Identity | null;
}

export declare class SignalingClient implements Endpoint {
  constructor(options: EndpointOptions & { room: string; peerId: string });
  static connect(options: EndpointOptions & { room: string; peerId: string }): Promise<SignalingClient>;
  readonly server: Server;
  readonly backoff: Backoff;
  readonly events: Emitter;
  readonly reconnects: number;
  readonly state: ConnectionState;
  readonly connected: boolean;
  readonly unacknowledged: number;
  readonly room: string;
  readonly peerId: string;
  /** The other peers in the room. */
  peers: Set<string>;
  /** Peer id -> its holder's verified identity (as the server said). */
  identities: Map<string, Identity>;
  /** The ICE servers the server hands out. */
  iceServers: RTCIceServer[];
  open(): Promise<void>;
  waitConnected(): Promise<void>;
  reconnectNow(): void;
  close(): void;
  relay(kind: SignalKind, target: string, body: Record<string, any> | null): Promise<Ack>;
  waitForPeer(peerId: string, timeout?: number): Promise<void>;
  on(kind: "peer", callback: (event: PeerEvent) => void): Unsubscribe;
  on(kind: "signal", callback: (signal: Signal) => void): Unsubscribe;
  on(kind: "connected", callback: (event: ConnectedEvent) => void): Unsubscribe;
  on(kind: "disconnected", callback: (event: DisconnectedEvent) => void): Unsubscribe;
  on(kind: "reconnecting", callback: (event: ReconnectingEvent) => void): Unsubscribe;
  on(kind: "closed", callback: (error: Error) => void): Unsubscribe;
  on(kind: "error", callback: (error: RequestFailed) => void): Unsubscribe;
  on(kind: string, callback: (event: any) => void): Unsubscribe;
}

// -- peer links -------------------------------------------------------------------------

/** What a link delivers: text, bytes, or a decoded JSON value. */
export type PeerPayload = string | Uint8Array | Json;
/** What a link sends: text, bytes, or a JSON value. */
export type PeerSendable = string | ArrayBuffer | ArrayBufferView | Json;

export interface Progress {
  peerId: string;
  direction: "send" | "receive";
  /** bytes so far */
  done: number;
  /** bytes in all */
  total: number;
}

export declare function encodePayload(data: PeerSendable): { kind: number; payload: Uint8Array; text?: string };
export declare function frameMessages(
  data: PeerSendable,
  maxMessageSize: number,
  id: number,
): { messages: Array<string | Uint8Array>; transfer: boolean; size: number };
export declare function filterSdp(sdp: string, keep: (candidate: string) => boolean, complete: boolean): string;

/** The largest transfer a receiver accepts unless told otherwise: 256 MiB. */
export declare const DEFAULT_MAX_TRANSFER_BYTES: number;

export interface ReassemblerOptions {
  /** The largest transfer accepted, bytes (DEFAULT_MAX_TRANSFER_BYTES). */
  maxTransferBytes?: number;
  /** A transfer dropped before its END: why (a TransferRefused, or a PeerLinkError). */
  onError?: (error: PeerLinkError) => void;
  /** Whose messages these are, for the errors' messages. */
  peerId?: string | null;
}

export declare class Reassembler {
  constructor(options?: ReassemblerOptions);
  readonly maxTransferBytes: number;
  /** The transfer coming in; `received` counts its bytes as they came (compressed, if it is). */
  incoming: { id: number; kind: number; flags: number; size: number; received: number } | null;
  receive(message: string | ArrayBuffer | Uint8Array): {
    value?: PeerPayload;
    done?: number;
    progress?: { done: number; total: number };
    finish?: Promise<PeerPayload>;
    id?: number;
  } | null;
}

export type PeerLinkState = "connecting" | "open" | "closed";

export declare class PeerLink {
  readonly network: PeerNetwork;
  readonly peerId: string;
  /** Whether this side offered. */
  readonly offerer: boolean;
  /** Who the other end is, as the server verified it (from its offer or answer). */
  readonly identity: Identity | null;
  readonly state: PeerLinkState;
  /** Why the link closed. */
  readonly error: PeerLinkError | null;
  readonly events: Emitter;
  /** The largest message this side writes (min of chunkSize and the peer's a=max-message-size). */
  readonly maxMessageSize: number;
  readonly pc: RTCPeerConnection;
  readonly channel: RTCDataChannel | null;
  readonly open: boolean;
  on(kind: "message", callback: (data: PeerPayload) => void): Unsubscribe;
  on(kind: "progress", callback: (progress: Progress) => void): Unsubscribe;
  on(kind: "state", callback: (state: PeerLinkState) => void): Unsubscribe;
  on(kind: "close", callback: (error: PeerLinkError) => void): Unsubscribe;
  on(kind: "error", callback: (error: PeerLinkError) => void): Unsubscribe;
  on(kind: string, callback: (event: any) => void): Unsubscribe;
  waitOpen(): Promise<PeerLink>;
  /** Resolves when handed to the channel; a transfer: when the peer confirmed it has it all. */
  send(data: PeerSendable, options?: { onProgress?: (progress: Progress) => void }): Promise<void>;
  close(): void;
}

export interface PeerNetworkOptions {
  /** Use loopback candidates only (peers on one machine). */
  loopback?: boolean;
  /** Default: what the server hands out in `joined`. */
  iceServers?: RTCIceServer[];
  /** Largest message written, bytes (65536). */
  chunkSize?: number;
  /** Wait for `bufferedamountlow` past this many buffered bytes (1 MiB). */
  highWater?: number;
  /** `bufferedAmountLowThreshold` (256 KiB). */
  lowWater?: number;
  /** ms to wait for ICE gathering before sending a description and trickling the rest (3000). */
  gatherTimeout?: number;
  /** The largest transfer a peer may send to us, bytes (256 MiB); a larger one is refused with a TransferRefused error event on its link. */
  maxTransferBytes?: number;
  RTCPeerConnection?: any;
  setTimeout?: (callback: () => void, ms: number) => any;
  clearTimeout?: (handle: any) => void;
  ownsSignaling?: boolean;
  /** Throws `PeerIdentityMismatch` when `identity` may not hold `peerId` (see `presenceCheck`). */
  verifyIdentity?: IdentityCheck;
}

export type IdentityCheck = (peerId: string, identity: Identity | null) => void;
/** Whether two verified identities are one person (the same username). */
export declare function sameIdentity(a: Identity | null | undefined, b: Identity | null | undefined): boolean;
/** The member a peer id is of: "bob#3f2a1c" and "bob" are bob's. */
export declare function userOfPeer(peerId: string): string;
/** A `verifyIdentity`: a peer only when held by the identity holding its member name in `room`. */
export declare function presenceCheck(
  room: { name: string; members: Map<string, Member> },
  options?: { userOf?: (peerId: string) => string },
): IdentityCheck;

export interface LinkChange {
  peerId: string;
  state: PeerLinkState;
  error: PeerLinkError | null;
  link: PeerLink;
  /** Closed because the other side's offer won (glare): another link follows. */
  replaced?: boolean;
}

export declare class PeerNetwork {
  constructor(signaling: SignalingClient, options?: PeerNetworkOptions);
  static join(options: EndpointOptions & PeerNetworkOptions & { room: string; peerId: string }): Promise<PeerNetwork>;
  readonly signaling: SignalingClient;
  readonly loopback: boolean;
  readonly maxTransferBytes: number;
  readonly links: Map<string, PeerLink>;
  readonly events: Emitter;
  readonly peerId: string;
  readonly room: string;
  readonly peers: Set<string>;
  on(kind: "link", callback: (link: PeerLink) => void): Unsubscribe;
  on(kind: "change", callback: (change: LinkChange) => void): Unsubscribe;
  on(kind: "peer", callback: (event: PeerEvent) => void): Unsubscribe;
  /** An offer from an identity `verifyIdentity` refused. */
  on(kind: "refused", callback: (error: PeerIdentityMismatch) => void): Unsubscribe;
  on(kind: string, callback: (event: any) => void): Unsubscribe;
  /** An open link to `peerId` (waits for it to join the room, then for the channel); `PeerIdentityMismatch` for an impostor. */
  connect(peerId: string, options?: { timeout?: number }): Promise<PeerLink>;
  /** The next link another peer opened to us. */
  accept(): Promise<PeerLink>;
  close(): void;
}
