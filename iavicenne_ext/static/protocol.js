// Generated from iavicenne_protocol/ by `python -m iavicenne_ext.protocol_js`: do not edit.
// Change the package and run that command; tests/browser/test_protocol_js.py fails while they differ.
// @ts-check
/**
 * The wire protocol, as the package iavicenne_protocol defines it for the server and the
 * Python client: endpoint paths, frame types, error and close codes, the name rule, the
 * relayed bodies, the y-sync codec's constants, the peer links' data-channel tags and the
 * control messages. The browser client (and the JupyterLab extension, through it) imports
 * these values from here and spells none of them itself (docs/protocol.md is the prose).
 */

// -- frames.py. Frames: the endpoints, the frame types of each, and the envelope every frame shares.
// -- endpoints, relative to the server's base_url -----------------------------------
export const ROOMS_PATH = "iavicenne/ws/mcp";
export const SIGNALING_PATH = "iavicenne/ws/signaling";
export const REST_PATH = "iavicenne/api/";
// AI agents over the Model Context Protocol (streamable HTTP; docs/agents.md)
export const MCP_PATH = "iavicenne/mcp";

// -- frame types: room endpoint ------------------------------------------------------
export const CONNECT = "connect";
export const JOIN_ROOM = "join-room";
export const LEAVE_ROOM = "leave-room";
export const MESSAGE = "message";
export const DISCONNECT = "disconnect";
export const ROOM_JOINED = "room-joined";
export const ROOM_LEFT = "room-left";
export const USER_JOINED = "user-joined";
export const USER_LEFT = "user-left";
export const ERROR = "error";
// additions
export const PRESENCE = "presence";
export const DIRECT_MESSAGE = "direct-message";
export const ACK = "ack";
export const SHARED = "shared"; // the room's shared document (Yjs sync messages): see sync.py
// rooms of thousands (docs/protocol.md, "Large rooms"): the next page of a room's members,
// and one frame per room and tick summing the presence changes (for who asked for it)
export const LIST_MEMBERS = "list-members";
export const MEMBERS = "members";
export const PRESENCE_BATCH = "presence-batch";
// a room's owner mutes, unmutes, removes or readmits a member (payload: username, action);
// the room is told with ``moderated`` (room, username, action, by)
export const MODERATE = "moderate";
export const MODERATED = "moderated";

// a kept message changed (docs/protocol.md, "Edits, deletions, replies"): its author edits
// or deletes it (a room's owner deletes any) by its seq; the room gets the notice live and
// the history keeps the message as it now is (a deleted one without its text)
export const EDIT_MESSAGE = "edit-message";
export const DELETE_MESSAGE = "delete-message";
export const MESSAGE_EDITED = "message-edited";
export const MESSAGE_DELETED = "message-deleted";
// each person's read position in a room: `read` sets it, `unread` tells every connection
// of that identity in the room (and answers the `read`)
export const READ = "read";
export const UNREAD = "unread";
/**
 * the field of a `message` request naming the seq it replies to; the kept message then
 * carries `reply` (the seq, the replied-to author as verified, and a quote)
 */
export const REPLY_TO = "reply_to";
/** the longest quote of the replied-to message's ``content`` a reply carries (characters) */
export const REPLY_QUOTE_MAX_LENGTH = 140;

// continuity (docs/protocol.md, "Continuity"): the rooms an identity is in, remembered by the
// server (asked for, and forgotten, by name), and kept direct messages replayed on join
export const LIST_MY_ROOMS = "list-my-rooms";
export const MY_ROOMS = "my-rooms";
export const FORGET_ROOM = "forget-room";
export const ROOM_FORGOTTEN = "room-forgotten";

export const ROOM_REQUESTS = Object.freeze(["connect", "delete-message", "direct-message", "disconnect", "edit-message", "forget-room", "join-room", "leave-room", "list-members", "list-my-rooms", "message", "moderate", "presence", "read", "shared"]);

/**
 * A ``moderate`` request's ``action``: what a room's owner does to one member (by username).
 *
 * Kept with the room's access record, so a reconnect does not lift it. A muted member's
 * room messages are refused (``muted``); a removed one leaves the room and may not enter
 * it again until readmitted (or, in a private room, invited again).
 */
export const ModerationAction = Object.freeze({
  MUTE: "mute",
  UNMUTE: "unmute",
  REMOVE: "remove",
  READMIT: "readmit",
});

/** Why the server sent ``room-left`` without being asked (its optional ``reason``). */
export const LeftReason = Object.freeze({
  // the owner removed this identity from a private room, or deleted the room's member list
  REMOVED: "removed",
});

/** Who may enter a room (REST ``access``): anyone, a Hub group's members, or its member list. */
export const AccessKind = Object.freeze({ // its owner and the usernames the owner invited
  PUBLIC: "public", // anyone authenticated: a room without an access record
  GROUP: "group", // the members of one group (JupyterHub's groups)
  PRIVATE: "private", // its owner and the usernames the owner invited
});

// -- frame types: signaling endpoint -------------------------------------------------
export const JOIN = "join";
export const LEAVE = "leave";
export const JOINED = "joined";
export const PEER_JOINED = "peer-joined";
export const PEER_LEFT = "peer-left";
export const OFFER = "offer";
export const ANSWER = "answer";
export const ICE_CANDIDATE = "ice-candidate";
export const RELAYED = Object.freeze(["offer", "answer", "ice-candidate"]);
/** the payload field that carries each relayed type's body (and is relayed under that name) */
export const RELAY_BODY = Object.freeze({ offer: "offer", answer: "answer", "ice-candidate": "candidate" });
// A peer link's frames through the server when no direct path opens (the notebook client's
// `iavicenne.relay`): addressed like an offer (payload.target_peer_id), the body in
// payload.data (a JSON object); the server forwards it, with source_peer_id and
// source_identity, to the target peer's signaling connection only: no history, no copy to
// the user's other connections. It counts in the identity's bytes per second as any frame.
export const RELAY = "relay";
export const RELAY_DATA = "data";
/**
 * the largest relay frame (as the server forwards it, encoded) a relay carries; above it:
 * limit-exceeded, and the socket goes on (a frame over max_frame_bytes closes it instead).
 * Room for a 192 KiB chunk as base64 (4/3) or as text that JSON escapes to twice its size.
 */
export const RELAY_MAX_BYTES = 786432;
export const SIGNALING_REQUESTS = Object.freeze(["answer", "ice-candidate", "join", "leave", "offer", "relay"]);

/** the longest ``ref`` a client may give a request (echoed in the answer) */
export const REF_MAX_LENGTH = 128;

/**
 * join-room payload field: the last ``direct_seq`` the client has (its kept direct
 * messages after it are replayed); room-joined answers the room's last one as ``direct_seq``
 */
export const DIRECT_SINCE = "direct_since";
export const DIRECT_SEQ = "direct_seq";

// -- errors.py. Refusals: the codes of error frames and of closed sockets, and `ProtocolError`.
/** Machine-readable ``code`` of an error frame (an addition; ``message`` stays the seed's). */
export const ErrorCode = Object.freeze({
  INVALID_JSON: "invalid-json",
  INVALID_FRAME: "invalid-frame",
  TYPE_REQUIRED: "type-required",
  UNKNOWN_TYPE: "unknown-type",
  BINARY_FRAME: "binary-frame",
  USER_ID_REQUIRED: "user-id-required",
  PEER_ID_REQUIRED: "peer-id-required",
  TARGET_REQUIRED: "target-required",
  ROOM_REQUIRED: "room-required",
  INVALID_FIELD: "invalid-field",
  NOT_IN_ROOM: "not-in-room",
  ALREADY_CONNECTED: "already-connected",
  NAME_TAKEN: "name-taken",
  // under the 'own' name policy (JupyterHub): a user_id / peer_id is the identity's name,
  // or "<name>#<suffix>"; any other is refused with this
  NAME_NOT_YOURS: "name-not-yours",
  // the room is private (or a group's) and this identity is not among its members
  FORBIDDEN: "forbidden",
  // REST (iavicenne/api/rooms): no such room for this caller (or not one it may see),
  // and a room that cannot get an access record (one exists, or it has people or history)
  UNKNOWN_ROOM: "unknown-room",
  ROOM_EXISTS: "room-exists",
  SUPERSEDED: "superseded", // a newer connection of the same user took this peer_id over
  UNKNOWN_USER: "unknown-user",
  UNKNOWN_PEER: "unknown-peer",
  // edit-message, delete-message, a reply: no such kept message (never sent, trimmed from
  // the history, deleted, or of another life of the room)
  UNKNOWN_MESSAGE: "unknown-message",
  TOO_MANY_ROOMS: "too-many-rooms",
  RATE_LIMITED: "rate-limited",
  // the room's owner muted this identity in the room (``moderate``): its messages are refused
  MUTED: "muted",
  // a budget was reached; the frame names it: "option" (the IAvicenne traitlet that
  // raises it) and "limit" (its value)
  LIMIT_EXCEEDED: "limit-exceeded",
  UNAVAILABLE: "unavailable",
  INTERNAL: "internal-error",
});

// WebSocket close codes the server uses (RFC 6455 section 7.4.1).
export const CLOSE_NORMAL = 1000;
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_POLICY = 1008; // slow consumer: outbound buffer over its limit
export const CLOSE_TOO_BIG = 1009; // frame larger than the configured limit
export const CLOSE_SUPERSEDED = 4000; // a newer connection of the same user took the peer_id over: do not reconnect

// -- names.py. The name rule of rooms, users and peers: what people type and read.
export const NAME_MAX_LENGTH = 64;
export const NAME_SEPARATORS = ".@:+#~-_";
export const NAME_RULE = "use 1 to 64 letters, digits, inner spaces or .@:+#~-_";

// the name rule as a regex, built from its parts (NAME_RULE says it in words)
export const NAME_PATTERN = Object.freeze(/^[\p{L}\p{N}_.@:+#~\-_](?:[\p{L}\p{N}_ .@:+#~\-_]{0,62}[\p{L}\p{N}_.@:+#~\-_])?$/u);

// -- members.py. Rooms of thousands: how the others' presence changes arrive, and the pages of a room's member list.
/** ``join-room`` ``payload.presence``: how the other members' presence changes arrive. */
export const PresenceMode = Object.freeze({
  // one user-joined / user-left / presence frame per change (the seed's way, the default)
  EACH: "each",
  // one presence-batch frame per room and tick (IAvicenne.presence_batch_interval)
  BATCHED: "batched",
});

/**
 * the most members one room-joined or members frame may list when a client asks for more
 * (a list-members limit, a join-room members_limit, above it: invalid-field)
 */
export const MAX_MEMBERS_PAGE = 10_000;
/**
 * a members cursor (``members_next``, list-members ``after``) is this prefix and the
 * user_id of the last member listed; "m:" alone is the start of the list
 */
export const MEMBERS_CURSOR_PREFIX = "m:";

/** ``identity.kind``: what a member is. Absent means a person (every seed client). */
export const MemberKind = Object.freeze({
  PERSON: "person",
  // an AI agent connected over MCP (iavicenne/mcp) with a person's token: its identity is
  // that person's (``username``), its ``display_name`` "<agent> (for <username>)", and
  // ``identity.agent`` its name; clients badge its messages
  AGENT: "agent",
});

/** the identity fields an agent's frames carry beside username, name and display_name */
export const IDENTITY_KIND = "kind";
export const IDENTITY_AGENT = "agent";
/** how an agent is shown: AGENT_DISPLAY_FORMAT.format(agent=..., username=...) */
export const AGENT_DISPLAY_FORMAT = "{agent} (for {username})";
/** an agent's user_id in rooms: "<username>#<agent>" (the 'own' name policy's form) */
export const AGENT_USER_ID_SEPARATOR = "#";
/** a message that names "@<agent>" or "@<agent's user_id>" in its text mentions that agent */
export const MENTION_PREFIX = "@";

// -- sync.py. Shared state: the y-sync codec of ``shared`` frames, one Yjs document per room.
export const SYNC_MESSAGE = 0; // the y-protocols message type of a sync message (1 would be awareness)

/** The second varuint of a y-sync message. */
export const SyncStep = Object.freeze({
  // a state vector: "send me what I lack"
  STEP1: 0,
  // the updates the asker lacks
  STEP2: 1,
  // a live edit
  UPDATE: 2,
});

/** the root map of a room's document that clients present as ``room.shared`` */
export const SHARED_ROOT = "shared";
/** the empty Yjs update (no structs, no deletions): a step 2 of one who has nothing new */
export const EMPTY_UPDATE_HEX = "0000";

// -- peer_link.py. Peer links: the data-channel wire format (Python `iavicenne.wire`, browser `wire.js`).
export const CHANNEL_LABEL = "iavicenne";

/** The first byte of a binary data-channel message. */
export const Tag = Object.freeze({
  BYTES: 0x00,
  JSON: 0x01,
  START: 0x02,
  DATA: 0x03,
  END: 0x04,
  ABORT: 0x05,
  DONE: 0x06,
});

/** What a transfer carries, once reassembled. */
export const Kind = Object.freeze({
  BYTES: 0,
  JSON: 1,
  TEXT: 2,
});

export const FLAG_ZLIB = 1; // START flag: the transfer's bytes are zlib-compressed
/** what a peer may receive when its SDP names no size (RFC 8841's default) */
export const DEFAULT_REMOTE_MAX_MESSAGE = 65536;

// -- control.py. Control messages: the libraries talking to each other across connections.
/** the payload key that makes a direct message a control message; its value is the kind */
export const CONTROL_KEY = "iavicenne";

/** The value of `CONTROL_KEY`: what a control message is. */
export const ControlKind = Object.freeze({
  // where a member's connections are: the question, and each connection's answer
  DESCRIBE: "describe",
  CONNECTION: "connection",
  // files between people: the offer and its answers (direct messages), then the file's
  // header on the peer link the sender opens to whoever accepted
  FILE_OFFER: "file-offer",
  FILE_ACCEPT: "file-accept",
  FILE_DECLINE: "file-decline",
  FILE: "file",
  // what became of a file once its bytes arrived (saved where, or why not)
  FILE_OUTCOME: "file-outcome",
  // a copy of the document a member looks at: the request, and its refusal (an accepted
  // request is answered by a file-offer naming it)
  COPY_REQUEST: "copy-request",
  COPY_DECLINE: "copy-decline",
  // a peer link through the server, when no direct path exists
  RELAY_OPEN: "relay-open",
  RELAY_ACCEPT: "relay-accept",
  RELAY_DATA: "relay-data",
  RELAY_CREDIT: "relay-credit",
  RELAY_CLOSE: "relay-close",
});

/** the kinds of a relayed peer link's frames */
export const RELAY_KINDS = Object.freeze(["relay-accept", "relay-close", "relay-credit", "relay-data", "relay-open"]);

/** A ``connection`` answer's ``kind``: what sort of place a connection is. */
export const ConnectionKind = Object.freeze({
  KERNEL: "kernel",
  // a JupyterLab window (it says which ``document`` it shows)
  LAB: "lab",
  // not on the wire: a connection that did not describe itself (a browser page, a script)
  PAGE: "page",
});

/** the longest ``q`` (describe nonce) and relay ``link`` id a client takes */
export const CONTROL_ID_MAX_LENGTH = 64;
/** the longest file-offer ``id`` (and copy-request ``id``) a client takes */
export const FILE_ID_MAX_LENGTH = 100;
/** the longest ``reason`` / ``error`` a file or copy answer carries (a client cuts longer ones) */
export const REASON_MAX_LENGTH = 300;
