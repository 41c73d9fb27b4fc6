// Who may connect, join and act: CONNECT_ERROR for bad tokens, the three ways to present a good one,
// private rooms and invite codes, non-members, events before join_room, kicks and logout.

import assert from "node:assert/strict";
import crypto from "node:crypto";
import { ack, signJwt, sleep, suite, withTimeout } from "./harness.mjs";

const s = suite("access");

/** Connects and expects a CONNECT_ERROR; returns the error. */
async function refused(st, opts) {
  const sock = st.socket(0, null, opts);
  const err = await withTimeout(
    new Promise((resolve, reject) => {
      sock.once("connect_error", resolve);
      sock.once("connect", () => reject(new Error("connected, but should have been refused")));
    }),
    5000,
    "connect_error",
  );
  sock.disconnect();
  return err;
}

s.test("CONNECT_ERROR UNAUTHORIZED for a missing, garbage, forged, expired or revoked token", async (st) => {
  const now = Math.floor(Date.now() / 1000);
  const [victim] = await st.users("victim");
  const claims = (over) => ({ sub: victim.id, jti: crypto.randomUUID(), iat: now - 60, exp: now + 600, ...over });
  const cases = {
    "no token": {},
    "empty token": { auth: { token: "" } },
    garbage: { auth: { token: "not-a-jwt" } },
    "wrong secret": { auth: { token: signJwt(claims(), "another-secret-that-is-long-enough-0123456789") } },
    expired: { auth: { token: signJwt(claims({ iat: now - 7200, exp: now - 3600 })) } },
    "alg none": {
      auth: {
        token: `${Buffer.from('{"alg":"none","typ":"JWT"}').toString("base64url")}.${Buffer.from(JSON.stringify(claims())).toString("base64url")}.`,
      },
    },
    "garbage header": { extraHeaders: { Authorization: "Bearer nope" } },
    "garbage query": { query: { token: "nope" } },
  };
  for (const [name, opts] of Object.entries(cases)) {
    const err = await refused(st, opts);
    assert.equal(err.data?.code, "UNAUTHORIZED", `${name}: ${err.message} ${JSON.stringify(err.data)}`);
    assert.ok(err.message.length > 0, name);
  }
  // A correctly signed, unexpired token crafted here is accepted (the check above is not vacuous).
  const good = await st.connect(0, { token: signJwt(claims()) });
  assert.equal((await good.rec.waitFor("welcome")).userId, victim.id);

  // Revoked: after logout, the same token is refused.
  await st.restOk("POST", "/auth/logout", { token: victim.token });
  const err = await refused(st, { auth: { token: victim.token } });
  assert.equal(err.data?.code, "UNAUTHORIZED");
  assert.match(err.message, /revoked/);
});

s.test("the token is accepted in the auth payload, the Authorization header (polling and websocket) and the query", async (st) => {
  const [u] = await st.users("tok");
  const variants = {
    auth: { auth: { token: u.token } },
    "auth with Bearer prefix": { auth: { token: `Bearer ${u.token}` } },
    "header, polling": { extraHeaders: { Authorization: `Bearer ${u.token}` }, transports: ["polling"] },
    "header, websocket": { extraHeaders: { Authorization: `Bearer ${u.token}` }, transports: ["websocket"] },
    query: { query: { token: u.token } },
  };
  for (const [name, opts] of Object.entries(variants)) {
    for (const gw of [0, 1]) {
      const sock = await st.connect(gw, null, opts);
      const w = await sock.rec.waitFor("welcome");
      assert.equal(w.userId, u.id, name);
      assert.equal(w.recovered, false);
      sock.disconnect();
    }
  }
});

s.test("a private room cannot be joined without its invite code or with a wrong one; with the right one it can", async (st) => {
  const [alice, bob] = await st.users("alice", "bob");
  const room = await st.room(alice, { isPrivate: true });
  assert.equal(typeof room.inviteCode, "string");
  const a = await st.joined(0, alice, room.id);
  const b = await st.connect(1, bob);

  let r = await ack(b, "join_room", { roomId: room.id });
  assert.deepEqual(r, { ok: false, error: { code: "NOT_FOUND", message: r.error.message } });
  r = await ack(b, "join_room", { roomId: room.id, inviteCode: "WRONGCODE" });
  assert.equal(r.error.code, "NOT_FOUND");
  r = await ack(b, "join_room", { roomId: room.id, inviteCode: "" });
  assert.equal(r.error.code, "NOT_FOUND");
  r = await ack(b, "join_room", { roomId: crypto.randomUUID(), inviteCode: room.inviteCode });
  assert.equal(r.error.code, "NOT_FOUND", "the code of one room does not open another");
  // Still not a member, over REST either.
  const members = await st.restOk("GET", `/rooms/${room.id}/members`, { token: alice.token });
  assert.deepEqual(members.map((m) => m.id ?? m.userId).sort(), [alice.id]);
  r = await ack(b, "send_message", { roomId: room.id, content: "let me in" });
  assert.equal(r.error.code, "FORBIDDEN");

  r = await ack(b, "join_room", { roomId: room.id, inviteCode: room.inviteCode });
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.equal(r.joined, true);
  assert.equal(r.role, "member");
  assert.equal(r.roomId, room.id);
  const joinedEv = await a.rec.waitFor("user_joined");
  assert.equal(joinedEv.roomId, room.id);
  assert.equal(joinedEv.userId, bob.id);
  // Once a member, joining again needs no code.
  const b2 = await st.connect(0, bob);
  r = await ack(b2, "join_room", { roomId: room.id });
  assert.equal(r.ok, true);
  assert.equal(r.joined, false);
  const sent = await ack(b, "send_message", { roomId: room.id, content: "in" });
  assert.equal(sent.ok, true);
  assert.equal((await a.rec.waitFor("receive_message")).id, sent.message.id);
});

s.test("a non-member cannot send, and events before join_room are FORBIDDEN", async (st) => {
  const [alice, bob, carol] = await st.users("alice", "bob", "carol");
  const room = await st.room(alice, { isPrivate: true });
  await st.restOk("POST", "/rooms/join", { token: bob.token, body: { inviteCode: room.inviteCode } });
  const a = await st.joined(0, alice, room.id);
  const first = await ack(a, "send_message", { roomId: room.id, content: "first" });
  assert.equal(first.ok, true);

  // Carol is no member at all.
  const c = await st.connect(1, carol);
  let r = await ack(c, "send_message", { roomId: room.id, content: "intruder" });
  assert.equal(r.error.code, "FORBIDDEN");
  r = await ack(c, "typing", { roomId: room.id, isTyping: true });
  assert.equal(r.error.code, "FORBIDDEN");
  r = await ack(c, "mark_read", { roomId: room.id, seq: 1 });
  assert.equal(r.error.code, "FORBIDDEN");

  // Bob is a member (joined over REST) but this socket has not joined the room.
  const b = await st.connect(1, bob);
  for (const [ev, payload] of [
    ["send_message", { roomId: room.id, content: "too early" }],
    ["typing", { roomId: room.id, isTyping: true }],
    ["mark_read", { roomId: room.id, seq: 1 }],
    ["mark_message_read", { messageId: first.message.id }],
    ["message_delivered", { roomId: room.id, seq: 1 }],
  ]) {
    r = await ack(b, ev, payload);
    assert.equal(r.ok, false, ev);
    assert.equal(r.error.code, "FORBIDDEN", `${ev}: ${JSON.stringify(r)}`);
  }
  // Without an ack: an `error` event.
  b.emit("send_message", { roomId: room.id, content: "too early" });
  const e = await b.rec.waitFor("error");
  assert.equal(e.code, "FORBIDDEN");
  assert.equal(e.event, "send_message");
  // Nothing changed: no message, no typing, no receipt reached Alice; the room still has one message.
  await a.rec.none("typing", { ms: 300 });
  assert.equal(a.rec.all("receive_message").length, 1);
  assert.equal(a.rec.all("message_read").length, 0);
  assert.equal(a.rec.all("delivered").length, 0);
  const h = await st.restOk("GET", `/rooms/${room.id}/messages`, { token: alice.token });
  assert.deepEqual(h.messages.map((m) => m.content), ["first"]);
  // And after joining, the same events work on the same connection.
  r = await ack(b, "join_room", { roomId: room.id });
  assert.equal(r.ok, true);
  r = await ack(b, "send_message", { roomId: room.id, content: "now" });
  assert.equal(r.ok, true);
  assert.equal(r.message.seq, 2);
});

s.test("a kicked user stops receiving at once and cannot send; logout disconnects the user's sockets", async (st) => {
  const [alice, bob, carol] = await st.users("alice", "bob", "carol");
  const room = await st.room(alice, { isPrivate: true });
  await st.restOk("POST", "/rooms/join", { token: bob.token, body: { inviteCode: room.inviteCode } });
  await st.restOk("POST", "/rooms/join", { token: carol.token, body: { inviteCode: room.inviteCode } });
  const a = await st.joined(0, alice, room.id);
  const b1 = await st.joined(1, bob, room.id);
  const b0 = await st.joined(0, bob, room.id);
  const c = await st.joined(1, carol, room.id);
  let r = await ack(a, "send_message", { roomId: room.id, content: "before" });
  assert.equal(r.ok, true);
  for (const sock of [b0, b1]) await sock.rec.waitFor("receive_message");

  await st.restOk("DELETE", `/rooms/${room.id}/members/${bob.id}`, { token: alice.token });
  for (const sock of [b0, b1]) {
    const left = await sock.rec.waitFor("user_left");
    assert.deepEqual({ roomId: left.roomId, userId: left.userId }, { roomId: room.id, userId: bob.id });
  }
  assert.equal((await c.rec.waitFor("user_left")).userId, bob.id);
  const mark = [b0.rec.mark, b1.rec.mark];

  r = await ack(a, "send_message", { roomId: room.id, content: "after" });
  assert.equal(r.ok, true);
  await c.rec.waitCount("receive_message", 2); // Carol gets it …
  await b0.rec.none("receive_message", { from: mark[0], ms: 400 }); // … Bob does not
  await b1.rec.none("receive_message", { from: mark[1], ms: 0 });
  for (const sock of [b0, b1]) {
    r = await ack(sock, "send_message", { roomId: room.id, content: "am I still here?" });
    assert.equal(r.error.code, "FORBIDDEN");
    r = await ack(sock, "join_room", { roomId: room.id });
    assert.equal(r.error.code, "NOT_FOUND", "a private room needs the code again");
  }
  await c.rec.none("receive_message", { pred: (m) => m.senderId === bob.id, ms: 200 });
  // Bob's sockets are still connected (the kick takes him out of the room, not off the server).
  assert.ok(b0.connected && b1.connected);

  // Logout with Bob's token disconnects the sockets it opened, from the server side.
  await st.restOk("POST", "/auth/logout", { token: bob.token });
  for (const sock of [b0, b1]) {
    assert.equal(await sock.rec.waitFor("$disconnect"), "io server disconnect");
  }
  // Others are unaffected.
  assert.ok(a.connected && c.connected);
  r = await ack(c, "send_message", { roomId: room.id, content: "still here" });
  assert.equal(r.ok, true);
});

s.test("a kick racing a join_room never leaves the kicked socket subscribed", async (st, t) => {
  const [alice, bob, carol, dave] = await st.users("alice", "bob", "carol", "dave");
  const room = await st.room(alice, { isPrivate: true });
  for (const u of [carol, dave]) {
    await st.restOk("POST", "/rooms/join", { token: u.token, body: { inviteCode: room.inviteCode } });
  }
  // Three senders in turn: the per-user rate limit (5 per 10 s) allows the 15 rounds.
  const senders = [await st.joined(0, alice, room.id), await st.joined(0, carol, room.id), await st.joined(1, dave, room.id)];
  const b = await st.connect(1, bob);
  const outcomes = { joinedFirst: 0, refused: 0 };
  for (let i = 0; i < 15; i++) {
    await st.restOk("POST", "/rooms/join", { token: bob.token, body: { inviteCode: room.inviteCode } });
    // The join and the kick at once, in either order and a little apart, so that some kicks land
    // inside a join (between its membership check and its registration with the fan-out; with
    // `sinceSeq` the history page read in between makes that window a few milliseconds wide).
    const kick = () => st.restOk("DELETE", `/rooms/${room.id}/members/${bob.id}`, { token: alice.token });
    let join, kicked;
    if (i % 2 === 0) {
      join = ack(b, "join_room", { roomId: room.id, sinceSeq: 0 });
      await sleep(i % 4);
      kicked = kick();
    } else {
      kicked = kick();
      await sleep(i % 4);
      join = ack(b, "join_room", { roomId: room.id, sinceSeq: 0 });
    }
    const [r] = await Promise.all([join, kicked]);
    if (r.ok) outcomes.joinedFirst++;
    else {
      assert.equal(r.error.code, "NOT_FOUND", JSON.stringify(r));
      outcomes.refused++;
    }
    const mark = b.rec.mark;
    const sent = await ack(senders[i % 3], "send_message", { roomId: room.id, content: `round ${i}` });
    assert.equal(sent.ok, true, JSON.stringify(sent));
    await b.rec.none("receive_message", { from: mark, ms: 150 });
    const again = await ack(b, "send_message", { roomId: room.id, content: "still in?" });
    assert.equal(again.error.code, "FORBIDDEN");
  }
  t.diagnostic(`kick racing join: ${JSON.stringify(outcomes)}`);
});

s.test("bad input gets VALIDATION/FORBIDDEN/NOT_FOUND, changes nothing and leaves the connection up", async (st) => {
  const [alice, bob] = await st.users("alice", "bob");
  const room = await st.room(alice);
  const a = await st.joined(0, alice, room.id);
  const b = await st.joined(1, bob, room.id);
  const ok = await ack(a, "send_message", { roomId: room.id, content: "the only message" });
  assert.equal(ok.ok, true);
  await b.rec.waitFor("receive_message");
  const bobs = await ack(b, "send_message", { roomId: room.id, content: "bob's" });
  assert.equal(bobs.ok, true);

  const cases = [
    ["send_message", [{ content: "no room" }], "VALIDATION"],
    ["send_message", [{ roomId: 5, content: "x" }], "VALIDATION"],
    ["send_message", [{ roomId: "not-a-uuid", content: "x" }], "VALIDATION"],
    ["send_message", [{ roomId: room.id, content: 5 }], "VALIDATION"],
    ["send_message", [{ roomId: room.id }], "VALIDATION"],
    ["send_message", [{ roomId: room.id, content: "" }], "VALIDATION"],
    ["send_message", [{ roomId: room.id, content: "   \n\t " }], "VALIDATION"],
    ["send_message", [{ roomId: room.id, content: "x".repeat(4001) }], "VALIDATION"],
    ["send_message", [{ roomId: room.id, content: "x", type: "video" }], "VALIDATION"],
    ["send_message", [{ roomId: room.id, content: "x", clientMsgId: { a: 1 } }], "VALIDATION"],
    ["send_message", ["just a string"], "VALIDATION"],
    ["send_message", [[room.id, "array"]], "VALIDATION"],
    ["send_message", [], "VALIDATION"],
    ["send_message", [null], "VALIDATION"],
    ["join_room", [{}], "VALIDATION"],
    ["join_room", [{ roomId: "123" }], "VALIDATION"],
    ["join_room", [{ roomId: room.id, sinceSeq: -1 }], "VALIDATION"],
    ["join_room", [{ roomId: room.id, sinceSeq: "1" }], "VALIDATION"],
    ["join_room", [{ roomId: room.id, inviteCode: 42 }], "VALIDATION"],
    ["leave_room", [{ roomId: false }], "VALIDATION"],
    ["typing", [{ roomId: room.id, isTyping: "yes" }], "VALIDATION"],
    ["typing", [{ roomId: room.id }], "VALIDATION"],
    ["typing", [{ isTyping: true }], "VALIDATION"],
    ["edit_message", [{ messageId: "nope", content: "x" }], "VALIDATION"],
    ["edit_message", [{ messageId: ok.message.id }], "VALIDATION"],
    ["edit_message", [{ messageId: ok.message.id, content: " " }], "VALIDATION"],
    ["edit_message", [{ messageId: ok.message.id, content: "y".repeat(4001) }], "VALIDATION"],
    ["edit_message", [{ messageId: bobs.message.id, content: "not mine" }], "FORBIDDEN"],
    ["edit_message", [{ messageId: crypto.randomUUID(), content: "x" }], "NOT_FOUND"],
    ["delete_message", [{ messageId: 12 }], "VALIDATION"],
    ["delete_message", [{ messageId: crypto.randomUUID() }], "NOT_FOUND"],
    ["mark_read", [{ roomId: room.id }], "VALIDATION"],
    ["mark_read", [{ roomId: room.id, seq: -3 }], "VALIDATION"],
    ["mark_read", [{ roomId: room.id, seq: 1.5 }], "VALIDATION"],
    ["mark_read", [{ roomId: room.id, seq: "1" }], "VALIDATION"],
    ["mark_message_read", [{ messageId: "x" }], "VALIDATION"],
    ["mark_message_read", [{ messageId: crypto.randomUUID() }], "NOT_FOUND"],
    ["read_message", [{ roomId: room.id, messageIds: "all" }], "VALIDATION"],
    ["read_message", [{ roomId: room.id, messageIds: [1, 2] }], "VALIDATION"],
    ["message_delivered", [{ roomId: room.id, seq: {} }], "VALIDATION"],
    ["no_such_event", [{ roomId: room.id }], "VALIDATION"],
    ["join_room", [{ roomId: crypto.randomUUID() }], "NOT_FOUND"],
  ];
  for (const [ev, args, code] of cases) {
    const r = await ack(a, ev, ...args);
    assert.equal(r.ok, false, `${ev} ${JSON.stringify(args).slice(0, 80)}`);
    assert.equal(r.error.code, code, `${ev} ${JSON.stringify(args).slice(0, 80)}: ${JSON.stringify(r)}`);
    assert.equal(typeof r.error.message, "string");
    assert.ok(a.connected, `still connected after ${ev}`);
  }
  // Without an ack callback the error arrives as an `error` event naming the event.
  const m = a.rec.mark;
  a.emit("send_message", { roomId: room.id, content: "" });
  a.emit("bogus_event", 1, 2, 3);
  a.emit("typing", { roomId: room.id, isTyping: "yes" });
  const errs = await a.rec.waitCount("error", 3, { from: m });
  assert.deepEqual(
    errs.map((e) => [e.event, e.code]),
    [
      ["send_message", "VALIDATION"],
      ["bogus_event", "VALIDATION"],
      ["typing", "VALIDATION"],
    ],
  );
  for (const e of errs) assert.equal(typeof e.message, "string");

  // The connection is up and a valid event still works; nothing changed.
  const next = await ack(a, "send_message", { roomId: room.id, content: "still works" });
  assert.equal(next.ok, true);
  assert.equal(next.message.seq, 3, "no refused send took a seq");
  const got = await b.rec.waitCount("receive_message", 3);
  assert.deepEqual(got.map((x) => x.content), ["the only message", "bob's", "still works"]);
  await b.rec.none("message_edited", { ms: 0 });
  await b.rec.none("typing", { ms: 0 });
  const h = await st.restOk("GET", `/rooms/${room.id}/messages`, { token: alice.token });
  assert.deepEqual(
    h.messages.map((x) => [x.seq, x.content, x.editedAt ?? null, x.deletedAt ?? null]),
    [
      [1, "the only message", null, null],
      [2, "bob's", null, null],
      [3, "still works", null, null],
    ],
  );
  const metrics = await st.metrics(0);
  assert.ok(metrics['chat_gateway_rejected_total{code="VALIDATION"}'] >= 30, JSON.stringify(metrics).slice(0, 300));
});
