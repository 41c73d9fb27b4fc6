// Messages across two gateways: delivery with seq, per-room order under concurrent senders, the
// global rate limit, and exactly-once retried sends.

import assert from "node:assert/strict";
import { ack, sleep, suite } from "./harness.mjs";

const s = suite("messaging");

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

s.test("a message sent on gateway 1 reaches a member on gateway 2 with its seq", async (st) => {
  const [alice, bob] = await st.users("alice", "bob");
  const room = await st.room(alice);
  const a = await st.joined(0, alice, room.id);
  const b = await st.joined(1, bob, room.id);
  assert.equal(b.joined.joined, true, "Bob became a member by joining the public room");
  assert.equal(b.joined.role, "member");
  assert.equal(a.joined.role, "admin");

  const reply = await ack(a, "send_message", { roomId: room.id, content: "hello Bob", clientMsgId: "c-1" });
  assert.equal(reply.ok, true, JSON.stringify(reply));
  assert.equal(reply.duplicate, false);
  const m = reply.message;
  assert.match(m.id, UUID);
  assert.equal(m.roomId, room.id);
  assert.equal(m.seq, 1);
  assert.equal(m.senderId, alice.id);
  assert.equal(m.content, "hello Bob");
  assert.equal(m.type, "text");
  assert.equal(m.clientMsgId, "c-1");
  assert.match(m.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.ok(Math.abs(Date.parse(m.createdAt) - Date.now()) < 10000);

  const got = await b.rec.waitFor("receive_message");
  assert.deepEqual(got, m, "Bob receives exactly the acked message");
  // The event carries its recovery offset as a last string argument.
  const ev = b.rec.events.find((e) => e.ev === "receive_message");
  assert.equal(typeof ev.args[1], "string");
  // Alice's own socket gets it too (one copy).
  assert.deepEqual(await a.rec.waitFor("receive_message"), m);
  await sleep(200);
  assert.equal(b.rec.all("receive_message").length, 1);
  assert.equal(a.rec.all("receive_message").length, 1);
});

s.test("concurrent senders on both gateways arrive in strictly increasing, gap-free seq order for everyone", async (st) => {
  const n = 8;
  const per = 5;
  const users = await st.users(...Array.from({ length: n }, (_, i) => `s${i}`));
  const room = await st.room(users[0]);
  const sockets = [];
  for (let i = 0; i < n; i++) sockets.push(await st.joined(i % 2, users[i], room.id));
  // An extra pure listener on each gateway.
  const [listener] = await st.users("listener");
  const l0 = await st.joined(0, listener, room.id);
  const l1 = await st.joined(1, listener, room.id);

  const acks = await Promise.all(
    sockets.flatMap((sock, i) =>
      Array.from({ length: per }, (_, k) => ack(sock, "send_message", { roomId: room.id, content: `m ${i}.${k}`, clientMsgId: `${i}-${k}` })),
    ),
  );
  for (const r of acks) assert.equal(r.ok, true, JSON.stringify(r));
  const total = n * per;
  const ackedSeqs = acks.map((r) => r.message.seq).sort((x, y) => x - y);
  assert.deepEqual(ackedSeqs, Array.from({ length: total }, (_, i) => i + 1), "acked seqs are 1..N, each once");

  for (const sock of [...sockets, l0, l1]) {
    const got = await sock.rec.waitCount("receive_message", total, { ms: 10000 });
    assert.deepEqual(
      got.map((m) => m.seq),
      Array.from({ length: total }, (_, i) => i + 1),
      "every receiver sees seq 1..N in order",
    );
    const byId = new Map(acks.map((r) => [r.message.id, r.message]));
    for (const m of got) assert.deepEqual(m, byId.get(m.id));
  }
  await sleep(200);
  for (const sock of [...sockets, l0, l1]) assert.equal(sock.rec.all("receive_message").length, total, "no duplicates");
});

s.test("the sixth message within the window is RATE_LIMITED even when the sender alternates gateways", async (st) => {
  const [alice, bob] = await st.users("alice", "bob");
  const room = await st.room(alice);
  const a0 = await st.joined(0, alice, room.id);
  const a1 = await st.joined(1, alice, room.id);
  const b = await st.joined(1, bob, room.id);
  for (let i = 0; i < 5; i++) {
    const r = await ack(i % 2 ? a1 : a0, "send_message", { roomId: room.id, content: `m${i}` });
    assert.equal(r.ok, true, `message ${i + 1}: ${JSON.stringify(r)}`);
  }
  for (const sock of [a0, a1]) {
    const r = await ack(sock, "send_message", { roomId: room.id, content: "one too many" });
    assert.equal(r.ok, false);
    assert.equal(r.error.code, "RATE_LIMITED");
    assert.equal(typeof r.error.message, "string");
    assert.ok(Number.isInteger(r.error.retryAfter) && r.error.retryAfter >= 1 && r.error.retryAfter <= 10, JSON.stringify(r.error));
    assert.ok(Number.isInteger(r.error.retryAfterMs) && r.error.retryAfterMs > 0 && r.error.retryAfterMs <= 10000, JSON.stringify(r.error));
    assert.equal(r.error.retryAfter, Math.ceil(r.error.retryAfterMs / 1000));
  }
  // Without an ack, the refusal is an `error` event.
  a0.emit("send_message", { roomId: room.id, content: "still too many" });
  const e = await a0.rec.waitFor("error");
  assert.equal(e.code, "RATE_LIMITED");
  assert.equal(e.event, "send_message");
  // The limit is per user: Bob may still send, and the refused messages took no seq.
  const rb = await ack(b, "send_message", { roomId: room.id, content: "bob here" });
  assert.equal(rb.ok, true);
  assert.equal(rb.message.seq, 6);
  const got = await b.rec.waitCount("receive_message", 6);
  assert.deepEqual(got.map((m) => m.seq), [1, 2, 3, 4, 5, 6]);
  await sleep(200);
  assert.equal(b.rec.all("receive_message").length, 6);
});

s.test("a retried send with the same clientMsgId returns the original message, also from the other gateway", async (st) => {
  const [alice, bob] = await st.users("alice", "bob");
  const room = await st.room(alice);
  const a0 = await st.joined(0, alice, room.id);
  const a1 = await st.joined(1, alice, room.id);
  const b = await st.joined(1, bob, room.id);
  const first = await ack(a0, "send_message", { roomId: room.id, content: "once", clientMsgId: "retry-me" });
  assert.equal(first.ok, true);
  assert.equal(first.duplicate, false);
  const again = await ack(a0, "send_message", { roomId: room.id, content: "once", clientMsgId: "retry-me" });
  const other = await ack(a1, "send_message", { roomId: room.id, content: "once", clientMsgId: "retry-me" });
  for (const r of [again, other]) {
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.duplicate, true);
    assert.deepEqual(r.message, first.message, "the original message, same id and seq");
  }
  // The same clientMsgId from another user is a different message.
  const bobs = await ack(b, "send_message", { roomId: room.id, content: "mine", clientMsgId: "retry-me" });
  assert.equal(bobs.duplicate, false);
  assert.equal(bobs.message.seq, 2);
  const got = await b.rec.waitCount("receive_message", 2);
  assert.deepEqual(got.map((m) => [m.seq, m.senderId]), [[1, alice.id], [2, bob.id]]);
  await sleep(300);
  assert.equal(b.rec.all("receive_message").length, 2, "receivers get the retried message once");
  // Retries do not count against the rate limit beyond the original (3 more sends are allowed).
  for (let i = 0; i < 4; i++) {
    const r = await ack(a1, "send_message", { roomId: room.id, content: `more ${i}` });
    assert.equal(r.ok, true, `send ${i}: ${JSON.stringify(r)}`);
  }
  const history = await st.restOk("GET", `/rooms/${room.id}/messages?limit=100`, { token: bob.token });
  assert.deepEqual(history.messages.map((m) => m.seq), [1, 2, 3, 4, 5, 6]);
  assert.equal(history.messages.filter((m) => m.clientMsgId === "retry-me").length, 2);
});

s.test("edit and delete: the sender edits, others may not, an admin deletes, deleted and foreign messages are NOT_FOUND", async (st) => {
  const [alice, bob, carol] = await st.users("alice", "bob", "carol");
  const room = await st.room(alice); // Alice is its admin
  const a = await st.joined(0, alice, room.id);
  const b = await st.joined(1, bob, room.id);
  const c = await st.connect(1, carol); // not a member
  const m1 = (await ack(b, "send_message", { roomId: room.id, content: "typo" })).message;
  const m2 = (await ack(a, "send_message", { roomId: room.id, content: "alice's" })).message;

  // The sender edits: everyone in the room gets message_edited.
  const ed = await ack(b, "edit_message", { messageId: m1.id, content: "fixed" });
  assert.equal(ed.ok, true, JSON.stringify(ed));
  assert.equal(ed.message.id, m1.id);
  assert.equal(ed.message.content, "fixed");
  for (const sock of [a, b]) {
    const e = await sock.rec.waitFor("message_edited");
    assert.equal(e.id, m1.id);
    assert.equal(e.roomId, room.id);
    assert.equal(e.content, "fixed");
    assert.match(e.editedAt, /Z$/);
    assert.deepEqual(e, ed.message);
  }

  // Someone else (even the admin) may not edit it.
  let r = await ack(a, "edit_message", { messageId: m1.id, content: "hijacked" });
  assert.equal(r.error.code, "FORBIDDEN");
  // A plain member may not delete another's message.
  r = await ack(b, "delete_message", { messageId: m2.id });
  assert.equal(r.error.code, "FORBIDDEN");
  // A non-member learns nothing: NOT_FOUND for edit and delete.
  r = await ack(c, "edit_message", { messageId: m2.id, content: "boo" });
  assert.equal(r.error.code, "NOT_FOUND");
  r = await ack(c, "delete_message", { messageId: m2.id });
  assert.equal(r.error.code, "NOT_FOUND");

  // The admin deletes Bob's message.
  const del = await ack(a, "delete_message", { messageId: m1.id });
  assert.equal(del.ok, true, JSON.stringify(del));
  for (const sock of [a, b]) {
    const d = await sock.rec.waitFor("message_deleted");
    assert.equal(d.messageId, m1.id);
    assert.equal(d.roomId, room.id);
  }
  // A deleted message can be neither edited nor deleted again.
  r = await ack(b, "edit_message", { messageId: m1.id, content: "resurrect" });
  assert.equal(r.error.code, "NOT_FOUND");
  r = await ack(a, "delete_message", { messageId: m1.id });
  assert.equal(r.error.code, "NOT_FOUND");
  // The sender deletes their own message.
  r = await ack(a, "delete_message", { messageId: m2.id });
  assert.equal(r.ok, true);

  await sleep(200);
  assert.equal(b.rec.all("message_edited").length, 1, "refused edits broadcast nothing");
  assert.equal(b.rec.all("message_deleted").length, 2);
  const h = await st.restOk("GET", `/rooms/${room.id}/messages`, { token: bob.token });
  assert.deepEqual(
    h.messages.map((m) => [m.seq, m.content ?? null, Boolean(m.deletedAt), Boolean(m.editedAt)]),
    [
      [1, null, true, true],
      [2, null, true, false],
    ],
  );
});

s.test("receipts: mark_read and its aliases broadcast message_read/read_receipt/read, never move back; delivered", async (st) => {
  const [alice, bob] = await st.users("alice", "bob");
  const room = await st.room(alice);
  const a = await st.joined(0, alice, room.id);
  const b = await st.joined(1, bob, room.id);
  const msgs = [];
  for (let i = 1; i <= 4; i++) msgs.push((await ack(a, "send_message", { roomId: room.id, content: `m${i}` })).message);
  await b.rec.waitCount("receive_message", 4);

  const check = async (from, seq) => {
    for (const name of ["message_read", "read_receipt", "read"]) {
      const e = await a.rec.waitFor(name, { from });
      assert.equal(e.roomId, room.id, name);
      assert.equal(e.userId, bob.id, name);
      assert.equal(e.seq, seq, name);
      assert.equal(e.messageId, msgs[seq - 1].id, name);
      assert.match(e.readAt, /^\d{4}-.*Z$/, name);
    }
  };
  let from = a.rec.mark;
  let r = await ack(b, "mark_read", { roomId: room.id, seq: 2 });
  assert.deepEqual(r, { ok: true, roomId: room.id, seq: 2, moved: true });
  await check(from, 2);

  from = a.rec.mark;
  r = await ack(b, "mark_message_read", { messageId: msgs[2].id });
  assert.deepEqual(r, { ok: true, roomId: room.id, seq: 3, moved: true });
  await check(from, 3);

  // A lower seq does not move the cursor back, and broadcasts nothing.
  from = a.rec.mark;
  r = await ack(b, "mark_read", { roomId: room.id, seq: 1 });
  assert.deepEqual(r, { ok: true, roomId: room.id, seq: 3, moved: false });
  r = await ack(b, "read_message", { roomId: room.id, messageIds: [msgs[0].id, msgs[1].id] });
  assert.deepEqual(r, { ok: true, roomId: room.id, seq: 3, moved: false });
  await a.rec.none("message_read", { from, ms: 300 });

  // read_message with ids moves to the highest of them; past the last message it is clamped.
  from = a.rec.mark;
  r = await ack(b, "read_message", { roomId: room.id, messageIds: [msgs[0].id, msgs[3].id] });
  assert.deepEqual(r, { ok: true, roomId: room.id, seq: 4, moved: true });
  await check(from, 4);
  r = await ack(b, "mark_read", { roomId: room.id, seq: 99 });
  assert.equal(r.seq, 4);
  assert.equal(r.moved, false);

  // Delivered receipts.
  from = a.rec.mark;
  r = await ack(b, "message_delivered", { roomId: room.id, seq: 3 });
  assert.deepEqual(r, { ok: true, roomId: room.id, seq: 3, moved: true });
  const d = await a.rec.waitFor("delivered", { from });
  assert.equal(d.roomId, room.id);
  assert.equal(d.userId, bob.id);
  assert.equal(d.seq, 3);
  assert.match(d.deliveredAt, /Z$/);

  // A message id of another room is refused.
  const other = await st.room(alice);
  const a2 = await st.joined(0, alice, other.id);
  const om = (await ack(a2, "send_message", { roomId: other.id, content: "elsewhere" })).message;
  r = await ack(b, "mark_read", { roomId: room.id, messageId: om.id });
  assert.equal(r.error.code, "NOT_FOUND");

  // A fresh join reports the cursors as they are now (not as MySQL or a cache had them).
  const b2 = await st.joined(0, bob, room.id);
  assert.equal(b2.joined.lastSeq, 4);
  assert.equal(b2.joined.readSeq, 4);
  assert.equal(b2.joined.deliveredSeq, 4, "read implies delivered");
  const b3 = await st.joined(1, bob, room.id); // the gateway that cached Bob's membership at seq 0
  assert.equal(b3.joined.readSeq, 4);
  assert.equal(b3.joined.deliveredSeq, 4);
});

s.test("after real traffic, /metrics on both gateways exposes every gateway series of the dashboard", async (st) => {
  // The names the dashboard and alerts are built on (scripts/ops/metrics.txt).
  const { readFileSync } = await import("node:fs");
  const list = readFileSync(new URL("../../../../scripts/ops/metrics.txt", import.meta.url), "utf8");
  const names = list
    .split("\n")
    .filter((l) => l.startsWith("gateway "))
    .map((l) => l.split(" ")[1]);
  assert.ok(names.length >= 10, "metrics.txt lists the gateway's series");
  const [alice, bob] = await st.users("alice", "bob");
  const room = await st.room(alice);
  const a = await st.joined(0, alice, room.id);
  const b = await st.joined(1, bob, room.id);
  const r = await ack(a, "send_message", { roomId: room.id, content: "counted" });
  assert.equal(r.ok, true);
  await b.rec.waitFor("receive_message", { pred: (m) => m.id === r.message.id });
  const bad = await ack(a, "send_message", { roomId: "nope", content: "x" });
  assert.equal(bad.error.code, "VALIDATION");
  for (const i of [0, 1]) {
    const m = await st.metrics(i);
    const keys = Object.keys(m);
    for (const n of names) {
      assert.ok(keys.some((k) => k === n || k.startsWith(`${n}{`) || k.startsWith(`${n}_`)), `gateway ${i} exposes ${n}`);
    }
    assert.ok(m.chat_gateway_connections >= 1, `gateway ${i}: connections`);
    assert.ok(m['chat_gateway_events_out_total{event="receive_message"}'] >= 1, `gateway ${i}: receive_message fanned out`);
    assert.ok(m.chat_gateway_deliveries_total >= 1, `gateway ${i}: deliveries`);
  }
  const m0 = await st.metrics(0);
  assert.ok(m0['chat_gateway_events_in_total{event="send_message"}'] >= 2);
  assert.ok(m0['chat_gateway_rejected_total{code="VALIDATION"}'] >= 1);
  assert.ok(m0.chat_gateway_send_latency_seconds_count >= 1);
  assert.ok(m0.chat_gateway_redis_latency_seconds_count >= 1);
});
