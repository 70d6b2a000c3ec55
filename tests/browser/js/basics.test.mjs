// The module's pure parts: backoff, names, frames, bookkeeping, server addresses.
import assert from "node:assert/strict";
import { test } from "node:test";

import * as entry from "../../../iavicenne_ext/static/iavicenne.js";
import { payloadOf } from "../../../iavicenne_ext/static/room.js";
import { Backoff, parseFrame } from "../../../iavicenne_ext/static/connection.js";
import { Outbox, SeenSet, SeqTracker } from "../../../iavicenne_ext/static/delivery.js";
import { readCookie, Server } from "../../../iavicenne_ext/static/discovery.js";
import { checkName, errorFrom, NameTaken, Superseded, UnknownPeer } from "../../../iavicenne_ext/static/errors.js";
import { Emitter } from "../../../iavicenne_ext/static/events.js";
import * as protocol from "../../../iavicenne_ext/static/protocol.js";

test("backoff grows exponentially up to its maximum, with jitter inside the ceiling", () => {
  const low = new Backoff({ initial: 100, factor: 2, maximum: 1000, jitter: 0.5, random: () => 0 });
  const high = new Backoff({ initial: 100, factor: 2, maximum: 1000, jitter: 0.5, random: () => 0.999999 });
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((a) => low.delay(a)), [50, 100, 200, 400, 500, 500]);
  const ceilings = [100, 200, 400, 800, 1000, 1000];
  [0, 1, 2, 3, 4, 5].forEach((a) => {
    const d = high.delay(a);
    assert.ok(d <= ceilings[a] && d > ceilings[a] * 0.99, `attempt ${a}: ${d}`);
  });
});

test("backoff draws a new jitter each time, so clients spread out", () => {
  const backoff = new Backoff({ initial: 1000, jitter: 1 });
  const delays = new Set(Array.from({ length: 20 }, () => Math.round(backoff.delay(0))));
  assert.ok(delays.size > 10, [...delays].join(","));
  for (const d of delays) assert.ok(d >= 0 && d <= 1000);
});

test("backoff refuses settings that make no sense", () => {
  assert.throws(() => new Backoff({ initial: 0 }), /initial > 0/);
  assert.throws(() => new Backoff({ jitter: 2 }), /jitter/);
});

test("names follow the server's rule", () => {
  for (const ok of ["r1", "alice", "Ada Lovelace", "kernel-1.x@host:8888", "café", "分析", "a"]) assert.equal(checkName(ok, "room"), ok);
  for (const bad of ["", " lead", "trail ", "a/b", "x".repeat(65), "tab\there"]) assert.throws(() => checkName(bad, "room"), /invalid room/);
  assert.throws(() => checkName(3, "user_id"), /user_id must be a string/);
});

test("a frame is a JSON object in text; anything else is not one", () => {
  assert.deepEqual(parseFrame('{"type":"ack","ref":"r"}'), { type: "ack", ref: "r" });
  for (const bad of ["not json", "[1,2]", "null", "3", new Uint8Array([123, 125]), undefined]) assert.equal(parseFrame(bad), null);
});

test("a text is the seed's content payload; objects pass as they are", () => {
  assert.deepEqual(payloadOf("hi"), { content: "hi" });
  assert.deepEqual(payloadOf({ content: "hi", kind: "x" }), { content: "hi", kind: "x" });
  assert.throws(() => payloadOf([1]), /string or a JSON object/);
});

test("error frames become the exceptions that name them", () => {
  assert.ok(errorFrom({ code: "name-taken", message: "taken" }) instanceof NameTaken);
  assert.ok(errorFrom({ code: "unknown-peer" }) instanceof UnknownPeer);
  assert.ok(errorFrom({ code: "unknown-user" }) instanceof UnknownPeer);
  assert.ok(errorFrom({ code: "superseded" }) instanceof Superseded);
  const other = errorFrom({ code: "not-in-room", message: "Not in room 'x'" });
  assert.equal(other.code, "not-in-room");
  assert.match(other.message, /Not in room 'x' \(code not-in-room\)/);
});

test("the outbox keeps order, acks once, fails by room, and never leaves an unhandled rejection", async () => {
  const outbox = new Outbox();
  const a = outbox.add("a", "A", "r1");
  const b = outbox.add("b", "B", "r2");
  outbox.add("c", "C", "r1"); // nobody waits for this one: failing it must not crash node
  assert.deepEqual(outbox.frames(), ["A", "B", "C"]);
  assert.equal(outbox.ack("a", { type: "ack", ref: "a", seq: 1 }), true);
  assert.equal(outbox.ack("a", { type: "ack", ref: "a" }), false);
  assert.deepEqual(await a, { type: "ack", ref: "a", seq: 1 });
  outbox.dropRoom("r1", new Error("left"));
  assert.deepEqual(outbox.frames(), ["B"]);
  outbox.failAll(new Error("closed"));
  await assert.rejects(b, /closed/);
  assert.equal(outbox.size, 0);
});

test("seen refs: a key counts once, and the oldest are forgotten beyond the limit", () => {
  const seen = new SeenSet(3);
  assert.equal(seen.add("a"), true);
  assert.equal(seen.add("a"), false);
  seen.add("b");
  seen.add("c");
  seen.add("d"); // forgets "a"
  assert.equal(seen.add("a"), true);
  assert.equal(seen.add("c"), false);
});

test("seq tracking: first join starts at the room's position, replays are skipped, epochs restart", () => {
  const history = new SeqTracker();
  assert.deepEqual(history.resume(), {});
  assert.equal(history.joined({ seq: 10, epoch: "e1" }), null);
  assert.equal(history.accept(10), false); // already before us
  assert.equal(history.accept(11), true);
  assert.equal(history.accept(12), true);
  assert.equal(history.accept(12), false);
  assert.equal(history.accept(undefined), true); // no seq: not ours to judge
  assert.deepEqual(history.resume(), { since: 12, epoch: "e1" });
  // a rejoin that recovered everything: no gap, replays after 12 only
  assert.equal(history.joined({ seq: 14, epoch: "e1", since: 12, recovered: true }), null);
  assert.equal(history.accept(12), false);
  assert.equal(history.accept(13), true);
  // some were lost
  assert.deepEqual(history.joined({ seq: 20, epoch: "e1", since: 13, recovered: false }), { since: 13, epochChanged: false });
  // the room started a new life (server restarted): its seqs start again at 1
  assert.deepEqual(history.joined({ seq: 2, epoch: "e2", since: 13, recovered: false }), { since: 13, epochChanged: true });
  assert.equal(history.accept(1), true);
  assert.equal(history.accept(2), true);
  assert.deepEqual(history.resume(), { since: 2, epoch: "e2" });
});

test("cookies are read by name", () => {
  const jar = "username-127-0-0-1-8888=2|abc; _xsrf=2|f00|ba%7Cr|1700000000; theme=dark";
  assert.equal(readCookie("_xsrf", jar), "2|f00|ba|r|1700000000");
  assert.equal(readCookie("theme", jar), "dark");
  assert.equal(readCookie("missing", jar), null);
  assert.equal(readCookie("_xsrf", ""), null);
});

test("server addresses: what Jupyter prints, a base URL, or the page's own", () => {
  const printed = new Server({ url: "http://127.0.0.1:8888/user/ada/lab?token=abc123" });
  assert.equal(printed.url, "http://127.0.0.1:8888/user/ada/");
  assert.equal(printed.token, "abc123");
  assert.equal(printed.wsUrl("iavicenne/ws/mcp"), "ws://127.0.0.1:8888/user/ada/iavicenne/ws/mcp?token=abc123");
  const tls = new Server({ url: "https://hub.example/user/ada", token: "t" });
  assert.equal(tls.wsUrl("iavicenne/ws/signaling"), "wss://hub.example/user/ada/iavicenne/ws/signaling?token=t");
  const demo = new Server({ url: "http://h:1/base/iavicenne/?token=x" });
  assert.equal(demo.url, "http://h:1/base/");

  // a page of the server: its base URL from the page, the cookie authenticates
  const page = {
    querySelector: (q) => (q.includes("iavicenne-base-url") ? { content: "/jh/user/ada/" } : null),
    getElementById: () => null,
    cookie: "_xsrf=2|x|y|1",
  };
  const fromPage = new Server({ location: "https://hub.example/jh/user/ada/iavicenne/", document: page });
  assert.equal(fromPage.url, "https://hub.example/jh/user/ada/");
  assert.equal(fromPage.token, "");
  assert.equal(fromPage.wsUrl("iavicenne/ws/mcp"), "wss://hub.example/jh/user/ada/iavicenne/ws/mcp");
  assert.deepEqual(fromPage.headers(), { Accept: "application/json", "X-XSRFToken": "2|x|y|1" });
  // JupyterLab's page config, and the token of the page's address
  const lab = {
    querySelector: () => null,
    getElementById: (id) => (id === "jupyter-config-data" ? { textContent: '{"baseUrl": "/lab-base/"}' } : null),
    cookie: "",
  };
  const fromLab = new Server({ location: "http://h:2/lab-base/lab?token=tok", document: lab });
  assert.equal(fromLab.url, "http://h:2/lab-base/");
  assert.equal(fromLab.token, "tok");
  assert.deepEqual(fromLab.headers(), { Accept: "application/json", Authorization: "token tok" });
  assert.throws(() => new Server({ location: undefined, document: null }), /no server address/);
});

test("REST calls carry the XSRF header and the cookie; 403 says how to log in", async () => {
  const calls = [];
  const answers = [
    { status: 200, ok: true, json: async () => ({ rooms: [{ room: "r1", members: 1, connections: 1 }] }) },
    { status: 403, ok: false, json: async () => ({}) },
    { status: 404, ok: false, json: async () => ({ message: "no room 'zz'" }) },
  ];
  const server = new Server({
    url: "http://h:1/",
    cookies: () => "_xsrf=XS",
    fetch: async (url, init) => {
      calls.push({ url, init });
      return answers.shift();
    },
  });
  assert.deepEqual(await server.rooms(), [{ room: "r1", members: 1, connections: 1 }]);
  assert.equal(calls[0].url, "http://h:1/iavicenne/api/rooms");
  assert.equal(calls[0].init.credentials, "same-origin");
  assert.equal(calls[0].init.headers["X-XSRFToken"], "XS");
  await assert.rejects(server.rooms(), (e) => e.name === "AuthenticationError" && /log in to Jupyter/.test(e.message));
  await assert.rejects(server.members("zz"), (e) => e.code === "http-404" && /no room 'zz'/.test(e.message));
  assert.equal(calls[2].url, "http://h:1/iavicenne/api/rooms/zz");
});

test("an emitter's failing listener does not stop the others; next() waits for a match", async () => {
  const emitter = new Emitter();
  const got = [];
  const original = globalThis.reportError;
  const reported = [];
  globalThis.reportError = (e) => reported.push(e);
  try {
    emitter.on("x", () => {
      throw new Error("boom");
    });
    const off = emitter.on("x", (e) => got.push(e));
    const waiting = emitter.next("x", { where: (e) => e === 2 });
    emitter.emit("x", 1);
    emitter.emit("x", 2);
    assert.equal(await waiting, 2);
    off();
    emitter.emit("x", 3);
    assert.deepEqual(got, [1, 2]);
    assert.equal(reported.length, 3);
    await assert.rejects(emitter.next("never", { timeout: 5 }), /no never event within 5 ms/);
  } finally {
    globalThis.reportError = original;
  }
});

test("the entry module exports the modules' own objects (one copy), and every protocol value", async () => {
  const modules = ["client", "connection", "delivery", "discovery", "errors", "events", "ice", "identity", "link", "peer", "room", "rooms-api", "signaling", "wire"];
  let shared = 0;
  for (const name of modules) {
    const module = await import(`../../../iavicenne_ext/static/${name}.js`);
    for (const [key, value] of Object.entries(module)) {
      if (key in entry) {
        assert.equal(entry[key], value, `iavicenne.js's ${key} is not ${name}.js's`);
        shared += 1;
      }
    }
  }
  assert.ok(shared > 35, `only ${shared} names shared`);
  for (const [key, value] of Object.entries(protocol)) assert.equal(entry[key], value, key);
  // what the internals keep to themselves stays out of the public API
  for (const internal of ["Endpoint", "Disconnected", "report", "idFrame"]) assert.equal(entry[internal], undefined, internal);
});

test("a refused name says the rule, in protocol.py's words", () => {
  assert.throws(() => checkName("a/b", "room"), new RegExp(`invalid room "a/b": ${protocol.NAME_RULE.replace(/[.+#~-]/g, "\\$&")}$`));
  assert.throws(() => checkName("x".repeat(100), "room"), (e) => e.message.includes(`"${"x".repeat(protocol.NAME_MAX_LENGTH)}"`));
});
