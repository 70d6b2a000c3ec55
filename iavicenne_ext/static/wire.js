/**
 * The peer links' wire format on the data channel, shared with the Python peer link
 * (`iavicenne.wire`); the tags and flags are iavicenne_protocol's. A string message is text. A
 * binary message starts with a tag byte: BYTES, or a JSON value (UTF-8); a payload
 * larger than one message is a transfer: START (id u32, kind u8, flags u8, size u64
 * before compression, big-endian), DATA pieces, END (id); the receiver answers DONE (id)
 * once it has it all, and ABORT (id) tells it to drop a transfer the sender gave up; an
 * ABORT (id, UTF-8 reason) from the receiver says it refused the sender's transfer id.
 *
 * The receiving side trusts nothing a peer declares: a transfer larger than
 * `maxTransferBytes` is refused at its START, one that sends more than it declared (or,
 * compressed, inflates past it) is dropped as soon as it does, so a transfer never holds
 * more than its declared size, and inflating one is stopped there, not after the bomb
 * went off.
 */

import { PeerLinkError, TransferRefused } from "./errors.js";
import { FLAG_ZLIB, Kind, Tag } from "./protocol.js";

export { FLAG_ZLIB, Kind, Tag };

/** What a receiver accepts of one transfer unless told otherwise (`maxTransferBytes`): 256 MiB. */
export const DEFAULT_MAX_TRANSFER_BYTES = 256 * 1024 * 1024;

// Compressed bytes are fed to the inflater this many at a time, and its output is
// counted between two feeds: deflate inflates at most ~1032 times, so a zlib bomb
// overshoots the declared size by at most about 8 MiB before it is stopped.
const INFLATE_SLICE = 8192;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** @param {number} count */
function bytesText(count) {
  return count >= 1 << 20 ? `${(count / (1 << 20)).toFixed(1)} MiB` : `${count} bytes`;
}

/**
 * The most compressed bytes a payload of `size` bytes can take: zlib's conservative
 * bound (deflateBound for any settings) plus its header and checksum. More is no
 * honest stream (empty deflate blocks would let a sender send input for ever).
 * @param {number} size
 */
function compressedBound(size) {
  return size + Math.ceil(size / 8) + Math.ceil(size / 64) + 5 + 6 + 64;
}

/** Longest refusal reason read or written (another person's text: kept short). */
export const REASON_MAX_BYTES = 2000;

/**
 * The receiver's ABORT of the peer's transfer `id`, saying why (as the Python peer does).
 * @param {number} id
 * @param {string} reason
 */
export function refusalFrame(id, reason) {
  return concat(idFrame(Tag.ABORT, id), encoder.encode(reason).subarray(0, REASON_MAX_BYTES));
}

/**
 * A message that carries only a transfer id: END, ABORT, DONE.
 * @param {number} tag
 * @param {number} id
 */
export function idFrame(tag, id) {
  const frame = new Uint8Array(5);
  frame[0] = tag;
  new DataView(frame.buffer).setUint32(1, id);
  return frame;
}

/**
 * @param {number} id
 * @param {number} kind
 * @param {number} flags
 * @param {number} size
 */
function startFrame(id, kind, flags, size) {
  const frame = new Uint8Array(15);
  const view = new DataView(frame.buffer);
  frame[0] = Tag.START;
  view.setUint32(1, id);
  view.setUint8(5, kind);
  view.setUint8(6, flags);
  view.setBigUint64(7, BigInt(size));
  return frame;
}

/**
 * @param {Uint8Array} head
 * @param {Uint8Array} body
 */
function concat(head, body) {
  const out = new Uint8Array(head.length + body.length);
  out.set(head, 0);
  out.set(body, head.length);
  return out;
}

/**
 * What `send` puts on the wire for `data`: its kind and its payload bytes (text stays a
 * string when it fits in one message).
 * @param {unknown} data
 * @returns {{ kind: number, payload: Uint8Array, text?: string }}
 */
export function encodePayload(data) {
  if (typeof data === "string") return { kind: Kind.TEXT, payload: encoder.encode(data), text: data };
  if (data instanceof ArrayBuffer) return { kind: Kind.BYTES, payload: new Uint8Array(data) };
  if (ArrayBuffer.isView(data)) return { kind: Kind.BYTES, payload: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  let json;
  try {
    json = JSON.stringify(data);
  } catch (error) {
    throw new TypeError(`a peer link sends strings, bytes or JSON values; this is not one: ${error}`, { cause: error });
  }
  if (json === undefined) throw new TypeError(`a peer link sends strings, bytes or JSON values; not ${typeof data}`);
  return { kind: Kind.JSON, payload: encoder.encode(json) };
}

/**
 * The channel messages that carry one payload: one message when it fits in
 * `maxMessageSize`, else a transfer (START, DATA pieces, END) with id `id`.
 * @param {unknown} data
 * @param {number} maxMessageSize
 * @param {number} id the transfer's id, used only if it is one
 * @returns {{ messages: Array<string | Uint8Array>, transfer: boolean, size: number }}
 */
export function frameMessages(data, maxMessageSize, id) {
  const { kind, payload, text } = encodePayload(data);
  const tagged = kind !== Kind.TEXT;
  if (payload.length + (tagged ? 1 : 0) <= maxMessageSize) {
    if (!tagged) return { messages: [/** @type {string} */ (text)], transfer: false, size: payload.length };
    const tag = new Uint8Array([kind === Kind.BYTES ? Tag.BYTES : Tag.JSON]);
    return { messages: [concat(tag, payload)], transfer: false, size: payload.length };
  }
  const piece = maxMessageSize - 1;
  /** @type {Array<string | Uint8Array>} */
  const messages = [startFrame(id, kind, 0, payload.length)];
  const dataTag = new Uint8Array([Tag.DATA]);
  for (let offset = 0; offset < payload.length; offset += piece) {
    messages.push(concat(dataTag, payload.subarray(offset, offset + piece)));
  }
  messages.push(idFrame(Tag.END, id));
  return { messages, transfer: true, size: payload.length };
}

/**
 * Inflates one zlib-compressed transfer (what Python's zlib.compressobj writes) as its
 * pieces come, into a buffer of its declared size, and stops the moment the output
 * would pass it. Its input waits until the inflation before it is over (`after`), so a
 * burst of compressed transfers inflates one at a time.
 */
class Inflater {
  /**
   * @param {string} label "transfer 3 from \"bob\"", for messages
   * @param {{ id: number, size: number }} transfer
   * @param {Promise<unknown>} after
   */
  constructor(label, { id, size }, after) {
    const global = /** @type {any} */ (globalThis);
    const stream = new global.DecompressionStream("deflate");
    this.label = label;
    this.id = id;
    this.size = size;
    /** @type {WritableStreamDefaultWriter<Uint8Array>} */
    this._writer = stream.writable.getWriter();
    /** @type {ReadableStreamDefaultReader<Uint8Array>} */
    this._reader = stream.readable.getReader();
    /** @type {Uint8Array | null} allocated at the first output, never larger than the declared size */
    this._out = null;
    this._length = 0;
    this._cancelled = false;
    /** @type {Promise<unknown>} the writes, in order */
    this._writes = after.then(
      () => {},
      () => {},
    );
    /** The payload once inflated; rejects with why it was stopped. */
    this.output = this._read();
    this.output.catch(() => {}); // its owner handles it; never an unhandled rejection
  }

  /** @param {Uint8Array} piece */
  push(piece) {
    for (let at = 0; at < piece.length; at += INFLATE_SLICE) {
      const slice = piece.subarray(at, at + INFLATE_SLICE);
      this._writes = this._writes.then(() => (this._cancelled ? undefined : this._writer.write(slice)));
    }
    this._writes.catch(() => {}); // a write fails only when the stream failed: the read says why
  }

  /** No more input; resolves with the payload. */
  end() {
    this._writes = this._writes.then(() => (this._cancelled ? undefined : this._writer.close()));
    this._writes.catch(() => {});
    return this.output;
  }

  /** Stop inflating and let go of the output. */
  cancel() {
    if (this._cancelled) return;
    this._cancelled = true;
    this._out = null;
    this._reader.cancel().catch(() => {});
    this._writer.abort().catch(() => {});
  }

  /** @returns {Promise<Uint8Array>} */
  async _read() {
    for (;;) {
      let chunk;
      try {
        chunk = await this._reader.read();
      } catch (error) {
        if (this._cancelled) throw new PeerLinkError(`${this.label} was dropped`);
        throw new PeerLinkError(`${this.label} is not valid zlib data: ${/** @type {Error} */ (error).message}`);
      }
      if (chunk.done) break;
      const value = chunk.value;
      if (this._length + value.length > this.size) {
        this.cancel();
        throw new TransferRefused(
          `${this.label} inflates to more than the ${bytesText(this.size)} it declared (a zlib bomb?): refused, inflating stopped at ${bytesText(this.size)}`,
          { transfer: this.id, declared: this.size },
        );
      }
      this._out ??= new Uint8Array(this.size);
      this._out.set(value, this._length);
      this._length += value.length;
    }
    if (this._cancelled || !this._out) return new Uint8Array(0);
    return this._out.subarray(0, this._length);
  }
}

/**
 * @typedef {object} Incoming
 * @property {number} id
 * @property {number} kind
 * @property {number} flags
 * @property {number} size the declared size (before compression)
 * @property {number} received bytes received so far (compressed, for a compressed transfer)
 * @property {Uint8Array | null} buffer an uncompressed transfer's bytes: allocated once, at its declared size
 * @property {Inflater | null} inflater a compressed transfer's
 * @property {"receiving" | "ended" | "dropped"} state
 */

/**
 * Reads the messages of a channel back into payloads: `receive(message)` returns what
 * it completes (see the framing above). Transfers arrive one at a time per sender.
 *
 * A transfer that breaks the bounds (declares more than `maxTransferBytes`, sends more
 * than it declared, inflates past it, is not valid zlib data) is dropped at once and
 * `onError` gets a `TransferRefused` (or a `PeerLinkError`) saying why; its later pieces
 * and its END are ignored. A transfer whose END came is settled by its `finish` promise.
 */
export class Reassembler {
  /**
   * @param {{ maxTransferBytes?: number, onError?: (error: PeerLinkError) => void, peerId?: string | null }} [options]
   *   `peerId`: whose messages these are, for the errors' messages.
   */
  constructor({ maxTransferBytes = DEFAULT_MAX_TRANSFER_BYTES, onError, peerId = null } = {}) {
    if (!(typeof maxTransferBytes === "number" && maxTransferBytes >= 0)) {
      throw new PeerLinkError(`maxTransferBytes is a number of bytes (0 or more), not ${maxTransferBytes}`);
    }
    this.maxTransferBytes = maxTransferBytes;
    this.onError = onError ?? (() => {});
    this.peerId = peerId;
    /** @type {Incoming | null} */
    this.incoming = null;
    /** @type {Promise<unknown>} the last compressed transfer's inflation */
    this._inflation = Promise.resolve();
  }

  /**
   * @param {string | ArrayBuffer | Uint8Array} message
   * @returns {{ value?: any, done?: number, refused?: number, reason?: string, progress?: { done: number, total: number }, finish?: Promise<any>, id?: number } | null}
   *   `value`: a payload now; `finish` + `id`: a transfer complete (its value once
   *   decoded, then answer DONE id); `done`: the peer confirmed transfer `done`;
   *   `refused` + `reason`: the peer refused our transfer `refused`;
   *   `progress`: how far the incoming transfer is.
   */
  receive(message) {
    if (typeof message === "string") return { value: message };
    const bytes = message instanceof Uint8Array ? message : new Uint8Array(message);
    if (!bytes.length) return null;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    switch (bytes[0]) {
      case Tag.BYTES:
        return { value: bytes.slice(1) };
      case Tag.JSON:
        return { value: JSON.parse(decoder.decode(bytes.subarray(1))) };
      case Tag.START:
        if (bytes.length < 15) throw new PeerLinkError("malformed START");
        return this._start(view.getUint32(1), bytes[5], bytes[6], view.getBigUint64(7));
      case Tag.DATA:
        return this._data(bytes.slice(1));
      case Tag.END: {
        if (bytes.length < 5) throw new PeerLinkError("malformed END");
        const id = view.getUint32(1);
        const incoming = this.incoming;
        this.incoming = null;
        if (!incoming || incoming.id !== id) {
          incoming?.inflater?.cancel();
          return null;
        }
        incoming.state = "ended";
        return { id, finish: this._decode(incoming) };
      }
      case Tag.ABORT: {
        if (bytes.length < 5) throw new PeerLinkError("malformed ABORT");
        const id = view.getUint32(1);
        // with a reason, the receiver refused *our* transfer `id` (each direction numbers
        // its own transfers, so the reason is what tells the two meanings apart)
        if (bytes.length > 5) return { refused: id, reason: decoder.decode(bytes.subarray(5, 5 + REASON_MAX_BYTES)) };
        if (this.incoming?.id === id) this._drop();
        return null;
      }
      case Tag.DONE:
        if (bytes.length < 5) throw new PeerLinkError("malformed DONE");
        return { done: view.getUint32(1) };
      default:
        throw new PeerLinkError(`unknown tag 0x${bytes[0].toString(16)}`);
    }
  }

  /** @param {number} id */
  _label(id) {
    return `transfer ${id}${this.peerId === null ? "" : ` from ${JSON.stringify(this.peerId)}`}`;
  }

  /**
   * @param {number} id
   * @param {number} kind
   * @param {number} flags
   * @param {bigint} declared
   */
  _start(id, kind, flags, declared) {
    this._drop(); // a START ends the transfer before it (the sender gave that one up)
    const size = Number(declared); // past 2**53 it rounds, and is refused all the same
    if (size > this.maxTransferBytes) {
      this.onError(
        new TransferRefused(
          `${this._label(id)} declares ${bytesText(size)}, more than maxTransferBytes (${bytesText(this.maxTransferBytes)}) allows: ` +
            "refused; raise the maxTransferBytes option of PeerNetwork to take it",
          { transfer: id, declared: size, option: "maxTransferBytes", limit: this.maxTransferBytes },
        ),
      );
      return null;
    }
    let inflater = null;
    if (flags & FLAG_ZLIB) {
      if (typeof (/** @type {any} */ (globalThis).DecompressionStream) !== "function") {
        this.onError(new PeerLinkError(`${this._label(id)} is compressed and this browser has no DecompressionStream: refused`));
        return null;
      }
      inflater = new Inflater(this._label(id), { id, size }, this._inflation);
      this._inflation = inflater.output;
    }
    /** @type {Incoming} */
    const incoming = { id, kind, flags, size, received: 0, buffer: null, inflater, state: "receiving" };
    this.incoming = incoming;
    // stopped before its END (it inflated past its size, or was no zlib data): say so now
    inflater?.output.catch((error) => this._refuse(incoming, error));
    return { progress: { done: 0, total: size } };
  }

  /** @param {Uint8Array} piece */
  _data(piece) {
    const incoming = this.incoming;
    if (!incoming) return null; // a refused or dropped transfer's: ignored
    const { id, size } = incoming;
    incoming.received += piece.length;
    if (incoming.inflater) {
      if (incoming.received > compressedBound(size)) {
        this._refuse(
          incoming,
          new TransferRefused(`${this._label(id)} sent more compressed bytes than ${bytesText(size)} can take: refused`, {
            transfer: id,
            declared: size,
          }),
        );
        return null;
      }
      incoming.inflater.push(piece);
      return { progress: { done: Math.min(size, incoming.received), total: size } };
    }
    if (incoming.received > size) {
      this._refuse(
        incoming,
        new TransferRefused(`${this._label(id)} sent more than the ${bytesText(size)} it declared: refused`, { transfer: id, declared: size }),
      );
      return null;
    }
    incoming.buffer ??= new Uint8Array(size);
    incoming.buffer.set(piece, incoming.received - piece.length);
    return { progress: { done: incoming.received, total: size } };
  }

  /** Forget the incoming transfer (a new START, an ABORT), quietly. */
  _drop() {
    const incoming = this.incoming;
    if (!incoming) return;
    this.incoming = null;
    incoming.state = "dropped";
    incoming.buffer = null;
    incoming.inflater?.cancel();
  }

  /**
   * Drop `incoming` for `error`, and say so (once, and only while it is still coming:
   * after its END, its `finish` says it).
   * @param {Incoming} incoming
   * @param {PeerLinkError} error
   */
  _refuse(incoming, error) {
    if (incoming.state !== "receiving") return;
    if (this.incoming === incoming) this._drop();
    else incoming.state = "dropped";
    this.onError(error);
  }

  /** @param {Incoming} incoming */
  async _decode(incoming) {
    let payload;
    if (incoming.inflater) {
      payload = await incoming.inflater.end();
    } else {
      payload = incoming.buffer ?? new Uint8Array(0);
      incoming.buffer = null;
      if (incoming.received !== incoming.size) {
        throw new PeerLinkError(`${this._label(incoming.id)}: ${incoming.received} bytes instead of ${incoming.size}`);
      }
    }
    if (payload.length !== incoming.size) {
      throw new PeerLinkError(`${this._label(incoming.id)}: ${payload.length} bytes instead of ${incoming.size}`);
    }
    if (incoming.kind === Kind.BYTES) return payload;
    const text = decoder.decode(payload);
    return incoming.kind === Kind.TEXT ? text : JSON.parse(text);
  }
}
