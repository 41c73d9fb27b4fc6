// Read-your-writes history with the persistence worker stopped, and the REST write path reaching
// live sockets through the same room path as the gateway (dedupe and rate limit shared).

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { ack, eventually, sleep, suite } from "./harness.mjs";

const s = suite("history");

/** Rows of `sql` from the suite's database (tab-separated), via the mysql CLI. */
function query(st, sql) {
  const u = new URL(st.baseEnv.DATABASE_URL);
  const r = spawnSync(
    "mysql",
    [`-u${decodeURIComponent(u.username)}`, `-p${decodeURIComponent(u.password)}`, `-h${u.hostname}`, `-P${u.port || 3306}`, "-N", "-B", st.dbName, "-e", sql],
    { encoding: "utf8", timeout: 10000 },
  );
  if (r.status !== 0) throw new Error(`mysql: ${r.stderr}`);
  return r.stdout.trim() ? r.stdout.trim().split("\n").map((l) => l.split("\t")) : [];
}

const hex = (uuid) => uuid.replace(/-/g, "").toUpperCase();

s.test("read-your-writes: history shows acked messages, edits and deletes while the worker is down; MySQL catches up", async (st) => {
  const [alice, bob] = await st.users("alice", "bob");
  const room = await st.room(alice);
  const a = await st.joined(0, alice, room.id);
  const exit = await st.worker.stop("SIGKILL");
  assert.equal(exit.signal, "SIGKILL");
  try {
    const sent = [];
    for (let i = 1; i <= 3; i++) {
      const r = await ack(a, "send_message", { roomId: room.id, content: `m${i}` });
      assert.equal(r.ok, true);
      sent.push(r.message);
      // Right after the ack, the API's history has it.
      const h = await st.restOk("GET", `/rooms/${room.id}/messages`, { token: alice.token });
      assert.deepEqual(h.messages.at(-1), r.message);
      assert.equal(h.messages.length, i);
    }
    await ack(a, "edit_message", { messageId: sent[0].id, content: "m1 edited" });
    await ack(a, "delete_message", { messageId: sent[1].id });
    // Bob joins over the gateway and reads history over REST.
    const b = await st.joined(1, bob, room.id, { sinceSeq: 0 });
    assert.deepEqual(b.rec.all("receive_message").map((m) => m.seq), [1, 3], "replay skips the deleted message");
    assert.equal(b.rec.all("receive_message")[0].content, "m1 edited");
    const h = await st.restOk("GET", `/rooms/${room.id}/messages`, { token: bob.token });
    assert.deepEqual(
      h.messages.map((m) => [m.seq, m.content ?? null, Boolean(m.editedAt), Boolean(m.deletedAt)]),
      [
        [1, "m1 edited", true, false],
        [2, null, false, true],
        [3, "m3", false, false],
      ],
    );
    const after = await st.restOk("GET", `/rooms/${room.id}/messages?after=1&limit=1`, { token: bob.token });
    assert.deepEqual(after.messages.map((m) => m.seq), [2]);
    assert.equal(after.hasMore, true);
    // None of it is in MySQL yet: the history above came from Redis.
    await sleep(300);
    assert.deepEqual(query(st, `SELECT COUNT(*) FROM messages WHERE room_id = UNHEX('${hex(room.id)}')`), [["0"]]);
  } finally {
    await st.restartWorker();
  }
  // The restarted worker drains the stream into MySQL.
  const rows = await eventually(
    () => {
      const r = query(
        st,
        `SELECT seq, IFNULL(content, 'NULL'), edited_at IS NOT NULL, deleted_at IS NOT NULL FROM messages WHERE room_id = UNHEX('${hex(room.id)}') ORDER BY seq`,
      );
      return r.length === 3 && r[0][2] === "1" && r[1][3] === "1" ? r : null;
    },
    15000,
    "the worker writes the three messages, the edit and the delete to MySQL",
    250,
  );
  assert.deepEqual(rows, [
    ["1", "m1 edited", "1", "0"],
    ["2", "NULL", "0", "1"],
    ["3", "m3", "0", "0"],
  ]);
  const h = await st.restOk("GET", `/rooms/${room.id}/messages`, { token: alice.token });
  assert.deepEqual(h.messages.map((m) => [m.seq, m.content ?? null]), [
    [1, "m1 edited"],
    [2, null],
    [3, "m3"],
  ]);
});

/** Whether the API has the REST write path (another change adds it); otherwise the test is skipped. */
async function restWrites(st, t, user, roomId) {
  const probe = await st.rest("POST", `/rooms/${roomId}/messages`, { token: user.token, body: {} });
  if (probe.status === 404 || probe.status === 405) {
    t.skip("the API has no POST /api/v1/rooms/{id}/messages yet");
    return false;
  }
  assert.equal(probe.status, 422, `an empty body is refused: ${JSON.stringify(probe.body)}`);
  return true;
}

s.test("a message sent over REST reaches live sockets; dedupe and the rate limit are shared with send_message", async (st, t) => {
  const [alice, bob] = await st.users("alice", "bob");
  const room = await st.room(alice);
  await st.restOk("POST", `/rooms/${room.id}/join`, { token: bob.token });
  if (!(await restWrites(st, t, bob, room.id))) return;
  const a = await st.joined(0, alice, room.id);
  const b = await st.joined(1, bob, room.id);

  const r = await st.rest("POST", `/rooms/${room.id}/messages`, { token: bob.token, body: { content: "over REST", clientMsgId: "rest-1" } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(r.body.duplicate, false);
  const m = r.body.message;
  assert.equal(m.seq, 1);
  assert.equal(m.senderId, bob.id);
  for (const sock of [a, b]) assert.deepEqual(await sock.rec.waitFor("receive_message"), m);

  // The same clientMsgId over the socket (other gateway) and over REST: the original, once.
  const dupSock = await ack(b, "send_message", { roomId: room.id, content: "over REST", clientMsgId: "rest-1" });
  assert.equal(dupSock.duplicate, true);
  assert.deepEqual(dupSock.message, m);
  const dupRest = await st.rest("POST", `/rooms/${room.id}/messages`, { token: bob.token, body: { content: "over REST", clientMsgId: "rest-1" } });
  assert.equal(dupRest.status, 200);
  assert.equal(dupRest.body.duplicate, true);
  assert.deepEqual(dupRest.body.message, m);

  // One window for both paths: 1 (REST) + 4 (socket) = 5, the sixth is refused on either.
  for (let i = 0; i < 4; i++) assert.equal((await ack(b, "send_message", { roomId: room.id, content: `s${i}` })).ok, true);
  const limited = await st.rest("POST", `/rooms/${room.id}/messages`, { token: bob.token, body: { content: "six" } });
  assert.equal(limited.status, 429, JSON.stringify(limited.body));
  assert.equal(limited.body.error.code, "RATE_LIMITED");
  const limitedSock = await ack(b, "send_message", { roomId: room.id, content: "six" });
  assert.equal(limitedSock.error.code, "RATE_LIMITED");
  const got = await a.rec.waitCount("receive_message", 5);
  assert.deepEqual(got.map((x) => x.seq), [1, 2, 3, 4, 5]);
  await sleep(200);
  assert.equal(a.rec.all("receive_message").length, 5);
});

s.test("REST edit, delete and mark-read reach live sockets as message_edited, message_deleted and message_read", async (st, t) => {
  const [alice, bob] = await st.users("alice", "bob");
  const room = await st.room(alice);
  await st.restOk("POST", `/rooms/${room.id}/join`, { token: bob.token });
  if (!(await restWrites(st, t, bob, room.id))) return;
  const a = await st.joined(0, alice, room.id);
  const b = await st.joined(1, bob, room.id);
  const m1 = (await ack(b, "send_message", { roomId: room.id, content: "first" })).message;
  const m2 = (await ack(b, "send_message", { roomId: room.id, content: "second" })).message;

  const ed = await st.restOk("PATCH", `/messages/${m1.id}`, { token: bob.token, body: { content: "first, edited" } });
  assert.equal(ed.content, "first, edited");
  const e = await a.rec.waitFor("message_edited");
  assert.equal(e.id, m1.id);
  assert.equal(e.content, "first, edited");
  // Someone else's message: 403 over REST as over the socket.
  const forbidden = await st.rest("PATCH", `/messages/${m1.id}`, { token: alice.token, body: { content: "mine now" } });
  assert.equal(forbidden.status, 403);

  await st.restOk("DELETE", `/messages/${m2.id}`, { token: alice.token }); // Alice is the room's admin
  const d = await b.rec.waitFor("message_deleted");
  assert.equal(d.messageId, m2.id);
  const again = await ack(b, "edit_message", { messageId: m2.id, content: "back" });
  assert.equal(again.error.code, "NOT_FOUND");

  const rd = await st.restOk("POST", `/rooms/${room.id}/read`, { token: alice.token, body: { seq: 2 } });
  assert.equal(rd.readSeq, 2);
  assert.equal(rd.moved, true);
  const receipt = await b.rec.waitFor("message_read");
  assert.equal(receipt.userId, alice.id);
  assert.equal(receipt.seq, 2);
  // The socket path sees the REST cursor: a lower mark_read does not move it.
  const low = await ack(a, "mark_read", { roomId: room.id, seq: 1 });
  assert.deepEqual(low, { ok: true, roomId: room.id, seq: 2, moved: false });
});
