// Generated from iavicenne_protocol/ by `python -m iavicenne_ext.protocol_js`: do not edit.
// Change the package and run that command; tests/browser/test_protocol_js.py fails while they differ.
// Types of protocol.js (see there); `import { ErrorCode } from "./protocol.js"` finds them.

// -- frames.py. Frames: the endpoints, the frame types of each, and the envelope every frame shares.
// -- endpoints, relative to the server's base_url -----------------------------------
export declare const ROOMS_PATH: "iavicenne/ws/mcp";
export declare const SIGNALING_PATH: "iavicenne/ws/signaling";
export declare const REST_PATH: "iavicenne/api/";
// AI agents over the Model Context Protocol (streamable HTTP; docs/agents.md)
export declare const MCP_PATH: "iavicenne/mcp";

// -- frame types: room endpoint ------------------------------------------------------
export declare const CONNECT: "connect";
export declare const JOIN_ROOM: "join-room";
export declare const LEAVE_ROOM: "leave-room";
export declare const MESSAGE: "message";
export declare const DISCONNECT: "disconnect";
export declare const ROOM_JOINED: "room-joined";
export declare const ROOM_LEFT: "room-left";
export declare const USER_JOINED: "user-joined";
export declare const USER_LEFT: "user-left";
export declare const ERROR: "error";
// additions
export declare const PRESENCE: "presence";
export declare const DIRECT_MESSAGE: "direct-message";
export declare const ACK: "ack";
/** the room's shared document (Yjs sync messages): see sync.py */
export declare const SHARED: "shared";
// rooms of thousands (docs/protocol.md, "Large rooms"): the next page of a room's members,
// and one frame per room and tick summing the presence changes (for who asked for it)
export declare const LIST_MEMBERS: "list-members";
export declare const MEMBERS: "members";
export declare const PRESENCE_BATCH: "presence-batch";
// a room's owner mutes, unmutes, removes or readmits a member (payload: username, action);
// the room is told with ``moderated`` (room, username, action, by)
export declare const MODERATE: "moderate";
export declare const MODERATED: "moderated";

// a kept message changed (docs/protocol.md, "Edits, deletions, replies"): its author edits
// or deletes it (a room's owner deletes any) by its seq; the room gets the notice live and
// the history keeps the message as it now is (a deleted one without its text)
export declare const EDIT_MESSAGE: "edit-message";
export declare const DELETE_MESSAGE: "delete-message";
export declare const MESSAGE_EDITED: "message-edited";
export declare const MESSAGE_DELETED: "message-deleted";
// each person's read position in a room: `read` sets it, `unread` tells every connection
// of that identity in the room (and answers the `read`)
export declare const READ: "read";
export declare const UNREAD: "unread";
/**
 * the field of a `message` request naming the seq it replies to; the kept message then
 * carries `reply` (the seq, the replied-to author as verified, and a quote)
 */
export declare const REPLY_TO: "reply_to";
/** the longest quote of the replied-to message's ``content`` a reply carries (characters) */
export declare const REPLY_QUOTE_MAX_LENGTH: 140;

// continuity (docs/protocol.md, "Continuity"): the rooms an identity is in, remembered by the
// server (asked for, and forgotten, by name), and kept direct messages replayed on join
export declare const LIST_MY_ROOMS: "list-my-rooms";
export declare const MY_ROOMS: "my-rooms";
export declare const FORGET_ROOM: "forget-room";
export declare const ROOM_FORGOTTEN: "room-forgotten";

export declare const ROOM_REQUESTS: readonly ("connect" | "delete-message" | "direct-message" | "disconnect" | "edit-message" | "forget-room" | "join-room" | "leave-room" | "list-members" | "list-my-rooms" | "message" | "moderate" | "presence" | "read" | "shared")[];

/**
 * A ``moderate`` request's ``action``: what a room's owner does to one member (by username).
 *
 * Kept with the room's access record, so a reconnect does not lift it. A muted member's
 * room messages are refused (``muted``); a removed one leaves the room and may not enter
 * it again until readmitted (or, in a private room, invited again).
 */
export declare const ModerationAction: Readonly<{ MUTE: "mute"; UNMUTE: "unmute"; REMOVE: "remove"; READMIT: "readmit" }>;
/** One of the values of `ModerationAction`. */
export type ModerationActionValue = (typeof ModerationAction)[keyof typeof ModerationAction];

/** Why the server sent ``room-left`` without being asked (its optional ``reason``). */
export declare const LeftReason: Readonly<{ REMOVED: "removed" }>;
/** One of the values of `LeftReason`. */
export type LeftReasonValue = (typeof LeftReason)[keyof typeof LeftReason];

/**
 * Who may enter a room (REST ``access``): anyone, a Hub group's members, or its member list.
 * its owner and the usernames the owner invited
 */
export declare const AccessKind: Readonly<{ PUBLIC: "public"; GROUP: "group"; PRIVATE: "private" }>;
/** One of the values of `AccessKind`. */
export type AccessKindValue = (typeof AccessKind)[keyof typeof AccessKind];

// -- frame types: signaling endpoint -------------------------------------------------
export declare const JOIN: "join";
export declare const LEAVE: "leave";
export declare const JOINED: "joined";
export declare const PEER_JOINED: "peer-joined";
export declare const PEER_LEFT: "peer-left";
export declare const OFFER: "offer";
export declare const ANSWER: "answer";
export declare const ICE_CANDIDATE: "ice-candidate";
export declare const RELAYED: readonly ["offer", "answer", "ice-candidate"];
/** the payload field that carries each relayed type's body (and is relayed under that name) */
export declare const RELAY_BODY: Readonly<{ offer: "offer"; answer: "answer"; "ice-candidate": "candidate" }>;
// A peer link's frames through the server when no direct path opens (the notebook client's
// `iavicenne.relay`): addressed like an offer (payload.target_peer_id), the body in
// payload.data (a JSON object); the server forwards it, with source_peer_id and
// source_identity, to the target peer's signaling connection only: no history, no copy to
// the user's other connections. It counts in the identity's bytes per second as any frame.
export declare const RELAY: "relay";
export declare const RELAY_DATA: "data";
/**
 * the largest relay frame (as the server forwards it, encoded) a relay carries; above it:
 * limit-exceeded, and the socket goes on (a frame over max_frame_bytes closes it instead).
 * Room for a 192 KiB chunk as base64 (4/3) or as text that JSON escapes to twice its size.
 */
export declare const RELAY_MAX_BYTES: 786432;
export declare const SIGNALING_REQUESTS: readonly ("answer" | "ice-candidate" | "join" | "leave" | "offer" | "relay")[];

/** the longest ``ref`` a client may give a request (echoed in the answer) */
export declare const REF_MAX_LENGTH: 128;

/**
 * join-room payload field: the last ``direct_seq`` the client has (its kept direct
 * messages after it are replayed); room-joined answers the room's last one as ``direct_seq``
 */
export declare const DIRECT_SINCE: "direct_since";
export declare const DIRECT_SEQ: "direct_seq";

// -- errors.py. Refusals: the codes of error frames and of closed sockets, and `ProtocolError`.
/** Machine-readable ``code`` of an error frame (an addition; ``message`` stays the seed's). */
export declare const ErrorCode: Readonly<{ INVALID_JSON: "invalid-json"; INVALID_FRAME: "invalid-frame"; TYPE_REQUIRED: "type-required"; UNKNOWN_TYPE: "unknown-type"; BINARY_FRAME: "binary-frame"; USER_ID_REQUIRED: "user-id-required"; PEER_ID_REQUIRED: "peer-id-required"; TARGET_REQUIRED: "target-required"; ROOM_REQUIRED: "room-required"; INVALID_FIELD: "invalid-field"; NOT_IN_ROOM: "not-in-room"; ALREADY_CONNECTED: "already-connected"; NAME_TAKEN: "name-taken"; NAME_NOT_YOURS: "name-not-yours"; FORBIDDEN: "forbidden"; UNKNOWN_ROOM: "unknown-room"; ROOM_EXISTS: "room-exists"; SUPERSEDED: "superseded"; UNKNOWN_USER: "unknown-user"; UNKNOWN_PEER: "unknown-peer"; UNKNOWN_MESSAGE: "unknown-message"; TOO_MANY_ROOMS: "too-many-rooms"; RATE_LIMITED: "rate-limited"; MUTED: "muted"; LIMIT_EXCEEDED: "limit-exceeded"; UNAVAILABLE: "unavailable"; INTERNAL: "internal-error" }>;
/** One of the values of `ErrorCode`. */
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

// WebSocket close codes the server uses (RFC 6455 section 7.4.1).
export declare const CLOSE_NORMAL: 1000;
export declare const CLOSE_GOING_AWAY: 1001;
/** slow consumer: outbound buffer over its limit */
export declare const CLOSE_POLICY: 1008;
/** frame larger than the configured limit */
export declare const CLOSE_TOO_BIG: 1009;
/** a newer connection of the same user took the peer_id over: do not reconnect */
export declare const CLOSE_SUPERSEDED: 4000;

// -- names.py. The name rule of rooms, users and peers: what people type and read.
export declare const NAME_MAX_LENGTH: 64;
export declare const NAME_SEPARATORS: ".@:+#~-_";
export declare const NAME_RULE: "use 1 to 64 letters, digits, inner spaces or .@:+#~-_";

// the name rule as a regex, built from its parts (NAME_RULE says it in words)
export declare const NAME_PATTERN: RegExp;

// -- members.py. Rooms of thousands: how the others' presence changes arrive, and the pages of a room's member list.
/** ``join-room`` ``payload.presence``: how the other members' presence changes arrive. */
export declare const PresenceMode: Readonly<{ EACH: "each"; BATCHED: "batched" }>;
/** One of the values of `PresenceMode`. */
export type PresenceModeValue = (typeof PresenceMode)[keyof typeof PresenceMode];

/**
 * the most members one room-joined or members frame may list when a client asks for more
 * (a list-members limit, a join-room members_limit, above it: invalid-field)
 */
export declare const MAX_MEMBERS_PAGE: 10000;
/**
 * a members cursor (``members_next``, list-members ``after``) is this prefix and the
 * user_id of the last member listed; "m:" alone is the start of the list
 */
export declare const MEMBERS_CURSOR_PREFIX: "m:";

/** ``identity.kind``: what a member is. Absent means a person (every seed client). */
export declare const MemberKind: Readonly<{ PERSON: "person"; AGENT: "agent" }>;
/** One of the values of `MemberKind`. */
export type MemberKindValue = (typeof MemberKind)[keyof typeof MemberKind];

/** the identity fields an agent's frames carry beside username, name and display_name */
export declare const IDENTITY_KIND: "kind";
export declare const IDENTITY_AGENT: "agent";
/** how an agent is shown: AGENT_DISPLAY_FORMAT.format(agent=..., username=...) */
export declare const AGENT_DISPLAY_FORMAT: "{agent} (for {username})";
/** an agent's user_id in rooms: "<username>#<agent>" (the 'own' name policy's form) */
export declare const AGENT_USER_ID_SEPARATOR: "#";
/** a message that names "@<agent>" or "@<agent's user_id>" in its text mentions that agent */
export declare const MENTION_PREFIX: "@";

// -- sync.py. Shared state: the y-sync codec of ``shared`` frames, one Yjs document per room.
/** the y-protocols message type of a sync message (1 would be awareness) */
export declare const SYNC_MESSAGE: 0;

/** The second varuint of a y-sync message. */
export declare const SyncStep: Readonly<{ STEP1: 0; STEP2: 1; UPDATE: 2 }>;
/** One of the values of `SyncStep`. */
export type SyncStepValue = (typeof SyncStep)[keyof typeof SyncStep];

/** the root map of a room's document that clients present as ``room.shared`` */
export declare const SHARED_ROOT: "shared";
/** the empty Yjs update (no structs, no deletions): a step 2 of one who has nothing new */
export declare const EMPTY_UPDATE_HEX: "0000";

// -- peer_link.py. Peer links: the data-channel wire format (Python `iavicenne.wire`, browser `wire.js`).
export declare const CHANNEL_LABEL: "iavicenne";

/** The first byte of a binary data-channel message. */
export declare const Tag: Readonly<{ BYTES: 0; JSON: 1; START: 2; DATA: 3; END: 4; ABORT: 5; DONE: 6 }>;
/** One of the values of `Tag`. */
export type TagValue = (typeof Tag)[keyof typeof Tag];

/** What a transfer carries, once reassembled. */
export declare const Kind: Readonly<{ BYTES: 0; JSON: 1; TEXT: 2 }>;
/** One of the values of `Kind`. */
export type KindValue = (typeof Kind)[keyof typeof Kind];

/** START flag: the transfer's bytes are zlib-compressed */
export declare const FLAG_ZLIB: 1;
/** what a peer may receive when its SDP names no size (RFC 8841's default) */
export declare const DEFAULT_REMOTE_MAX_MESSAGE: 65536;

// -- control.py. Control messages: the libraries talking to each other across connections.
/** the payload key that makes a direct message a control message; its value is the kind */
export declare const CONTROL_KEY: "iavicenne";

/** The value of `CONTROL_KEY`: what a control message is. */
export declare const ControlKind: Readonly<{ DESCRIBE: "describe"; CONNECTION: "connection"; FILE_OFFER: "file-offer"; FILE_ACCEPT: "file-accept"; FILE_DECLINE: "file-decline"; FILE: "file"; FILE_OUTCOME: "file-outcome"; COPY_REQUEST: "copy-request"; COPY_DECLINE: "copy-decline"; RELAY_OPEN: "relay-open"; RELAY_ACCEPT: "relay-accept"; RELAY_DATA: "relay-data"; RELAY_CREDIT: "relay-credit"; RELAY_CLOSE: "relay-close" }>;
/** One of the values of `ControlKind`. */
export type ControlKindValue = (typeof ControlKind)[keyof typeof ControlKind];

/** the kinds of a relayed peer link's frames */
export declare const RELAY_KINDS: readonly ("relay-accept" | "relay-close" | "relay-credit" | "relay-data" | "relay-open")[];

/** A ``connection`` answer's ``kind``: what sort of place a connection is. */
export declare const ConnectionKind: Readonly<{ KERNEL: "kernel"; LAB: "lab"; PAGE: "page" }>;
/** One of the values of `ConnectionKind`. */
export type ConnectionKindValue = (typeof ConnectionKind)[keyof typeof ConnectionKind];

/** the longest ``q`` (describe nonce) and relay ``link`` id a client takes */
export declare const CONTROL_ID_MAX_LENGTH: 64;
/** the longest file-offer ``id`` (and copy-request ``id``) a client takes */
export declare const FILE_ID_MAX_LENGTH: 100;
/** the longest ``reason`` / ``error`` a file or copy answer carries (a client cuts longer ones) */
export declare const REASON_MAX_LENGTH: 300;
