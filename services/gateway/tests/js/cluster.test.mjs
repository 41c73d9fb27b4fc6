// On a Redis Cluster only (CHAT_TEST_REDIS_URL=redis+cluster://…; scripts/test.d/45-cluster.sh starts
// one and runs this with the other suites): rooms spread over the masters, and a master killed with
// SIGKILL while messages flow loses no acknowledged message.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { CLUSTER, ROOT, ack, eventually, mysql, sleep, suite } from "./harness.mjs";

if (!CLUSTER) {
  test("cluster scenarios (skipped: CHAT_TEST_REDIS_URL is not a redis+cluster:// URL)", { skip: true }, () => {});
} else {
  clusterSuite();
}

/** The masters as `{addr, slots: [[from, to], …]}`, from CLUSTER SLOTS. */
async function masters(redis) {
  const by = new Map();
  for (const [from, to, [host, port]] of await redis.command("CLUSTER", "SLOTS")) {
    const addr = `${host}:${port}`;
    if (!by.has(addr)) by.set(addr, { addr, slots: [] });
    by.get(addr).slots.push([Number(from), Number(to)]);
  }
  return [...by.values()];
}

/** A command on one node (not routed by key). */
async function onNode(redis, addr, ...args) {
  const n = await redis.node(addr);
  return n.command(...args);
}

function clusterSuite() {
  const s = suite("cluster", { gatewayEnv: { MESSAGE_RATE_LIMIT: "100000" } }); // senders go flat out

  s.test("slots spread: with 1,000 rooms every master serves 20–50 % of the send scripts", async (st) => {
    const [alice] = await st.users("alice");
    const rooms = [];
    for (let i = 0; i < 1000; i += 25) {
      rooms.push(...(await Promise.all(Array.from({ length: 25 }, () => st.room(alice)))));
    }
    for (let i = 0; i < rooms.length; i += 25) {
      await Promise.all(
        rooms.slice(i, i + 25).map((r) =>
          st.restOk("POST", `/rooms/${r.id}/messages`, { token: alice.token, body: { content: "hi" } }),
        ),
      );
    }
    // Each room's send script ran on the master that holds the room's keys: count the rooms' `seq`
    // keys on every master.
    const ms = await masters(st.redis);
    assert.equal(ms.length, 3, "three masters");
    const counts = {};
    for (const m of ms) {
      let cursor = "0";
      let n = 0;
      do {
        const [next, keys] = await onNode(st.redis, m.addr, "SCAN", cursor, "MATCH", `${st.prefix}:v1:*:room:*:seq`, "COUNT", 1000);
        cursor = next;
        n += keys.length;
      } while (cursor !== "0");
      counts[m.addr] = n;
    }
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    assert.equal(total, 1000, `every room's keys on some master: ${JSON.stringify(counts)}`);
    console.log(`# send scripts per master: ${JSON.stringify(counts)}`);
    for (const [addr, n] of Object.entries(counts)) {
      assert.ok(n >= 200 && n <= 500, `master ${addr} served ${n / 10} % of the sends`);
    }
  }, { timeout: 120000 });

  s.test("failover: a master killed with SIGKILL while senders run loses no acknowledged message", async (st) => {
    const users = await st.users("s0", "s1", "s2", "s3", "reader");
    const reader = users[4];

    // The victim: the master holding the gateways' liveness (`gw:alive`), so the failover also tests
    // that the gateways do not take each other for dead. Rooms are created until some live on it
    // (a room's keys carry its shard's hash tag: found from its `seq` key after one send).
    const before = await masters(st.redis);
    const aliveSlot = Number(await st.redis.command("CLUSTER", "KEYSLOT", `${st.prefix}:v1:gw:alive`));
    const victim = before.find((m) => m.slots.some(([a, b]) => aliveSlot >= a && aliveSlot <= b)).addr;
    const masterOf = async (roomId) => {
      for (const m of before) {
        const [, keys] = await onNode(st.redis, m.addr, "SCAN", "0", "MATCH", `${st.prefix}:v1:*:room:${roomId}:seq`, "COUNT", 100000);
        if (keys.length) return m.addr;
      }
      return null;
    };
    const rooms = [];
    let onVictim = 0;
    while (rooms.length < 12 || (onVictim < 3 && rooms.length < 60)) {
      const owner = users[rooms.length % 4];
      const r = await st.room(owner);
      await st.restOk("POST", `/rooms/${r.id}/messages`, { token: owner.token, body: { content: "warm-up" } });
      if ((await masterOf(r.id)) === victim) onVictim++;
      rooms.push(r);
    }
    assert.ok(onVictim >= 1, `some rooms live on the victim ${victim}`);
    for (const r of rooms) await st.restOk("POST", `/rooms/${r.id}/join`, { token: reader.token });
    const recv = await st.connect(1, reader);
    for (const r of rooms) assert.equal((await ack(recv, "join_room", { roomId: r.id })).ok, true);
    const senders = [];
    for (let i = 0; i < 4; i++) {
      const sock = await st.connect(0, users[i]);
      for (const r of rooms.filter((_, k) => k % 4 === i)) assert.equal((await ack(sock, "join_room", { roomId: r.id })).ok, true);
      senders.push({ sock, rooms: rooms.filter((_, k) => k % 4 === i) });
    }
    const pid = Number(/process_id:(\d+)/.exec(await onNode(st.redis, victim, "INFO", "server"))[1]);

    const acked = new Map(); // id -> message
    const ackTimes = [];
    let stop = false;
    let failures = 0;
    const runSender = async (snd, i) => {
      let n = 0;
      while (!stop) {
        for (const r of snd.rooms) {
          const clientMsgId = `c${i}-${n++}`;
          for (;;) {
            let reply;
            try {
              reply = await ack(snd.sock, "send_message", { roomId: r.id, content: clientMsgId, clientMsgId }, { $ms: 3000 });
            } catch {
              reply = null;
            }
            if (reply?.ok) {
              acked.set(reply.message.id, reply.message);
              ackTimes.push(Date.now());
              break;
            }
            if (failures++ < 3 || (failures % 100 === 0)) console.log(`# send refused: ${JSON.stringify(reply)}`);
            if (stop) break; // never acknowledged: nothing is owed for it
            await sleep(100); // and again, with the same clientMsgId
          }
        }
        await sleep(20);
      }
    };
    const running = senders.map(runSender);
    await sleep(2000);
    const killedAt = Date.now();
    process.kill(pid, "SIGKILL");
    console.log(`# killed master ${victim} (pid ${pid})`);
    await eventually(async () => {
      const now = await masters(st.redis);
      return now.length === 3 && !now.some((m) => m.addr === victim);
    }, 20000, "a replica took over the victim's slots", 200);
    console.log(`# replica promoted after ${Date.now() - killedAt} ms`);
    await sleep(3000);
    stop = true;
    await Promise.all(running);

    // The outage clients saw: the longest stretch without any acknowledged send.
    ackTimes.sort((a, b) => a - b);
    let outage = 0;
    for (let i = 1; i < ackTimes.length; i++) {
      if (ackTimes[i] > killedAt - 1000) outage = Math.max(outage, ackTimes[i] - ackTimes[i - 1]);
    }
    console.log(`# outage seen by senders: ${outage} ms (${acked.size} acknowledged, ${failures} failed attempts retried)`);
    assert.ok(acked.size > 50, `messages flowed (${acked.size})`);

    // Every acknowledged message reached the reader, once.
    try {
      await eventually(() => {
        const got = new Set(recv.rec.all("receive_message").map((m) => m.id));
        return [...acked.keys()].every((id) => got.has(id));
      }, 15000, "the reader got every acknowledged message");
    } catch (e) {
      const got = new Set(recv.rec.all("receive_message").map((m) => m.id));
      const missing = [...acked.values()].filter((m) => !got.has(m.id));
      const byRoom = {};
      for (const m of missing) (byRoom[m.roomId] ??= []).push(m.seq);
      console.log(`# missing at the reader: ${missing.length} ${JSON.stringify(byRoom)}`);
      // Where the subscriptions are: the shard channels of this stack on every node still up.
      const nodes = String(await st.redis.command("CLUSTER", "NODES")).trim().split("\n")
        .filter((l) => !l.includes("fail")).map((l) => l.split(" ")[1].split("@")[0]);
      for (const addr of nodes) {
        const chans = await onNode(st.redis, addr, "PUBSUB", "SHARDCHANNELS", `${st.prefix}:*`);
        const role = (await onNode(st.redis, addr, "ROLE"))[0];
        console.log(`# node ${addr} ${role}: ${chans.length} shard channels`);
      }
      throw e;
    }
    const ids = recv.rec.all("receive_message").map((m) => m.id);
    assert.equal(ids.length, new Set(ids).size, "no duplicates delivered");
    // The senders stayed connected to gateway 0 throughout: gateway 1 must not have reaped it while
    // the liveness key's master was down.
    const senderIds = new Set(users.slice(0, 4).map((u) => u.id));
    const offline = recv.rec.all("user_status").filter((e) => e.online === false && senderIds.has(e.userId));
    assert.deepEqual(offline, [], "no sender announced offline by the failover");

    // … and is in MySQL exactly once, with gap-free seqs per room.
    // (Sends that were refused may have been written all the same: count the acknowledged ones.)
    const storedRows = () => mysql(`SELECT LOWER(HEX(id)), LOWER(HEX(room_id)), seq FROM ${st.dbName}.messages ORDER BY room_id, seq`)
      .trim().split("\n").slice(1).map((l) => l.split("\t"));
    let rows = [];
    const unstored = () => {
      rows = storedRows();
      const stored = new Set(rows.map(([id]) => id));
      return [...acked.values()].filter((m) => !stored.has(m.id.replaceAll("-", "")));
    };
    try {
      await eventually(() => unstored().length === 0, 30000, "the worker persisted every acknowledged message");
    } catch (e) {
      const missing = unstored();
      console.log(`# acknowledged but not in MySQL: ${missing.length} ${JSON.stringify(missing.slice(0, 10).map((m) => [m.roomId, m.seq, m.id]))}`);
      throw e;
    }
    assert.equal(rows.length, new Set(rows.map(([id]) => id)).size, "each message once");
    const byRoom = new Map();
    for (const [, room, seq] of rows) {
      if (!byRoom.has(room)) byRoom.set(room, []);
      byRoom.get(room).push(Number(seq));
    }
    for (const [room, seqs] of byRoom) {
      assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1), `room ${room}: seq gap-free`);
    }

    // The killed node comes back (as a replica of its successor): `up` restarts missing nodes.
    const back = spawnSync("bash", [`${ROOT}/scripts/dev/redis-cluster.sh`, "up"], { encoding: "utf8", timeout: 60000 });
    assert.equal(back.status, 0, `${back.stdout}\n${back.stderr}`);
    await eventually(async () => /cluster_state:ok/.test(await onNode(st.redis, before.find((m) => m.addr !== victim).addr, "CLUSTER", "INFO")), 20000, "cluster ok again", 200);
  }, { timeout: 120000 });
}
