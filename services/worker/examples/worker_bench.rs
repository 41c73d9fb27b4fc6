//! Benchmark of the persistence worker, end to end from Redis Streams into MariaDB, side by side with a
//! naive path that inserts one row per message.
//!
//! ```text
//! cargo run --release -p chat-worker --example worker_bench
//! ```
//!
//! Uses the test servers (`CHAT_TEST_DATABASE_URL`, `CHAT_TEST_REDIS_URL`), a fresh database and Redis
//! prefix per phase, dropped afterwards. Settings: `BENCH_MESSAGES` (default 200000), `BENCH_NAIVE`
//! (20000), `BENCH_ROOMS` (1000), `BENCH_SHARDS` (8), `BENCH_LAG_SECS` (10).
//!
//! 1. **Drain**: the shard streams are filled with `BENCH_MESSAGES` new-message entries, then the real
//!    worker (`Application`) starts; rows/s = messages / time until the last one is committed.
//! 2. **Naive**: the same kind of entries, read from the streams (100 at a time) by one consumer, then
//!    by one consumer loop per shard (the worker's parallelism), each message written with its own
//!    autocommitted `INSERT` — what the reference systems do per message.
//! 3. **Lag**: a producer appends at 50% of the drain rate for `BENCH_LAG_SECS` while the worker runs;
//!    the lag of an entry is the time from its `XADD` (the entry id's clock) to its commit.
#![allow(clippy::unwrap_used)]

use anyhow::Context;
use chat_bus::stream::{encode, Envelope, Event, MessageCreated};
use chat_bus::{shard_of, Bus, PERSIST_GROUP};
use chat_config::Config;
use chat_store::messages::NewMessage;
use chat_store::Store;
use chat_testkit::TestEnv;
use chat_worker::streams::{read_group, Body};
use chat_worker::Application;
use deadpool_redis::redis;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use uuid::Uuid;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct World {
    env: TestEnv,
    store: Store,
    bus: Bus,
    shards: u16,
    users: Vec<Uuid>,
    rooms: Vec<Uuid>,
    next_seq: HashMap<Uuid, i64>,
    /// Messages made so far (client message ids are unique per sender and room).
    made: usize,
}

impl World {
    async fn new(users: usize, rooms: usize, shards: u16) -> anyhow::Result<Self> {
        let env = TestEnv::new().await?;
        let store = Store::connect(&env.database_url, 16).await?;
        let bus = Bus::new(&env.redis_url, &env.redis_prefix)?;
        let seeded = chat_testkit::seed_users_and_rooms(&store, users, rooms, false).await?;
        let (user_ids, room_ids) = (seeded.users, seeded.rooms);
        Ok(Self {
            env,
            store,
            bus,
            shards,
            users: user_ids,
            rooms: room_ids,
            next_seq: HashMap::new(),
            made: 0,
        })
    }

    /// `n` new messages, round-robin over the rooms, ~100 characters of content each.
    fn messages(&mut self, n: usize) -> Vec<Envelope> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let i = self.made;
            self.made += 1;
            let room = self.rooms[i % self.rooms.len()];
            let seq = self.next_seq.entry(room).or_insert(1);
            out.push(Envelope::new(Event::MessageCreated(MessageCreated {
                id: Uuid::now_v7(),
                room_id: room,
                seq: *seq,
                sender_id: self.users[i % self.users.len()],
                kind: "text".into(),
                content: format!(
                    "message {seq} — the quick brown fox jumps over the lazy dog, then it rests a while"
                ),
                client_msg_id: Some(format!("client-{i}")),
                created_at: chrono::Utc::now().timestamp_millis(),
            })));
            *seq += 1;
        }
        out
    }

    /// Appends pre-encoded entries, pipelined per shard.
    async fn append(&self, events: &[Envelope]) -> anyhow::Result<()> {
        let mut by_shard: HashMap<u16, Vec<Vec<u8>>> = HashMap::new();
        for e in events {
            by_shard
                .entry(e.shard(self.shards))
                .or_default()
                .push(encode(e));
        }
        for (shard, payloads) in by_shard {
            for chunk in payloads.chunks(2_000) {
                self.bus.append_raw(shard, chunk).await?;
            }
        }
        Ok(())
    }

    fn config(&self) -> anyhow::Result<Config> {
        let mut vars: HashMap<String, String> = self.env.vars().into_iter().collect();
        vars.insert("WORKER_PORT".into(), "0".into());
        vars.insert("BIND_HOST".into(), "127.0.0.1".into());
        vars.insert("SHARDS".into(), self.shards.to_string());
        vars.insert("WORKER_CONSUMER".into(), "bench".into());
        // WORKER_* settings of the environment (batch size, wait) apply to the benchmarked worker.
        for (k, v) in std::env::vars().filter(|(k, _)| k.starts_with("WORKER_")) {
            vars.insert(k, v);
        }
        Ok(Config::from_map(&vars)?)
    }

    async fn count(&self) -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM messages")
            .fetch_one(self.store.pool())
            .await?;
        Ok(n)
    }
}

/// Starts the worker; returns its metrics and a stop handle.
async fn start_worker(
    w: &World,
) -> anyhow::Result<(
    std::sync::Arc<chat_worker::Metrics>,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
)> {
    let app = Application::build(w.config()?).await?;
    let metrics = app.metrics();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    Ok((metrics, tx, task))
}

async fn drain(messages: usize, rooms: usize, shards: u16) -> anyhow::Result<(f64, World)> {
    let mut w = World::new(100, rooms, shards).await?;
    let msgs = w.messages(messages);
    let t = Instant::now();
    w.append(&msgs).await?;
    eprintln!(
        "drain: {messages} entries appended in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let (metrics, stop, task) = start_worker(&w).await?;
    let start = Instant::now();
    while metrics.events[0].load(Relaxed) < messages as u64 {
        anyhow::ensure!(
            metrics.dead_letters.load(Relaxed) == 0,
            "dead letters in the drain"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = stop.send(());
    task.await??;
    let rows = w.count().await?;
    anyhow::ensure!(
        rows == messages as i64,
        "expected {messages} rows, found {rows}"
    );
    eprintln!(
        "drain: {messages} rows in {secs:.2} s, {} batches",
        metrics.batches.load(Relaxed)
    );
    Ok((messages as f64 / secs, w))
}

async fn naive(messages: usize, rooms: usize, shards: u16) -> anyhow::Result<f64> {
    let mut w = World::new(100, rooms, shards).await?;
    let msgs = w.messages(messages);
    w.append(&msgs).await?;
    let start = Instant::now();
    let mut loops = Vec::new();
    for shard in 0..shards {
        w.bus.ensure_persist_group(shard).await?;
        let key = w.bus.keys().stream(shard);
        let store = w.store.clone();
        let mut conn = w.bus.dedicated(Duration::from_secs(10)).await?;
        loops.push(tokio::spawn(async move {
            let mut written = 0u64;
            loop {
                let entries = read_group(&mut conn, &key, PERSIST_GROUP, "naive", 100, None, ">")
                    .await
                    .context("XREADGROUP")?;
                if entries.is_empty() {
                    return anyhow::Ok(written);
                }
                let mut ids = Vec::with_capacity(entries.len());
                for e in entries {
                    if let Body::Payload(raw) = e.body {
                        let env = chat_bus::stream::decode(&raw)?;
                        if let Event::MessageCreated(m) = env.event {
                            store
                                .insert_message_naive(&NewMessage {
                                    id: m.id,
                                    room_id: m.room_id,
                                    seq: m.seq,
                                    sender_id: m.sender_id,
                                    kind: m.kind,
                                    content: m.content,
                                    client_msg_id: m.client_msg_id,
                                    created_at: chrono::DateTime::from_timestamp_millis(
                                        m.created_at,
                                    )
                                    .unwrap_or_default(),
                                })
                                .await?;
                            written += 1;
                        }
                    }
                    ids.push(e.id);
                }
                let _: () = redis::cmd("XACK")
                    .arg(&key)
                    .arg(PERSIST_GROUP)
                    .arg(&ids)
                    .query_async(&mut conn)
                    .await?;
            }
        }));
    }
    let mut total = 0;
    for l in loops {
        total += l.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(total == messages as u64, "naive wrote {total}");
    eprintln!("naive: {messages} rows in {secs:.2} s");
    Ok(messages as f64 / secs)
}

/// Appends at `rate`/s for `secs` while the worker runs; returns (achieved rate, p50, p99, max lag ms).
async fn lag(w: &mut World, rate: f64, secs: u64) -> anyhow::Result<(f64, u64, u64, u64)> {
    let total = (rate * secs as f64) as usize;
    let msgs = w.messages(total);
    let encoded: Vec<(u16, Vec<u8>)> = msgs
        .iter()
        .map(|e| (shard_of(e.event.shard_key(), w.shards), encode(e)))
        .collect();
    let (metrics, stop, task) = start_worker(w).await?;
    let before = metrics.events[0].load(Relaxed);
    let bus = w.bus.clone();
    let start = Instant::now();
    let mut sent = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    while sent < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate) as usize).min(total);
        if due > sent {
            let mut pipe = redis::pipe();
            for (shard, payload) in &encoded[sent..due] {
                pipe.cmd("XADD")
                    .arg(bus.keys().stream(*shard))
                    .arg("*")
                    .arg("e")
                    .arg(payload.as_slice())
                    .ignore();
            }
            let mut c = bus.conn().await?;
            let _: () = pipe.query_async(&mut *c).await?;
            sent = due;
        }
    }
    let achieved = sent as f64 / start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(secs * 10 + 60);
    while metrics.events[0].load(Relaxed) < before + total as u64 {
        anyhow::ensure!(
            Instant::now() < deadline && metrics.dead_letters.load(Relaxed) == 0,
            "the worker did not persist every entry (dead letters: {})",
            metrics.dead_letters.load(Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (p50, n) = metrics.lag_quantile_ms(0.5);
    let (p99, _) = metrics.lag_quantile_ms(0.99);
    let (max, _) = metrics.lag_quantile_ms(1.0);
    let _ = stop.send(());
    task.await??;
    eprintln!(
        "lag: {n} samples for {total} entries ({} applied, {} claimed) at {achieved:.0}/s: p50 {p50} ms, p99 {p99} ms, max {max} ms",
        metrics.events[0].load(Relaxed),
        metrics.claimed.load(Relaxed)
    );
    Ok((achieved, p50, p99, max))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let messages = setting("BENCH_MESSAGES", 200_000) as usize;
    let naive_n = setting("BENCH_NAIVE", 20_000) as usize;
    let rooms = setting("BENCH_ROOMS", 1_000) as usize;
    let shards = setting("BENCH_SHARDS", 8) as u16;
    let lag_secs = setting("BENCH_LAG_SECS", 10);

    let (batched, mut world) = drain(messages, rooms, shards).await?;
    let naive_one = naive(naive_n, rooms, 1).await?;
    let naive_rate = naive(naive_n, rooms, shards).await?;
    let (achieved, p50, p99, max) = lag(&mut world, batched * 0.5, lag_secs).await?;

    println!("| path | messages | rows/s |");
    println!("|---|---|---|");
    println!(
        "| worker (batches of up to 1,000, one transaction each) | {messages} | {batched:.0} |"
    );
    println!(
        "| naive, 1 consumer (one autocommitted INSERT per message) | {naive_n} | {naive_one:.0} |"
    );
    println!(
        "| naive, {shards} consumers (one autocommitted INSERT per message) | {naive_n} | {naive_rate:.0} |"
    );
    println!();
    println!(
        "speed-up: {:.1}x over 1 naive consumer, {:.1}x over {shards}",
        batched / naive_one,
        batched / naive_rate
    );
    println!(
        "lag at {achieved:.0} msg/s (50% of the drain rate) for {lag_secs} s: p50 {p50} ms, p99 {p99} ms, max {max} ms"
    );
    Ok(())
}
