/**
 * What can go wrong, as exceptions that say what to fix: the connection's errors, the
 * error an `error` frame stands for (`errorFrom`), the peer links' errors, and
 * `checkName`, the check of a room, user or peer name before anything is sent (the
 * server applies the same rule, iavicenne_protocol's).
 */

import { ErrorCode, NAME_MAX_LENGTH, NAME_PATTERN, NAME_RULE } from "./protocol.js";

/** Something the client cannot do; the message says what to fix. */
export class IAvicenneError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

/** The client was closed, or stopped for good after a fatal error. */
export class ConnectionClosed extends IAvicenneError {}

/** The server refused our credentials (HTTP 403). */
export class AuthenticationError extends IAvicenneError {}

/** The server answered a request with an `error` frame (`code`, `frame`). */
export class RequestFailed extends IAvicenneError {
  /** @param {Record<string, any>} frame */
  constructor(frame) {
    const code = typeof frame.code === "string" ? frame.code : "";
    super(`${frame.message ?? "request failed"} (code ${code || "?"})`);
    this.code = code;
    this.frame = frame;
  }
}

/** The user_id or peer_id is held in that room by another user. */
export class NameTaken extends RequestFailed {}
/** The target of a relay or a direct message is not in the room. */
export class UnknownPeer extends RequestFailed {}
/** A newer connection of the same user took this peer_id over; this one stopped. */
export class Superseded extends RequestFailed {}
/** The room is private (or a group's) and we are not in it, or only its owner may do that. */
export class Forbidden extends RequestFailed {}

/**
 * The socket closed while a request waited; the reconnect repeats what matters. Internal
 * to the connection (never reaches a caller), so the entry module does not export it.
 */
export class Disconnected extends Error {}

/**
 * The exception for an error frame.
 * @param {Record<string, any>} frame
 * @returns {RequestFailed}
 */
export function errorFrom(frame) {
  switch (frame.code) {
    case ErrorCode.NAME_TAKEN:
      return new NameTaken(frame);
    case ErrorCode.UNKNOWN_PEER:
    case ErrorCode.UNKNOWN_USER:
      return new UnknownPeer(frame);
    case ErrorCode.SUPERSEDED:
      return new Superseded(frame);
    case ErrorCode.FORBIDDEN:
      return new Forbidden(frame);
    default:
      return new RequestFailed(frame);
  }
}

/**
 * Check a room, user or peer name as the server does; returns it or throws.
 * @param {unknown} value
 * @param {string} field
 * @returns {string}
 */
export function checkName(value, field) {
  if (typeof value !== "string") throw new IAvicenneError(`${field} must be a string`);
  if (!NAME_PATTERN.test(value)) {
    throw new IAvicenneError(`invalid ${field} ${JSON.stringify(value.slice(0, NAME_MAX_LENGTH))}: ${NAME_RULE}`);
  }
  return value;
}

// -- peer links -------------------------------------------------------------------------

/** A peer link could not be opened or used. */
export class PeerLinkError extends IAvicenneError {}
/** No network path to the peer (ICE failed), or it did not answer in time. */
export class PeerUnreachable extends PeerLinkError {}
/** The link is closed (by either side); pending sends end with this. */
export class PeerLinkClosed extends PeerLinkError {}
/** The peer left the signaling room. */
export class PeerLeft extends PeerLinkClosed {}

/**
 * The other end of a link is not the identity that holds that name in the room (the
 * server vouches for who sends each signal: `source_identity`); the link is refused.
 */
export class PeerIdentityMismatch extends PeerLinkError {
  /**
   * @param {string} message
   * @param {{ expected?: Record<string, any> | null, found?: Record<string, any> | null }} [details]
   */
  constructor(message, { expected = null, found = null } = {}) {
    super(message);
    /** The identity that holds the name in the room (public fields), or null. */
    this.expected = expected;
    /** The identity the server says is at the other end, or null. */
    this.found = found;
  }
}

/**
 * A transfer from a peer was dropped before it was delivered: it declared more than
 * this side accepts (`option` names the setting that raises `limit`), or it sent more
 * than it declared. The link stays open; the rest of that transfer is ignored.
 */
export class TransferRefused extends PeerLinkError {
  /**
   * @param {string} message
   * @param {{ transfer: number, declared: number, option?: string | null, limit?: number | null }} details
   */
  constructor(message, { transfer, declared, option = null, limit = null }) {
    super(message);
    /** The transfer's id. */
    this.transfer = transfer;
    /** The size it declared, in bytes. */
    this.declared = declared;
    /** The option that raises the limit it hit (`maxTransferBytes`), or null. */
    this.option = option;
    this.limit = limit;
  }
}
