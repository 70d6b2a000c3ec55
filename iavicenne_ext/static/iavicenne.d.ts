// Types of iavicenne.js, the iAvicenne browser module (served at {base_url}iavicenne/static/).
// The module is plain JavaScript (an ES module, no build step); this file is for TypeScript
// users: `import type { RoomClient } from "./iavicenne.js"` with this file beside it, or a
// `declare module` path mapping in a JupyterLab extension.

export declare const ROOMS_PATH: "iavicenne/ws/mcp";
export declare const SIGNALING_PATH: "iavicenne/ws/signaling";
export declare const REST_PATH: "iavicenne/api/";
export declare const CLOSE_NORMAL: 1000;
export declare const CLOSE_SUPERSEDED: 4000;
export declare const CHANNEL_LABEL: "iavicenne";
export declare const DEFAULT_REMOTE_MAX_MESSAGE: 65536;

/** The `code` of an `error` frame (docs/protocol.md). */
export type ErrorCodeValue =
  | "invalid-json"
  | "invalid-frame"
  | "type-required"
  | "unknown-type"
  | "binary-frame"
  | "user-id-required"
  | "peer-id-required"
  | "target-required"
  | "room-required"
  | "invalid-field"
  | "not-in-room"
  | "already-connected"
  | "name-taken"
  | "superseded"
  | "unknown-user"
  | "unknown-peer"
  | "too-many-rooms"
  | "rate-limited"
  | "unavailable"
  | "internal-error";

export declare const ErrorCode: Readonly<{
  INVALID_JSON: "invalid-json";
  INVALID_FRAME: "invalid-frame";
  TYPE_REQUIRED: "type-required";
  UNKNOWN_TYPE: "unknown-type";
  BINARY_FRAME: "binary-frame";
  USER_ID_REQUIRED: "user-id-required";
  PEER_ID_REQUIRED: "peer-id-required";
  TARGET_REQUIRED: "target-required";
  ROOM_REQUIRED: "room-required";
  INVALID_FIELD: "invalid-field";
  NOT_IN_ROOM: "not-in-room";
  ALREADY_CONNECTED: "already-connected";
  NAME_TAKEN: "name-taken";
  SUPERSEDED: "superseded";
  UNKNOWN_USER: "unknown-user";
  UNKNOWN_PEER: "unknown-peer";
  TOO_MANY_ROOMS: "too-many-rooms";
  RATE_LIMITED: "rate-limited";
  UNAVAILABLE: "unavailable";
  INTERNAL: "internal-error";
}>;

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
export declare class PeerLinkError extends IAvicenneError {}
export declare class PeerUnreachable extends PeerLinkError {}
export declare class PeerLinkClosed extends PeerLinkError {}
export declare class PeerLeft extends PeerLinkClosed {}

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
  type: "ack";
  ref: string;
  room: string;
  seq?: number;
  duplicate?: boolean;
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
  on(kind: "message", callback: (message: Message) => void): Unsubscribe;
  on(kind: "presence", callback: (event: PresenceEvent) => void): Unsubscribe;
  on(kind: "gap", callback: (gap: Gap & { room: string }) => void): Unsubscribe;
  on(kind: "error", callback: (error: RequestFailed) => void): Unsubscribe;
  on(kind: string, callback: (event: any) => void): Unsubscribe;
  /** Resolves with the server's ack (with the message's seq), however many reconnects that takes. */
  send(content: string | Record<string, Json>): Promise<Ack>;
  direct(to: string, content: string | Record<string, Json>): Promise<Ack>;
  setState(state: Record<string, Json>): Promise<Ack>;
  leave(): Promise<void>;
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
  /** Our user_id (the Jupyter user's name when none was chosen). */
  userId: string | null;
  identity: Identity | Record<string, never>;
  readonly rooms: Map<string, Room>;
  open(): Promise<void>;
  waitConnected(): Promise<void>;
  reconnectNow(): void;
  close(): void;
  join(room: string, options?: { state?: Record<string, Json> }): Promise<Room>;
  leave(room: string): Promise<void>;
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

export type SignalKind = "offer" | "answer" | "ice-candidate";

export interface PeerEvent {
  room: string;
  kind: "joined" | "left";
  peerId: string;
  rejoined: boolean;
}

export interface Signal {
  kind: SignalKind;
  source: string;
  body: Record<string, any> | null;
  room: string;
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

export declare const Tag: Readonly<{ BYTES: 0; JSON: 1; START: 2; DATA: 3; END: 4; ABORT: 5; DONE: 6 }>;
export declare const Kind: Readonly<{ BYTES: 0; JSON: 1; TEXT: 2 }>;

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

export declare class Reassembler {
  incoming: { id: number; kind: number; flags: number; size: number; pieces: Uint8Array[]; received: number } | null;
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
  RTCPeerConnection?: any;
  setTimeout?: (callback: () => void, ms: number) => any;
  clearTimeout?: (handle: any) => void;
  ownsSignaling?: boolean;
}

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
  readonly links: Map<string, PeerLink>;
  readonly events: Emitter;
  readonly peerId: string;
  readonly room: string;
  readonly peers: Set<string>;
  on(kind: "link", callback: (link: PeerLink) => void): Unsubscribe;
  on(kind: "change", callback: (change: LinkChange) => void): Unsubscribe;
  on(kind: "peer", callback: (event: PeerEvent) => void): Unsubscribe;
  on(kind: string, callback: (event: any) => void): Unsubscribe;
  /** An open link to `peerId` (waits for it to join the room, then for the channel). */
  connect(peerId: string, options?: { timeout?: number }): Promise<PeerLink>;
  /** The next link another peer opened to us. */
  accept(): Promise<PeerLink>;
  close(): void;
}
