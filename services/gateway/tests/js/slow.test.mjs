// A client that stops reading is disconnected, and the gateway's memory stays bounded.
//
// A raw Engine.IO/Socket.IO client (the `ws` package) joins a room and then stops reading its socket.
// The room is flooded with large durable events PUBLISHed straight onto the room's Redis channel (the
// per-user rate limit makes a flood through send_message impossible). The gateway must drop the
// client (queue overflow, counted in chat_gateway_slow_disconnects_total) instead of buffering.
// This runs on a third gateway with a long Engine.IO heartbeat, so the client is dropped for not
// reading, not for missing a pong.

import assert from "node:assert/strict";
import WebSocket from "ws";
import { ack, eventually, shardOf, suite, withTimeout } from "./harness.mjs";

const s = suite("slow");

/** A raw Socket.IO client over `ws`: answers pings, connects with `token`, joins `roomId`. */
async function rawJoin(url, token, roomId) {
  const ws = new WebSocket(`${url.replace("http", "ws")}/socket.io/?EIO=4&transport=websocket`);
  const frames = [];
  let waiter = null;
  ws.on("message", (data) => {
    const text = data.toString();
    if (text === "2") {
      ws.send("3");
      return;
    }
    frames.push(text);
    waiter?.();
  });
  const next = (pred, what) =>
    withTimeout(
      new Promise((resolve) => {
        const check = () => {
          const i = frames.findIndex(pred);
          if (i >= 0) {
            waiter = null;
            resolve(frames.splice(i, 1)[0]);
          }
        };
        waiter = check;
        check();
      }),
      5000,
      what,
    );
  await withTimeout(new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject)), 5000, "ws open");
  await next((f) => f.startsWith("0{"), "engine.io open");
  ws.send(`40${JSON.stringify({ token })}`);
  const connected = await next((f) => f.startsWith("40"), "socket.io connect");
  assert.match(connected, /^40\{"sid":/);
  ws.send(`420${JSON.stringify(["join_room", { roomId }])}`);
  const joined = await next((f) => f.startsWith("430"), "join ack");
  assert.equal(JSON.parse(joined.slice(3))[0].ok, true, joined);
  return ws;
}

s.test("a client that stops reading is disconnected while the gateway's memory stays bounded", async (st, t) => {
  const g = await st.extraGateway({ SIO_PING_INTERVAL_MS: "60000", SIO_PING_TIMEOUT_MS: "60000" });
  const gi = st.gateways.indexOf(g);
  const [alice, slow] = await st.users("alice", "slow");
  const room = await st.room(alice);
  const ws = await rawJoin(g.url, slow.token, room.id);
  // A healthy client in the same room on the same gateway keeps up (and must stay connected).
  const healthy = await st.joined(g.url, alice, room.id);

  const before = await st.metrics(gi);
  assert.equal(before.chat_gateway_connections, 2);
  const rssBefore = g.proc.rssKb();

  ws._socket.pause(); // stop reading: the kernel buffers fill, then the gateway's queue
  let closed = false;
  ws.on("close", () => {
    closed = true;
  });

  const channel = `${st.prefix}:v1:{${shardOf(room.id)}}:room:${room.id}:ch`;
  const filler = "x".repeat(20000);
  let prev = 0;
  let pos = Date.now() * 1000 + 1_000_000; // past any real event of the room
  let published = 0;
  let peakRss = rssBefore;
  const deadline = Date.now() + 30000;
  // Publish in batches of 100 (about 2 MB) until the gateway stops queueing for the slow client: once
  // the healthy client has received every event so far, the fan-out has offered each one to both
  // sockets, and `deliveries` tells how many the slow one took.
  const delivered0 = before.chat_gateway_deliveries_total;
  for (;;) {
    const batch = [];
    for (let i = 0; i < 100; i++) {
      pos += 1;
      const d = { id: `flood-${published}`, roomId: room.id, seq: 1000 + published, content: filler };
      batch.push(st.redis.command(st.redis.publish, channel, JSON.stringify({ e: "receive_message", pos, prev, d })));
      prev = pos;
      published++;
    }
    await Promise.all(batch);
    await healthy.rec.waitCount("receive_message", published, { ms: 10000 });
    peakRss = Math.max(peakRss, g.proc.rssKb());
    const m = await st.metrics(gi);
    if (m.chat_gateway_deliveries_total - delivered0 < 2 * published) break;
    assert.ok(Date.now() < deadline, `still queueing for the slow client after ${published} events of 20 KB`);
    assert.ok(published < 5000, "still queueing for the slow client after 100 MB");
  }
  const droppedAt = Date.now();
  // The session ends as soon as the queue overflowed: the close interrupts the driver's blocked write.
  await eventually(async () => (await st.metrics(gi)).chat_gateway_connections === 1, 15000, "the slow socket is gone");
  const goneAfter = Date.now() - droppedAt;
  const after = await st.metrics(gi);
  assert.equal(after.chat_gateway_slow_disconnects_total, before.chat_gateway_slow_disconnects_total + 1, "one slow client, counted once");
  peakRss = Math.max(peakRss, g.proc.rssKb());
  assert.ok(peakRss < 300 * 1024, `gateway RSS peaked at ${Math.round(peakRss / 1024)} MB`);

  // The server closed the connection: once the client reads again, it sees the close (after the
  // frames that were already in flight).
  ws._socket.resume();
  await eventually(() => closed, 10000, "the slow client's socket is closed by the server");

  // The healthy client got the flood and is still connected and served. (The flood's positions were
  // made up ahead of the Redis clock; the gateway skips events at or below the last position it
  // forwarded, so wait until real positions pass them.)
  while (Date.now() * 1000 <= pos + 1000) await new Promise((r) => setTimeout(r, 50));
  assert.ok(healthy.connected);
  const r = await ack(healthy, "send_message", { roomId: room.id, content: "still fine" });
  assert.equal(r.ok, true, JSON.stringify(r));
  await healthy.rec.waitFor("receive_message", { pred: (m) => m.id === r.message.id });
  t.diagnostic(`slow client: dropped after ${published} events of 20 KB, session gone ${goneAfter} ms later; RSS ${Math.round(rssBefore / 1024)} → peak ${Math.round(peakRss / 1024)} MB`);
}, { timeout: 90000 });
