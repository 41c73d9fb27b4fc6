// The stack the browser test runs against: a fresh MariaDB database and Redis prefix, the API (serving
// web/dist), two gateways and the persistence worker as real processes on free loopback ports, and a
// TCP proxy in front of gateway 1 whose connections the test can cut (and refuse for a while).
//
// Environment (all optional): CHAT_API_BIN, CHAT_GATEWAY_BIN, CHAT_WORKER_BIN (default
// <target>/debug/chat-*), CHAT_TEST_DATABASE_URL (mysql://chat:chat@127.0.0.1:3306),
// CHAT_TEST_REDIS_URL (redis://127.0.0.1:6379), WEB_E2E_KEEP_LOGS=1.

import { spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
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
} from "../../scripts/testlib/services.mjs";

export { ROOT };
export const WEB = path.join(ROOT, "web");
export { sleep };

/** Deletes the Redis keys matching `pattern`. */
async function redisDelete(pattern) {
  const r = await Redis.connect(REDIS_URL);
  try {
    await r.deletePattern(pattern);
  } finally {
    r.close();
  }
}

/** A TCP proxy to `target`: `cut()` drops its connections, `refuse(true)` turns new ones away. */
async function proxy(target) {
  const lb = await startLb(target);
  return {
    port: lb.port,
    refuse: (on) => lb.setTarget(on ? null : target),
    cut: () => lb.dropAll(),
    close: () => lb.close(),
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
