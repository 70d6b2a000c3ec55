// The side panel's logic (src/model.ts, compiled to lib/model.js by `npm run build`).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  isPlain,
  roomsToRejoin,
  completeMention,
  completions,
  connectionLabel,
  dayLabel,
  followTarget,
  mentionQuery,
  mentions,
  mentionsIn,
  peopleOf,
  peopleOnline,
  samePresence,
  startsDay,
  UnreadTracker,
  whereOf,
} from "../lib/model.js";

test("whereOf: the document and the cell, 1-based; nothing without a document", () => {
  assert.equal(whereOf({ document: "eda.ipynb", cell: 3 }), "eda.ipynb · cell 4");
  assert.equal(whereOf({ document: "notes.md", cell: null }), "notes.md");
  assert.equal(whereOf({ notebook: "forecast.ipynb" }), "forecast.ipynb", "a kernel's state names its notebook");
  assert.equal(whereOf({ status: "idle" }), "");
  assert.equal(whereOf({ document: "x.ipynb", cell: -1 }), "x.ipynb");
  assert.equal(whereOf({ document: 42 }), "", "a hostile state's non-string is ignored");
});

test("peopleOf: one row per member, ourselves first, a chosen name beside the verified one", () => {
  const rows = peopleOf(
    [
      { user_id: "bob", identity: { username: "bob", display_name: "Bob" }, state: { status: "reviewing", document: "a.ipynb", cell: 0 }, connections: 3 },
      { user_id: "alice", identity: { username: "alice", display_name: "Alice" }, state: {}, connections: 1 },
      { user_id: "carol", identity: { username: "carol" }, state: { display_name: "  Dr. Carol  " } },
    ],
    "alice",
  );
  assert.deepEqual(
    rows.map((row) => [row.userId, row.label, row.you, row.connections, row.where, row.status]),
    [
      ["alice", "Alice", true, 1, "", ""],
      ["bob", "Bob", false, 3, "a.ipynb · cell 1", "reviewing"],
      ["carol", "Dr. Carol", false, 1, "", ""],
    ],
  );
});

test("peopleOnline: distinct people over the rooms, not counting ourselves", () => {
  const r1 = [{ user_id: "alice" }, { user_id: "bob" }];
  const r2 = [{ user_id: "bob" }, { user_id: "carol" }];
  assert.equal(peopleOnline([r1, r2], "alice"), 2);
  assert.equal(peopleOnline([], "alice"), 0);
});

test("mentions: @name as a word, with punctuation after it, not inside an address", () => {
  assert.deepEqual([...mentionsIn("hi @bob, and @carol!", ["bob", "carol", "dave"])].sort(), ["bob", "carol"]);
  assert.equal(mentions("ping @alice", "alice"), true);
  assert.equal(mentions("mail alice@example.org", "alice"), false);
  assert.equal(mentions("@alicex", "alice"), false);
  assert.equal(mentions("@all please look", "alice"), true);
  assert.equal(mentions("(@alice)", "alice"), true);
  assert.equal(mentions("anything", null), false);
});

test("mentionQuery and completeMention: the @word at the caret, replaced by the chosen name", () => {
  assert.deepEqual(mentionQuery("hello @bo", 9), { start: 6, query: "bo" });
  assert.deepEqual(mentionQuery("@", 1), { start: 0, query: "" });
  assert.equal(mentionQuery("mail a@b", 8), null, "inside a word is no mention");
  assert.equal(mentionQuery("hello bob", 9), null);
  assert.deepEqual(completeMention("hello @bo", 9, "bob"), { value: "hello @bob ", caret: 11 });
  assert.deepEqual(completeMention("@bo see this", 3, "bob"), { value: "@bob see this", caret: 5 });
  assert.deepEqual(completeMention("no mention", 4, "bob"), { value: "no mention", caret: 4 });
});

test("completions: names starting with the query first, then containing it", () => {
  assert.deepEqual(completions("b", ["rob", "bob", "alice", "barbara"]), ["barbara", "bob", "rob"]);
  assert.deepEqual(completions("", ["b", "a"]), ["a", "b"]);
  assert.deepEqual(completions("zz", ["a"]), []);
});

test("dates: Today, Yesterday, else the date; a heading when the local day changes", () => {
  const now = new Date(2026, 11, 1, 15, 0);
  assert.equal(dayLabel(new Date(2026, 11, 1, 9, 30).toISOString(), now), "Today");
  assert.equal(dayLabel(new Date(2026, 10, 30, 23, 59).toISOString(), now), "Yesterday");
  assert.match(dayLabel(new Date(2026, 10, 2).toISOString(), now), /2026/);
  assert.equal(dayLabel("not a date", now), "");
  assert.equal(startsDay(null, now.toISOString()), true);
  assert.equal(startsDay(new Date(2026, 11, 1, 1).toISOString(), new Date(2026, 11, 1, 23).toISOString()), false);
  assert.equal(startsDay(new Date(2026, 10, 30, 23).toISOString(), new Date(2026, 11, 1, 0, 1).toISOString()), true);
});

test("UnreadTracker: counts what came unseen, the marker at the first, mentions apart", () => {
  const unread = new UnreadTracker();
  assert.equal(unread.arrived(0, true), false);
  assert.equal(unread.arrived(1, false), true);
  assert.equal(unread.arrived(2, false, true), true);
  assert.deepEqual([unread.count, unread.marker, unread.mentions], [2, 1, 1]);
  unread.read();
  assert.deepEqual([unread.count, unread.marker, unread.mentions], [0, 1, 0], "the marker stays to show what was new");
  unread.arrived(3, false);
  assert.equal(unread.marker, 1);
  unread.clear();
  assert.deepEqual([unread.count, unread.marker], [0, null]);
});

test("followTarget: open on the same server (cell and its id), else the path and why", () => {
  const here = "http://127.0.0.1:8888/";
  assert.deepEqual(followTarget({ document: "a/b.ipynb", cell: 2, cell_id: "c-1", server: here }, here), {
    open: true,
    path: "a/b.ipynb",
    cell: 2,
    cellId: "c-1",
  });
  const elsewhere = followTarget({ document: "b.ipynb", server: "http://hub/user/bob/" }, here);
  assert.equal(elsewhere.open, false);
  assert.equal(elsewhere.path, "b.ipynb");
  assert.match(elsewhere.reason, /another server/);
  assert.equal(followTarget({ notebook: "k.ipynb" }, here).open, false, "a kernel says no server");
  assert.equal(followTarget({ status: "idle" }, here), null);
});

test("samePresence and connectionLabel", () => {
  assert.equal(samePresence(null, { a: 1 }), false);
  assert.equal(samePresence({ a: 1, b: null }, { a: 1, b: null }), true);
  assert.equal(samePresence({ a: 1 }, { a: 2 }), false);
  assert.equal(connectionLabel({ peer_id: "bob#3f2a1c", kind: "kernel", notebook: "f.ipynb" }), "kernel bob#3f2a1c · f.ipynb");
  assert.equal(connectionLabel({ peer_id: "bob", kind: "lab", document: null }), "lab bob");
});

test("files: an offer's name cannot point elsewhere; a malformed offer is none; bytes only as accepted, from the offerer", async () => {
  const { mayReceive, parseOffer, safeFileName, suggestedPath } = await import("../lib/model.js");
  assert.equal(safeFileName("../../.bashrc"), ".bashrc");
  assert.equal(safeFileName("a\\b\\evil.py"), "evil.py");
  assert.equal(safeFileName(".."), "received-file");
  assert.equal(safeFileName("x\u0000y\n.csv"), "xy.csv");
  assert.equal(safeFileName(42), "received-file");
  assert.equal(safeFileName("a".repeat(500)).length, 200);
  assert.equal(suggestedPath("data/in/", "../r.csv"), "data/in/r.csv");
  assert.equal(suggestedPath("", "r.csv"), "r.csv");
  assert.deepEqual(parseOffer({ id: "t1", name: "../r.csv", size: 10, peer_id: "bob#abcdef" }), { id: "t1", name: "r.csv", size: 10, peerId: "bob#abcdef" });
  assert.equal(parseOffer({ id: "t1", name: "r", size: -1 }), null);
  assert.equal(parseOffer({ id: "", name: "r", size: 1 }), null);
  assert.equal(parseOffer({ id: "x".repeat(101), name: "r", size: 1 }), null);
  assert.equal(parseOffer({ id: "t", name: "r", size: 1.5 }), null);
  const accepted = { direction: "receive", state: "accepted", userId: "alice" };
  assert.equal(mayReceive(accepted, "alice"), true);
  assert.equal(mayReceive(accepted, "mallory"), false);
  assert.equal(mayReceive({ ...accepted, state: "offered" }, "alice"), false, "not accepted yet");
  assert.equal(mayReceive({ ...accepted, direction: "send" }, "alice"), false);
  assert.equal(mayReceive(undefined, "alice"), false);
});

test("isPlain: plain chat is shown as text; anything Markdown would change goes to the renderer", () => {
  for (const text of ["@alice flood 1499", "Thanks, reading it now", "is it ok? (yes!)", "Ça va, à 14h"]) assert.equal(isPlain(text), true, text);
  for (const text of ["The **cohort** is ready", "a\nb", "1. first", "see https://example.org", "www.example.org", "![x](/hub/logout)", "<b>x</b>", "a & b", "`code`", "# title", "- item", "[link](x)"]) {
    assert.equal(isPlain(text), false, text);
  }
});

test("roomsToRejoin: the remembered rooms, newest joined last, and the settings' ones, each once", () => {
  assert.deepEqual(roomsToRejoin(["b", "a"], []), ["a", "b"]);
  assert.deepEqual(roomsToRejoin(["b", "a"], ["a", "c"]), ["c", "a", "b"]);
  assert.deepEqual(roomsToRejoin([], ["c", "c"]), ["c"]);
});
