// Typing indicators and presence across the two gateways, including a gateway killed without warning.

import assert from "node:assert/strict";
import { ack, eventually, sleep, suite } from "./harness.mjs";

const s = suite("presence");

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

s.test("typing reaches others on the other gateway, never the typist's own sockets, is throttled and expires", async (st) => {
  const [alice, bob, carol] = await st.users("alice", "bob", "carol");
  const room = await st.room(alice);
  const a0 = await st.joined(0, alice, room.id);
  const a1 = await st.joined(1, alice, room.id);
  const b = await st.joined(1, bob, room.id);
  const c = await st.joined(0, carol, room.id);
  const isAlice = (e) => e.userId === alice.id;

  // Start, no refresh: on, then off by itself after TYPING_TIMEOUT_MS (1 s).
  const t0 = Date.now();
  assert.deepEqual(await ack(a0, "typing", { roomId: room.id, isTyping: true }), { ok: true });
  for (const sock of [b, c]) {
    const e = await sock.rec.waitFor("typing");
    assert.deepEqual(e, { roomId: room.id, userId: alice.id, isTyping: true });
  }
  const off = await b.rec.waitFor("typing", { pred: (e) => !e.isTyping, ms: 4000 });
  const took = Date.now() - t0;
  assert.deepEqual(off, { roomId: room.id, userId: alice.id, isTyping: false });
  assert.ok(took >= 900 && took <= 3000, `expired after ${took} ms (timeout 1000 ms)`);
  await c.rec.waitFor("typing", { pred: (e) => !e.isTyping });

  // Refreshed every 300 ms for 1.8 s: no "off" meanwhile, and at most one "on" per second published.
  let mark = b.rec.mark;
  const start = Date.now();
  while (Date.now() - start < 1800) {
    await ack(a1, "typing", { roomId: room.id, isTyping: true });
    await sleep(300);
  }
  const ons = b.rec.all("typing", mark).filter((e) => e.isTyping);
  assert.equal(b.rec.all("typing", mark).filter((e) => !e.isTyping).length, 0, "no off while refreshed");
  assert.ok(ons.length >= 1 && ons.length <= 3, `throttled: ${ons.length} published in 1.8 s`);
  // An explicit stop goes out at once.
  const stopAt = Date.now();
  await ack(a1, "typing", { roomId: room.id, isTyping: false });
  await b.rec.waitFor("typing", { pred: (e) => !e.isTyping, from: mark, ms: 1000 });
  assert.ok(Date.now() - stopAt < 900, "before the 1 s expiry could have sent it");

  // Sending a message stops the indicator too.
  mark = b.rec.mark;
  await ack(a0, "typing", { roomId: room.id, isTyping: true });
  await b.rec.waitFor("typing", { pred: (e) => e.isTyping, from: mark });
  const sent = await ack(a0, "send_message", { roomId: room.id, content: "done typing" });
  assert.equal(sent.ok, true);
  const sentAt = Date.now();
  await b.rec.waitFor("typing", { pred: (e) => !e.isTyping, from: mark, ms: 1000 });
  assert.ok(Date.now() - sentAt < 900, "before the 1 s expiry could have sent it");

  // Carol's typing reaches Alice; Alice's sockets never saw their own.
  await ack(c, "typing", { roomId: room.id, isTyping: true });
  assert.equal((await a1.rec.waitFor("typing")).userId, carol.id);
  await sleep(300);
  for (const sock of [a0, a1]) assert.equal(sock.rec.all("typing").filter(isAlice).length, 0, "never echoed to the typist");
  assert.equal(c.rec.all("typing").filter((e) => e.userId === carol.id).length, 0);
});

s.test("presence: online when the first socket connects on either gateway, offline with lastSeen when the last one closes", async (st) => {
  const [alice, bob] = await st.users("alice", "bob");
  const room = await st.room(alice);
  await st.restOk("POST", `/rooms/${room.id}/join`, { token: bob.token });
  const b = await st.joined(1, bob, room.id);
  assert.deepEqual(b.joined.online, [bob.id], "only Bob is online");
  assert.equal(b.joined.onlineCount, 1);
  assert.equal(b.joined.memberCount, 2);
  const fromAlice = (online) => (e) => e.userId === alice.id && e.online === online;

  const a0 = await st.connect(0, alice);
  const on = await b.rec.waitFor("user_status", { pred: fromAlice(true) });
  const afterOnline = b.rec.mark;
  assert.equal(on.status, "online");
  assert.match(on.lastSeen, ISO);
  // The join ack lists who is online.
  const b2 = await st.joined(0, bob, room.id);
  assert.deepEqual([...b2.joined.online].sort(), [alice.id, bob.id].sort());
  assert.equal(b2.joined.onlineCount, 2);

  // A second socket on the other gateway: no new announcement; closing one of two: still online.
  const a1 = await st.connect(1, alice);
  await sleep(300);
  a0.disconnect();
  await b.rec.none("user_status", { pred: (e) => e.userId === alice.id, from: afterOnline, ms: 1500 });

  const before = Date.now();
  a1.disconnect();
  const offline = await b.rec.waitFor("user_status", { pred: fromAlice(false), ms: 3000 });
  assert.equal(offline.status, "offline");
  assert.match(offline.lastSeen, ISO);
  const seen = Date.parse(offline.lastSeen);
  assert.ok(seen >= before - 1000 && seen <= Date.now() + 1000, `lastSeen ${offline.lastSeen}`);
  // Both of Bob's sockets, on both gateways, saw it.
  await b2.rec.waitFor("user_status", { pred: fromAlice(false) });
  // And a join now does not list her.
  const again = await ack(b2, "join_room", { roomId: room.id });
  assert.deepEqual(again.online, [bob.id]);
});

s.test("presence: join_room lists who is online only in rooms up to JOIN_ONLINE_LIST_MAX members", async (st) => {
  const g = await st.extraGateway({ JOIN_ONLINE_LIST_MAX: "2" });
  const gi = st.gateways.indexOf(g);
  const [alice, bob, carol] = await st.users("alice", "bob", "carol");
  const room = await st.room(alice);
  await st.restOk("POST", `/rooms/${room.id}/join`, { token: bob.token });
  await st.joined(0, alice, room.id);
  // Two members: listed.
  const b = await st.joined(gi, bob, room.id);
  assert.equal(b.joined.onlineListed, true);
  assert.deepEqual([...b.joined.online].sort(), [alice.id, bob.id].sort());
  assert.equal(b.joined.onlineCount, 2);
  assert.equal(b.joined.memberCount, 2);
  // Three: counts only (no lookup per member), presence from user_status events instead.
  await st.restOk("POST", `/rooms/${room.id}/join`, { token: carol.token });
  const c = await st.joined(gi, carol, room.id);
  assert.equal(c.joined.onlineListed, false);
  assert.deepEqual(c.joined.online, []);
  assert.equal(c.joined.onlineCount, null);
  assert.equal(c.joined.memberCount, 3);
  // The suite's gateways (default 500) still list it.
  const c0 = await st.joined(0, carol, room.id);
  assert.equal(c0.joined.onlineListed, true);
  assert.equal(c0.joined.onlineCount, 3);
  b.disconnect();
  await c.rec.waitFor("user_status", { pred: (e) => e.userId === bob.id && !e.online });
  await g.proc.stop();
});

s.test("presence: a dead gateway's cleanup that stopped halfway is carried on once its lease runs out", async (st) => {
  const [alice, bob] = await st.users("alice", "bob");
  const room = await st.room(alice);
  await st.restOk("POST", `/rooms/${room.id}/join`, { token: bob.token });
  const b = await st.joined(1, bob, room.id);
  await st.joined(0, alice, room.id);
  await b.rec.waitFor("user_status", { pred: (e) => e.userId === alice.id && e.online });
  await sleep(1200); // at least one heartbeat of the doomed gateway
  // A survivor that took the cleanup and died (or lost Redis) halfway: its lease is still held.
  const dead = st.gateways[0].id;
  const lease = `${st.prefix}:v1:gw:${dead}:reaper`;
  assert.equal(await st.redis.command("SET", lease, "a-reaper-that-died", "PX", "6000"), "OK");
  const killedAt = Date.now();
  await st.stopGateway(0, "SIGKILL");
  // Nobody cleans up while the lease is held (TTL 3 s + heartbeat 1 s would otherwise have done it)…
  await b.rec.none("user_status", { pred: (e) => e.userId === alice.id && !e.online, ms: 4500 });
  // … and once it runs out, the survivor does, and forgets the dead gateway.
  const off = await b.rec.waitFor("user_status", { pred: (e) => e.userId === alice.id && !e.online, ms: 8000 });
  assert.equal(off.status, "offline");
  assert.ok(Date.now() - killedAt >= 5500, "not before the lease ran out");
  await eventually(async () => {
    assert.equal(await st.redis.command("ZSCORE", `${st.prefix}:v1:gw:alive`, dead), null);
    assert.equal(await st.redis.command("EXISTS", `${st.prefix}:v1:gw:${dead}:conns`), 0);
    assert.equal(await st.redis.command("EXISTS", lease), 0);
    return true;
  }, 3000, "the dead gateway forgotten");
  await st.restartGateway(0);
});

s.test("presence: the users of a gateway killed with SIGKILL go offline within PRESENCE_TTL + heartbeat", async (st) => {
  const [alice, bob, carol] = await st.users("alice", "bob", "carol");
  const room = await st.room(alice);
  await st.restOk("POST", `/rooms/${room.id}/join`, { token: bob.token });
  await st.restOk("POST", `/rooms/${room.id}/join`, { token: carol.token });
  const b = await st.joined(1, bob, room.id);
  await st.joined(0, alice, room.id);
  await st.connect(0, carol);
  for (const u of [alice, carol]) await b.rec.waitFor("user_status", { pred: (e) => e.userId === u.id && e.online });
  await sleep(1200); // at least one heartbeat of the doomed gateway

  const killedAt = Date.now();
  const exit = await st.stopGateway(0, "SIGKILL");
  assert.equal(exit.signal, "SIGKILL");
  for (const u of [alice, carol]) {
    const off = await b.rec.waitFor("user_status", { pred: (e) => e.userId === u.id && !e.online, ms: 9000 });
    assert.equal(off.status, "offline");
    assert.match(off.lastSeen, ISO);
  }
  const took = Date.now() - killedAt;
  // TTL 3 s + heartbeat 1 s, plus a margin for the reaper's own heartbeat and a busy machine.
  assert.ok(took <= 7000, `offline after ${took} ms`);
  // Bob, on the surviving gateway, is still online and connected.
  assert.ok(b.connected);
  const j = await ack(b, "join_room", { roomId: room.id });
  assert.deepEqual(j.online, [bob.id]);
  // Nothing about Bob was announced.
  assert.equal(b.rec.all("user_status").filter((e) => e.userId === bob.id && !e.online).length, 0);

  // The restarted gateway (a new replica on the same port) serves again.
  await st.restartGateway(0);
  const a = await st.connect(0, alice);
  await b.rec.waitCount("user_status", 2, { pred: (e) => e.userId === alice.id && e.online, ms: 3000 });
  a.disconnect();
});
