// The end-to-end harness: a fresh MariaDB database and Redis prefix, the API, two gateways and the
// persistence worker as real processes on free loopback ports, a switchable TCP "load balancer" in
// front of the gateways, and helpers for REST calls, stock socket.io-client sockets (every event they
// receive is recorded, so a test can wait for something that already arrived), a raw RESP client,
// JWT crafting and the shard function of the Redis key layout.
//
// Environment (all optional):
//   CHAT_API_BIN, CHAT_GATEWAY_BIN, CHAT_WORKER_BIN  the binaries (default: <target>/debug/chat-*)
//   CHAT_TEST_DATABASE_URL  mysql://user:pass@host:port (default mysql://chat:chat@127.0.0.1:3306)
//   CHAT_TEST_REDIS_URL     redis://host:port (default redis://127.0.0.1:6379)
//   GATEWAY_E2E_KEEP_LOGS=1 keep the services' logs (they are always kept, and their tails printed,
//                           when a test failed)

import { after, afterEach, before, test } from "node:test";
import { spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { io } from "socket.io-client";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, "../../../..");
const TARGET = process.env.CARGO_TARGET_DIR
  ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR)
  : path.join(ROOT, "target");
export const BIN = {
  api: process.env.CHAT_API_BIN || path.join(TARGET, "debug/chat-api"),
  gateway: process.env.CHAT_GATEWAY_BIN || path.join(TARGET, "debug/chat-gateway"),
  worker: process.env.CHAT_WORKER_BIN || path.join(TARGET, "debug/chat-worker"),
};
const DB_BASE = new URL(process.env.CHAT_TEST_DATABASE_URL || "mysql://chat:chat@127.0.0.1:3306");
const REDIS_URL = process.env.CHAT_TEST_REDIS_URL || "redis://127.0.0.1:6379";

/** The JWT secret the services use when none is configured (crates/config DEV_JWT_SECRET). */
export const DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me-0123456789";

/** The gateway settings of the suite: short, so presence, typing and recovery tests are quick. */
export const GATEWAY_TIMINGS = {
  PRESENCE_TTL_SECS: "3",
  PRESENCE_HEARTBEAT_SECS: "1",
  TYPING_TIMEOUT_MS: "1000",
  SIO_PING_INTERVAL_MS: "1000",
  SIO_PING_TIMEOUT_MS: "1000",
  RECOVERY_WINDOW_SECS: "30",
  SHUTDOWN_DRAIN_SECS: "3",
};

// ---------------------------------------------------------------------------------------------------
// Small utilities

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `promise`, or a rejection naming `what` after `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/** Polls `fn` until it returns a truthy value (returned), or fails after `ms`. */
export async function eventually(fn, ms, what, every = 50) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms: ${what}${last ? ` (last error: ${last.message})` : ""}`);
    }
    await sleep(every);
  }
}

export const rand = (n = 4) => crypto.randomBytes(n).toString("hex");

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** FNV-1a 64 over the 16 bytes of a UUID, modulo `shards` (chat_bus::shard_of). */
export function shardOf(uuid, shards = 8) {
  const hex = uuid.replace(/-/g, "");
  let h = 0xcbf29ce484222325n;
  for (let i = 0; i < 32; i += 2) {
    h ^= BigInt(parseInt(hex.slice(i, i + 2), 16));
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return Number(h % BigInt(shards));
}

const b64url = (buf) => Buffer.from(buf).toString("base64url");

/** An HS256 JWT with `claims`, signed with `secret`. */
export function signJwt(claims, secret = DEV_JWT_SECRET) {
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify(claims));
  const sig = crypto.createHmac("sha256", secret).update(`${head}.${body}`).digest();
  return `${head}.${body}.${b64url(sig)}`;
}

// ---------------------------------------------------------------------------------------------------
// A minimal Redis client (RESP2 over a socket), enough to PUBLISH, read and clean up keys.

export class Redis {
  static async connect(url = REDIS_URL) {
    const u = new URL(url);
    const sock = net.connect(Number(u.port || 6379), u.hostname || "127.0.0.1");
    await new Promise((resolve, reject) => {
      sock.once("connect", resolve);
      sock.once("error", reject);
    });
    return new Redis(sock);
  }

  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.pending = [];
    sock.on("data", (d) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      for (;;) {
        const r = parseResp(this.buf, 0);
        if (!r) break;
        this.buf = this.buf.subarray(r.end);
        const p = this.pending.shift();
        if (p) (r.value instanceof Error ? p.reject : p.resolve)(r.value);
      }
    });
    const fail = (e) => {
      for (const p of this.pending.splice(0)) p.reject(e || new Error("redis connection closed"));
    };
    sock.on("error", fail);
    sock.on("close", () => fail());
  }

  /** Sends one command; resolves with its reply. Commands may be issued without awaiting (pipelined). */
  command(...args) {
    const parts = [`*${args.length}\r\n`];
    for (const a of args) {
      const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
      parts.push(`$${b.length}\r\n`, b, "\r\n");
    }
    const p = new Promise((resolve, reject) => this.pending.push({ resolve, reject }));
    this.sock.write(Buffer.concat(parts.map((x) => (Buffer.isBuffer(x) ? x : Buffer.from(x)))));
    return p;
  }

  /** Deletes every key under `pattern` (SCAN + DEL). */
  async deletePattern(pattern) {
    let cursor = "0";
    do {
      const [next, keys] = await this.command("SCAN", cursor, "MATCH", pattern, "COUNT", 1000);
      cursor = next;
      if (keys.length) await this.command("DEL", ...keys);
    } while (cursor !== "0");
  }

  close() {
    this.sock.destroy();
  }
}

function parseResp(buf, at) {
  const eol = buf.indexOf("\r\n", at);
  if (eol < 0) return null;
  const type = String.fromCharCode(buf[at]);
  const line = buf.toString("utf8", at + 1, eol);
  const next = eol + 2;
  switch (type) {
    case "+":
      return { value: line, end: next };
    case "-":
      return { value: new Error(line), end: next };
    case ":":
      return { value: Number(line), end: next };
    case "$": {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return null;
      return { value: buf.toString("utf8", next, next + n), end: next + n + 2 };
    }
    case "*": {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const out = [];
      let pos = next;
      for (let i = 0; i < n; i++) {
        const r = parseResp(buf, pos);
        if (!r) return null;
        out.push(r.value);
        pos = r.end;
      }
      return { value: out, end: pos };
    }
    default:
      throw new Error(`unexpected RESP type ${JSON.stringify(type)}`);
  }
}

// ---------------------------------------------------------------------------------------------------
// Processes

/** Every child process started, so an abnormal exit of the test process still kills them. */
const LIVE = new Set();
process.on("exit", () => {
  for (const p of LIVE) {
    try {
      p.kill("SIGKILL");
    } catch {
      /* gone */
    }
  }
});

class Proc {
  constructor(name, bin, args, env, logDir) {
    this.name = name;
    this.log = path.join(logDir, `${name}.log`);
    const fd = fs.openSync(this.log, "a");
    this.child = spawn(bin, args, { env, stdio: ["ignore", fd, fd] });
    fs.closeSync(fd);
    LIVE.add(this.child);
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => {
        LIVE.delete(this.child);
        this.exit = { code, signal };
        resolve(this.exit);
      });
      this.child.once("error", (e) => {
        LIVE.delete(this.child);
        this.exit = { code: -1, signal: null, error: e };
        resolve(this.exit);
      });
    });
  }

  get pid() {
    return this.child.pid;
  }

  get alive() {
    return !this.exit;
  }

  /** Sends `signal` and waits for the exit (SIGKILL after `ms`). */
  async stop(signal = "SIGTERM", ms = 10000) {
    if (this.exit) return this.exit;
    this.child.kill(signal);
    const done = await Promise.race([this.exited, sleep(ms).then(() => null)]);
    if (done) return done;
    this.child.kill("SIGKILL");
    return this.exited;
  }

  /** Resident memory in KiB (from /proc). */
  rssKb() {
    const s = fs.readFileSync(`/proc/${this.pid}/status`, "utf8");
    return Number(/VmRSS:\s+(\d+)/.exec(s)[1]);
  }

  tail(lines = 40) {
    try {
      return fs.readFileSync(this.log, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }
}

async function waitReady(proc, url, ms = 30000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (!proc.alive) {
      throw new Error(`${proc.name} exited (${JSON.stringify(proc.exit)}) before it was ready:\n${proc.tail()}`);
    }
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error(`${proc.name} not ready at ${url} after ${ms} ms:\n${proc.tail()}`);
    await sleep(100);
  }
}

function mysqlArgs() {
  return [
    `-u${decodeURIComponent(DB_BASE.username)}`,
    `-p${decodeURIComponent(DB_BASE.password)}`,
    `-h${DB_BASE.hostname}`,
    `-P${DB_BASE.port || 3306}`,
  ];
}

export function mysql(sql) {
  const r = spawnSync("mysql", [...mysqlArgs(), "-e", sql], { encoding: "utf8", timeout: 30000 });
  if (r.status !== 0) throw new Error(`mysql ${sql}: ${r.stderr || r.error}`);
  return r.stdout;
}

// ---------------------------------------------------------------------------------------------------
// The load balancer: a TCP proxy whose upstream can be switched (or turned off: connections are
// refused by closing them at once), and whose live connections can be cut.

export async function startLb(targetPort) {
  let target = targetPort;
  const pairs = new Set();
  const server = net.createServer((client) => {
    if (target == null) {
      client.destroy();
      return;
    }
    const up = net.connect(target, "127.0.0.1");
    const pair = { client, up };
    pairs.add(pair);
    const close = () => {
      client.destroy();
      up.destroy();
      pairs.delete(pair);
    };
    client.on("error", close);
    up.on("error", close);
    client.on("close", close);
    up.on("close", close);
    client.pipe(up);
    up.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    /** Where new connections go (`null`: refused). */
    setTarget(p) {
      target = p;
    },
    get target() {
      return target;
    },
    get connections() {
      return pairs.size;
    },
    /** Cuts every live connection (the clients see the transport close). */
    dropAll() {
      for (const { client, up } of [...pairs]) {
        client.destroy();
        up.destroy();
      }
      pairs.clear();
    },
    close() {
      this.dropAll();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Sockets: a stock socket.io-client, with every received event recorded.

export class Recorder {
  constructor(socket) {
    this.socket = socket;
    this.events = []; // {ev, args, at}
    this.waiters = new Set();
    socket.onAny((ev, ...args) => this.push(ev, args));
    for (const ev of ["connect", "disconnect", "connect_error"]) {
      socket.on(ev, (...args) => this.push(`$${ev}`, args));
    }
  }

  push(ev, args) {
    this.events.push({ ev, args, at: Date.now() });
    for (const w of [...this.waiters]) w();
  }

  /** The first arguments of every `ev` received (after index `from`). */
  all(ev, from = 0) {
    return this.events.slice(from).filter((e) => e.ev === ev).map((e) => e.args[0]);
  }

  /** The number of events recorded so far (a mark for `from`). */
  get mark() {
    return this.events.length;
  }

  /** Waits until `n` events `ev` matching `pred` have arrived (after index `from`); returns their first arguments. */
  waitCount(ev, n, { pred = () => true, ms = 5000, from = 0 } = {}) {
    const matches = () =>
      this.events.slice(from).filter((e) => e.ev === ev && pred(e.args[0], e.args)).map((e) => e.args[0]);
    const now = matches();
    if (now.length >= n) return Promise.resolve(now.slice(0, n));
    let w;
    return withTimeout(
      new Promise((resolve) => {
        w = () => {
          const m = matches();
          if (m.length >= n) resolve(m.slice(0, n));
        };
        this.waiters.add(w);
      }),
      ms,
      `${n} × ${ev}`,
    )
      .catch((e) => {
        const m = matches();
        throw new Error(`${e.message} (got ${m.length}: ${JSON.stringify(m).slice(0, 600)})`);
      })
      .finally(() => this.waiters.delete(w));
  }

  /** Waits for the first `ev` matching `pred` (after index `from`). */
  async waitFor(ev, opts = {}) {
    return (await this.waitCount(ev, 1, opts))[0];
  }

  /** Asserts that no `ev` matching `pred` arrives (after `from`) within `ms`. */
  async none(ev, { pred = () => true, ms = 500, from = 0 } = {}) {
    await sleep(ms);
    const got = this.events.slice(from).filter((e) => e.ev === ev && pred(e.args[0], e.args));
    if (got.length) throw new Error(`unexpected ${ev}: ${JSON.stringify(got.map((e) => e.args[0])).slice(0, 400)}`);
  }
}

/** Emits with an ack and waits for it (at most `ms`). */
export function ack(socket, ev, ...args) {
  let ms = 5000;
  if (args.length && args[args.length - 1] && typeof args[args.length - 1] === "object" && "$ms" in args[args.length - 1]) {
    ms = args.pop().$ms;
  }
  return withTimeout(socket.timeout(ms + 100).emitWithAck(ev, ...args), ms, `ack of ${ev}`);
}

// ---------------------------------------------------------------------------------------------------
// The stack

export async function startStack(name, { gatewayEnv = {} } = {}) {
  for (const [k, b] of Object.entries(BIN)) {
    if (!fs.existsSync(b)) throw new Error(`${k} binary missing at ${b} (cargo build -p chat-api -p chat-gateway -p chat-worker)`);
  }
  const id = rand();
  const dbName = `chat_test_gw_${name.replace(/[^a-z0-9_]/gi, "_")}_${id}`;
  const prefix = `gwtest-${name}-${id}`;
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), `chat-gw-e2e-${name}-`));
  mysql(`CREATE DATABASE ${dbName}`);
  const dbUrl = new URL(DB_BASE.href);
  dbUrl.pathname = `/${dbName}`;
  const baseEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    APP_ENV: "development",
    DATABASE_URL: dbUrl.href,
    REDIS_URL,
    REDIS_PREFIX: prefix,
    BIND_HOST: "127.0.0.1",
    API_RATE_LIMIT_PER_MINUTE: "1000000",
    LOG_FORMAT: "text",
    RUST_LOG: process.env.GATEWAY_E2E_RUST_LOG || "info",
    RUST_BACKTRACE: "1",
    NO_COLOR: "1",
  };
  const stack = new Stack(name, id, dbName, prefix, logDir, baseEnv, gatewayEnv);
  try {
    const m = spawnSync(BIN.api, ["migrate"], { env: baseEnv, encoding: "utf8", timeout: 120000 });
    if (m.status !== 0) throw new Error(`chat-api migrate failed: ${m.stdout}\n${m.stderr}`);
    await stack.boot();
  } catch (e) {
    await stack.stop(true);
    throw e;
  }
  return stack;
}

export class Stack {
  constructor(name, id, dbName, prefix, logDir, baseEnv, gatewayEnv) {
    Object.assign(this, { name, id, dbName, prefix, logDir, baseEnv, gatewayEnv });
    this.gateways = [];
    this.sockets = new Set();
    this.failed = false;
    this.generation = 0;
  }

  async boot() {
    const [apiPort, workerPort, g0, g1] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    this.apiPort = apiPort;
    this.apiUrl = `http://127.0.0.1:${apiPort}`;
    this.api = new Proc("api", BIN.api, ["serve"], { ...this.baseEnv, API_PORT: String(apiPort) }, this.logDir);
    this.workerPort = workerPort;
    this.startWorker();
    this.gateways = [this.spawnGateway(0, g0), this.spawnGateway(1, g1)];
    await Promise.all([
      waitReady(this.api, `${this.apiUrl}/ready`),
      waitReady(this.worker, `http://127.0.0.1:${workerPort}/ready`),
      ...this.gateways.map((g) => waitReady(g.proc, `${g.url}/ready`)),
    ]);
    this.lb = await startLb(g0);
    this.redis = await Redis.connect();
  }

  /** Starts gateway `i` on `port` with a fresh GATEWAY_ID (a restarted replica is a new one). */
  spawnGateway(i, port, env = {}) {
    const gid = `gw${i}-${this.id}-${this.generation++}`;
    const proc = new Proc(
      `gateway${i}-${gid}`,
      BIN.gateway,
      [],
      {
        ...this.baseEnv,
        ...GATEWAY_TIMINGS,
        ...this.gatewayEnv,
        ...env,
        GATEWAY_ID: gid,
        GATEWAY_PORT: String(port),
      },
      this.logDir,
    );
    return { index: i, id: gid, port, url: `http://127.0.0.1:${port}`, proc };
  }

  /** Starts an extra gateway (its own port and id) with `env` on top of the suite's settings. */
  async extraGateway(env = {}) {
    const g = this.spawnGateway(this.gateways.length, await freePort(), env);
    this.gateways.push(g);
    await waitReady(g.proc, `${g.url}/ready`);
    return g;
  }

  /** Stops gateway `i` with `signal`; returns its exit. */
  async stopGateway(i, signal = "SIGTERM") {
    return this.gateways[i].proc.stop(signal);
  }

  /** (Re)starts gateway `i` on its port, as a new replica, and waits until it is ready. */
  async restartGateway(i) {
    const old = this.gateways[i];
    if (old.proc.alive) await old.proc.stop("SIGTERM");
    const g = this.spawnGateway(i, old.port);
    this.gateways[i] = g;
    await waitReady(g.proc, `${g.url}/ready`);
    return g;
  }

  startWorker() {
    this.worker = new Proc(
      `worker-${this.generation++}`,
      BIN.worker,
      [],
      { ...this.baseEnv, WORKER_PORT: String(this.workerPort) },
      this.logDir,
    );
    return this.worker;
  }

  async restartWorker() {
    if (this.worker.alive) await this.worker.stop("SIGTERM");
    this.startWorker();
    await waitReady(this.worker, `http://127.0.0.1:${this.workerPort}/ready`);
  }

  /** A gateway's URL: index, `"lb"`, or a URL. */
  urlOf(target) {
    if (target === "lb") return this.lb.url;
    if (typeof target === "number") return this.gateways[target].url;
    return target;
  }

  /** Scrapes a gateway's /metrics into {name{labels}: value}. */
  async metrics(i) {
    const text = await (await fetch(`${this.gateways[i].url}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
    const out = {};
    for (const line of text.split("\n")) {
      if (!line || line.startsWith("#")) continue;
      const sp = line.lastIndexOf(" ");
      out[line.slice(0, sp)] = Number(line.slice(sp + 1));
    }
    return out;
  }

  // --- REST ---------------------------------------------------------------------------------------

  async rest(method, p, { token, body } = {}) {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    const r = await fetch(`${this.apiUrl}/api/v1${p}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10000),
    });
    const text = await r.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = text;
    }
    return { status: r.status, body: json };
  }

  async restOk(method, p, opts) {
    const r = await this.rest(method, p, opts);
    if (r.status < 200 || r.status >= 300) {
      throw new Error(`${method} ${p} → ${r.status} ${JSON.stringify(r.body)}`);
    }
    return r.body;
  }

  /** Registers a fresh user: {id, token, refreshToken, username}. */
  async user(name = "u") {
    const username = `${name}_${rand(5)}`;
    const b = await this.restOk("POST", "/auth/register", {
      body: { username, email: `${username}@example.com`, password: "correct horse battery" },
    });
    return { id: b.user.id, token: b.accessToken, refreshToken: b.refreshToken, username, user: b.user };
  }

  async users(...names) {
    return Promise.all(names.map((n) => this.user(n)));
  }

  /** Creates a room owned by `owner` (its admin): the room JSON (id, inviteCode, …). */
  async room(owner, { isPrivate = false, name = `room ${rand(3)}` } = {}) {
    return this.restOk("POST", "/rooms", { token: owner.token, body: { name, isPrivate } });
  }

  // --- sockets ------------------------------------------------------------------------------------

  /**
   * A stock socket.io-client socket for `user` (or `{auth}`/`{token}` options) to `target` (gateway
   * index, "lb" or URL). Resolves once connected (or rejects with the connect_error), with `.rec`
   * recording every event. `opts` go to `io()`.
   */
  async connect(target, user, opts = {}, { ms = 5000 } = {}) {
    const socket = this.socket(target, user, opts);
    await withTimeout(
      new Promise((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("connect_error", reject);
      }),
      ms,
      `connect to ${this.urlOf(target)}`,
    );
    return socket;
  }

  /** Like `connect`, without waiting. */
  socket(target, user, opts = {}) {
    const socket = io(this.urlOf(target), {
      forceNew: true,
      transports: ["websocket"],
      reconnection: false,
      timeout: 5000,
      ...(user ? { auth: { token: user.token } } : {}),
      ...opts,
    });
    socket.rec = new Recorder(socket);
    this.sockets.add(socket);
    return socket;
  }

  /** Connects `user` to `target` and joins `roomId`; returns the socket (its join ack in `.joined`). */
  async joined(target, user, roomId, extra = {}) {
    const s = await this.connect(target, user);
    const a = await ack(s, "join_room", { roomId, ...extra });
    if (!a.ok) throw new Error(`join_room failed: ${JSON.stringify(a)}`);
    s.joined = a;
    return s;
  }

  closeSockets() {
    for (const s of this.sockets) s.disconnect();
    this.sockets.clear();
  }

  // --- teardown -----------------------------------------------------------------------------------

  async stop(failed = this.failed) {
    this.closeSockets();
    await this.lb?.close();
    const procs = [this.api, this.worker, ...this.gateways.map((g) => g.proc)].filter(Boolean);
    if (failed) {
      for (const p of procs) {
        process.stderr.write(`\n----- ${p.name} (${p.log}), last lines -----\n${p.tail(30)}\n`);
      }
    }
    await Promise.all(procs.map((p) => p.stop("SIGTERM", 5000)));
    if (this.redis) {
      try {
        await this.redis.deletePattern(`${this.prefix}:*`);
      } catch {
        /* best effort */
      }
      this.redis.close();
    }
    try {
      mysql(`DROP DATABASE IF EXISTS ${this.dbName}`);
    } catch (e) {
      process.stderr.write(`could not drop ${this.dbName}: ${e.message}\n`);
    }
    if (failed || process.env.GATEWAY_E2E_KEEP_LOGS) {
      process.stderr.write(`service logs kept in ${this.logDir}\n`);
    } else {
      fs.rmSync(this.logDir, { recursive: true, force: true });
    }
  }
}

/**
 * One test file's stack and its tests: `const s = suite("name")`, then `s.test(title, async (stack, t) => …)`.
 * Sockets opened by a test are closed after it.
 */
export function suite(name, opts = {}) {
  const ctx = { stack: null };
  before(async () => {
    ctx.stack = await startStack(name, opts);
  }, { timeout: 120000 });
  afterEach(async () => {
    if (!ctx.stack) return;
    ctx.stack.closeSockets();
    // A test that stopped a gateway and failed before restarting it must not break the next ones.
    for (const i of [0, 1]) {
      if (!ctx.stack.gateways[i].proc.alive) await ctx.stack.restartGateway(i);
    }
    ctx.stack.lb.setTarget(ctx.stack.gateways[0].port);
  });
  after(async () => {
    await ctx.stack?.stop();
  }, { timeout: 60000 });
  ctx.test = (title, fn, { timeout = 30000, ...rest } = {}) =>
    test(title, { timeout, ...rest }, async (t) => {
      if (!ctx.stack) throw new Error("the stack did not start");
      try {
        await fn(ctx.stack, t);
      } catch (e) {
        ctx.stack.failed = true;
        throw e;
      }
    });
  return ctx;
}
