// How the panel names people and files (src/names.ts, compiled to lib/names.js by `npm run build`).
import assert from "node:assert/strict";
import { test } from "node:test";

import { suggestedPath } from "../lib/model.js";
import { personOf, personText, safeName, withoutHidden } from "../lib/names.js";

test("safeName: bidi, controls and zero-width characters are written out, the rest kept", () => {
  assert.equal(safeName("report\u202Efdp.py"), "report[U+202E]fdp.py");
  assert.equal(safeName("a\u2066b\u2069c\u200Bd\u0007e\u0085f\uFEFF"), "a[U+2066]b[U+2069]c[U+200B]d[U+0007]e[U+0085]f[U+FEFF]");
  assert.equal(safeName("\u{E0041}"), "[U+E0041]", "a tag character");
  assert.equal(safeName("Zoë Ренат 山田 مريم"), "Zoë Ренат 山田 مريم", "letters of every script stay");
  assert.equal(safeName(undefined), "");
  assert.equal(safeName(42), "42");
});

test("personOf: the verified username leads; a chosen name only follows it", () => {
  const bob = { user_id: "bob", identity: { username: "bob", display_name: "Bob" }, state: { display_name: "alice" } };
  assert.equal(personText(personOf(bob, "bob")), "@bob (alice)", "bob calling himself alice");
  const cyrillic = { ...bob, state: { display_name: "\u0430lice" } };
  assert.equal(personText(personOf(cyrillic, "bob")), "@bob (\u0430lice)");
  const plain = { user_id: "carol", identity: { username: "carol", display_name: "carol" } };
  assert.equal(personText(personOf(plain, "carol")), "@carol", "the chosen name is the username: said once");
  const hostile = { user_id: "x", identity: { username: "bob\u202E" }, state: { display_name: "\u202Eecila" } };
  assert.deepEqual(personOf(hostile, "x"), { username: "bob[U+202E]", chosen: "[U+202E]ecila", verified: true });
  assert.deepEqual(personOf(undefined, "dave"), { username: "dave", chosen: "", verified: false }, "gone: the user_id, unverified");
});

test("suggestedPath: a file is saved under its name without hidden characters", () => {
  assert.equal(suggestedPath("received", "report\u202Efdp.py"), "received/reportfdp.py");
  assert.equal(withoutHidden("a\u200Bb"), "ab");
});
