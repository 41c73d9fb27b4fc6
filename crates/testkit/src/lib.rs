//! Test isolation on real infrastructure: every test gets a fresh MariaDB/MySQL database (migrated) and
//! its own Redis key prefix, so tests run in parallel against one server without seeing each other.
//!
//! The server addresses come from `CHAT_TEST_DATABASE_URL` (a server URL without a database, default
//! `mysql://chat:chat@127.0.0.1:3306`) and `CHAT_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`; a
//! cluster as `redis+cluster://host:port,…`).
//! The database is dropped and the prefix's keys deleted when the [`TestEnv`] is dropped.

use chat_store::Store;
use sqlx::{Connection, MySqlConnection};
use uuid::Uuid;

/// One test's private database and Redis prefix.
pub struct TestEnv {
    pub database_name: String,
    /// URL of the private database.
    pub database_url: String,
    pub redis_url: String,
    /// A prefix unique to this test (`t<hex>`).
    pub redis_prefix: String,
    server_url: String,
}

pub fn server_url() -> String {
    std::env::var("CHAT_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "mysql://chat:chat@127.0.0.1:3306".into())
}

pub fn redis_url() -> String {
    std::env::var("CHAT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

impl TestEnv {
    /// Creates and migrates a fresh database.
    ///
    /// # Errors
    /// The test servers are unreachable (run `scripts/deps.sh` to install and start them).
    pub async fn new() -> anyhow::Result<Self> {
        let server = server_url().trim_end_matches('/').to_owned();
        let tag = Uuid::new_v4().simple().to_string();
        let name = format!("chat_test_{}", &tag[..16]);
        let mut conn = MySqlConnection::connect(&server).await.map_err(|e| {
            anyhow::anyhow!("cannot reach the test database at {server}: {e} (run scripts/deps.sh)")
        })?;
        // The name is generated above from hex digits only.
        let create =
            format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci");
        sqlx::query(&create).execute(&mut conn).await?;
        conn.close().await?;
        let database_url = format!("{server}/{name}");
        let store = Store::connect(&database_url, 2).await?;
        store.migrate().await?;
        store.pool().close().await;
        Ok(Self {
            database_name: name,
            database_url,
            redis_url: redis_url(),
            redis_prefix: format!("t{}", &tag[16..]),
            server_url: server,
        })
    }

    /// A store on the private database.
    ///
    /// # Errors
    /// Connection failures.
    pub async fn store(&self) -> anyhow::Result<Store> {
        Ok(Store::connect(&self.database_url, 5).await?)
    }

    /// Environment variables that point a service at this test's database and prefix.
    pub fn vars(&self) -> Vec<(String, String)> {
        vec![
            ("DATABASE_URL".into(), self.database_url.clone()),
            ("REDIS_URL".into(), self.redis_url.clone()),
            ("REDIS_PREFIX".into(), self.redis_prefix.clone()),
        ]
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let server = self.server_url.clone();
        let name = self.database_name.clone();
        let redis = self.redis_url.clone();
        let prefix = self.redis_prefix.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on; clean up from a fresh thread.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = MySqlConnection::connect(&server).await {
                    // A test that panicked inside a transaction leaves its connection holding a
                    // metadata lock until its pool closes; never wait for it: the database stays
                    // (named chat_test_*) rather than the test run hanging.
                    let drop = format!("DROP DATABASE IF EXISTS `{name}`");
                    let _ = sqlx::query("SET SESSION lock_wait_timeout = 5")
                        .execute(&mut conn)
                        .await;
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        sqlx::query(&drop).execute(&mut conn),
                    )
                    .await;
                }
                // Through the bus, so a cluster works too: KEYS asks every master, DEL splits its
                // keys by slot.
                if let Ok(bus) = chat_bus::Bus::new(&redis, &prefix) {
                    if let Ok(mut c) = bus.conn().await {
                        let keys: Vec<String> = deadpool_redis::redis::cmd("KEYS")
                            .arg(format!("{prefix}:*"))
                            .query_async(&mut *c)
                            .await
                            .unwrap_or_default();
                        for chunk in keys.chunks(500) {
                            let _: Result<(), _> = deadpool_redis::redis::cmd("DEL")
                                .arg(chunk)
                                .query_async(&mut *c)
                                .await;
                        }
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Users and rooms to hang messages on, as tests and benchmarks need them (foreign keys).
pub struct Seeded {
    pub users: Vec<Uuid>,
    pub rooms: Vec<Uuid>,
}

/// Creates `users` users (`user0`, `user1`, …; not loginable) and `rooms` public rooms, created in turn
/// by each user; with `all_members`, every user joins every room.
///
/// # Errors
/// Database errors.
pub async fn seed_users_and_rooms(
    store: &Store,
    users: usize,
    rooms: usize,
    all_members: bool,
) -> anyhow::Result<Seeded> {
    anyhow::ensure!(users > 0, "at least one user is needed to create rooms");
    let mut user_ids = Vec::with_capacity(users);
    for i in 0..users {
        let name = format!("user{i}");
        let u = store
            .create_user(chat_store::users::NewUser {
                username: &name,
                email: &format!("{name}@example.com"),
                password_hash: "not-a-real-hash",
                full_name: None,
            })
            .await?;
        user_ids.push(u.id);
    }
    let mut room_ids = Vec::with_capacity(rooms);
    for i in 0..rooms {
        let creator = user_ids[i % users];
        let r = store
            .create_room(chat_store::rooms::NewRoom {
                name: &format!("room {i}"),
                description: None,
                is_private: false,
                invite_code: &format!("code{i}"),
                created_by: creator,
            })
            .await?;
        if all_members {
            for u in user_ids.iter().filter(|u| **u != creator) {
                store.add_member(r.id, *u, None).await?;
            }
        }
        room_ids.push(r.id);
    }
    Ok(Seeded {
        users: user_ids,
        rooms: room_ids,
    })
}

/// A subscriber on this test's Redis (single or cluster: `SUBSCRIBE` or `SSUBSCRIBE`, as the
/// services use), for tests that watch what is published.
pub struct Subscription {
    _sink: chat_bus::pubsub::Sink,
    stream: chat_bus::pubsub::Stream,
}

impl TestEnv {
    /// A subscriber to `channels`.
    ///
    /// # Errors
    /// Redis unreachable, or a channel not subscribed.
    pub async fn subscribe(&self, channels: &[String]) -> anyhow::Result<Subscription> {
        let bus = chat_bus::Bus::new(&self.redis_url, &self.redis_prefix)?;
        let (mut sink, stream) = bus.subscriber().await?;
        if let (failed, Some(e)) = sink.subscribe(channels).await {
            anyhow::bail!("{} channels not subscribed: {e}", failed.len());
        }
        Ok(Subscription {
            _sink: sink,
            stream,
        })
    }
}

impl Subscription {
    /// The next message as (channel, payload), or `None` after `within`.
    pub async fn next_within(&mut self, within: std::time::Duration) -> Option<(String, String)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next()).await;
            match next {
                Ok(Some(chat_bus::pubsub::Incoming::Message(m))) => {
                    let text = String::from_utf8_lossy(m.get_payload_bytes()).into_owned();
                    return Some((m.get_channel_name().to_owned(), text));
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }
}
