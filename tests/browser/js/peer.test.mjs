// Peer links: the wire format shared with the Python peer link (widgets/iavicenne/peer.py), and the
// negotiation (who offers, glare, trickle, loopback) over a fake RTCPeerConnection.
import assert from "node:assert/strict";
import { test } from "node:test";
import { deflateSync } from "node:zlib";

import { PeerIdentityMismatch, PeerLeft, PeerLinkClosed, TransferRefused } from "../../../iavicenne_ext/static/errors.js";
import { Emitter } from "../../../iavicenne_ext/static/events.js";
import { filterSdp } from "../../../iavicenne_ext/static/ice.js";
import { presenceCheck, sameIdentity, userOfPeer } from "../../../iavicenne_ext/static/identity.js";
import { codePointLess, PeerNetwork } from "../../../iavicenne_ext/static/peer.js";
import { CHANNEL_LABEL } from "../../../iavicenne_ext/static/protocol.js";
import { frameMessages, Kind, Reassembler, Tag } from "../../../iavicenne_ext/static/wire.js";
import { FakeClock, flush } from "./fakes.mjs";

const bytes = (...values) => new Uint8Array(values);

// -- the wire format --------------------------------------------------------------------------

test("small payloads are one message: text as a string, bytes and JSON behind a tag byte", () => {
  assert.deepEqual(frameMessages("héllo", 100, 1), { messages: ["héllo"], transfer: false, size: 6 });
  assert.deepEqual(frameMessages(bytes(1, 2, 3), 100, 1).messages, [bytes(Tag.BYTES, 1, 2, 3)]);
  assert.deepEqual(frameMessages(new Uint16Array([0x0201]).buffer, 100, 1).messages, [bytes(0, 1, 2)]);
  const json = frameMessages({ a: [1, true, null] }, 100, 1).messages[0];
  assert.equal(json[0], Tag.JSON);
  assert.equal(new TextDecoder().decode(json.subarray(1)), '{"a":[1,true,null]}');
  assert.throws(() => frameMessages(() => 1, 100, 1), /strings, bytes or JSON values/);
  assert.throws(() => frameMessages({ n: 10n }, 100, 1), /strings, bytes or JSON values/);
});

test("a payload over one message is a transfer: START, DATA pieces, END, as Python packs them", () => {
  const payload = new Uint8Array(250).map((_, i) => i);
  const { messages, transfer, size } = frameMessages(payload, 100, 7);
  assert.equal(transfer, true);
  assert.equal(size, 250);
  // START: tag, id u32, kind u8, flags u8, size u64, big-endian (Python's struct "!IBBQ")
  assert.deepEqual(messages[0], bytes(0x02, 0, 0, 0, 7, Kind.BYTES, 0, 0, 0, 0, 0, 0, 0, 0, 250));
  const pieces = messages.slice(1, -1);
  assert.deepEqual(pieces.map((m) => m.length), [100, 100, 53]); // at most one message each, tag included
  assert.ok(pieces.every((m) => m[0] === Tag.DATA));
  assert.deepEqual(messages.at(-1), bytes(0x04, 0, 0, 0, 7));
  // the exact fit is still one message; one byte more is a transfer
  assert.equal(frameMessages(new Uint8Array(99), 100, 1).transfer, false);
  assert.equal(frameMessages(new Uint8Array(100), 100, 1).transfer, true);
  assert.equal(frameMessages("x".repeat(100), 100, 1).transfer, false); // text has no tag byte
  // text is measured in UTF-8 bytes
  const text = frameMessages("é".repeat(60), 100, 2);
  assert.equal(text.transfer, true);
  assert.deepEqual([...text.messages[0].subarray(5, 7)], [Kind.TEXT, 0]);
  assert.equal(text.size, 120);
});

test("reassembly: one-message payloads, transfers of each kind, progress, DONE, ABORT", async () => {
  const r = new Reassembler();
  assert.deepEqual(r.receive("plain text"), { value: "plain text" });
  assert.deepEqual(r.receive(bytes(0, 9, 8).buffer), { value: bytes(9, 8) });
  assert.deepEqual(r.receive(new Uint8Array([1, ...new TextEncoder().encode('{"x":1}')])), { value: { x: 1 } });
  assert.deepEqual(r.receive(bytes(0x06, 0, 0, 1, 0)), { done: 256 });

  for (const value of [new Uint8Array(1000).map((_, i) => i % 256), "ü".repeat(700), { list: Array.from({ length: 300 }, (_, i) => i) }]) {
    const { messages } = frameMessages(value, 64, 3);
    let last;
    for (const message of messages) last = r.receive(message);
    assert.equal(last.id, 3);
    assert.deepEqual(await last.finish, value);
  }
  const progress = [];
  const { messages } = frameMessages(new Uint8Array(300), 101, 4);
  for (const m of messages.slice(0, -1)) progress.push(r.receive(m).progress);
  assert.deepEqual(progress.map((p) => p.done), [0, 100, 200, 300]);
  assert.ok(progress.every((p) => p.total === 300));
  // an aborted transfer is dropped: its END finds nothing
  r.receive(messages[0]);
  r.receive(messages[1]);
  assert.equal(r.receive(bytes(0x05, 0, 0, 0, 4)), null);
  assert.equal(r.incoming, null);
  assert.equal(r.receive(messages.at(-1)), null);
  assert.throws(() => r.receive(bytes(0x09)), /unknown tag 0x9/);
});

test("a zlib-compressed transfer from Python is inflated", async () => {
  const text = "the same line again\n".repeat(2000);
  const compressed = deflateSync(Buffer.from(text)); // zlib format, as Python's zlib.compressobj writes
  const r = new Reassembler();
  const start = bytes(0x02, 0, 0, 0, 5, Kind.TEXT, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  new DataView(start.buffer).setBigUint64(7, BigInt(text.length));
  r.receive(start);
  for (let i = 0; i < compressed.length; i += 50) r.receive(new Uint8Array([0x03, ...compressed.subarray(i, i + 50)]));
  const end = r.receive(bytes(0x04, 0, 0, 0, 5));
  assert.equal(await end.finish, text);
});

test("a transfer that is shorter than announced is refused", async () => {
  const r = new Reassembler();
  r.receive(bytes(0x02, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10));
  r.receive(bytes(0x03, 1, 2, 3));
  await assert.rejects(r.receive(bytes(0x04, 0, 0, 0, 1)).finish, /3 bytes instead of 10/);
});

test("names compare by code point, as in Python, to choose who offers", () => {
  assert.equal(codePointLess("alice", "bob"), true);
  assert.equal(codePointLess("bob", "alice"), false);
  assert.equal(codePointLess("ab", "abc"), true);
  assert.equal(codePointLess("a", "a"), false);
  // UTF-16 would put U+1F600 (a surrogate pair, 0xD83D...) before U+FFFD; code points do not
  assert.equal("\u{1F600}" < "\uFFFD", true);
  assert.equal(codePointLess("\u{1F600}", "\uFFFD"), false);
});

const CANDIDATES = [
  "candidate:1 1 udp 2122194687 127.0.0.1 40000 typ host generation 0",
  "candidate:2 1 udp 2122063615 192.0.2.2 40001 typ host generation 0",
  "candidate:3 1 tcp 1518214911 127.0.0.1 9 typ host tcptype active generation 0",
  "candidate:4 1 udp 2122267903 ::1 40002 typ host generation 0",
];

test("SDP filtering keeps the candidates asked for and can mark the end of candidates", () => {
  const sdp = ["v=0", "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", ...CANDIDATES.map((c) => `a=${c}`), "a=sctp-port:5000", ""].join("\r\n");
  const loopback = filterSdp(sdp, (c) => c.includes("127.0.0.1"), true);
  assert.deepEqual(loopback.split("\r\n"), [
    "v=0",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    `a=${CANDIDATES[0]}`,
    `a=${CANDIDATES[2]}`,
    "a=sctp-port:5000",
    "a=end-of-candidates",
    "",
  ]);
  assert.equal(filterSdp(sdp, () => true, false), sdp);
});

// -- negotiation over fakes ---------------------------------------------------------------------

class FakeChannel {
  constructor(label, options) {
    this.label = label;
    this.options = options;
    this.readyState = "connecting";
    this.bufferedAmount = 0;
    this.sent = [];
  }

  send(message) {
    if (this.readyState !== "open") throw new Error("channel not open");
    this.sent.push(message);
  }

  close() {
    if (this.readyState === "closed") return;
    this.readyState = "closed";
    this.onclose?.();
  }

  open() {
    this.readyState = "open";
    this.onopen?.();
  }

  receive(data) {
    this.onmessage?.({ data });
  }
}

function fakeRTC() {
  const made = [];
  class FakePeerConnection {
    constructor(config) {
      this.config = config;
      this.localDescription = null;
      this.remoteDescription = null;
      this.signalingState = "stable";
      this.iceGatheringState = "new";
      this.connectionState = "new";
      this.added = [];
      this.closed = false;
      made.push(this);
    }

    createDataChannel(label, options) {
      this.channel = new FakeChannel(label, options);
      return this.channel;
    }

    async createOffer() {
      return { type: "offer", sdp: "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=max-message-size:262144\r\n" };
    }

    async createAnswer() {
      return { type: "answer", sdp: "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=max-message-size:262144\r\n" };
    }

    async setLocalDescription(description) {
      this.localDescription = { ...description };
      this.signalingState = description.type === "offer" ? "have-local-offer" : "stable";
      this.iceGatheringState = "gathering";
    }

    async setRemoteDescription(description) {
      this.remoteDescription = description;
      this.signalingState = description.type === "offer" ? "have-remote-offer" : "stable";
    }

    async addIceCandidate(candidate) {
      this.added.push(candidate ?? null);
    }

    close() {
      this.closed = true;
    }

    /** Candidates found, as the browser reports them (they also join the local SDP). */
    gather(candidates, complete) {
      for (const candidate of candidates) {
        this.localDescription.sdp += `a=${candidate}\r\n`;
        this.onicecandidate?.({ candidate: { candidate, sdpMid: "0", sdpMLineIndex: 0 } });
      }
      if (complete) {
        this.iceGatheringState = "complete";
        this.onicecandidate?.({ candidate: null });
        this.onicegatheringstatechange?.({});
      }
    }

    /** The answering side: the offerer's channel arrives (maybe already open). */
    arrive(open = false) {
      this.channel = new FakeChannel(CHANNEL_LABEL, { ordered: true });
      if (open) this.channel.readyState = "open";
      this.ondatachannel?.({ channel: this.channel });
      return this.channel;
    }
  }
  return { made, RTCPeerConnection: FakePeerConnection };
}

class FakeSignaling {
  constructor(peerId, peers) {
    this.peerId = peerId;
    this.room = "lab";
    this.peers = new Set(peers);
    this.iceServers = [{ urls: "stun:stun.example.org" }];
    this.events = new Emitter();
    this.relayed = [];
    this.identities = new Map();
  }

  on(kind, callback) {
    return this.events.on(kind, callback);
  }

  async relay(kind, target, body) {
    this.relayed.push({ kind, target, body });
    return { type: "ack" };
  }

  async waitForPeer(peerId) {
    if (!this.peers.has(peerId)) await this.events.next("peer", { where: (e) => e.kind === "joined" && e.peerId === peerId });
  }

  signal(kind, source, body, identity = null) {
    this.events.emit("signal", { kind, source, body, room: this.room, identity });
  }

  close() {}
}

function setUp(peerId, { loopback = true, peers = ["bob", "kernel-1"], ...options } = {}) {
  const rtc = fakeRTC();
  const clock = new FakeClock();
  const signaling = new FakeSignaling(peerId, peers);
  const network = new PeerNetwork(signaling, { RTCPeerConnection: rtc.RTCPeerConnection, loopback, chunkSize: 64, highWater: 200, lowWater: 50, ...clock, ...options });
  const changes = [];
  network.on("change", (c) => changes.push([c.peerId, c.state, Boolean(c.replaced)]));
  return { rtc, clock, signaling, network, changes };
}

const ANSWER_SDP = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=max-message-size:100\r\na=candidate:9 1 udp 1 127.0.0.1 5000 typ host\r\n";

test("opening a link: one ordered channel, the whole SDP once gathered (loopback only), then the answer", async () => {
  const { rtc, signaling, network, changes } = setUp("ada");
  const connecting = network.connect("kernel-1");
  await flush();
  const [pc] = rtc.made;
  assert.deepEqual(pc.config, { iceServers: [{ urls: "stun:stun.example.org" }] }); // what the server handed out
  assert.equal(pc.channel.label, "iavicenne");
  assert.deepEqual(pc.channel.options, { ordered: true });
  assert.equal(signaling.relayed.length, 0, "nothing sent before gathering ends");
  pc.gather(CANDIDATES, true);
  await flush();
  const [offer] = signaling.relayed;
  assert.deepEqual([offer.kind, offer.target, offer.body.type], ["offer", "kernel-1", "offer"]);
  const lines = offer.body.sdp.split("\r\n");
  assert.deepEqual(lines.filter((l) => l.startsWith("a=candidate")), [`a=${CANDIDATES[0]}`, `a=${CANDIDATES[3]}`]);
  assert.ok(lines.includes("a=end-of-candidates"));
  assert.equal(signaling.relayed.length, 1, "no trickling: every candidate was in the SDP");

  signaling.signal("answer", "kernel-1", { type: "answer", sdp: ANSWER_SDP });
  await flush();
  assert.equal(pc.remoteDescription.sdp, ANSWER_SDP);
  pc.channel.open();
  const link = await connecting;
  assert.equal(link.state, "open");
  assert.equal(link.maxMessageSize, 64); // min(chunkSize, the peer's a=max-message-size)
  assert.deepEqual(changes, [
    ["kernel-1", "connecting", false],
    ["kernel-1", "open", false],
  ]);
});

test("slow gathering: the SDP goes after gatherTimeout, the rest is trickled and ended with null", async () => {
  const { rtc, clock, signaling, network } = setUp("ada");
  network.connect("kernel-1");
  await flush();
  const [pc] = rtc.made;
  pc.gather(CANDIDATES.slice(0, 2), false);
  await clock.advance(3000);
  assert.equal(signaling.relayed.length, 1);
  assert.ok(!signaling.relayed[0].body.sdp.includes("end-of-candidates"));
  assert.ok(signaling.relayed[0].body.sdp.includes(CANDIDATES[0]));
  pc.gather([CANDIDATES[3], "candidate:5 1 udp 1 10.0.0.5 1 typ host"], true);
  await flush();
  assert.deepEqual(
    signaling.relayed.slice(1).map((r) => [r.kind, r.body?.candidate ?? null]),
    [
      ["ice-candidate", CANDIDATES[3]],
      ["ice-candidate", null],
    ],
  );
});

test("answering an offer; remote candidates are filtered to loopback and wait for the description", async () => {
  const { rtc, signaling, network } = setUp("ada");
  const accepted = network.accept();
  signaling.signal("ice-candidate", "kernel-1", { candidate: CANDIDATES[1], sdpMid: "0", sdpMLineIndex: 0 });
  await flush(); // no link yet: a candidate before any offer is dropped
  signaling.signal("offer", "kernel-1", { type: "offer", sdp: ANSWER_SDP });
  signaling.signal("ice-candidate", "kernel-1", { candidate: CANDIDATES[1], sdpMid: "0", sdpMLineIndex: 0 });
  signaling.signal("ice-candidate", "kernel-1", { candidate: CANDIDATES[0], sdpMid: "0", sdpMLineIndex: 0 });
  signaling.signal("ice-candidate", "kernel-1", null);
  await flush();
  const [pc] = rtc.made;
  assert.equal(pc.remoteDescription.type, "offer");
  pc.gather([CANDIDATES[0]], true);
  await flush();
  assert.equal(signaling.relayed[0].kind, "answer");
  assert.deepEqual(pc.added.map((c) => c?.candidate ?? null), [CANDIDATES[0], null]);
  // the answering side may get the channel already open
  pc.arrive(true);
  const link = await accepted;
  assert.equal(link.peerId, "kernel-1");
  assert.equal(link.offerer, false);
  assert.equal(link.state, "open");
});

test("glare: the lower peer_id's offer wins on both sides", async () => {
  // we are "ada" (lower than "bob"): bob's offer is ignored, ours stands
  const low = setUp("ada");
  const lowConnect = low.network.connect("bob");
  await flush();
  low.rtc.made[0].gather([], true);
  await flush();
  low.signaling.signal("offer", "bob", { type: "offer", sdp: ANSWER_SDP });
  await flush();
  assert.equal(low.rtc.made.length, 1);
  assert.deepEqual(low.signaling.relayed.map((r) => r.kind), ["offer"]);
  low.signaling.signal("answer", "bob", { type: "answer", sdp: ANSWER_SDP });
  await flush();
  low.rtc.made[0].channel.open();
  assert.equal((await lowConnect).offerer, true);

  // we are "zed" (higher than "bob"): ours is dropped quietly, bob's answered, and the
  // caller of connect() gets the link that results
  const high = setUp("zed");
  const highConnect = high.network.connect("bob");
  await flush();
  high.rtc.made[0].gather([], true);
  await flush();
  high.signaling.signal("offer", "bob", { type: "offer", sdp: ANSWER_SDP });
  await flush();
  const [ours, theirs] = high.rtc.made;
  assert.equal(ours.closed, true);
  theirs.gather([], true);
  await flush();
  assert.deepEqual(high.signaling.relayed.map((r) => r.kind), ["offer", "answer"]);
  high.signaling.signal("answer", "bob", { type: "answer", sdp: ANSWER_SDP }); // bob answering ours: too late, ignored
  await flush();
  assert.equal(ours.remoteDescription, null);
  theirs.arrive().open();
  const link = await highConnect;
  assert.equal(link.offerer, false);
  assert.deepEqual(high.changes, [
    ["bob", "connecting", false],
    ["bob", "closed", true],
    ["bob", "connecting", false],
    ["bob", "open", false],
  ]);
});

test("a new offer on an open link replaces it (the peer started again)", async () => {
  const { rtc, signaling, network } = setUp("ada");
  const closed = [];
  signaling.signal("offer", "kernel-1", { type: "offer", sdp: ANSWER_SDP });
  await flush();
  rtc.made[0].gather([], true);
  rtc.made[0].arrive(true);
  const first = await network.accept();
  first.on("close", (e) => closed.push(e.message));
  signaling.signal("offer", "kernel-1", { type: "offer", sdp: ANSWER_SDP });
  await flush();
  assert.equal(first.state, "closed");
  assert.match(closed[0], /opened a new link, replacing this one/);
  assert.equal(rtc.made.length, 2);
  assert.equal(network.links.get("kernel-1").state, "connecting");
});

test("the peer leaving closes its link; waiting connects fail with PeerLeft", async () => {
  const { rtc, signaling, network } = setUp("ada");
  const connecting = network.connect("kernel-1");
  await flush();
  rtc.made[0].gather([], true);
  await flush();
  signaling.events.emit("peer", { kind: "left", peerId: "kernel-1", room: "lab" });
  await assert.rejects(connecting, PeerLeft);
  assert.equal(network.links.size, 0);
  assert.equal(rtc.made[0].closed, true);
});

test("connect to a peer that never comes: a clear timeout", async () => {
  const { clock, network } = setUp("ada", { peers: [] });
  const refused = assert.rejects(network.connect("ghost", { timeout: 1000 }), /the link to "ghost" is not in the room within 1000 ms/);
  await clock.advance(1000);
  await refused;
});

async function openLink(options = {}) {
  const env = setUp("ada", options);
  env.signaling.signal("offer", "kernel-1", { type: "offer", sdp: ANSWER_SDP });
  await flush();
  const pc = env.rtc.made[0];
  pc.gather([], true);
  const channel = pc.arrive(true);
  const link = await env.network.accept();
  return { ...env, link, channel };
}

test("sending a transfer: pieces under flow control, resolved when the peer confirms", async () => {
  const { link, channel } = await openLink();
  assert.equal(link.maxMessageSize, 64);
  channel.bufferedAmount = 500; // over highWater: wait for bufferedamountlow
  const progress = [];
  let done = false;
  const sending = link.send(new Uint8Array(200).fill(7), { onProgress: (p) => progress.push(p.done) }).then(() => (done = true));
  await flush();
  assert.equal(channel.sent.length, 0);
  channel.bufferedAmount = 0;
  channel.onbufferedamountlow();
  await flush();
  assert.deepEqual(channel.sent.map((m) => m[0]), [Tag.START, Tag.DATA, Tag.DATA, Tag.DATA, Tag.DATA, Tag.END]);
  assert.deepEqual(progress, [63, 126, 189, 200]);
  assert.equal(done, false, "not before the peer has it all");
  const id = new DataView(channel.sent[0].buffer).getUint32(1);
  channel.receive(bytes(0x06, 0, 0, 0, id).buffer);
  await sending;
  // sends go out in order, one after the other
  await Promise.all([link.send("a"), link.send({ b: 1 }), link.send(bytes(3))]);
  assert.deepEqual(channel.sent.slice(6).map((m) => (typeof m === "string" ? m : m[0])), ["a", Tag.JSON, Tag.BYTES]);
});

test("receiving a transfer: delivered whole, in order, and confirmed with DONE", async () => {
  const { link, channel } = await openLink();
  const got = [];
  link.on("message", (m) => got.push(m));
  const { messages } = frameMessages("z".repeat(150), 64, 42);
  for (const m of messages) channel.receive(m.buffer ?? m);
  channel.receive("after");
  await flush();
  assert.deepEqual(got, ["z".repeat(150), "after"]);
  assert.deepEqual(channel.sent.at(-1), bytes(0x06, 0, 0, 0, 42));
});

test("a link closing in the middle of a transfer says how far it got", async () => {
  const { link, channel } = await openLink();
  const sending = link.send(new Uint8Array(150));
  await flush();
  channel.close();
  await assert.rejects(sending, (e) => e instanceof PeerLinkClosed && /in the middle of a transfer: 150 of 150 bytes handed/.test(e.message));
  await assert.rejects(link.send("more"), PeerLinkClosed);
});

test("a peer's transfer over maxTransferBytes is refused on that link, which stays open", async () => {
  const { link, channel } = await openLink({ maxTransferBytes: 100 });
  const got = [];
  const errors = [];
  link.on("message", (m) => got.push(m));
  link.on("error", (e) => errors.push(e));
  const big = frameMessages(new Uint8Array(101), 64, 5).messages;
  for (const m of big) channel.receive(m.buffer ?? m);
  const lying = frameMessages(new Uint8Array(90), 64, 6).messages; // declares 90, then sends 30 more
  for (const m of [...lying.slice(0, -1), bytes(Tag.DATA, ...new Uint8Array(30)), lying.at(-1)]) channel.receive(m.buffer ?? m);
  channel.receive("still here");
  const fits = frameMessages("y".repeat(100), 64, 7).messages;
  for (const m of fits) channel.receive(m.buffer ?? m);
  await flush();
  assert.deepEqual(got, ["still here", "y".repeat(100)]);
  assert.equal(errors.length, 2);
  assert.ok(errors.every((e) => e instanceof TransferRefused));
  assert.match(errors[0].message, /transfer 5 from "kernel-1" declares 101 bytes, more than maxTransferBytes \(100 bytes\)/);
  assert.equal(errors[0].option, "maxTransferBytes");
  assert.match(errors[1].message, /transfer 6 from "kernel-1" sent more than the 90 bytes it declared/);
  assert.equal(link.state, "open");
  // only the transfer that arrived whole is confirmed
  const confirmed = channel.sent.filter((m) => m[0] === Tag.DONE).map((m) => m[4]);
  assert.deepEqual(confirmed, [7]);
  assert.throws(() => setUp("ada", { maxTransferBytes: "1GB" }), /maxTransferBytes is a number of bytes/);
});

test("a refused transfer is answered with ABORT and the reason, as the Python peer answers it", async () => {
  const { link, channel } = await openLink({ maxTransferBytes: 100 });
  link.on("error", () => {});
  for (const m of frameMessages(new Uint8Array(101), 64, 5).messages) channel.receive(m.buffer ?? m);
  await flush();
  const abort = channel.sent.find((m) => m[0] === Tag.ABORT);
  assert.ok(abort, "the sender is told");
  assert.equal(new DataView(abort.buffer, abort.byteOffset).getUint32(1), 5);
  assert.match(new TextDecoder().decode(abort.subarray(5)), /declares 101 bytes, more than maxTransferBytes/);
});

test("our transfer refused by the peer (ABORT with a reason) fails its send at once, naming the reason", async () => {
  const { link, channel } = await openLink();
  const sending = link.send(new Uint8Array(400));
  await flush();
  const id = new DataView(channel.sent[0].buffer).getUint32(1);
  const reason = new TextEncoder().encode("transfer refused: more than max_transfer_bytes (1 MiB) allows");
  channel.receive(new Uint8Array([Tag.ABORT, 0, 0, 0, id, ...reason]).buffer);
  await assert.rejects(sending, (e) => e instanceof TransferRefused && /refused transfer \d+: transfer refused: more than max_transfer_bytes/.test(e.message));
  assert.equal(link.state, "open");
  // a sender's ABORT without a reason is not a refusal of ours: our next transfer is confirmed as usual
  const next = link.send(new Uint8Array(150));
  await flush();
  const nextId = new DataView(channel.sent.filter((m) => m[0] === Tag.START).at(-1).buffer).getUint32(1);
  channel.receive(bytes(Tag.ABORT, 0, 0, 0, nextId).buffer);
  channel.receive(bytes(Tag.DONE, 0, 0, 0, nextId).buffer);
  await next;
});

// -- who answers: the identity the server vouches for ----------------------------------------

const CAROL = { username: "carol", name: "carol", display_name: "Carol" };
const BOB = { username: "bob", name: "bob", display_name: "Bob" };
// the room's presence: carol holds "carol", bob holds "bob"
const ROOM = { name: "q3", members: new Map([["carol", { user_id: "carol", identity: CAROL }], ["bob", { user_id: "bob", identity: BOB }]]) };

function verifiedSetUp(peers = ["carol#3f2a1c", "bob#00aa11"]) {
  return setUp("alice#123456", { peers, verifyIdentity: presenceCheck(ROOM) });
}

test("peer ids are read back to their member; identities compare by username only", () => {
  assert.equal(userOfPeer("carol#3f2a1c"), "carol");
  assert.equal(userOfPeer("carol"), "carol");
  assert.equal(userOfPeer("carol#nothex"), "carol#nothex");
  assert.ok(sameIdentity(CAROL, { username: "carol", name: "other", display_name: "x" }));
  assert.ok(!sameIdentity(CAROL, { username: "c\u0430rol", name: "carol" })); // a look-alike is someone else
  assert.ok(!sameIdentity(CAROL, null) && !sameIdentity({}, {}) && !sameIdentity(null, null));
});

test("an answer from the identity that holds the name opens the link, which says who it is", async () => {
  const { rtc, signaling, network } = verifiedSetUp();
  const connecting = network.connect("carol#3f2a1c");
  await flush();
  const [pc] = rtc.made;
  pc.gather([CANDIDATES[0]], true);
  await flush();
  signaling.signal("answer", "carol#3f2a1c", { type: "answer", sdp: ANSWER_SDP }, CAROL);
  await flush();
  pc.channel.open();
  const link = await connecting;
  assert.equal(link.state, "open");
  assert.deepEqual(link.identity, CAROL);
});

test("bob answering as carol's peer: the link is refused with PeerIdentityMismatch and closed", async () => {
  const { rtc, signaling, network } = verifiedSetUp();
  const outcome = network.connect("carol#3f2a1c").then(
    () => assert.fail("the link opened"),
    (e) => e,
  );
  await flush();
  const [pc] = rtc.made;
  pc.gather([CANDIDATES[0]], true);
  await flush();
  signaling.signal("answer", "carol#3f2a1c", { type: "answer", sdp: ANSWER_SDP }, BOB);
  const error = await outcome;
  assert.ok(error instanceof PeerIdentityMismatch, String(error));
  assert.match(error.message, /"carol#3f2a1c" is held by "bob", but "carol" in room "q3" is "carol"/);
  assert.deepEqual([error.expected, error.found], [CAROL, BOB]);
  assert.equal(pc.remoteDescription, null, "his answer was never applied");
  assert.ok(pc.closed, "the attempt is closed");
  assert.equal(network.links.size, 0);
  // an answer with no identity at all (a server that does not vouch) is refused too
  const again = network.connect("carol#3f2a1c");
  await flush();
  rtc.made[1].gather([CANDIDATES[0]], true);
  await flush();
  signaling.signal("answer", "carol#3f2a1c", { type: "answer", sdp: ANSWER_SDP }, null);
  await assert.rejects(again, (e) => e instanceof PeerIdentityMismatch && /did not say who holds/.test(e.message));
});

test("signaling already says bob holds carol's peer id: no offer is ever sent to him", async () => {
  const { rtc, signaling, network } = verifiedSetUp();
  signaling.identities.set("carol#3f2a1c", BOB);
  await assert.rejects(network.connect("carol#3f2a1c"), PeerIdentityMismatch);
  assert.equal(rtc.made.length, 0);
  assert.equal(signaling.relayed.length, 0);
  // a peer id of a name nobody holds in the room
  signaling.peers.add("dave#abcdef");
  signaling.identities.set("dave#abcdef", { username: "dave" });
  await assert.rejects(network.connect("dave#abcdef"), /nobody holds "dave" in room "q3"/);
});

test("an offer from an impostor is not answered: a refused event, and nothing to accept", async () => {
  const { rtc, signaling, network } = verifiedSetUp();
  const refused = [];
  network.on("refused", (e) => refused.push(e));
  let accepted = null;
  network.accept().then((link) => (accepted = link));
  signaling.signal("offer", "carol#3f2a1c", { type: "offer", sdp: ANSWER_SDP }, BOB);
  await flush();
  await flush();
  assert.equal(rtc.made.length, 0, "no RTCPeerConnection for him");
  assert.equal(signaling.relayed.length, 0, "no answer");
  assert.equal(refused.length, 1);
  assert.ok(refused[0] instanceof PeerIdentityMismatch);
  assert.equal(accepted, null);
  // the real carol's offer is answered, and her link knows who she is
  signaling.signal("offer", "carol#3f2a1c", { type: "offer", sdp: ANSWER_SDP }, CAROL);
  await flush();
  const [pc] = rtc.made;
  pc.gather([CANDIDATES[0]], true);
  await flush();
  assert.equal(signaling.relayed[0].kind, "answer");
  pc.arrive(true);
  await flush();
  assert.ok(accepted);
  assert.deepEqual(accepted.identity, CAROL);
  // a candidate said to come from another identity on her link is dropped
  const before = pc.added.length;
  signaling.signal("ice-candidate", "carol#3f2a1c", { candidate: CANDIDATES[0], sdpMid: "0", sdpMLineIndex: 0 }, BOB);
  await flush();
  assert.equal(pc.added.length, before);
});

test("without verifyIdentity every identity is taken, and kept as the link's", async () => {
  const { rtc, signaling, network } = setUp("ada");
  const accepted = network.accept();
  signaling.signal("offer", "kernel-1", { type: "offer", sdp: ANSWER_SDP }, BOB);
  await flush();
  rtc.made[0].gather([CANDIDATES[0]], true);
  await flush();
  rtc.made[0].arrive(true);
  assert.deepEqual((await accepted).identity, BOB);
});
