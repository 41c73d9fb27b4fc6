// The end-to-end harness: a fresh MariaDB database and Redis prefix, the API, two gateways and the
// persistence worker as real processes on free loopback ports, a switchable TCP "load balancer" in
// front of the gateways, and helpers for REST calls, stock socket.io-client sockets (every event they
// receive is recorded, so a test can wait for something that already arrived), a raw RESP client,
// JWT crafting and the shard function of the Redis key layout.
//
// Environment (all optional):
//   CHAT_API_BIN, CHAT_GATEWAY_BIN, CHAT_WORKER_BIN  the binaries (default: <target>/debug/chat-*)
//   CHAT_TEST_DATABASE_URL  mysql://user:pass@host:port (default mysql://chat:chat@127.0.0.1:3306)
//   CHAT_TEST_REDIS_URL     redis://host:port (default redis://127.0.0.1:6379), or a Redis Cluster as
//                           redis+cluster://host:port,… (the suites then run on it, with SPUBLISH)
//   GATEWAY_E2E_KEEP_LOGS=1 keep the services' logs (they are always kept, and their tails printed,
//                           when a test failed)

import { after, afterEach, before, test } from "node:test";
import { spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { io } from "socket.io-client";

import {
  BIN,
  DB_BASE,
  REDIS_URL,
  ROOT,
  Proc,
  Redis,
  freePort,
  mysql,
  sleep,
  startLb,
  waitReady,
} from "../../../../scripts/testlib/services.mjs";

export { BIN, ROOT, Redis, mysql, sleep, startLb };

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

/** Whether the suite runs on a Redis Cluster (CHAT_TEST_REDIS_URL=redis+cluster://…). */
export const CLUSTER = REDIS_URL.startsWith("redis+cluster://");

/** The services' SHARDS (their default: 8 on a single Redis, 16 on a cluster). */
export const SHARDS = Number(process.env.SHARDS || (CLUSTER ? 16 : 8));

/** FNV-1a 64 over the 16 bytes of a UUID, modulo `shards` (chat_bus::shard_of). */
export function shardOf(uuid, shards = SHARDS) {
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

/**
 * Starts a stack. `redisUrl`: another Redis than CHAT_TEST_REDIS_URL (the chaos suite's own);
 * `perGatewayEnv[i]`: settings of gateway `i` only (on top of `gatewayEnv`).
 */
export async function startStack(name, { gatewayEnv = {}, redisUrl = REDIS_URL, perGatewayEnv = [] } = {}) {
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
    REDIS_URL: redisUrl,
    REDIS_PREFIX: prefix,
    BIND_HOST: "127.0.0.1",
    API_RATE_LIMIT_PER_MINUTE: "1000000",
    LOG_FORMAT: "text",
    RUST_LOG: process.env.GATEWAY_E2E_RUST_LOG || "info",
    RUST_BACKTRACE: "1",
    NO_COLOR: "1",
  };
  const stack = new Stack(name, id, dbName, prefix, logDir, baseEnv, gatewayEnv);
  stack.redisUrl = redisUrl;
  stack.perGatewayEnv = perGatewayEnv;
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
    this.redis = await Redis.connect(this.redisUrl);
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
        ...(this.perGatewayEnv?.[i] ?? {}),
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
