// Catching up: a `join_room {sinceSeq}` with more missed messages than a send queue holds, and a
// recovery from an offset the room's (short) log no longer reaches.

import assert from "node:assert/strict";
import { ack, mysql, sleep, suite, withTimeout } from "./harness.mjs";

// A short room log, so that a few events push the oldest out.
const s = suite("catchup", { gatewayEnv: { RECENT_LOG_SIZE: "20" } });

const hex = (uuid) => uuid.replaceAll("-", "");

s.test("join_room {sinceSeq} replays 300 stored messages in order without taking the client for a slow one", async (st) => {
  const [alice, bob] = await st.users("alice", "bob");
  const room = await st.room(alice);
  // 300 messages already in MySQL (more than the 256-frame send queue).
  mysql(
    `INSERT INTO ${st.dbName}.messages (id, room_id, seq, sender_id, type, content, created_at)
     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
     SELECT UNHEX(REPLACE(UUID(), '-', '')), UNHEX('${hex(room.id)}'), i, UNHEX('${hex(alice.id)}'), 'text',
            CONCAT('old ', i), NOW(3) FROM n`,
  );
  const b = await st.connect(1, bob);
  const j = await ack(b, "join_room", { roomId: room.id, sinceSeq: 0 });
  assert.equal(j.ok, true, JSON.stringify(j));
  assert.equal(j.replayed, 300);
  assert.equal(j.hasMore, false);
  assert.equal(j.replayedUpTo, 300);
  const got = await b.rec.waitCount("receive_message", 300, { ms: 10000 });
  assert.deepEqual(got.map((m) => m.seq), Array.from({ length: 300 }, (_, i) => i + 1));
  assert.equal(b.connected, true, "still connected after the catch-up");
  // And live messages follow, after the replayed ones.
  const a = await st.joined(0, alice, room.id);
  const r = await ack(a, "send_message", { roomId: room.id, content: "live" });
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.equal(r.message.seq, 301);
  const live = await b.rec.waitFor("receive_message", { pred: (m) => m.seq === 301 });
  assert.equal(live.content, "live");
});

s.test("recovery from an offset the room log no longer reaches sends resync {roomId} instead of a silent gap", async (st) => {
  const [alice, dave, victim] = await st.users("alice", "dave", "victim");
  const room = await st.room(alice);
  const a = await st.joined(1, alice, room.id);
  const d = await st.joined(1, dave, room.id);
  st.lb.setTarget(st.gateways[0].port);
  const v = await st.connect("lb", victim, {
    reconnection: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 400,
    randomizationFactor: 0,
  });
  assert.equal((await ack(v, "join_room", { roomId: room.id })).ok, true);
  assert.equal((await ack(a, "send_message", { roomId: room.id, content: "seen" })).ok, true);
  await v.rec.waitCount("receive_message", 1);

  const dropped = new Promise((resolve) => v.once("disconnect", resolve));
  st.lb.setTarget(null);
  st.lb.dropAll();
  await withTimeout(dropped, 5000, "the client notices the cut");
  const mark = v.rec.mark;
  // More than 20 durable events while the victim is away: 9 messages, then 18 read receipts.
  for (let i = 0; i < 4; i++) assert.equal((await ack(a, "send_message", { roomId: room.id, content: `a${i}` })).ok, true);
  for (let i = 0; i < 5; i++) assert.equal((await ack(d, "send_message", { roomId: room.id, content: `d${i}` })).ok, true);
  for (let seq = 1; seq <= 9; seq++) {
    assert.equal((await ack(a, "mark_read", { roomId: room.id, seq })).moved, true);
    assert.equal((await ack(d, "mark_read", { roomId: room.id, seq })).moved, true);
  }
  await sleep(200);
  const reconnected = withTimeout(new Promise((res) => v.once("connect", () => res(v.recovered))), 10000, "reconnect");
  st.lb.setTarget(st.gateways[1].port);
  assert.equal(await reconnected, true, "the session itself is recovered");
  const resync = await v.rec.waitFor("resync", { from: mark });
  assert.deepEqual(resync, { roomId: room.id, reason: "log_trimmed" });
  // The client can fill the gap from history, and the room is live again.
  const h = await st.rest("GET", `/rooms/${room.id}/messages?after=1&limit=50`, { token: victim.token });
  assert.equal(h.status, 200);
  assert.deepEqual(h.body.messages.map((m) => m.seq), [2, 3, 4, 5, 6, 7, 8, 9, 10]);
  const r = await ack(v, "send_message", { roomId: room.id, content: "after" }); // a and d used their 5
  assert.equal(r.ok, true, JSON.stringify(r));
  await v.rec.waitFor("receive_message", { pred: (m) => m.id === r.message.id, from: mark });
});
