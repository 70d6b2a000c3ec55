// The browser's shared state without a server: the y-sync framing, and two copies that
// exchange exactly the frames the server would relay (step 1, step 2, updates).
import assert from "node:assert/strict";
import { test } from "node:test";

import { CUT, decodeSync, encodeSync, plain, SharedState, Y } from "../../../iavicenne_ext/static/shared.js";
import { SHARED, SyncStep } from "../../../iavicenne_ext/static/protocol.js";

test("a y-sync message survives encoding, whatever its length; anything else is refused", () => {
  for (const size of [0, 1, 127, 128, 20000]) {
    const payload = Uint8Array.from({ length: size }, (_, i) => i % 251);
    const [step, back] = /** @type {[number, Uint8Array]} */ (decodeSync(encodeSync(SyncStep.UPDATE, payload)));
    assert.equal(step, SyncStep.UPDATE);
    assert.deepEqual([...back], [...payload]);
  }
  assert.equal(decodeSync("not base64!"), null);
  assert.equal(decodeSync(btoa("\x01\x00\x00")), null); // awareness, not sync
  assert.equal(decodeSync(btoa("\x00\x02\x05ab")), null); // length says 5, has 2
  assert.equal(decodeSync(42), null);
});

/** A room stand-in: what `shared` frames a copy sends go to the other, as the server relays them. */
function pair() {
  /** @type {any[]} */
  const rooms = [];
  for (let i = 0; i < 2; i++) {
    /** @type {Map<string, Set<(e: any) => void>>} */
    const handlers = new Map();
    const room = {
      name: "r",
      left: false,
      on: (/** @type {string} */ kind, /** @type {(e: any) => void} */ cb) => {
        if (!handlers.has(kind)) handlers.set(kind, new Set());
        handlers.get(kind)?.add(cb);
        return () => handlers.get(kind)?.delete(cb);
      },
      emit: (/** @type {string} */ kind, /** @type {any} */ event) => handlers.get(kind)?.forEach((cb) => cb(event)),
      client: {
        connected: true,
        _ws: {},
        on: () => () => {},
        _write: (/** @type {any} */ _ws, /** @type {string} */ data) => deliver(i, JSON.parse(data)),
      },
      _reliable: (/** @type {() => any} */ make) => {
        deliver(i, make());
        return Promise.resolve({});
      },
    };
    rooms.push(room);
  }
  /**
   * @param {number} from
   * @param {any} frame
   */
  function deliver(from, frame) {
    assert.equal(frame.type, SHARED);
    setTimeout(() => rooms[1 - from].emit("shared", { type: SHARED, room: "r", sync: frame.payload.sync }), 0);
  }
  return rooms;
}

test("two copies edited apart converge once they sync, lists merged and text kept", async () => {
  const [roomA, roomB] = pair();
  const a = new SharedState("r");
  const b = new SharedState("r");
  a.set("questions", ["first"]);
  b.set("threshold", 0.3);
  a.attach(roomA);
  b.attach(roomB);
  await Promise.all([a.synced, b.synced]);
  await new Promise((resolve) => setTimeout(resolve, 20));
  a.get("questions").push(["from a"]);
  b.set("notes", new Y.Text("look at Q3"));
  /** @type {string[][]} */
  const seen = [];
  b.observe((change) => seen.push([...change.keys]));
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(a.toJSON(), b.toJSON());
  assert.deepEqual(b.toJSON(), { questions: ["first", "from a"], threshold: 0.3, notes: "look at Q3" });
  assert.ok(seen.some((keys) => keys.includes("questions")));
});

test("a document 17,000 levels deep converts without recursion, and is cut where asked", () => {
  const doc = new Y.Doc();
  const root = doc.getMap("root");
  doc.transact(() => {
    /** @type {Y.Map<any>} */
    let current = root;
    for (let level = 0; level < 17000; level++) {
      const inner = new Y.Map();
      current.set("k", inner);
      current = inner;
    }
    current.set("json", [[1, { x: [2] }]]); // a JSON value nested too, kept as it is
    current.set("text", new Y.Text("bottom"));
  });
  assert.throws(() => root.toJSON(), RangeError); // what the demo page once did
  /** @type {any} */
  let value = plain(root);
  for (let level = 0; level < 17000; level++) value = value.k;
  assert.deepEqual(value, { json: [[1, { x: [2] }]], text: "bottom" });
  assert.deepEqual(plain(root, 3), { k: { k: { k: CUT } } });
  assert.deepEqual(plain({ a: [1, [2, [3]]], b: new Uint8Array([1]) }, 2), { a: [1, CUT], b: new Uint8Array([1]) });
  /** @type {any} */
  let deepJson = 0;
  for (let level = 0; level < 100000; level++) deepJson = [deepJson];
  let converted = plain({ deepJson });
  for (let level = 0; level < 100000; level++) converted = level === 0 ? converted.deepJson : converted[0];
  assert.equal(converted[0], 0);
});
