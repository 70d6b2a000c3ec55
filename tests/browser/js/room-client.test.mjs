// RoomClient over fake sockets: the session, acks and resends, since recovery, reconnects.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  AuthenticationError,
  Backoff,
  ConnectionClosed,
  Forbidden,
  NameTaken,
  RequestFailed,
  RoomClient,
  RoomsAPI,
  Server,
  UnknownPeer,
} from "../../../iavicenne_ext/static/iavicenne.js";
import { FakeClock, FakeNetwork, flush, message, OPTIONS, roomJoined } from "./fakes.mjs";

/** A client connected as alice and in room r1 (seq 5, epoch e1), with its fakes. */
async function setUp({ members = [{ user_id: "alice", identity: {}, state: {}, connections: 1 }] } = {}) {
  const net = new FakeNetwork();
  const clock = new FakeClock();
  const backoff = new Backoff({ initial: 100, maximum: 1000, jitter: 0 });
  const connecting = RoomClient.connect({ ...OPTIONS, userId: "alice", WebSocket: net.WebSocket, backoff, ...clock, window: null });
  const ws = net.last;
  assert.equal(ws.url, "ws://127.0.0.1:8888/iavicenne/ws/mcp?token=secret");
  ws.accept();
  const hello = ws.last("connect");
  assert.deepEqual(hello.payload, { user_id: "alice" });
  ws.receive({ type: "connect", status: "success", user_id: "alice", identity: { username: "u-alice" }, ref: hello.ref });
  const client = await connecting;
  assert.deepEqual(client.identity, { username: "u-alice" });
  const joining = client.join("r1");
  await flush();
  const join = ws.last("join-room");
  assert.deepEqual(join.payload, { members_limit: 100, presence: "batched" });
  ws.receive(roomJoined(join, { seq: 5, members }));
  const room = await joining;
  return { net, clock, client, room, ws };
}

/** Accept the reconnect the client makes after `clock` runs its backoff, and answer its restore. */
async function reconnect(net, clock, { joined = {} } = {}) {
  const before = net.sockets.length;
  await clock.advance(1000);
  assert.equal(net.sockets.length, before + 1, "the client reconnected");
  const ws = net.last;
  ws.accept();
  ws.receive({ type: "connect", status: "success", user_id: "alice", identity: {}, ref: ws.last("connect").ref });
  await flush();
  const join = ws.last("join-room");
  ws.receive(roomJoined(join, joined));
  await flush();
  return { ws, join };
}

test("join: members snapshot, then presence diffs and state", async () => {
  const { room, ws } = await setUp();
  const events = [];
  room.on("presence", (e) => events.push([e.kind, e.userId, e.members.map((m) => m.user_id).sort()]));
  ws.receive({ type: "user-joined", room: "r1", user_id: "kernel-1", identity: { username: "u" }, state: { status: "idle" } });
  ws.receive({ type: "presence", room: "r1", user_id: "kernel-1", identity: { username: "u" }, state: { status: "busy" } });
  ws.receive({ type: "user-left", room: "r1", user_id: "kernel-1" });
  ws.receive({ type: "user-joined", room: "elsewhere", user_id: "x" }); // not our room: ignored
  assert.deepEqual(events, [
    ["joined", "kernel-1", ["alice", "kernel-1"]],
    ["state", "kernel-1", ["alice", "kernel-1"]],
    ["left", "kernel-1", ["alice"]],
  ]);
  assert.equal(room.seq, 5);
});

test("a large room: the join waits for every page; presence-batch gives one event per user", async () => {
  const net = new FakeNetwork();
  const clock = new FakeClock();
  const connecting = RoomClient.connect({ ...OPTIONS, userId: "alice", WebSocket: net.WebSocket, ...clock, window: null });
  const ws = net.last;
  ws.accept();
  ws.receive({ type: "connect", status: "success", user_id: "alice", identity: {}, ref: ws.last("connect").ref });
  const client = await connecting;
  let joined = false;
  const joining = client.join("r1").then((room) => {
    joined = true;
    return room;
  });
  await flush();
  const join = ws.last("join-room");
  const entry = (id) => ({ user_id: id, identity: { username: id }, state: {}, connections: 1 });
  ws.receive({ ...roomJoined(join, { members: [entry("a"), entry("alice")] }), member_count: 4, members_more: true, members_next: "m:alice" });
  await flush();
  const list = ws.last("list-members");
  assert.deepEqual(list.payload, { after: "m:alice" });
  assert.equal(joined, false); // not before the last page
  // a batch between the pages: b joined (it is in the next page too), a left
  ws.receive({ type: "presence-batch", room: "r1", joined: [entry("b")], left: ["a"], updated: [], member_count: 4 });
  ws.receive({ type: "members", room: "r1", members: [entry("b"), entry("c"), entry("d")], member_count: 4, ref: list.ref });
  const room = await joining;
  assert.deepEqual([...room.members.keys()].sort(), ["alice", "b", "c", "d"]);
  const events = [];
  room.on("presence", (e) => events.push([e.kind, e.userId]));
  ws.receive({
    type: "presence-batch",
    room: "r1",
    joined: [entry("e"), entry("alice")], // the same frame for everyone: it may list us
    left: ["c", "nobody"],
    updated: [{ ...entry("d"), state: { busy: true } }],
    member_count: 4,
  });
  assert.deepEqual(events, [
    ["left", "c"],
    ["joined", "e"],
    ["state", "d"],
  ]);
  assert.deepEqual([...room.members.keys()].sort(), ["alice", "b", "d", "e"]);
  assert.deepEqual(room.members.get("d").state, { busy: true });
});

test("send resolves with the ack; a message seen twice (replay) is delivered once", async () => {
  const { room, ws } = await setUp();
  const got = [];
  room.on("message", (m) => got.push([m.seq, m.text, m.userId]));
  const sent = room.send("hello");
  const frame = ws.last("message");
  assert.deepEqual(frame.payload, { content: "hello" });
  assert.equal(frame.room, "r1");
  assert.match(frame.ref, /^[0-9a-f]{12}-\d+$/);
  ws.receive(message("r1", 6, "hello", { user_id: "alice", ref: frame.ref }));
  ws.receive({ type: "ack", ref: frame.ref, room: "r1", seq: 6, duplicate: false });
  assert.equal((await sent).seq, 6);
  ws.receive(message("r1", 6, "hello again?"));
  ws.receive(message("r1", 4, "old"));
  ws.receive(message("r1", 7, "next"));
  assert.deepEqual(got, [
    [6, "hello", "alice"],
    [7, "next", "bob"],
  ]);
  assert.equal(room.client.unacknowledged, 0);
});

test("after a drop: backoff, rejoin with since/epoch, unacknowledged frames written again after the join", async () => {
  const { net, clock, client, room, ws } = await setUp();
  const got = [];
  room.on("message", (m) => got.push(m.seq));
  const states = [];
  for (const kind of ["disconnected", "reconnecting", "connected"]) client.on(kind, (e) => states.push([kind, e.attempt ?? e.reconnects ?? e.code]));
  ws.receive(message("r1", 6, "a"));
  const first = room.send("lost ack");
  const firstRef = ws.last("message").ref;
  ws.drop(1006);
  const second = room.send("sent while offline"); // queued: nothing to write it on
  assert.equal(client.connected, false);
  assert.equal(client.state, "reconnecting");
  assert.deepEqual(clock.pending(), [100]);
  // the first attempt fails: the next waits twice as long
  await clock.advance(100);
  net.last.refuse();
  await flush();
  assert.deepEqual(clock.pending(), [200]);
  await clock.advance(200);
  const ws2 = net.last;
  ws2.accept();
  await flush();
  // nothing but the session restore goes out before the session is back
  assert.deepEqual(ws2.sent.map((f) => f.type), ["connect"]);
  ws2.receive({ type: "connect", status: "success", user_id: "alice", identity: {}, ref: ws2.last("connect").ref });
  await flush();
  const join = ws2.last("join-room");
  assert.deepEqual(join.payload, { members_limit: 100, presence: "batched", since: 6, epoch: "e1" });
  assert.equal(ws2.frames("message").length, 0);
  ws2.receive(roomJoined(join, { seq: 8, recovered: true }));
  ws2.receive(message("r1", 7, "missed")); // replayed
  ws2.receive(message("r1", 8, "lost ack", { user_id: "alice", ref: firstRef }));
  await flush();
  // the outbox, in order, with the same refs
  const resent = ws2.frames("message");
  assert.deepEqual(resent.map((f) => f.payload.content), ["lost ack", "sent while offline"]);
  assert.equal(resent[0].ref, firstRef);
  ws2.receive({ type: "ack", ref: resent[0].ref, room: "r1", seq: 8, duplicate: true });
  ws2.receive({ type: "ack", ref: resent[1].ref, room: "r1", seq: 9, duplicate: false });
  assert.deepEqual([(await first).seq, (await second).seq], [8, 9]);
  assert.deepEqual(got, [6, 7, 8]);
  assert.deepEqual(states, [
    ["disconnected", 1006],
    ["reconnecting", 1],
    ["disconnected", 1006],
    ["reconnecting", 2],
    ["connected", 1],
  ]);
  assert.equal(client.reconnects, 1);
  assert.equal(client.state, "online");
});

test("a restarted server (new epoch) gives a gap event and the new life's messages", async () => {
  const { net, clock, room, ws } = await setUp();
  const gaps = [];
  const got = [];
  room.on("gap", (g) => gaps.push(g));
  room.on("message", (m) => got.push(m.text));
  ws.receive(message("r1", 6, "before"));
  ws.drop(1001);
  await reconnect(net, clock, { joined: { seq: 1, epoch: "e2", recovered: false } });
  net.last.receive(message("r1", 1, "after restart"));
  assert.deepEqual(gaps, [{ room: "r1", since: 6, epochChanged: true }]);
  assert.deepEqual(got, ["before", "after restart"]);
  assert.equal(room.epoch, "e2");
});

test("direct messages: ack, unknown user, and a resend seen twice handled once", async () => {
  const { room, ws } = await setUp();
  const got = [];
  room.on("message", (m) => got.push([m.direct, m.text, m.seq]));
  const sent = room.direct("bob", { content: "psst" });
  const frame = ws.last("direct-message");
  assert.equal(frame.to, "bob");
  ws.receive({ type: "ack", ref: frame.ref, room: "r1" });
  await sent;
  const nobody = room.direct("nobody", "hi");
  ws.receive({ type: "error", code: "unknown-user", message: "no user 'nobody' in room 'r1'", ref: ws.last("direct-message").ref });
  await assert.rejects(nobody, UnknownPeer);
  await assert.rejects(room.direct("not/a name", "hi"), /invalid to/); // refused here, as a rejection
  await assert.rejects(room.setState(["not", "an", "object"]), /a presence state is a JSON object/);
  const dm = { type: "direct-message", room: "r1", user_id: "bob", to: "alice", message: { content: "hey" }, ref: "b-1" };
  ws.receive(dm);
  ws.receive(dm);
  ws.receive({ ...dm, ref: "b-2", message: { content: "again" } });
  assert.deepEqual(got, [
    [true, "hey", null],
    [true, "again", null],
  ]);
  assert.equal(room.client.unacknowledged, 0);
});

test("presence state is sent reliably and kept for the rejoin", async () => {
  const { net, clock, room, ws } = await setUp();
  const acked = room.setState({ status: "busy" });
  const frame = ws.last("presence");
  assert.deepEqual(frame.payload, { state: { status: "busy" } });
  ws.receive({ type: "ack", ref: frame.ref, room: "r1" });
  await acked;
  ws.drop();
  const { join } = await reconnect(net, clock, { joined: { seq: 5 } });
  assert.deepEqual(join.payload.state, { status: "busy" });
});

test("the broker is down: the frame is written again a second later, not given up", async () => {
  const { clock, room, ws } = await setUp();
  const sent = room.send("important");
  const frame = ws.last("message");
  ws.receive({ type: "error", code: "unavailable", message: "not delivered: redis down", ref: frame.ref });
  await clock.advance(1000);
  assert.equal(ws.frames("message").length, 2);
  ws.receive({ type: "ack", ref: frame.ref, room: "r1", seq: 6 });
  assert.equal((await sent).seq, 6);
});

test("rate limited: dropped frames are written again, and the error is reported", async () => {
  const { clock, client, room, ws } = await setUp();
  const errors = [];
  client.on("error", (e) => errors.push(e.code));
  room.send("one");
  ws.receive({ type: "error", code: "rate-limited", message: "rate limited", dropped: 1 });
  await clock.advance(1000);
  assert.equal(ws.frames("message").length, 2);
  assert.deepEqual(errors, ["rate-limited"]);
});

test("a refused join fails that join; a refused rejoin drops the room with an error event", async () => {
  const { net, clock, client, room, ws } = await setUp();
  const joining = client.join("taken");
  await flush();
  ws.receive({ type: "error", code: "name-taken", message: "user_id 'alice' is taken", ref: ws.last("join-room").ref });
  await assert.rejects(joining, NameTaken);
  assert.equal(client.rooms.has("taken"), false);

  const errors = [];
  room.on("error", (e) => errors.push(e.code));
  const pending = room.send("never acked");
  ws.drop();
  await clock.advance(1000);
  const ws2 = net.last;
  ws2.accept();
  ws2.receive({ type: "connect", status: "success", user_id: "alice", ref: ws2.last("connect").ref });
  await flush();
  ws2.receive({ type: "error", code: "name-taken", message: "taken now", ref: ws2.last("join-room").ref });
  await flush();
  assert.deepEqual(errors, ["name-taken"]);
  assert.equal(room.left, true);
  assert.equal(client.rooms.size, 0);
  await assert.rejects(pending, NameTaken);
  await assert.rejects(room.send("x"), /left room "r1"/);
});

test("a join asked while offline happens on the next connection", async () => {
  const { net, clock, client, ws } = await setUp();
  ws.drop();
  const joining = client.join("r2");
  await flush();
  await clock.advance(1000);
  const ws2 = net.last;
  ws2.accept();
  ws2.receive({ type: "connect", status: "success", user_id: "alice", ref: ws2.last("connect").ref });
  await flush();
  const joins = ws2.frames("join-room");
  assert.deepEqual(joins.map((j) => j.room).sort(), ["r1", "r2"]);
  for (const join of joins) ws2.receive(roomJoined(join, { seq: 0 }));
  const r2 = await joining;
  assert.equal(r2.name, "r2");
});

test("leave: a leave-room, and what waited for an ack there fails", async () => {
  const { client, room, ws } = await setUp();
  const pending = room.send("unacked");
  const leaving = client.leave("r1");
  const leave = ws.last("leave-room");
  assert.equal(leave.room, "r1");
  await assert.rejects(pending, /left room "r1" before this was acknowledged/);
  ws.receive({ type: "user-left", room: "r1", user_id: "alice" });
  ws.receive({ type: "room-left", room: "r1", ref: leave.ref });
  await leaving;
  assert.equal(client.rooms.size, 0);
});

test("close: disconnect frame, pending sends fail, no reconnect", async () => {
  const { net, clock, client, room, ws } = await setUp();
  const pending = room.send("x");
  const closed = [];
  client.on("closed", (e) => closed.push(e.name));
  client.close();
  assert.equal(ws.last().type, "disconnect");
  assert.equal(ws.closedWith.code, 1000);
  await assert.rejects(pending, ConnectionClosed);
  await flush();
  await clock.advance(10000);
  assert.equal(net.sockets.length, 1);
  assert.deepEqual(closed, ["ConnectionClosed"]);
  await assert.rejects(room.send("after"), ConnectionClosed);
});

test("the browser coming back online skips the backoff wait", async () => {
  const net = new FakeNetwork();
  const clock = new FakeClock();
  const listeners = {};
  const win = { addEventListener: (k, f) => (listeners[k] = f), removeEventListener: (k) => delete listeners[k] };
  const backoff = new Backoff({ initial: 5000, jitter: 0 });
  const connecting = RoomClient.connect({ ...OPTIONS, WebSocket: net.WebSocket, backoff, ...clock, window: win });
  net.last.accept();
  const client = await connecting; // no userId: no connect frame, the session is up at once
  net.last.drop();
  assert.deepEqual(clock.pending(), [5000]);
  listeners.online();
  assert.equal(net.sockets.length, 2);
  assert.deepEqual(clock.pending(), []);
  client.close();
  assert.equal(listeners.online, undefined);
});

test("a handshake refused for the credentials stops with a clear error instead of retrying", async () => {
  const net = new FakeNetwork();
  const clock = new FakeClock();
  const fetch = async () => ({ status: 403, ok: false, json: async () => ({}) });
  const connecting = RoomClient.connect({ ...OPTIONS, fetch, WebSocket: net.WebSocket, ...clock, window: null });
  net.last.refuse();
  await assert.rejects(connecting, (e) => e.name === "AuthenticationError" && /HTTP 403/.test(e.message));
  await clock.advance(60000);
  assert.equal(net.sockets.length, 1);
});

test("a server that is down is retried until it answers", async () => {
  const net = new FakeNetwork();
  const clock = new FakeClock();
  const fetch = async () => {
    throw new TypeError("Failed to fetch");
  };
  const backoff = new Backoff({ initial: 100, maximum: 400, jitter: 0 });
  const connecting = RoomClient.connect({ ...OPTIONS, fetch, WebSocket: net.WebSocket, backoff, ...clock, window: null });
  for (let i = 0; i < 5; i++) {
    net.last.refuse();
    await flush();
    await clock.advance(400);
  }
  net.last.accept();
  const client = await connecting;
  assert.equal(net.sockets.length, 6);
  assert.equal(client.connected, true);
});

test("frames that are not JSON objects are ignored, and the connection goes on", async () => {
  const { room, ws } = await setUp();
  const got = [];
  room.on("message", (m) => got.push(m.seq));
  const warn = console.warn;
  console.warn = () => {};
  try {
    ws.receive("garbage");
    ws.receive("[1]");
  } finally {
    console.warn = warn;
  }
  ws.receive(message("r1", 6, "fine"));
  assert.deepEqual(got, [6]);
});

test("a kernel's control message (a relayed peer link, a description) is a control event, never chat", async () => {
  const { room, ws } = await setUp();
  const chat = [];
  const control = [];
  room.on("message", (m) => chat.push(m.raw.message));
  room.on("control", (m) => control.push(m.raw.message));
  const relay = { iavicenne: "relay-data", link: 1, from: "bob#3f2a1c", to: "alice", n: 1, b: "AAAA" };
  ws.receive({ type: "direct-message", room: "r1", user_id: "bob", to: "alice", message: relay, ref: "c-1" });
  // a payload that only looks like one (the key is not a string) is still a message
  ws.receive({ type: "direct-message", room: "r1", user_id: "bob", to: "alice", message: { iavicenne: 1, content: "x" }, ref: "c-2" });
  assert.deepEqual(control, [relay]);
  assert.deepEqual(chat, [{ iavicenne: 1, content: "x" }]);
});

// -- rooms with members: the REST calls --------------------------------------------------------

/** A server whose fetch records each call and answers with `answers` in turn. */
function restServer(answers, { token = "", cookies = "_xsrf=2%7Cabc; other=1" } = {}) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, ...init, body: init.body === undefined ? undefined : JSON.parse(init.body) });
    const [status, body] = answers.shift();
    return { status, ok: status >= 200 && status < 300, json: async () => (body === undefined ? Promise.reject(new SyntaxError("no JSON")) : body) };
  };
  return { calls, api: new RoomsAPI(new Server({ url: "http://127.0.0.1:8888/jh/", token, fetch, cookies: () => cookies })) };
}

test("create, invite, remove, delete, list: JSON over REST, with X-XSRFToken from the _xsrf cookie", async () => {
  const record = { room: "q3", access: "private", owner: "alice", members: ["bob"] };
  const { calls, api } = restServer([[201, record], [200, { ...record, members: ["bob", "carol"] }], [200, record], [200, {}], [200, { rooms: [{ room: "q3", members: 1, connections: 1, access: "private" }] }]]);
  assert.deepEqual(await api.createRoom("q3", { members: ["bob"] }), record);
  assert.equal((await api.invite("q3", "carol")).members.length, 2);
  await api.removeMember("q3", "carol");
  await api.deleteRoom("q3");
  assert.deepEqual((await api.listRooms()).map((r) => r.access), ["private"]);
  assert.deepEqual(
    calls.map((c) => [c.method, c.url]),
    [
      ["POST", "http://127.0.0.1:8888/jh/iavicenne/api/rooms"],
      ["PUT", "http://127.0.0.1:8888/jh/iavicenne/api/rooms/q3/members/carol"],
      ["DELETE", "http://127.0.0.1:8888/jh/iavicenne/api/rooms/q3/members/carol"],
      ["DELETE", "http://127.0.0.1:8888/jh/iavicenne/api/rooms/q3"],
      ["GET", "http://127.0.0.1:8888/jh/iavicenne/api/rooms"],
    ],
  );
  assert.deepEqual(calls[0].body, { room: "q3", access: "private", members: ["bob"] });
  assert.equal(calls[0].headers["Content-Type"], "application/json");
  for (const call of calls) {
    assert.equal(call.headers["X-XSRFToken"], "2|abc"); // the cookie's value, decoded, as Jupyter checks it
    assert.equal(call.credentials, "same-origin");
    assert.equal(call.headers.Authorization, undefined); // the login cookie authenticates
  }
  // a username that needs escaping stays one path segment
  const other = restServer([[200, record]]);
  await other.api.invite("q3", "a/b c");
  assert.equal(other.calls[0].url, "http://127.0.0.1:8888/jh/iavicenne/api/rooms/q3/members/a%2Fb%20c");
});

test("the server's refusals are the errors that say so, with its own sentence", async () => {
  const { api } = restServer([
    [403, { error: "forbidden", message: "only its owner (alice) may invite to room 'q3'" }],
    [409, { error: "invalid-field", message: "room 'q3' exists" }],
    [403, { error: "forbidden", message: "403", reason: "Forbidden" }],
    [429, { error: "limit-exceeded", message: "too many private rooms", option: "max_private_rooms_per_identity", limit: 100 }],
    [500, undefined],
  ]);
  await assert.rejects(api.invite("q3", "mallory"), (e) => e instanceof Forbidden && e.code === "forbidden" && /only its owner \(alice\)/.test(e.message));
  await assert.rejects(api.createRoom("q3"), (e) => e instanceof RequestFailed && e.frame.status === 409 && /exists/.test(e.message));
  await assert.rejects(api.listRooms(), AuthenticationError); // Jupyter's own 403: not logged in
  await assert.rejects(api.createRoom("q4"), (e) => e.code === "limit-exceeded" && e.frame.option === "max_private_rooms_per_identity");
  await assert.rejects(api.deleteRoom("q3"), (e) => e instanceof RequestFailed && /HTTP 500/.test(e.message));
  // what is wrong on our side fails before any request
  assert.throws(() => api.invite("no room!", "bob"), /invalid room/);
  await assert.rejects(api.createRoom("q5", { access: "secret" }), /access is one of public, group, private/);
  await assert.rejects(api.createRoom("q5", { access: "group" }), /needs group/);
});

test("the client's identity comes from its own entry in room-joined when it sent no connect", async () => {
  const net = new FakeNetwork();
  const clock = new FakeClock();
  const client = await (async () => {
    const connecting = RoomClient.connect({ ...OPTIONS, WebSocket: net.WebSocket, ...clock, window: null });
    net.last.accept();
    return connecting;
  })();
  assert.equal(client.userId, null);
  const joining = client.join("r1");
  await flush();
  const mine = { username: "alice", name: "alice", display_name: "Alice" };
  const members = [{ user_id: "bob", identity: { username: "bob" } }, { user_id: "alice", identity: mine }];
  net.last.receive(roomJoined(net.last.last("join-room"), { members }));
  await joining;
  assert.equal(client.userId, "alice");
  assert.deepEqual(client.identity, mine);
  assert.ok(client.api instanceof RoomsAPI);
  client.close();
});

test("join with since: 0 asks for the history the server keeps, and delivers it as messages", async () => {
  const { client, ws } = await setUp();
  const joining = client.join("chat", { since: 0 });
  await flush();
  const join = ws.last("join-room");
  assert.deepEqual(join.payload, { members_limit: 100, presence: "batched", since: 0 });
  ws.receive(roomJoined(join, { seq: 2 }));
  const room = await joining;
  const got = [];
  room.on("message", (m) => got.push([m.seq, m.text]));
  ws.receive(message("chat", 1, "earlier"));
  ws.receive(message("chat", 2, "just before"));
  ws.receive(message("chat", 2, "just before"));
  ws.receive(message("chat", 3, "live"));
  assert.deepEqual(got, [[1, "earlier"], [2, "just before"], [3, "live"]]);
});
