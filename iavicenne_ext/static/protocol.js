// Generated from iavicenne_ext/protocol.py by `python -m iavicenne_ext.protocol_js`: do not edit.
// Change protocol.py and run that command; tests/test_protocol_js.py fails while they differ.
// @ts-check
/**
 * The wire protocol, as iavicenne_ext/protocol.py defines it for the server and the
 * Python client: endpoint paths, frame types, error and close codes, the name rule, the
 * relayed bodies, and the peer links' data-channel tags. The browser client imports
 * these values from here and spells none of them itself (docs/protocol.md is the prose).
 */

// -- endpoints, relative to the server's base_url -----------------------------------
export const ROOMS_PATH = "iavicenne/ws/mcp";
export const SIGNALING_PATH = "iavicenne/ws/signaling";
export const REST_PATH = "iavicenne/api/";

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
export const SHARED = "shared"; // the room's shared document (Yjs sync messages): see "shared state" below
// rooms of thousands (docs/protocol.md, "Large rooms"): the next page of a room's members,
// and one frame per room and tick summing the presence changes (for who asked for it)
export const LIST_MEMBERS = "list-members";
export const MEMBERS = "members";
export const PRESENCE_BATCH = "presence-batch";

export const ROOM_REQUESTS = Object.freeze(["connect", "direct-message", "disconnect", "join-room", "leave-room", "list-members", "message", "presence", "shared"]);

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
  TOO_MANY_ROOMS: "too-many-rooms",
  RATE_LIMITED: "rate-limited",
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

// Names are what people type and read, so allow any letter or digit (unicode), a few
// separators, and inner spaces; refuse control characters and anything over 64 chars.
// The rule is written once, as its parts, so that the JavaScript emitter spells the same
// rule with \p{L}\p{N} classes (JavaScript's \w is ASCII only).
export const NAME_MAX_LENGTH = 64;
export const NAME_SEPARATORS = ".@:+#~-_";
export const NAME_RULE = "use 1 to 64 letters, digits, inner spaces or .@:+#~-_";

// the name rule as a regex, built from its parts (NAME_RULE says it in words)
export const NAME_PATTERN = Object.freeze(/^[\p{L}\p{N}_.@:+#~\-_](?:[\p{L}\p{N}_ .@:+#~\-_]{0,62}[\p{L}\p{N}_.@:+#~\-_])?$/u);
export const REF_MAX_LENGTH = 128;

/**
 * A direct message whose payload carries this key (a string value) is the library talking
 * to itself across connections (a peer link relayed through the server, a kernel
 * describing itself): clients hand it to their "control" event, never show it as chat.
 */
export const CONTROL_KEY = "iavicenne";

// -- peer links: the data-channel wire format (Python `iavicenne.wire`, browser `wire.js`) --
// A string message is text. A binary message starts with a tag byte: BYTES, JSON (UTF-8),
// or a transfer of a payload larger than one message: START (id u32, kind u8, flags u8,
// size u64 before compression, big-endian), DATA pieces, END (id); the receiver answers
// DONE (id) once it has it all, and ABORT (id) drops a transfer the sender gave up; an
// ABORT (id, UTF-8 reason) from the receiver says it refused the sender's transfer id.
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

// -- shared state: one Yjs document per room (iavicenne_ext/shared_state.py) ----------
// A ``shared`` frame carries one message of the Yjs sync protocol (y-protocols' sync.js,
// pycrdt's y-sync helpers), base64 in ``payload.sync`` (client) or ``sync`` (server):
// varuint 0 (sync), varuint step, varuint length, bytes. Step 1 is a state vector, step 2
// the updates its sender has and the other lacks, an update a live edit. A client sends
// step 1 once joined; the server answers step 2 (everything the client lacks: the whole
// document for a newcomer) and, to members who may write, its own step 1, which the client
// answers with step 2 (its offline edits). Accepted updates go to the room's other
// connections as ``shared`` frames with the writer's ``user_id`` and ``identity``.
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
