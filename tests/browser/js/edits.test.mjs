// Edits, deletions and replies in the browser client: the frames it sends, the events it gives.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Backoff, RoomClient } from "../../../iavicenne_ext/static/iavicenne.js";
import { FakeClock, FakeNetwork, flush, message, OPTIONS, roomJoined } from "./fakes.mjs";

async function inRoom() {
  const net = new FakeNetwork();
  const clock = new FakeClock();
  const backoff = new Backoff({ initial: 100, maximum: 1000, jitter: 0 });
  const connecting = RoomClient.connect({ ...OPTIONS, userId: "alice", WebSocket: net.WebSocket, backoff, ...clock, window: null });
  const ws = net.last;
  ws.accept();
  ws.receive({ type: "connect", status: "success", user_id: "alice", identity: { username: "alice" }, ref: ws.last("connect").ref });
  const client = await connecting;
  const joining = client.join("r1");
  await flush();
  ws.receive(roomJoined(ws.last("join-room"), { seq: 5 }));
  return { room: await joining, ws };
}

test("reply, edit and delete send their frames and resolve with the ack", async () => {
  const { room, ws } = await inRoom();
  const replying = room.reply(5, "agreed");
  const reply = ws.last("message");
  assert.equal(reply.reply_to, 5);
  assert.deepEqual(reply.payload, { content: "agreed" });
  ws.receive({ type: "ack", ref: reply.ref, room: "r1", seq: 6, duplicate: false });
  assert.equal((await replying).seq, 6);
  const editing = room.edit(6, "agreed!");
  const edit = ws.last("edit-message");
  assert.deepEqual([edit.seq, edit.payload], [6, { content: "agreed!" }]);
  ws.receive({ type: "ack", ref: edit.ref, room: "r1" });
  await editing;
  const deleting = room.delete(6);
  const deletion = ws.last("delete-message");
  assert.equal(deletion.seq, 6);
  ws.receive({ type: "ack", ref: deletion.ref, room: "r1" });
  await deleting;
});

test("a message's reply, edited and deleted marks; change events for notices", async () => {
  const { room, ws } = await inRoom();
  const messages = [];
  const changes = [];
  room.on("message", (m) => messages.push(m));
  room.on("change", (c) => changes.push(c));
  const quoted = { seq: 5, user_id: "bob", identity: { username: "bob" }, quote: "<b>hi</b>" };
  ws.receive(message("r1", 6, "yes", { reply: quoted, edited_at: "t" }));
  ws.receive(message("r1", 7, undefined, { message: {}, deleted: { by: "alice", at: "t" } }));
  assert.deepEqual(messages[0].reply, quoted);
  assert.deepEqual([messages[0].edited, messages[0].deleted], [true, false]);
  assert.deepEqual([messages[1].deleted, messages[1].text], [true, undefined]);
  ws.receive({ type: "message-edited", room: "r1", seq: 6, user_id: "bob", message: { content: "yes!" }, identity: { username: "bob" } });
  ws.receive({ type: "message-deleted", room: "r1", seq: 6, user_id: "bob", identity: { username: "alice" }, deleted: { by: "alice" } });
  assert.deepEqual(
    changes.map((c) => [c.kind, c.seq, c.text, c.identity.username]),
    [
      ["edited", 6, "yes!", "bob"],
      ["deleted", 6, undefined, "alice"],
    ],
  );
});
