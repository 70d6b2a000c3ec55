// The receiving side of the wire format against a hostile sender: what a peer declares
// bounds what it may send, maxTransferBytes bounds what it may declare, and a compressed
// transfer is inflated no further than its declared size.
import assert from "node:assert/strict";
import { once } from "node:events";
import { test } from "node:test";
import { createDeflate, deflateSync } from "node:zlib";

import { PeerLinkError, TransferRefused } from "../../../iavicenne_ext/static/errors.js";
import { DEFAULT_MAX_TRANSFER_BYTES, frameMessages, Kind, Reassembler, Tag } from "../../../iavicenne_ext/static/wire.js";

const MiB = 1 << 20;

/** A START as any sender may write it: nothing stops it from lying about `size`. */
function start(id, size, { kind = Kind.BYTES, zlib = false } = {}) {
  const frame = new Uint8Array(15);
  const view = new DataView(frame.buffer);
  frame[0] = Tag.START;
  view.setUint32(1, id);
  frame[5] = kind;
  frame[6] = zlib ? 1 : 0;
  view.setBigUint64(7, BigInt(size));
  return frame;
}

const data = (payload) => new Uint8Array([Tag.DATA, ...payload]);
const end = (id) => new Uint8Array([Tag.END, 0, 0, 0, id]);

/** A receiver whose refusals are collected; `seen()` waits for the next one. */
function receiver(options = {}) {
  const errors = [];
  let wake = () => {};
  const r = new Reassembler({
    ...options,
    onError: (error) => {
      errors.push(error);
      wake();
    },
  });
  const seen = () => (errors.length ? Promise.resolve() : new Promise((resolve) => (wake = resolve)));
  return { r, errors, seen };
}

/** `total` zero bytes, zlib-compressed, made without holding them (a classic zlib bomb). */
async function zlibBomb(total) {
  const deflate = createDeflate({ level: 9 });
  const out = [];
  deflate.on("data", (chunk) => out.push(chunk));
  const zeros = Buffer.alloc(MiB);
  for (let written = 0; written < total; written += MiB) if (!deflate.write(zeros)) await once(deflate, "drain");
  deflate.end();
  await once(deflate, "end");
  return Buffer.concat(out);
}

test("a transfer declaring more than maxTransferBytes is refused at its START, naming the option", async () => {
  const { r, errors } = receiver({ maxTransferBytes: 1000, peerId: "mallory" });
  assert.equal(r.receive(start(1, 1001)), null);
  assert.equal(errors.length, 1);
  const [error] = errors;
  assert.ok(error instanceof TransferRefused);
  assert.deepEqual([error.option, error.limit, error.declared, error.transfer], ["maxTransferBytes", 1000, 1001, 1]);
  assert.match(error.message, /transfer 1 from "mallory" declares 1001 bytes, more than maxTransferBytes \(1000 bytes\)/);
  assert.match(error.message, /raise the maxTransferBytes option of PeerNetwork/);
  // what follows of it is dropped unread, and nothing is delivered
  assert.equal(r.receive(data(new Uint8Array(500))), null);
  assert.equal(r.receive(end(1)), null);
  assert.equal(r.incoming, null);
  // the exact limit is accepted, and the link's next transfer goes through
  const { messages } = frameMessages(new Uint8Array(1000).fill(9), 300, 2);
  let last;
  for (const message of messages) last = r.receive(message);
  assert.deepEqual(await last.finish, new Uint8Array(1000).fill(9));
  assert.equal(errors.length, 1);
});

test("the default bound is 256 MiB, and sizes past 2**53 are refused, not rounded into range", () => {
  assert.equal(DEFAULT_MAX_TRANSFER_BYTES, 256 * MiB);
  const { r, errors } = receiver();
  r.receive(start(1, 256 * MiB + 1));
  r.receive(start(2, 2n ** 64n - 1n));
  assert.deepEqual(errors.map((e) => e.transfer), [1, 2]);
  assert.ok(errors.every((e) => e.option === "maxTransferBytes"));
  r.receive(start(3, 256 * MiB));
  assert.equal(r.incoming.size, 256 * MiB);
  assert.throws(() => new Reassembler({ maxTransferBytes: -1 }), /maxTransferBytes is a number of bytes/);
});

test("declares 10 bytes, sends more: dropped at the piece that passes 10, never held", () => {
  const { r, errors } = receiver();
  r.receive(start(7, 10));
  assert.deepEqual(r.receive(data([1, 2, 3, 4, 5, 6])).progress, { done: 6, total: 10 });
  assert.equal(r.incoming.buffer.length, 10, "the buffer is the declared size, allocated once");
  assert.equal(r.receive(data(new Uint8Array(1 << 16))), null);
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof TransferRefused);
  assert.match(errors[0].message, /transfer 7 sent more than the 10 bytes it declared: refused/);
  assert.equal(r.incoming, null);
  for (let i = 0; i < 100; i++) assert.equal(r.receive(data(new Uint8Array(1 << 16))), null);
  assert.equal(r.receive(end(7)), null, "its END completes nothing");
  assert.equal(errors.length, 1, "said once");
});

test("a zlib bomb declaring 10 bytes is refused before it inflates (its input is past what 10 bytes can take)", async () => {
  const bomb = deflateSync(Buffer.alloc(8 * MiB));
  const { r, errors } = receiver({ peerId: "mallory" });
  r.receive(start(3, 10, { kind: Kind.TEXT, zlib: true }));
  for (let at = 0; at < bomb.length; at += 50) r.receive(data(bomb.subarray(at, at + 50)));
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof TransferRefused);
  assert.match(errors[0].message, /transfer 3 from "mallory" sent more compressed bytes than 10 bytes can take: refused/);
  assert.equal(r.incoming, null);
  assert.equal(r.receive(end(3)), null);
});

test("a zlib bomb (16 MiB declared, 256 MiB inside) is inflated to 16 MiB and stopped there", async () => {
  const bomb = await zlibBomb(256 * MiB);
  assert.ok(bomb.length < MiB, `${bomb.length} bytes`);
  const { r, errors, seen } = receiver({ peerId: "mallory" });
  const before = process.memoryUsage();
  r.receive(start(3, 16 * MiB, { kind: Kind.TEXT, zlib: true }));
  for (let at = 0; at < bomb.length; at += 65535) r.receive(data(bomb.subarray(at, at + 65535)));
  await seen();
  const after = process.memoryUsage();
  assert.ok(errors[0] instanceof TransferRefused, String(errors[0]));
  assert.match(errors[0].message, /transfer 3 from "mallory" inflates to more than the 16.0 MiB it declared \(a zlib bomb\?\): refused/);
  assert.equal(r.incoming, null);
  assert.equal(r.receive(end(3)), null);
  // what inflating produced, garbage included: the declared 16 MiB and a slice more, not 256 MiB
  const grown = after.arrayBuffers + after.heapUsed - before.arrayBuffers - before.heapUsed;
  assert.ok(grown < 96 * MiB, `memory grew by ${(grown / MiB).toFixed(1)} MiB`);
  assert.equal(errors.length, 1);
});

test("a bomb declaring a large size is inflated to that size and no further", async () => {
  const bomb = deflateSync(Buffer.alloc(4 * MiB));
  const { r, errors, seen } = receiver();
  r.receive(start(4, MiB, { zlib: true }));
  for (let at = 0; at < bomb.length; at += 1000) r.receive(data(bomb.subarray(at, at + 1000)));
  await seen();
  assert.match(errors[0].message, /inflates to more than the 1.0 MiB it declared/);
  // and the same bytes, declared honestly, arrive whole
  const honest = receiver();
  honest.r.receive(start(5, 4 * MiB, { zlib: true }));
  for (let at = 0; at < bomb.length; at += 1000) honest.r.receive(data(bomb.subarray(at, at + 1000)));
  const got = await honest.r.receive(end(5)).finish;
  assert.equal(got.length, 4 * MiB);
  assert.ok(got.every((b) => b === 0));
  assert.deepEqual(honest.errors, []);
});

test("compressed input that inflates to nothing cannot go on for ever", async () => {
  // a zlib header, then empty stored blocks (BFINAL 0, LEN 0): valid, and no output
  const empty = new Uint8Array([0x00, 0x00, 0x00, 0xff, 0xff]);
  const { r, errors } = receiver();
  r.receive(start(6, 100, { zlib: true }));
  r.receive(data([0x78, 0x9c]));
  for (let i = 0; i < 1000 && !errors.length; i++) r.receive(data(empty));
  assert.equal(errors.length, 1);
  assert.match(errors[0].message, /transfer 6 sent more compressed bytes than 100 bytes can take: refused/);
  assert.equal(r.incoming, null);
});

test("compressed bytes that are not zlib data are refused, once", async () => {
  const { r, errors, seen } = receiver();
  r.receive(start(8, 100, { zlib: true }));
  r.receive(data(new TextEncoder().encode("this is not zlib")));
  await seen();
  assert.ok(errors[0] instanceof PeerLinkError);
  assert.match(errors[0].message, /transfer 8 is not valid zlib data/);
  assert.equal(r.receive(end(8)), null);
  assert.equal(errors.length, 1);
});

test("a bomb whose END came first: its finish rejects, and nothing is delivered", async () => {
  const bomb = deflateSync(Buffer.alloc(2 * MiB));
  const { r, errors } = receiver();
  r.receive(start(9, 100_000, { zlib: true }));
  r.receive(data(bomb));
  const { finish } = r.receive(end(9));
  await assert.rejects(finish, (e) => e instanceof TransferRefused && /inflates to more than the 100000 bytes/.test(e.message));
  assert.deepEqual(errors, [], "said by finish, not twice");
});

test("compressed transfers inflate one at a time, in order", async () => {
  const texts = ["first ".repeat(5000), "second ".repeat(5000), "third ".repeat(5000)];
  const { r, errors } = receiver();
  const finishes = texts.map((text, i) => {
    const compressed = deflateSync(Buffer.from(text));
    r.receive(start(10 + i, text.length, { kind: Kind.TEXT, zlib: true }));
    for (let at = 0; at < compressed.length; at += 100) r.receive(data(compressed.subarray(at, at + 100)));
    return r.receive(end(10 + i)).finish;
  });
  assert.deepEqual(await Promise.all(finishes), texts);
  assert.deepEqual(errors, []);
});
