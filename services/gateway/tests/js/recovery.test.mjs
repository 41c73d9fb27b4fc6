// Connection state recovery across gateways behind the TCP load balancer: after a cut connection, a
// gateway killed with SIGKILL, and a graceful SIGTERM; and join_room {sinceSeq} replay.

import assert from "node:assert/strict";
import { ack, eventually, sleep, suite, withTimeout } from "./harness.mjs";

const s = suite("recovery");

/** A stock client through the load balancer, with quick reconnection (the server decides recovery). */
async function viaLb(st, user) {
  return st.connect("lb", user, {
    reconnection: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 400,
    randomizationFactor: 0,
  });
}

/** Resolves on the socket's next `connect`, with `socket.recovered` then. */
function nextConnect(sock, ms = 10000) {
  return withTimeout(
    new Promise((resolve) => sock.once("connect", () => resolve(sock.recovered))),
    ms,
    "reconnect",
  );
}

/**
 * The common scenario: `victim` via the LB on gateway 0 in a room, has seen two messages; `cut()`
 * takes gateway 0 away; meanwhile Dave (on gateway 1) sends three messages and Alice edits the first; the
 * LB sends the victim to gateway 1, where it must recover everything, in order.
 */
async function recoverAcross(st, cut, { settle = 0, beforeSettle = null } = {}) {
  const [alice, dave, victim] = await st.users("alice", "dave", "victim");
  const room = await st.room(alice);
  const a = await st.joined(1, alice, room.id);
  const d = await st.joined(1, dave, room.id); // a second sender (5 messages per 10 s each)
  st.lb.setTarget(st.gateways[0].port);
  const v = await viaLb(st, victim);
  const j = await ack(v, "join_room", { roomId: room.id });
  assert.equal(j.ok, true);
  const m1 = (await ack(a, "send_message", { roomId: room.id, content: "one" })).message;
  await ack(a, "send_message", { roomId: room.id, content: "two" });
  await v.rec.waitCount("receive_message", 2);
  if (beforeSettle) await beforeSettle();
  if (settle) await sleep(settle);

  const dropped = new Promise((resolve) => v.once("disconnect", resolve));
  st.lb.setTarget(null); // reconnect attempts fail until the LB points at gateway 1
  await cut();
  const reason = await withTimeout(dropped, 5000, "the client notices the cut");
  assert.equal(v.connected, false);
  const mark = v.rec.mark;
  const sent = [];
  for (const content of ["three", "four", "five"]) {
    const r = await ack(d, "send_message", { roomId: room.id, content });
    assert.equal(r.ok, true);
    sent.push(r.message);
  }
  const ed = await ack(a, "edit_message", { messageId: m1.id, content: "one (edited)" });
  assert.equal(ed.ok, true);
  await sleep(300); // still refused by the LB meanwhile

  const reconnected = nextConnect(v);
  st.lb.setTarget(st.gateways[1].port);
  const recovered = await reconnected;
  assert.equal(recovered, true, "socket.recovered");
  assert.equal(v.recovered, true);

  // Every missed event, in order: the three messages (seq 3..5), then the edit.
  const got = await v.rec.waitCount("receive_message", 3, { from: mark });
  assert.deepEqual(got.map((m) => m.seq), [3, 4, 5]);
  assert.deepEqual(got, sent);
  const edited = await v.rec.waitFor("message_edited", { from: mark });
  assert.equal(edited.id, m1.id);
  assert.equal(edited.content, "one (edited)");
  const order = v.rec.events.slice(mark).filter((e) => e.ev === "receive_message" || e.ev === "message_edited");
  assert.deepEqual(
    order.map((e) => (e.ev === "receive_message" ? e.args[0].seq : "edit")),
    [3, 4, 5, "edit"],
  );
  // The recovered socket is back in the room, live: the next message arrives once.
  const six = (await ack(a, "send_message", { roomId: room.id, content: "six" })).message;
  const live = await v.rec.waitFor("receive_message", { pred: (m) => m.seq === 6, from: mark });
  assert.deepEqual(live, six);
  const r = await ack(v, "send_message", { roomId: room.id, content: "I am back" });
  assert.equal(r.ok, true, `the recovered socket may act in its room: ${JSON.stringify(r)}`);
  await sleep(300);
  assert.deepEqual(
    v.rec.all("receive_message").map((m) => m.seq),
    [1, 2, 3, 4, 5, 6, 7],
    "no duplicates and no gaps over the whole session",
  );
  return { reason, v };
}

s.test("recovery across gateways after the load balancer cuts the connection", async (st) => {
  const { reason } = await recoverAcross(st, async () => st.lb.dropAll());
  assert.equal(reason, "transport close");
});

s.test("sessions Redis lost are saved again by the next heartbeat, which notices the gateway's connections are gone", async (st) => {
  await recoverAcross(st, async () => {
    // Killed: nothing is saved at disconnect, so only the heartbeat's rewrite can have saved it.
    await st.stopGateway(0, "SIGKILL");
  }, {
    // As a Redis restart without its data would: the sessions and the gateway's connections gone.
    beforeSettle: async () => {
      await st.redis.deletePattern(`${st.prefix}:v1:sio:*`);
      await st.redis.command("DEL", `${st.prefix}:v1:gw:${st.gateways[0].id}:conns`);
    },
    settle: 2500, // heartbeats every second in the suite
  });
  await st.restartGateway(0);
});

s.test("recovery across gateways after the gateway is killed with SIGKILL right after the join", async (st) => {
  const { reason } = await recoverAcross(st, async () => {
    const exit = await st.stopGateway(0, "SIGKILL");
    assert.equal(exit.signal, "SIGKILL");
  });
  assert.equal(reason, "transport close");
  await st.restartGateway(0);
});

s.test("join_room {sinceSeq} on a fresh connection replays the messages after sinceSeq before the ack", async (st) => {
  const [alice, bob] = await st.users("alice", "bob");
  const room = await st.room(alice);
  const a = await st.joined(0, alice, room.id);
  const sent = [];
  for (let i = 1; i <= 5; i++) sent.push((await ack(a, "send_message", { roomId: room.id, content: `m${i}` })).message);
  await ack(a, "delete_message", { messageId: sent[3].id }); // seq 4 is gone

  const b = await st.connect(1, bob);
  const j = await ack(b, "join_room", { roomId: room.id, sinceSeq: 2 });
  assert.equal(j.ok, true);
  assert.equal(j.lastSeq, 5);
  assert.equal(j.replayed, 2);
  assert.equal(j.hasMore, false);
  // Replayed before the ack: already recorded when the ack resolved.
  const replayed = b.rec.all("receive_message");
  assert.deepEqual(replayed.map((m) => m.seq), [3, 5], "seq > sinceSeq, deleted ones left out");
  assert.deepEqual(replayed[0], sent[2]);

  const b2 = await st.connect(0, bob);
  const j2 = await ack(b2, "join_room", { roomId: room.id, sinceSeq: 0 });
  assert.equal(j2.replayed, 4);
  assert.deepEqual(b2.rec.all("receive_message").map((m) => m.seq), [1, 2, 3, 5]);
  const j3 = await ack(b2, "join_room", { roomId: room.id, sinceSeq: 5 });
  assert.equal(j3.replayed, 0);
  // Live messages follow on the joined sockets.
  const r = await ack(b, "send_message", { roomId: room.id, content: "live" }); // Alice used her 5 per 10 s
  for (const sock of [b, b2]) assert.equal((await sock.rec.waitFor("receive_message", { pred: (m) => m.seq === 6 })).id, r.message.id);
});

s.test("graceful shutdown: SIGTERM turns the gateway not-ready, clients reconnect elsewhere and recover, exit 0", async (st) => {
  const [alice, c1u, c2u] = await st.users("alice", "c1", "c2");
  const room = await st.room(alice);
  const a = await st.joined(1, alice, room.id);
  st.lb.setTarget(st.gateways[0].port);
  const clients = [await viaLb(st, c1u), await viaLb(st, c2u)];
  for (const c of clients) assert.equal((await ack(c, "join_room", { roomId: room.id })).ok, true);
  await ack(a, "send_message", { roomId: room.id, content: "before" });
  for (const c of clients) await c.rec.waitFor("receive_message");
  const metricsBefore = await st.metrics(0);
  assert.equal(metricsBefore.chat_gateway_connections, 2);

  st.lb.setTarget(st.gateways[1].port);
  const reconnects = clients.map((c) => nextConnect(c));
  const marks = clients.map((c) => c.rec.mark);
  const g0 = st.gateways[0];
  const stoppedAt = Date.now();
  g0.proc.child.kill("SIGTERM");
  // Not ready from the start of the drain (or already gone).
  await eventually(async () => {
    try {
      const r = await fetch(`${g0.url}/ready`, { signal: AbortSignal.timeout(500) });
      return r.status === 503;
    } catch {
      return true; // no longer listening
    }
  }, 3000, "/ready stops answering 200");
  const msg = (await ack(a, "send_message", { roomId: room.id, content: "during the drain" })).message;
  for (const [i, c] of clients.entries()) {
    assert.equal(await reconnects[i], true, "recovered on the other gateway");
    const got = await c.rec.waitFor("receive_message", { pred: (m) => m.seq === 2, from: marks[i] });
    assert.deepEqual(got, msg);
  }
  const exit = await withTimeout(g0.proc.exited, 10000, "the stopped gateway exits");
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.ok(Date.now() - stoppedAt < 8000, `drained in ${Date.now() - stoppedAt} ms`);
  // They are live on gateway 1 now.
  const m3 = (await ack(a, "send_message", { roomId: room.id, content: "after" })).message;
  for (const c of clients) {
    await c.rec.waitFor("receive_message", { pred: (m) => m.seq === 3 });
    await sleep(100);
    assert.deepEqual(c.rec.all("receive_message").map((m) => m.seq), [1, 2, 3]);
    assert.deepEqual(c.rec.all("receive_message")[2], m3);
  }
  await st.restartGateway(0);
});

s.test("leave_room unsubscribes only that socket, keeps the membership, and a recovery does not bring the room back", async (st) => {
  const [alice, bob] = await st.users("alice", "bob");
  const room = await st.room(alice, { isPrivate: true });
  await st.restOk("POST", "/rooms/join", { token: bob.token, body: { inviteCode: room.inviteCode } });
  const a = await st.joined(1, alice, room.id);
  st.lb.setTarget(st.gateways[0].port);
  const b = await viaLb(st, bob);
  assert.equal((await ack(b, "join_room", { roomId: room.id })).ok, true);
  const other = await st.joined(1, bob, room.id); // Bob's second socket stays in the room
  await ack(a, "send_message", { roomId: room.id, content: "one" });
  await b.rec.waitFor("receive_message");

  const left = await ack(b, "leave_room", { roomId: room.id });
  assert.deepEqual(left, { ok: true, roomId: room.id, left: true });
  assert.deepEqual(await ack(b, "leave_room", { roomId: room.id }), { ok: true, roomId: room.id, left: false });
  const mark = b.rec.mark;
  await ack(a, "send_message", { roomId: room.id, content: "two" });
  await other.rec.waitCount("receive_message", 2);
  await b.rec.none("receive_message", { from: mark, ms: 300 });
  assert.equal((await ack(b, "send_message", { roomId: room.id, content: "x" })).error.code, "FORBIDDEN");

  // A cut and a recovery on the other gateway: still out of the room.
  const reconnected = nextConnect(b);
  st.lb.setTarget(st.gateways[1].port);
  st.lb.dropAll();
  assert.equal(await reconnected, true);
  assert.deepEqual((await b.rec.waitFor("welcome", { pred: (w) => w.recovered })).rooms, []);
  await ack(a, "send_message", { roomId: room.id, content: "three" });
  await other.rec.waitCount("receive_message", 3);
  await b.rec.none("receive_message", { from: mark, ms: 300 });

  // Still a member: joining again needs no invite code.
  const again = await ack(b, "join_room", { roomId: room.id, sinceSeq: 1 });
  assert.equal(again.ok, true);
  assert.equal(again.joined, false);
  assert.deepEqual(b.rec.all("receive_message", mark).map((m) => m.seq), [2, 3]);
});
