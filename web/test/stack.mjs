// The stack the browser test runs against: a fresh MariaDB database and Redis prefix, the API (serving
// web/dist), two gateways and the persistence worker as real processes on free loopback ports, and a
// TCP proxy in front of gateway 1 whose connections the test can cut (and refuse for a while).
//
// Environment (all optional): CHAT_API_BIN, CHAT_GATEWAY_BIN, CHAT_WORKER_BIN (default
// <target>/debug/chat-*), CHAT_TEST_DATABASE_URL (mysql://chat:chat@127.0.0.1:3306),
// CHAT_TEST_REDIS_URL (redis://127.0.0.1:6379), WEB_E2E_KEEP_LOGS=1.

import { spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const WEB = path.resolve(HERE, "..");
export const ROOT = path.resolve(WEB, "..");
const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : path.join(ROOT, "target");
const BIN = {
  api: process.env.CHAT_API_BIN || path.join(TARGET, "debug/chat-api"),
  gateway: process.env.CHAT_GATEWAY_BIN || path.join(TARGET, "debug/chat-gateway"),
  worker: process.env.CHAT_WORKER_BIN || path.join(TARGET, "debug/chat-worker"),
};
const DB_BASE = new URL(process.env.CHAT_TEST_DATABASE_URL || "mysql://chat:chat@127.0.0.1:3306");
const REDIS_URL = process.env.CHAT_TEST_REDIS_URL || "redis://127.0.0.1:6379";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

function mysql(sql) {
  const r = spawnSync(
    "mysql",
    [
      `-u${decodeURIComponent(DB_BASE.username)}`,
      `-p${decodeURIComponent(DB_BASE.password)}`,
      `-h${DB_BASE.hostname}`,
      `-P${DB_BASE.port || 3306}`,
      "-e",
      sql,
    ],
    { encoding: "utf8", timeout: 30000 },
  );
  if (r.status !== 0) throw new Error(`mysql ${sql}: ${r.stderr || r.error}`);
}

/** Deletes the Redis keys matching `pattern` (SCAN + DEL over a bare RESP connection). */
async function redisDelete(pattern) {
  const u = new URL(REDIS_URL);
  const sock = net.connect(Number(u.port || 6379), u.hostname || "127.0.0.1");
  await new Promise((resolve, reject) => {
    sock.once("connect", resolve);
    sock.once("error", reject);
  });
  let buf = "";
  const waiters = [];
  sock.on("data", (d) => {
    buf += d.toString("utf8");
    waiters.splice(0).forEach((w) => w());
  });
  const send = (...args) => sock.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join("")}`);
  const reply = async () => {
    // Enough of RESP for SCAN's reply: *2 $n cursor *k ($n key)…
    for (;;) {
      const m = /^\*2\r\n\$\d+\r\n(\d+)\r\n\*(\d+)\r\n/.exec(buf);
      if (m) {
        let rest = buf.slice(m[0].length);
        const keys = [];
        let ok = true;
        for (let i = 0; i < Number(m[2]); i++) {
          const k = /^\$(\d+)\r\n/.exec(rest);
          if (!k || rest.length < k[0].length + Number(k[1]) + 2) {
            ok = false;
            break;
          }
          keys.push(rest.slice(k[0].length, k[0].length + Number(k[1])));
          rest = rest.slice(k[0].length + Number(k[1]) + 2);
        }
        if (ok) {
          buf = rest;
          return { cursor: m[1], keys };
        }
      }
      await new Promise((r) => waiters.push(r));
    }
  };
  try {
    let cursor = "0";
    do {
      send("SCAN", cursor, "MATCH", pattern, "COUNT", 1000);
      const r = await reply();
      cursor = r.cursor;
      if (r.keys.length) {
        send("DEL", ...r.keys);
        // the integer reply of DEL
        for (;;) {
          const m = /^:\d+\r\n/.exec(buf);
          if (m) {
            buf = buf.slice(m[0].length);
            break;
          }
          await new Promise((r2) => waiters.push(r2));
        }
      }
    } while (cursor !== "0");
  } finally {
    sock.destroy();
  }
}

/** Every service started, so that a test process that dies early still takes them with it. */
const LIVE = new Set();
process.on("exit", () => {
  for (const c of LIVE) c.kill("SIGKILL");
});

class Proc {
  constructor(name, bin, args, env, logDir) {
    this.name = name;
    this.log = path.join(logDir, `${name}.log`);
    const fd = fs.openSync(this.log, "a");
    this.child = spawn(bin, args, { env, stdio: ["ignore", fd, fd] });
    fs.closeSync(fd);
    LIVE.add(this.child);
    this.exited = new Promise((resolve) =>
      this.child.once("exit", (code, signal) => {
        LIVE.delete(this.child);
        resolve((this.exit = { code, signal }));
      }),
    );
  }

  async stop() {
    if (this.exit) return;
    this.child.kill("SIGTERM");
    const done = await Promise.race([this.exited, sleep(5000).then(() => null)]);
    if (!done) {
      this.child.kill("SIGKILL");
      await this.exited;
    }
  }

  tail(n = 30) {
    try {
      return fs.readFileSync(this.log, "utf8").split("\n").slice(-n).join("\n");
    } catch {
      return "";
    }
  }
}

async function waitReady(proc, url, ms = 30000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (proc.exit) throw new Error(`${proc.name} exited (${JSON.stringify(proc.exit)}):\n${proc.tail()}`);
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error(`${proc.name} not ready at ${url}:\n${proc.tail()}`);
    await sleep(100);
  }
}

/** A TCP proxy to `target`: `cut()` drops its connections, `refuse(true)` turns new ones away. */
async function proxy(target) {
  const pairs = new Set();
  let refusing = false;
  const server = net.createServer((client) => {
    if (refusing) return client.destroy();
    const up = net.connect(target, "127.0.0.1");
    const pair = { client, up };
    pairs.add(pair);
    const close = () => {
      client.destroy();
      up.destroy();
      pairs.delete(pair);
    };
    for (const s of [client, up]) {
      s.on("error", close);
      s.on("close", close);
    }
    client.pipe(up);
    up.pipe(client);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: server.address().port,
    refuse(on) {
      refusing = on;
    },
    cut() {
      for (const { client, up } of [...pairs]) {
        client.destroy();
        up.destroy();
      }
      pairs.clear();
    },
    close() {
      this.cut();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

export async function startStack({ env = {} } = {}) {
  for (const [k, b] of Object.entries(BIN)) {
    if (!fs.existsSync(b)) throw new Error(`${k} binary missing at ${b} (cargo build -p chat-api -p chat-gateway -p chat-worker)`);
  }
  if (!fs.existsSync(path.join(WEB, "dist/index.html"))) throw new Error("web/dist is not built (node web/build.mjs)");
  const id = crypto.randomBytes(4).toString("hex");
  const dbName = `chat_test_web_${id}`;
  const prefix = `webtest-${id}`;
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), "chat-web-e2e-"));
  mysql(`CREATE DATABASE ${dbName}`);
  const dbUrl = new URL(DB_BASE.href);
  dbUrl.pathname = `/${dbName}`;
  const [apiPort, workerPort, g0, g1] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const cut = await proxy(g1);
  const gateways = [`http://127.0.0.1:${g0}`, `http://127.0.0.1:${cut.port}`];
  const base = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    APP_ENV: "development",
    DATABASE_URL: dbUrl.href,
    REDIS_URL,
    REDIS_PREFIX: prefix,
    BIND_HOST: "127.0.0.1",
    LOG_FORMAT: "text",
    RUST_LOG: "info",
    NO_COLOR: "1",
    API_RATE_LIMIT_PER_MINUTE: "100000",
    // Two login attempts per address: the test shows the rate-limit message after two wrong passwords.
    LOGIN_ATTEMPTS_PER_IP: "2",
    // 12 messages per 2 s per user and room: enough for the test's conversation, and a burst of 15
    // shows the rate-limit notice and the automatic resend.
    MESSAGE_RATE_LIMIT: "12",
    MESSAGE_RATE_WINDOW_MS: "2000",
    // Quick heartbeats, so a cut connection is noticed and presence moves within seconds.
    PRESENCE_TTL_SECS: "3",
    PRESENCE_HEARTBEAT_SECS: "1",
    TYPING_TIMEOUT_MS: "3000",
    SIO_PING_INTERVAL_MS: "1000",
    SIO_PING_TIMEOUT_MS: "1000",
    RECOVERY_WINDOW_SECS: "60",
    SHUTDOWN_DRAIN_SECS: "1",
    ...env,
  };
  const stack = {
    dbName,
    prefix,
    logDir,
    cut,
    gateways,
    procs: [],
    failed: false,
    url: `http://127.0.0.1:${apiPort}`,
    /** Forgets every Socket.IO session the gateways keep for recovery (`P:v1:sio:<pid>`). */
    forgetSessions() {
      return redisDelete(`${prefix}:v1:sio:*`);
    },
    async stop() {
      await Promise.all(this.procs.map((p) => p.stop()));
      await cut.close();
      if (this.failed) {
        for (const p of this.procs) process.stderr.write(`\n----- ${p.name} (${p.log}) -----\n${p.tail()}\n`);
      }
      try {
        await redisDelete(`${prefix}:*`);
      } catch {
        /* best effort */
      }
      try {
        mysql(`DROP DATABASE IF EXISTS ${dbName}`);
      } catch (e) {
        process.stderr.write(`could not drop ${dbName}: ${e.message}\n`);
      }
      if (this.failed || process.env.WEB_E2E_KEEP_LOGS) process.stderr.write(`service logs in ${logDir}\n`);
      else fs.rmSync(logDir, { recursive: true, force: true });
    },
  };
  try {
    const m = spawnSync(BIN.api, ["migrate"], { env: base, encoding: "utf8", timeout: 120000 });
    if (m.status !== 0) throw new Error(`chat-api migrate failed: ${m.stdout}\n${m.stderr}`);
    const api = new Proc("api", BIN.api, ["serve"], {
      ...base,
      API_PORT: String(apiPort),
      WEB_DIR: path.join(WEB, "dist"),
      // Both gateways are allowed by the page's CSP; each browser context is pointed at one of them.
      WEB_GATEWAY_URL: gateways.join(","),
    }, logDir);
    const worker = new Proc("worker", BIN.worker, [], { ...base, WORKER_PORT: String(workerPort) }, logDir);
    const gw = [g0, g1].map(
      (port, i) => new Proc(`gateway${i}`, BIN.gateway, [], { ...base, GATEWAY_PORT: String(port), GATEWAY_ID: `web-gw${i}-${id}` }, logDir),
    );
    stack.procs.push(api, worker, ...gw);
    await Promise.all([
      waitReady(api, `${stack.url}/ready`),
      waitReady(worker, `http://127.0.0.1:${workerPort}/ready`),
      ...gw.map((g, i) => waitReady(g, `http://127.0.0.1:${[g0, g1][i]}/ready`)),
    ]);
  } catch (e) {
    stack.failed = true;
    await stack.stop();
    throw e;
  }
  return stack;
}
