// Where a received file may be saved, and the bounds on copy requests (src/received.ts).
import assert from "node:assert/strict";
import { test } from "node:test";

import { checkSavePath, copyFieldsOf, numberedPath, RequestGate } from "../lib/received.js";

test("checkSavePath: a path inside the server's folder, with the folders it needs", () => {
  assert.deepEqual(checkSavePath("x.csv"), { ok: true, path: "x.csv", folders: [] });
  assert.deepEqual(checkSavePath(" received/2026/x.csv "), { ok: true, path: "received/2026/x.csv", folders: ["received", "received/2026"] });
});

test("checkSavePath: what a hostile name (or a paste) could make of it is refused", () => {
  for (const bad of ["../x.csv", "a/../../x", "/etc/passwd", "C:/x", "a\\..\\x", "./x", "a//x", "folder/", "", "report\u202Efdp.py", "x\u0000.csv", "x\n.csv", "a".repeat(256)]) {
    const check = checkSavePath(bad);
    assert.equal(check.ok, false, JSON.stringify(bad));
    assert.ok(check.reason.length > 0);
  }
});

test("numberedPath: the name that keeps both files", () => {
  assert.equal(numberedPath("received/x.csv", 0), "received/x.csv");
  assert.equal(numberedPath("received/x.csv", 1), "received/x (1).csv");
  assert.equal(numberedPath("data.tar.gz", 2), "data (2).tar.gz");
  assert.equal(numberedPath("README", 1), "README (1)");
  assert.equal(numberedPath(".env", 1), ".env (1)");
});

test("copyFieldsOf: only a well-formed request id, cell and cell id", () => {
  assert.deepEqual(copyFieldsOf({}), {});
  assert.deepEqual(copyFieldsOf({ request: 42 }), {});
  assert.deepEqual(copyFieldsOf({ request: "x".repeat(101) }), {});
  assert.deepEqual(copyFieldsOf({ request: "c-1", cell: 3, cell_id: "b7" }), { request: "c-1", cell: 3, cellId: "b7" });
  assert.deepEqual(copyFieldsOf({ request: "c-1", cell: -1, cell_id: 5 }), { request: "c-1", cell: null, cellId: null });
});

test("RequestGate: one waiting per person, silence after a decline, a bound in all", () => {
  const gate = new RequestGate(60_000, 2);
  assert.equal(gate.admit("bob", "1", 0), true);
  assert.equal(gate.admit("bob", "2", 1), false, "another from bob while one waits is dropped");
  gate.answered("bob", "2", true, 2); // not the waiting one: nothing changes
  assert.equal(gate.isWaiting("bob", "1"), true);
  gate.answered("bob", "1", true, 10);
  assert.equal(gate.admit("bob", "3", 30_000), false, "a minute of silence after a decline");
  assert.equal(gate.admit("bob", "4", 60_011), true);
  gate.answered("bob", "4", false, 60_012);
  assert.equal(gate.admit("bob", "5", 60_013), true, "no silence after an accepted one");
  assert.equal(gate.admit("carol", "6", 60_014), true);
  assert.equal(gate.admit("dave", "7", 60_015), false, "at most two waiting in all");
});
