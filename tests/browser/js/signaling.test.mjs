// SignalingClient over fake sockets: join, peers, relays, take-over.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Backoff, SignalingClient, Superseded, UnknownPeer } from "../../../iavicenne_ext/static/iavicenne.js";
import { FakeClock, FakeNetwork, flush, OPTIONS } from "./fakes.mjs";

async function setUp(peers = ["kernel-1"]) {
  const net = new FakeNetwork();
  const clock = new FakeClock();
  const backoff = new Backoff({ initial: 100, maximum: 100, jitter: 0 });
  const connecting = SignalingClient.connect({ ...OPTIONS, room: "lab", peerId: "browser", WebSocket: net.WebSocket, backoff, ...clock, window: null });
  const ws = net.last;
  assert.equal(ws.url, "ws://127.0.0.1:8888/iavicenne/ws/signaling?token=secret");
  ws.accept();
  const join = ws.last("join");
  assert.deepEqual([join.room, join.payload], ["lab", { peer_id: "browser" }]);
  const ice = [{ urls: ["stun:stun.example.org:3478"] }];
  ws.receive({ type: "joined", room: "lab", peer_id: "browser", peers, ice_servers: ice, ref: join.ref });
  const client = await connecting;
  assert.deepEqual(client.iceServers, ice);
  return { net, clock, client, ws };
}

test("peers: those already there, then arrivals and departures (never ourselves)", async () => {
  const { client, ws } = await setUp();
  assert.deepEqual([...client.peers], ["kernel-1"]);
  const events = [];
  client.on("peer", (e) => events.push([e.kind, e.peerId, e.rejoined]));
  ws.receive({ type: "peer-joined", room: "lab", peer_id: "kernel-2" });
  ws.receive({ type: "peer-joined", room: "lab", peer_id: "kernel-1", rejoined: true });
  ws.receive({ type: "peer-joined", room: "lab", peer_id: "browser" });
  ws.receive({ type: "peer-left", room: "lab", peer_id: "kernel-2" });
  assert.deepEqual(events, [
    ["joined", "kernel-2", false],
    ["joined", "kernel-1", true],
    ["left", "kernel-2", false],
  ]);
  assert.deepEqual([...client.peers], ["kernel-1"]);
  const arrival = client.waitForPeer("kernel-3");
  ws.receive({ type: "peer-joined", room: "lab", peer_id: "kernel-3" });
  await arrival;
  await client.waitForPeer("kernel-1");
});

test("relays are acknowledged; an unknown target rejects; a relayed signal seen twice is handled once", async () => {
  const { client, ws } = await setUp();
  const sent = client.relay("offer", "kernel-1", { type: "offer", sdp: "v=0" });
  const frame = ws.last("offer");
  assert.deepEqual(frame.payload, { target_peer_id: "kernel-1", offer: { type: "offer", sdp: "v=0" } });
  ws.receive({ type: "ack", ref: frame.ref, room: "lab" });
  await sent;
  const candidate = client.relay("ice-candidate", "gone", null);
  assert.deepEqual(ws.last("ice-candidate").payload, { target_peer_id: "gone", candidate: null });
  ws.receive({ type: "error", code: "unknown-peer", message: "no peer 'gone'", ref: ws.last("ice-candidate").ref });
  await assert.rejects(candidate, UnknownPeer);
  assert.throws(() => client.relay("shout", "kernel-1", {}), /cannot relay shout/);

  const signals = [];
  client.on("signal", (s) => signals.push([s.kind, s.source, s.body]));
  const answer = { type: "answer", answer: { type: "answer", sdp: "v=0 a" }, source_peer_id: "kernel-1", room: "lab", ref: "k-1" };
  ws.receive(answer);
  ws.receive(answer);
  ws.receive({ type: "ice-candidate", candidate: { candidate: "c", sdpMid: "0" }, source_peer_id: "kernel-1", room: "lab" });
  assert.deepEqual(signals, [
    ["answer", "kernel-1", { type: "answer", sdp: "v=0 a" }],
    ["ice-candidate", "kernel-1", { candidate: "c", sdpMid: "0" }],
  ]);
});

test("after a reconnect: join again, and peers that came or went meanwhile are reported", async () => {
  const { net, clock, client, ws } = await setUp(["kernel-1", "kernel-2"]);
  const events = [];
  client.on("peer", (e) => events.push([e.kind, e.peerId]));
  const pending = client.relay("answer", "kernel-1", { type: "answer", sdp: "x" });
  ws.drop();
  await clock.advance(100);
  const ws2 = net.last;
  ws2.accept();
  const join = ws2.last("join");
  assert.equal(ws2.frames("answer").length, 0, "nothing before the join");
  ws2.receive({ type: "joined", room: "lab", peer_id: "browser", peers: ["kernel-2", "kernel-3"], ice_servers: [], ref: join.ref });
  await flush();
  const resent = ws2.last("answer");
  ws2.receive({ type: "ack", ref: resent.ref, room: "lab" });
  await pending;
  assert.deepEqual(events, [
    ["left", "kernel-1"],
    ["joined", "kernel-3"],
  ]);
});

test("taken over by a newer connection of the same peer: stop, do not reconnect", async () => {
  const { net, clock, client, ws } = await setUp();
  const closed = [];
  client.on("closed", (e) => closed.push(e));
  ws.receive({ type: "error", code: "superseded", message: "peer_id 'browser' was taken over", room: "lab" });
  ws.drop(4000, "superseded by a newer connection of the same peer");
  await clock.advance(10000);
  assert.equal(net.sockets.length, 1);
  assert.equal(closed.length, 1);
  assert.ok(closed[0] instanceof Superseded);
  assert.equal(client.state, "closed");
  await assert.rejects(client.relay("offer", "kernel-1", {}), Superseded);
});

test("a close with code 4000 alone also stops it", async () => {
  const { net, clock, client, ws } = await setUp();
  ws.drop(4000, "superseded");
  await clock.advance(10000);
  assert.equal(net.sockets.length, 1);
  await assert.rejects(client.waitConnected(), Superseded);
});

test("close sends leave", async () => {
  const { client, ws } = await setUp();
  client.close();
  assert.equal(ws.last().type, "leave");
});

test("who holds each peer id is the server's word: joined, peer-joined, and every relayed signal", async () => {
  const net = new FakeNetwork();
  const clock = new FakeClock();
  const backoff = new Backoff({ initial: 100, maximum: 100, jitter: 0 });
  const connecting = SignalingClient.connect({ ...OPTIONS, room: "lab", peerId: "browser", WebSocket: net.WebSocket, backoff, ...clock, window: null });
  const ws = net.last;
  ws.accept();
  const bob = { username: "bob", name: "bob", display_name: "Bob" };
  const carol = { username: "carol", name: "carol", display_name: "Carol" };
  // an identity for a peer that is not listed is not taken
  const peer_identities = { "bob#00aa11": bob, ghost: carol, "kernel-1": "not an object" };
  ws.receive({ type: "joined", room: "lab", peer_id: "browser", peers: ["bob#00aa11", "kernel-1"], peer_identities, ref: ws.last("join").ref });
  const client = await connecting;
  assert.deepEqual([...client.identities], [["bob#00aa11", bob]]);
  const events = [];
  client.on("peer", (e) => events.push([e.kind, e.peerId, e.identity]));
  ws.receive({ type: "peer-joined", room: "lab", peer_id: "carol#3f2a1c", identity: carol });
  ws.receive({ type: "peer-left", room: "lab", peer_id: "bob#00aa11" });
  ws.receive({ type: "peer-joined", room: "lab", peer_id: "bob#00aa11" }); // a server that does not say
  assert.deepEqual(events, [
    ["joined", "carol#3f2a1c", carol],
    ["left", "bob#00aa11", null],
    ["joined", "bob#00aa11", null],
  ]);
  assert.deepEqual([...client.identities.keys()], ["carol#3f2a1c"]);
  const signals = [];
  client.on("signal", (s) => signals.push([s.kind, s.source, s.identity]));
  ws.receive({ type: "answer", room: "lab", source_peer_id: "carol#3f2a1c", answer: { type: "answer", sdp: "v=0" }, source_identity: carol });
  ws.receive({ type: "offer", room: "lab", source_peer_id: "bob#00aa11", offer: { type: "offer", sdp: "v=0" } });
  ws.receive({ type: "offer", room: "lab", source_peer_id: "bob#00aa11", offer: { type: "offer", sdp: "v=0" }, source_identity: ["bob"] });
  assert.deepEqual(signals, [
    ["answer", "carol#3f2a1c", carol],
    ["offer", "bob#00aa11", null],
    ["offer", "bob#00aa11", null],
  ]);
});
