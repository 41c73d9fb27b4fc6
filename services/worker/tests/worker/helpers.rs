//! A test world: a fresh database with users and rooms, a Redis prefix, helpers to append events to the
//! shard streams, and the real worker started in-process (port 0) or as a child process.

use chat_bus::stream::{Envelope, Event, MessageCreated};
use chat_bus::{Bus, PERSIST_GROUP};
use chat_config::Config;
use chat_store::Store;
use chat_testkit::TestEnv;
use chat_worker::{Application, Metrics};
use deadpool_redis::redis;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub struct World {
    pub env: TestEnv,
    pub store: Store,
    pub bus: Bus,
    pub shards: u16,
    pub users: Vec<Uuid>,
    pub rooms: Vec<Uuid>,
    /// The next `seq` of each room.
    next_seq: HashMap<Uuid, i64>,
}

/// A worker running in this process.
pub struct Running {
    pub port: u16,
    pub metrics: Arc<Metrics>,
    task: JoinHandle<anyhow::Result<()>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Running {
    /// Stops it without warning, mid-batch: nothing more is written or acknowledged.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Asks it to stop (as SIGTERM does) and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.expect("worker task").expect("worker ran");
    }

    pub fn messages_applied(&self) -> u64 {
        self.metrics.events[0].load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl World {
    /// A database with `users` users and `rooms` rooms (every user a member of every room).
    pub async fn new(users: usize, rooms: usize, shards: u16) -> Self {
        let env = TestEnv::new()
            .await
            .expect("test database (run scripts/deps.sh)");
        let store = env.store().await.expect("store");
        let bus = Bus::new(&env.redis_url, &env.redis_prefix).expect("bus");
        let seeded = chat_testkit::seed_users_and_rooms(&store, users, rooms, true)
            .await
            .expect("users and rooms");
        let (user_ids, room_ids) = (seeded.users, seeded.rooms);
        Self {
            env,
            store,
            bus,
            shards,
            users: user_ids,
            rooms: room_ids,
            next_seq: HashMap::new(),
        }
    }

    /// The worker's configuration: this world's database and prefix, port 0, plus `extra`.
    pub fn config(&self, database_url: &str, extra: &[(&str, &str)]) -> Config {
        let mut vars: HashMap<String, String> = self.env.vars().into_iter().collect();
        vars.insert("DATABASE_URL".into(), database_url.into());
        vars.insert("WORKER_PORT".into(), "0".into());
        vars.insert("BIND_HOST".into(), "127.0.0.1".into());
        vars.insert("SHARDS".into(), self.shards.to_string());
        vars.insert("WORKER_RETRY_MAX_MS".into(), "200".into());
        vars.insert("WORKER_HOUSEKEEPING_MS".into(), "100".into());
        for (k, v) in extra {
            vars.insert((*k).into(), (*v).into());
        }
        Config::from_map(&vars).expect("valid worker config")
    }

    /// Starts a worker in this process with consumer name `name`.
    pub async fn spawn_worker(&self, name: &str, extra: &[(&str, &str)]) -> Running {
        let url = self.env.database_url.clone();
        self.spawn_worker_at(&url, name, extra).await
    }

    /// Starts a worker in this process that reaches MySQL at `database_url`.
    pub async fn spawn_worker_at(
        &self,
        database_url: &str,
        name: &str,
        extra: &[(&str, &str)],
    ) -> Running {
        let mut vars = vec![("WORKER_CONSUMER", name)];
        vars.extend_from_slice(extra);
        let app = Application::build(self.config(database_url, &vars))
            .await
            .expect("worker builds");
        let port = app.port();
        let metrics = app.metrics();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Running {
            port,
            metrics,
            task,
            stop: Some(tx),
        }
    }

    /// Environment variables that run the `chat-worker` binary against this world.
    pub fn child_env(&self, name: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut vars = self.env.vars();
        for (k, v) in [
            ("WORKER_PORT", "0"),
            ("BIND_HOST", "127.0.0.1"),
            ("WORKER_CONSUMER", name),
            ("WORKER_RETRY_MAX_MS", "200"),
            ("RUST_LOG", "warn"),
        ] {
            vars.push((k.into(), v.into()));
        }
        vars.push(("SHARDS".into(), self.shards.to_string()));
        for (k, v) in extra {
            vars.push(((*k).into(), (*v).into()));
        }
        vars
    }

    /// `n` new messages in `room`, with the room's next `seq`s.
    pub fn messages_in(&mut self, room: Uuid, n: usize) -> Vec<Envelope> {
        let senders = self.users.clone();
        let seq = self.next_seq.entry(room).or_insert(1);
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(Envelope::new(Event::MessageCreated(MessageCreated {
                id: Uuid::now_v7(),
                room_id: room,
                seq: *seq,
                sender_id: senders[i % senders.len()],
                kind: "text".into(),
                content: format!("message {} of room {room}", *seq),
                client_msg_id: Some(format!("c{}", *seq)),
                created_at: chrono::Utc::now().timestamp_millis(),
            })));
            *seq += 1;
        }
        out
    }

    /// `per_room` messages in every room, interleaved across rooms (as concurrent senders would).
    pub fn messages_everywhere(&mut self, per_room: usize) -> Vec<Envelope> {
        let rooms = self.rooms.clone();
        let per: Vec<Vec<Envelope>> = rooms
            .iter()
            .map(|r| self.messages_in(*r, per_room))
            .collect();
        let mut out = Vec::with_capacity(per_room * rooms.len());
        for i in 0..per_room {
            for room in &per {
                out.push(room[i].clone());
            }
        }
        out
    }

    pub async fn append(&self, events: &[Envelope]) {
        for chunk in events.chunks(1000) {
            self.bus
                .append_events(self.shards, chunk)
                .await
                .expect("XADD");
        }
    }

    pub async fn redis(&self) -> chat_bus::Conn {
        self.bus.conn().await.expect("redis")
    }

    pub async fn stream_len(&self, shard: u16) -> usize {
        let mut c = self.redis().await;
        redis::cmd("XLEN")
            .arg(self.bus.keys().stream(shard))
            .query_async(&mut *c)
            .await
            .expect("XLEN")
    }

    pub async fn message_count(&self) -> i64 {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM messages")
            .fetch_one(self.store.pool())
            .await
            .expect("count");
        n
    }

    /// Entries delivered to the `persist` group and not acknowledged, over every shard.
    pub async fn pending(&self) -> i64 {
        let mut c = self.redis().await;
        let mut total = 0;
        for s in 0..self.shards {
            let summary: redis::Value = redis::cmd("XPENDING")
                .arg(self.bus.keys().stream(s))
                .arg(PERSIST_GROUP)
                .query_async(&mut *c)
                .await
                .unwrap_or(redis::Value::Nil);
            if let redis::Value::Array(parts) = summary {
                if let Some(redis::Value::Int(n)) = parts.first() {
                    total += n;
                }
            }
        }
        total
    }

    /// Every dead letter of every shard: (reason, original entry id).
    pub async fn dead_letters(&self) -> Vec<(String, String)> {
        let mut c = self.redis().await;
        let mut out = Vec::new();
        for s in 0..self.shards {
            let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(self.bus.keys().dead_letter(s))
                .arg("-")
                .arg("+")
                .query_async(&mut *c)
                .await
                .expect("XRANGE");
            for e in reply.ids {
                let reason: String = e.get("reason").unwrap_or_default();
                let id: String = e.get("id").unwrap_or_default();
                out.push((reason, id));
            }
        }
        out
    }

    /// Checks that every room holds exactly `seq` 1..=n once each, and no message twice.
    pub async fn assert_rooms_complete(&self, per_room: i64) {
        let rows: Vec<(Uuid, i64, i64, i64)> = sqlx::query_as(
            "SELECT room_id, COUNT(*), MIN(seq), MAX(seq) FROM messages GROUP BY room_id",
        )
        .fetch_all(self.store.pool())
        .await
        .expect("per room");
        assert_eq!(rows.len(), self.rooms.len(), "every room has messages");
        for (room, n, min, max) in rows {
            assert_eq!((n, min, max), (per_room, 1, per_room), "room {room}");
        }
        let (rows, ids): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT id) FROM messages")
                .fetch_one(self.store.pool())
                .await
                .expect("distinct");
        assert_eq!(rows, ids);
    }
}

/// Polls `check` every 20 ms until it holds; panics with `what` after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP proxy in front of MariaDB that the test can cut (every connection dropped, new ones refused)
/// and restore, to make the database unreachable without touching the shared server.
pub struct Proxy {
    pub port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (up2, conns2) = (Arc::clone(&up), Arc::clone(&conns));
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                // A std mutex: held only to push, never across an await.
                conns2.lock().expect("lock").push(task);
            }
        });
        Self {
            port,
            up,
            conns,
            accept,
        }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for t in self.conns.lock().expect("lock").drain(..) {
            t.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// `host:port` of the test MariaDB, from `CHAT_TEST_DATABASE_URL`.
pub fn database_host_port() -> String {
    let server = chat_testkit::server_url();
    let after_at = server.rsplit('@').next().unwrap_or("127.0.0.1:3306");
    let host_port = after_at.split('/').next().unwrap_or("127.0.0.1:3306");
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:3306")
    }
}

/// The test database's URL with its host and port replaced by the proxy's.
pub fn via_proxy(database_url: &str, proxy_port: u16) -> String {
    let (scheme_creds, rest) = database_url
        .rsplit_once('@')
        .expect("database url has credentials");
    let db = rest.split_once('/').map(|(_, db)| db).unwrap_or_default();
    format!("{scheme_creds}@127.0.0.1:{proxy_port}/{db}")
}
