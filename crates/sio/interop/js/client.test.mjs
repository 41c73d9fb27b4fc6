// Stock socket.io-client v4 against the sio interop server (examples/interop.rs).
// SIO_URL points at the server, e.g. http://127.0.0.1:40000.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";

const URL = process.env.SIO_URL ?? "http://127.0.0.1:3000";
const sockets = [];

function connect(path = "/", opts = {}) {
  const socket = io(URL + path, {
    auth: { token: "t-123" },
    reconnectionDelay: 50,
    reconnectionDelayMax: 200,
    forceNew: true,
    ...opts,
  });
  sockets.push(socket);
  return socket;
}

const once = (emitter, event) => new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));

function withTimeout(promise, ms = 5000, what = "event") {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timeout waiting for ${what}`)), ms)),
  ]);
}

after(() => sockets.forEach((s) => s.disconnect()));

test("websocket only: connect, acks and plain events", async () => {
  const socket = connect("/", { transports: ["websocket"] });
  await withTimeout(once(socket, "connect"), 5000, "connect");
  assert.equal(socket.io.engine.transport.name, "websocket");
  const reply = await socket.timeout(5000).emitWithAck("echo", 1, "two", { three: [true, null] });
  assert.deepEqual(reply, 1); // an ack callback gets the arguments as its parameters: the first one
  const back = once(socket, "echo");
  socket.emit("echo", "a", { b: 2 });
  assert.deepEqual(await withTimeout(back), ["a", { b: 2 }]);
});

test("ack with several arguments", async () => {
  const socket = connect("/", { transports: ["websocket"] });
  await withTimeout(once(socket, "connect"));
  const args = await withTimeout(new Promise((resolve) => socket.emit("echo", "x", 2, (...a) => resolve(a))));
  assert.deepEqual(args, ["x", 2]);
});

test("polling first, then upgrade to websocket", async () => {
  const socket = connect("/", { transports: ["polling", "websocket"] });
  await withTimeout(once(socket, "connect"));
  if (socket.io.engine.transport.name !== "websocket") {
    await withTimeout(once(socket.io.engine, "upgrade"), 5000, "upgrade");
  }
  assert.equal(socket.io.engine.transport.name, "websocket");
  assert.deepEqual(await socket.timeout(5000).emitWithAck("echo", "after upgrade"), "after upgrade");
});

test("polling only works end to end", async () => {
  const socket = connect("/", { transports: ["polling"] });
  await withTimeout(once(socket, "connect"));
  assert.equal(socket.io.engine.transport.name, "polling");
  assert.deepEqual(await socket.timeout(5000).emitWithAck("echo", { over: "polling" }), { over: "polling" });
  const buf = await socket.timeout(5000).emitWithAck("echo", Buffer.from([9, 8, 7]));
  assert.deepEqual(Buffer.from(buf), Buffer.from([9, 8, 7]));
});

test("a refused handshake surfaces as connect_error with message and data", async () => {
  const socket = connect("/", { auth: { token: "bad" }, transports: ["websocket"], reconnection: false });
  const [err] = await withTimeout(once(socket, "connect_error"));
  assert.equal(err.message, "unauthorized");
  assert.deepEqual(err.data, { code: "AUTH" });
});

test("server to client ack", async () => {
  const socket = connect("/", { transports: ["websocket"] });
  socket.on("question", (q, cb) => cb(`pong for ${q}`));
  await withTimeout(once(socket, "connect"));
  const answer = once(socket, "answer");
  socket.emit("ask");
  assert.deepEqual(await withTimeout(answer), ["pong for ping?"]);
});

test("binary attachments both ways", async () => {
  const socket = connect("/", { transports: ["websocket"] });
  await withTimeout(once(socket, "connect"));
  const payload = { name: "f.bin", data: Buffer.from([0, 1, 2, 255]), more: [Buffer.from("hi")] };
  const acked = await socket.timeout(5000).emitWithAck("echo", payload);
  assert.equal(acked.name, "f.bin");
  assert.deepEqual(Buffer.from(acked.data), Buffer.from([0, 1, 2, 255]));
  assert.deepEqual(Buffer.from(acked.more[0]), Buffer.from("hi"));
  const back = once(socket, "echo");
  socket.emit("echo", Buffer.from([42]));
  const [b] = await withTimeout(back);
  assert.deepEqual(Buffer.from(b), Buffer.from([42]));
});

test("namespaces are multiplexed on one connection", async () => {
  const main = connect("/", { transports: ["websocket"], forceNew: true });
  await withTimeout(once(main, "connect"));
  const custom = io(URL + "/custom", { transports: ["websocket"] }); // same manager as the last io(URL)
  sockets.push(custom);
  await withTimeout(once(custom, "connect"));
  assert.deepEqual(await custom.timeout(5000).emitWithAck("echo", "custom"), "custom");
  assert.deepEqual(await main.timeout(5000).emitWithAck("echo", "main"), "main");
  custom.disconnect();
  assert.deepEqual(await main.timeout(5000).emitWithAck("echo", "still"), "still");
});

test("reconnects after the server drops the connection", async () => {
  const socket = connect("/", { transports: ["websocket"] });
  await withTimeout(once(socket, "connect"));
  const disconnected = once(socket, "disconnect");
  socket.emit("drop-me");
  const [reason] = await withTimeout(disconnected);
  assert.equal(reason, "transport close");
  await withTimeout(once(socket, "connect"), 5000, "reconnect");
  assert.equal(socket.connected, true);
  assert.deepEqual(await socket.timeout(5000).emitWithAck("echo", "back"), "back");
});

for (const transports of [["websocket"], ["polling"]]) {
  test(`connection state recovery replays missed events (${transports})`, async () => {
    const socket = connect("/", { transports });
    const received = [];
    socket.on("msg", (text) => received.push(text));
    await withTimeout(once(socket, "connect"));
    assert.equal(socket.recovered, false);
    const firstId = socket.id;
    const got = once(socket, "msg");
    socket.emit("publish", "one");
    await withTimeout(got);

    const disconnected = once(socket, "disconnect");
    socket.emit("drop-me", "two", "three");
    await withTimeout(disconnected, 5000, "disconnect");
    await withTimeout(once(socket, "connect"), 5000, "reconnect");
    assert.equal(socket.recovered, true, "socket.recovered");
    assert.equal(socket.id, firstId, "same socket id after recovery");
    for (let i = 0; i < 50 && received.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(received, ["one", "two", "three"]);
  });
}
