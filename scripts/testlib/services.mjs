// What the end-to-end suites share (services/gateway/tests/js/harness.mjs and web/test/stack.mjs), with
// no dependency beyond Node itself: the service binaries, child processes whose logs go to files and
// which die with the test process, readiness waits, free ports, the mysql client, a minimal RESP client
// and a switchable TCP proxy.
//
// Environment (all optional):
//   CHAT_API_BIN, CHAT_GATEWAY_BIN, CHAT_WORKER_BIN  the binaries (default: <target>/debug/chat-*)
//   CHAT_TEST_DATABASE_URL  mysql://user:pass@host:port (default mysql://chat:chat@127.0.0.1:3306)
//   CHAT_TEST_REDIS_URL     redis://host:port (default redis://127.0.0.1:6379), or a cluster's seed
//                           nodes as redis+cluster://host:port,host:port,…

import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, "../..");
const TARGET = process.env.CARGO_TARGET_DIR
  ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR)
  : path.join(ROOT, "target");
export const BIN = {
  api: process.env.CHAT_API_BIN || path.join(TARGET, "debug/chat-api"),
  gateway: process.env.CHAT_GATEWAY_BIN || path.join(TARGET, "debug/chat-gateway"),
  worker: process.env.CHAT_WORKER_BIN || path.join(TARGET, "debug/chat-worker"),
};
export const DB_BASE = new URL(process.env.CHAT_TEST_DATABASE_URL || "mysql://chat:chat@127.0.0.1:3306");
export const REDIS_URL = process.env.CHAT_TEST_REDIS_URL || "redis://127.0.0.1:6379";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A free loopback TCP port. */
export async function freePort() {
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


// ---------------------------------------------------------------------------------------------------
// A minimal Redis client (RESP2 over a socket), enough to PUBLISH, read and clean up keys; on a
// cluster (a redis+cluster:// URL) the same interface routes each command by following MOVED.

export class Redis {
  static async connect(url = REDIS_URL) {
    if (url.startsWith("redis+cluster://")) return ClusterRedis.connect(url);
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

  /** The publish command the services subscribe to in this mode. */
  get publish() {
    return "PUBLISH";
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

/** CRC16/XMODEM of a key's hash tag (or of the key), mod 16384: its Redis Cluster slot. */
function slotOf(key) {
  const open = key.indexOf("{");
  if (open >= 0) {
    const close = key.indexOf("}", open + 1);
    if (close > open + 1) key = key.slice(open + 1, close);
  }
  let crc = 0;
  for (const b of Buffer.from(key)) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

/** A Redis Cluster: one connection per node; each command goes to its key's slot's node, learnt
 * from MOVED replies (so it follows a failover too). */
class ClusterRedis {
  static async connect(url) {
    const seeds = url
      .slice("redis+cluster://".length)
      .split(",")
      .map((s) => s.trim().replace(/^redis:\/\//, ""))
      .filter(Boolean);
    const c = new ClusterRedis(seeds);
    await c.node(seeds[0]);
    return c;
  }

  constructor(seeds) {
    this.seeds = seeds;
    this.nodes = new Map();
    this.slots = new Map();
  }

  node(addr) {
    let n = this.nodes.get(addr);
    if (!n) {
      n = Redis.connect(`redis://${addr}`);
      n.catch(() => this.nodes.delete(addr));
      this.nodes.set(addr, n);
    }
    return n;
  }

  get publish() {
    return "SPUBLISH";
  }

  async command(...args) {
    const slot = args.length > 1 ? slotOf(String(args[1])) : -1;
    let addr = this.slots.get(slot) || this.seeds[0];
    for (let attempt = 0; ; attempt++) {
      let n;
      try {
        n = await this.node(addr);
        return await n.command(...args);
      } catch (e) {
        const moved = /^MOVED \d+ (\S+)/.exec(e.message || "");
        if (attempt >= 20) throw e;
        if (moved) {
          addr = moved[1];
          this.slots.set(slot, addr);
        } else if (!e.message || /closed|ECONNREFUSED|ECONNRESET|CLUSTERDOWN|TRYAGAIN/.test(e.message)) {
          // A node went away (a failover): try the others until the slot's new owner answers.
          this.nodes.delete(addr);
          addr = this.seeds[(this.seeds.indexOf(addr) + 1) % this.seeds.length];
          await sleep(200);
        } else {
          throw e;
        }
      }
    }
  }

  /** The masters' addresses, from CLUSTER NODES. */
  async masters() {
    const text = await this.command("CLUSTER", "NODES");
    return text
      .split("\n")
      .map((l) => l.split(" "))
      .filter((f) => f.length > 2 && f[2].includes("master") && !f[2].includes("fail"))
      .map((f) => f[1].split("@")[0]);
  }

  /** Deletes every key under `pattern`: SCAN on every master, DEL one key at a time (slots differ). */
  async deletePattern(pattern) {
    for (const addr of await this.masters()) {
      const n = await this.node(addr);
      let cursor = "0";
      do {
        const [next, keys] = await n.command("SCAN", cursor, "MATCH", pattern, "COUNT", 1000);
        cursor = next;
        await Promise.all(keys.map((k) => this.command("DEL", k)));
      } while (cursor !== "0");
    }
  }

  close() {
    for (const n of this.nodes.values()) n.then((c) => c.close()).catch(() => {});
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

export class Proc {
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

export async function waitReady(proc, url, ms = 30000) {
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
// refused by closing them at once), whose live connections can be cut, and whose traffic can be
// held back (`setDelay`: every chunk that long in each direction, order kept — a slow link).

export async function startLb(targetPort) {
  let target = targetPort;
  let delayMs = 0;
  const pairs = new Set();
  const forward = (from, to) =>
    from.on("data", (chunk) => {
      if (delayMs === 0) {
        // As pipe() would: a reader that does not read slows the writer (the slow-client tests).
        if (!to.write(chunk)) {
          from.pause();
          to.once("drain", () => from.resume());
        }
      } else {
        // Timers of equal delay fire in the order they were set: chunks keep their order.
        setTimeout(() => to.destroyed || to.write(chunk), delayMs);
      }
    });
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
    forward(client, up);
    forward(up, client);
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
    /** Holds every chunk `ms` in each direction (0: none). */
    setDelay(ms) {
      delayMs = ms;
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
