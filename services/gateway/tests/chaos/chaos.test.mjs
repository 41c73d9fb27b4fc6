// The chaos suite (issue 17): faults injected while senders and receivers run, each followed by the
// same checks — every acknowledged message is in MySQL exactly once, `seq` is gap-free per room,
// every receiver has every acknowledged message of its rooms once and in order, the dead-letter
// streams are empty, and no service but the one a fault killed needed a restart. A table of what
// each fault cost (acked, lost, duplicated, the longest stretch without an ack, the time MySQL took
// to catch up) is printed and written to target/test-artifacts/chaos.md.
//
// The stack runs on a Redis of its own (AOF, as the project runs it), so it can be killed; gateway 1
// reaches it through the test load balancer (startLb), which can slow and cut the link.
// Run: scripts/test.d/47-chaos.sh (in `make test`) or `make chaos`.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after } from "node:test";
import { mariadbAvailable, startMariadb } from "./mariadbproc.mjs";

// MariaDB too is the suite's own, so it can be stopped. The harness reads CHAT_TEST_DATABASE_URL when
// it loads: point it there first, then load the harness.
const onCluster = (process.env.CHAT_TEST_REDIS_URL || "").startsWith("redis+cluster://");
const maria = !onCluster && mariadbAvailable() ? await startMariadb() : null;
if (maria) process.env.CHAT_TEST_DATABASE_URL = maria.url;
const { CLUSTER, ROOT, Redis, SHARDS, ack, eventually, mysql, sleep, startLb, suite } = await import("../js/harness.mjs");
const { startRedis } = await import("./redisproc.mjs");

const LOG_DIR = fs.mkdtempSync(path.join(process.env.TMPDIR || "/tmp", "chat-chaos-"));
const redis = CLUSTER ? null : await startRedis(LOG_DIR);
// Gateway 1 reaches Redis through a TCP proxy that can slow and cut the link.
const proxy = redis ? await startLb(redis.port) : null;
after(async () => {
  await proxy?.close();
  await redis?.stop();
  await maria?.remove();
  if (!process.env.GATEWAY_E2E_KEEP_LOGS) fs.rmSync(LOG_DIR, { recursive: true, force: true });
});

const ROWS = [];
after(() => {
  if (!ROWS.length) return;
  const head = "| fault | acked | lost | duplicated | longest stretch without an ack | MySQL caught up after | notes |\n|---|---:|---:|---:|---:|---:|---|\n";
  const table = head + ROWS.map((r) => `| ${r.fault} | ${r.acked} | ${r.lost} | ${r.duplicated} | ${r.outage} ms | ${r.drain} ms | ${r.note} |`).join("\n");
  console.log(`# chaos results\n${table.split("\n").map((l) => `# ${l}`).join("\n")}`);
  const dir = path.join(ROOT, "target", "test-artifacts");
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "chaos.md"), `${table}\n`);
});

const s = CLUSTER
  ? null
  : suite("chaos", {
      redisUrl: redis.url,
      gatewayEnv: { MESSAGE_RATE_LIMIT: "100000" },
      perGatewayEnv: [{}, { REDIS_URL: `redis://127.0.0.1:${proxy.port}` }],
    });

const SENDERS = 4;
const ROOMS = 6;

/** Senders and receivers over fresh rooms; `start()` runs the senders until `stop()`. */
async function traffic(st) {
  const users = await st.users(...Array.from({ length: SENDERS }, (_, i) => `s${i}`), "r0", "r1");
  const senders = users.slice(0, SENDERS);
  const rooms = [];
  for (let i = 0; i < ROOMS; i++) rooms.push(await st.room(senders[i % SENDERS]));
  for (const r of rooms) {
    for (const u of users) {
      if (u.id !== senders[rooms.indexOf(r) % SENDERS].id) await st.restOk("POST", `/rooms/${r.id}/join`, { token: u.token });
    }
  }
  const reconnecting = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 500, randomizationFactor: 0 };
  // Through the load balancer (gateway 0 unless a fault moves it), and on gateway 1 (via the proxy).
  const targets = ["lb", 1];
  const receivers = [];
  for (let i = 0; i < 2; i++) {
    const sock = await st.connect(targets[i], users[SENDERS + i], reconnecting);
    for (const r of rooms) assert.equal((await ack(sock, "join_room", { roomId: r.id })).ok, true);
    receivers.push(sock);
  }
  const socks = [];
  for (let i = 0; i < SENDERS; i++) {
    const sock = await st.connect(targets[i % 2], senders[i], reconnecting);
    for (const r of rooms) assert.equal((await ack(sock, "join_room", { roomId: r.id })).ok, true);
    socks.push(sock);
  }
  const t = { rooms, receivers, acked: new Map(), ackTimes: [], refused: 0, stopFlag: false, running: [] };
  t.start = () => {
    t.running = socks.map(async (sock, i) => {
      for (let n = 0; !t.stopFlag; n++) {
        const room = rooms[n % rooms.length];
        const clientMsgId = `c${i}-${n}`;
        // The same clientMsgId until acknowledged: a retry never makes a second message.
        while (!t.stopFlag) {
          let reply = null;
          try {
            reply = await ack(sock, "send_message", { roomId: room.id, content: clientMsgId, clientMsgId }, { $ms: 2000 });
          } catch {
            /* timed out: try again */
          }
          if (reply?.ok) {
            t.acked.set(reply.message.id, reply.message);
            t.ackTimes.push(Date.now());
            break;
          }
          t.refused++;
          await sleep(100);
        }
        await sleep(50);
      }
    });
  };
  t.stop = async () => {
    t.stopFlag = true;
    await Promise.all(t.running);
  };
  return t;
}

/** The checks after a fault; adds the fault's row to the table. */
async function check(st, t, fault, faultAt, note = "") {
  const stoppedAt = Date.now();
  const roomIds = t.rooms.map((r) => `UNHEX('${r.id.replaceAll("-", "")}')`).join(",");
  let rows = [];
  const unstored = () => {
    rows = mysql(`SELECT LOWER(HEX(id)), LOWER(HEX(room_id)), seq FROM ${st.dbName}.messages WHERE room_id IN (${roomIds}) ORDER BY room_id, seq`)
      .trim().split("\n").slice(1).filter(Boolean).map((l) => l.split("\t"));
    const stored = new Set(rows.map(([id]) => id));
    return [...t.acked.values()].filter((m) => !stored.has(m.id.replaceAll("-", "")));
  };
  let lost = [];
  try {
    await eventually(() => unstored().length === 0, 60000, "every acknowledged message in MySQL");
  } catch {
    lost = unstored();
  }
  const drain = Date.now() - stoppedAt;
  const ids = rows.map(([id]) => id);
  const duplicated = ids.length - new Set(ids).size;
  // Receivers: every acknowledged message of their rooms, once, in seq order per room.
  const missingAt = [];
  let deliveredTwice = 0;
  for (const [k, r] of t.receivers.entries()) {
    try {
      await eventually(() => {
        const got = new Set(r.rec.all("receive_message").map((m) => m.id));
        return [...t.acked.keys()].every((id) => got.has(id));
      }, 20000, `receiver ${k} got every acknowledged message`);
    } catch {
      const got = new Set(r.rec.all("receive_message").map((m) => m.id));
      missingAt.push([k, [...t.acked.keys()].filter((id) => !got.has(id)).length]);
    }
    const msgs = r.rec.all("receive_message");
    deliveredTwice += msgs.length - new Set(msgs.map((m) => m.id)).size;
    const lastSeq = new Map();
    for (const m of msgs) {
      assert.ok((lastSeq.get(m.roomId) ?? 0) < m.seq, `receiver ${k}: room ${m.roomId} seq ${m.seq} after ${lastSeq.get(m.roomId)}`);
      lastSeq.set(m.roomId, m.seq);
    }
  }
  // The longest stretch without any acknowledged send, from a second before the fault.
  const times = [...t.ackTimes].sort((a, b) => a - b);
  let outage = 0;
  for (let i = 1; i < times.length; i++) {
    if (times[i] > faultAt - 1000) outage = Math.max(outage, times[i] - times[i - 1]);
  }
  ROWS.push({ fault, acked: t.acked.size, lost: lost.length, duplicated: duplicated + deliveredTwice, outage, drain, note });
  console.log(`# ${fault}: ${t.acked.size} acked (${t.refused} refused attempts retried), ${lost.length} lost, ${duplicated} stored twice, ${deliveredTwice} delivered twice, longest stretch without an ack ${outage} ms, MySQL caught up ${drain} ms after the senders stopped`);

  assert.deepEqual(lost.map((m) => [m.roomId, m.seq]), [], "acknowledged messages missing from MySQL");
  assert.equal(duplicated, 0, "a message stored twice");
  const byRoom = new Map();
  for (const [, room, seq] of rows) byRoom.set(room, [...(byRoom.get(room) ?? []), Number(seq)]);
  for (const [room, seqs] of byRoom) {
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1), `room ${room}: seq gap-free`);
  }
  assert.deepEqual(missingAt, [], "receivers missing acknowledged messages [receiver, count]");
  assert.equal(deliveredTwice, 0, "a message delivered twice to a receiver");
  // A connection of its own: the stack's may have died with a Redis the fault killed.
  const rc = await Redis.connect(redis.url);
  try {
    for (let shard = 0; shard < SHARDS; shard++) {
      const n = Number(await rc.command("XLEN", `${st.prefix}:v1:{${shard}}:dead`));
      assert.equal(n, 0, `dead letters on shard ${shard}`);
    }
  } finally {
    rc.close();
  }
  for (const [i, g] of st.gateways.entries()) assert.ok(g.proc.alive, `gateway ${i} still running`);
  assert.ok(st.api.alive, "the API still running");
  assert.ok(st.worker.alive, "the worker running");
}

/** Runs `fault` in the middle of traffic: 2 s before, the fault, 2 s after. */
async function scenario(st, name, fault) {
  const t = await traffic(st);
  t.start();
  await sleep(2000);
  const at = Date.now();
  const note = await fault(t);
  await sleep(2000);
  await t.stop();
  await check(st, t, name, at, note ?? "");
}

if (CLUSTER) {
  // The cluster's failover is tests/js/cluster.test.mjs; this suite drives its own single Redis.
} else {
  s.test("the worker killed with SIGKILL mid-batch, twice, and restarted", async (st) => {
    await scenario(st, "worker SIGKILL ×2", async () => {
      for (let i = 0; i < 2; i++) {
        await st.worker.stop("SIGKILL");
        await sleep(700);
        await st.restartWorker();
        await sleep(1000);
      }
    });
  }, { timeout: 120000 });

  s.test("gateway 0 killed with SIGKILL: its clients reconnect to gateway 1 and recover", async (st) => {
    await scenario(st, "gateway SIGKILL", async () => {
      st.lb.setTarget(null);
      await st.stopGateway(0, "SIGKILL");
      await sleep(300);
      st.lb.setTarget(st.gateways[1].port);
      await sleep(1000);
      await st.restartGateway(0); // a new replica, as the orchestrator would start
    });
  }, { timeout: 120000 });

  s.test("Redis killed with SIGKILL and started again from its AOF", async (st) => {
    await scenario(st, "Redis SIGKILL, restart from AOF", async () => {
      await redis.kill("SIGKILL");
      await sleep(1000);
      await redis.start();
    });
  }, { timeout: 120000 });

  s.test("Redis SHUTDOWN NOSAVE and started again", async (st) => {
    await scenario(st, "Redis SHUTDOWN NOSAVE, restart", async () => {
      spawnSync("redis-cli", ["-p", String(redis.port), "SHUTDOWN", "NOSAVE"], { timeout: 5000 });
      await redis.proc.exited;
      await sleep(1000);
      await redis.start();
    });
  }, { timeout: 120000 });

  s.test("MariaDB stopped for 20 s while traffic runs, then started again", async (st) => {
    await scenario(st, "MariaDB stopped 20 s, restarted", async (t) => {
      await maria.stop("SIGTERM");
      await sleep(20000);
      await maria.start();
      // The backlog the outage left (acked, not yet in MySQL), and how long the worker takes to drain it.
      const restarted = Date.now();
      const pending = [...t.acked.keys()];
      const storedCount = () => {
        const ids = pending.map((id) => `UNHEX('${id.replaceAll("-", "")}')`).join(",");
        return Number(mysql(`SELECT COUNT(*) FROM ${st.dbName}.messages WHERE id IN (${ids})`).trim().split("\n")[1]);
      };
      const backlog = pending.length - storedCount();
      await eventually(() => storedCount() === pending.length, 60000, "the outage's backlog in MySQL", 20);
      return `backlog of ${backlog} acked messages when MariaDB came back, drained in ${Date.now() - restarted} ms`;
    });
  }, { timeout: 180000, skip: !maria && "no mariadbd here (scripts/deps.sh installs MariaDB)" });

  s.test("gateway 1's link to Redis slowed by 300 ms, then cut for 3 s, then back", async (st) => {
    await scenario(st, "gateway↔Redis slow 300 ms, cut 3 s", async () => {
      proxy.setDelay(300);
      await sleep(2000);
      proxy.setTarget(null);
      proxy.dropAll();
      await sleep(3000);
      proxy.setDelay(0);
      proxy.setTarget(redis.port);
    });
  }, { timeout: 120000 });
}
