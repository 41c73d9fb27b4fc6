//! Presence without per-socket heartbeats: a user is online while any of their connections is in
//! their presence set (`P:v1:{u:<user>}:presence`, `<gateway>|<connection>` → connect time) and its
//! gateway is alive (`P:v1:gw:alive`, gateway → liveness expiry, Redis clock).
//!
//! * Connect adds the entry (and the connection to the gateway's `conns` hash); the user's rooms get
//!   `user_status {online: true}` when it was their first connection.
//! * Disconnect removes it; when it was the last, `lastSeen` is stored in Redis, appended to the
//!   persistence stream (the worker writes `users.last_seen`) and `user_status {online: false}` goes
//!   to the user's rooms.
//! * Between the two nothing is written per connection: every `PRESENCE_HEARTBEAT_SECS` a gateway
//!   writes one liveness entry (expiring `PRESENCE_TTL_SECS` ahead) and looks at its `conns` hash:
//!   gone while it has sockets means Redis lost its state (a restart without its data), and the
//!   gateway writes its connections and sessions again.
//! * A gateway that dies stops refreshing its liveness; its users stop counting as online at once
//!   (readers skip members of dead gateways), and the first other gateway to notice takes a lease
//!   on it and disconnects its connections as above (announcing them offline, cutting their
//!   recovery sessions to the recovery window). So a user whose gateway died is announced offline
//!   within `PRESENCE_TTL_SECS + PRESENCE_HEARTBEAT_SECS`.
//! * A gateway whose own heartbeat failed (the liveness key's Redis node failed over, say) reaps
//!   nobody for a `PRESENCE_TTL_SECS` after: the others missed their beats in the same outage and
//!   are not dead. Readers may count their users offline until their next beat; nothing is
//!   announced or removed for it.

use crate::state::{ClientSocket, Gateway};
use chat_bus::stream::{Envelope, Event, LastSeen};
use deadpool_redis::redis::{self, Script};
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, LazyLock, PoisonError};
use std::time::Instant;
use uuid::Uuid;

/// KEYS: presence set. ARGV: connection id. Returns the user's connections before.
static CONNECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], now, ARGV[1])
return before
",
    )
});

/// KEYS: presence set, last-seen key. ARGV: connection id, `1` when cleaning up after a dead gateway.
/// Returns `{connections left, now ms}`; the count is -1 when this call did not remove the entry
/// (someone else already did) — except for a dead gateway's connections, which nobody else
/// announces (Redis may have lost their entries before the cleanup came).
static DISCONNECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
local left = redis.call('ZCARD', KEYS[1])
if removed == 0 and ARGV[2] ~= '1' then return {-1, now} end
if left == 0 then redis.call('SET', KEYS[2], now, 'EX', 2592000) end
return {left, now}
",
    )
});

/// KEYS: the gateways' liveness set. ARGV: gateway id, TTL ms. Returns now (ms).
static BEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return now
",
    )
});

/// A connection's value in its gateway's `conns` hash: `<user>|<session pid>`.
fn conns_value(socket: &ClientSocket) -> String {
    let pid = socket.pid().map(|p| p.to_string()).unwrap_or_default();
    format!("{}|{pid}", socket.data().user)
}

fn iso_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| chat_realtime::iso(&t))
        .unwrap_or_default()
}

/// How long a survivor may take to clean up after a dead gateway before another one carries on.
const REAP_LEASE_MS: u64 = 30_000;

impl Gateway {
    /// A socket connected: add its presence entry, announce the user online if it is their first.
    pub async fn presence_connect(&self, socket: &ClientSocket) {
        let d = socket.data();
        let keys = self.bus.keys();
        let res: anyhow::Result<i64> = async {
            let mut c = self.bus.conn().await?;
            // The gateway's hash first: if this gateway dies between the two, the survivor that
            // cleans up finds the connection (and removes an entry that may not exist yet).
            let _: i64 = redis::cmd("HSET")
                .arg(keys.gateway_conns(&self.config.gateway.id))
                .arg(&d.conn_id)
                .arg(conns_value(socket))
                .query_async(&mut *c)
                .await?;
            let before: i64 = CONNECT
                .key(keys.presence_user(d.user))
                .arg(&d.conn_id)
                .invoke_async(&mut *c)
                .await?;
            Ok(before)
        }
        .await;
        match res {
            Ok(0) => {
                self.announce(d.user, true, chrono::Utc::now().timestamp_millis())
                    .await
            }
            Ok(_) => {}
            Err(e) => {
                self.metrics.redis_errors.fetch_add(1, Relaxed);
                tracing::warn!(user = %d.user, error = %e, "presence entry not written");
            }
        }
    }

    /// A connection of `user` closed (here, or on a dead gateway being cleaned up: then `reaped`
    /// holds the users already announced offline by this cleanup, so a user with several connections
    /// there is announced once). False when Redis failed and the entry is still there (it expires on
    /// its own; a dead gateway's cleanup retries).
    pub async fn presence_disconnect(
        &self,
        user: Uuid,
        conn_id: &str,
        gateway: &str,
        reaped: Option<&mut HashSet<Uuid>>,
    ) -> bool {
        let keys = self.bus.keys();
        let res: anyhow::Result<(i64, i64)> = async {
            let mut c = self.bus.conn().await?;
            let r: (i64, i64) = DISCONNECT
                .key(keys.presence_user(user))
                .key(keys.last_seen(user))
                .arg(conn_id)
                .arg(if reaped.is_some() { "1" } else { "0" })
                .invoke_async(&mut *c)
                .await?;
            let _: i64 = redis::cmd("HDEL")
                .arg(keys.gateway_conns(gateway))
                .arg(conn_id)
                .query_async(&mut *c)
                .await?;
            Ok(r)
        }
        .await;
        match res {
            Ok((0, _)) if reaped.is_some_and(|r| !r.insert(user)) => true,
            Ok((0, now)) => {
                let env = Envelope::new(Event::LastSeen(LastSeen {
                    user_id: user,
                    at: now,
                }));
                if let Err(e) = self.bus.append_events(self.config.shards, &[env]).await {
                    self.metrics.redis_errors.fetch_add(1, Relaxed);
                    tracing::warn!(user = %user, error = %e, "last_seen not appended to the stream");
                }
                self.announce(user, false, now).await;
                true
            }
            Ok(_) => true,
            Err(e) => {
                self.metrics.redis_errors.fetch_add(1, Relaxed);
                tracing::warn!(user = %user, error = %e, "presence entry not removed (it will expire)");
                false
            }
        }
    }

    /// Tells the user's rooms that they came online or went offline.
    async fn announce(&self, user: Uuid, online: bool, at_ms: i64) {
        let rooms = match self.store.room_ids_of_user(user).await {
            Ok(r) => r,
            Err(e) => {
                self.metrics.mysql_errors.fetch_add(1, Relaxed);
                tracing::warn!(user = %user, error = %e, "rooms of user unavailable; presence not announced");
                return;
            }
        };
        let data = serde_json::json!({
            "userId": user,
            "online": online,
            "status": if online { "online" } else { "offline" },
            "lastSeen": iso_ms(at_ms),
        });
        if let Err(e) = self
            .rt
            .publish_volatile_many(&rooms, "user_status", &data)
            .await
        {
            self.metrics.redis_errors.fetch_add(1, Relaxed);
            tracing::warn!(user = %user, error = %e, "user_status not published");
        }
    }

    /// One heartbeat: this gateway's liveness (one command, however many sockets), a look at
    /// whether Redis still has this gateway's connections (written again if not), the sessions of
    /// long-lived sockets saved again, then the cleanup after gateways that died.
    pub async fn heartbeat(self: &Arc<Self>) {
        let keys = self.bus.keys();
        let gw = &self.config.gateway;
        let ttl = i64::try_from(gw.presence_ttl.as_millis()).unwrap_or(30_000);
        let res: anyhow::Result<(i64, bool)> = async {
            let mut c = self.bus.conn().await?;
            let now: i64 = BEAT
                .key(keys.gateways_alive())
                .arg(&gw.id)
                .arg(ttl)
                .invoke_async(&mut *c)
                .await?;
            let known: bool = redis::cmd("EXISTS")
                .arg(keys.gateway_conns(&gw.id))
                .query_async(&mut *c)
                .await?;
            Ok((now, known))
        }
        .await;
        let now = match res {
            Ok((now, known)) => {
                let sockets = self.socket_list();
                if !known && !sockets.is_empty() {
                    tracing::warn!(
                        sockets = sockets.len(),
                        "Redis lost this gateway's connections: writing them again"
                    );
                    self.metrics.presence_resyncs.fetch_add(1, Relaxed);
                    self.rewrite(&sockets).await;
                } else {
                    let old = crate::handler::unix_secs()
                        .saturating_sub(crate::recovery::RESAVE_AFTER.as_secs());
                    let stale: Vec<_> = sockets
                        .into_iter()
                        .filter(|s| s.data().session_saved.load(Relaxed) < old)
                        .collect();
                    if !stale.is_empty() {
                        self.rewrite_sessions(&stale).await;
                    }
                }
                now
            }
            Err(e) => {
                self.metrics.redis_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "liveness heartbeat failed");
                *self
                    .beat_failed_at
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
                return;
            }
        };
        let recently_failed = self
            .beat_failed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < gw.presence_ttl);
        if recently_failed {
            // The others' heartbeats may have failed as ours did: give them a TTL to come back.
            return;
        }
        if let Err(e) = self.reap_dead_gateways(now).await {
            self.metrics.redis_errors.fetch_add(1, Relaxed);
            tracing::warn!(error = %e, "could not clean up after dead gateways");
        }
    }

    /// Writes the presence entries, `conns` entries and sessions of `sockets` again (Redis lost
    /// them), in chunks, each command to its key's node.
    async fn rewrite(&self, sockets: &[ClientSocket]) {
        let keys = self.bus.keys();
        let conns = keys.gateway_conns(&self.config.gateway.id);
        let res: anyhow::Result<()> = async {
            let mut c = self.bus.bulk_conn().await?;
            for chunk in sockets.chunks(500) {
                let mut pipe = redis::pipe();
                // Checked here, after the awaits: a socket that left since the snapshot must not
                // get its entries back.
                for s in chunk.iter().filter(|s| s.connected()) {
                    let d = s.data();
                    pipe.cmd("HSET")
                        .arg(&conns)
                        .arg(&d.conn_id)
                        .arg(conns_value(s));
                    pipe.cmd("ZADD")
                        .arg(keys.presence_user(d.user))
                        .arg("NX")
                        .arg(0)
                        .arg(&d.conn_id);
                    self.session_cmd(&mut pipe, s);
                }
                let _: Vec<redis::Value> = c.spread(&pipe).await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = res {
            self.metrics.redis_errors.fetch_add(1, Relaxed);
            tracing::warn!(error = %e, "connections not written again (next heartbeat retries)");
        }
    }

    /// Saves the sessions of long-lived sockets again before they would expire.
    async fn rewrite_sessions(&self, sockets: &[ClientSocket]) {
        let res: anyhow::Result<()> = async {
            let mut c = self.bus.bulk_conn().await?;
            for chunk in sockets.chunks(500) {
                let mut pipe = redis::pipe();
                for s in chunk.iter().filter(|s| s.connected()) {
                    self.session_cmd(&mut pipe, s);
                }
                let _: Vec<redis::Value> = c.spread(&pipe).await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = res {
            self.metrics.redis_errors.fetch_add(1, Relaxed);
            tracing::warn!(error = %e, "sessions not saved again (next heartbeat retries)");
        }
    }

    fn session_cmd(&self, pipe: &mut redis::Pipeline, s: &ClientSocket) {
        if let Some(pid) = s.pid() {
            s.data()
                .session_saved
                .store(crate::handler::unix_secs(), Relaxed);
            self.recovery.save_live_cmd(
                pipe,
                &sio::Session {
                    sid: s.id(),
                    pid,
                    nsp: s.nsp().to_owned(),
                    state: crate::handler::recovery_state_of(s),
                },
            );
        }
    }

    async fn reap_dead_gateways(&self, now: i64) -> anyhow::Result<()> {
        let keys = self.bus.keys();
        let mut c = self.bus.conn().await?;
        let dead: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(keys.gateways_alive())
            .arg("-inf")
            .arg(now)
            .query_async(&mut *c)
            .await?;
        for id in dead {
            if id == self.config.gateway.id {
                continue;
            }
            // A lease, not a removal: if this cleanup stops halfway (Redis fails, this gateway
            // dies), the dead gateway is still listed as expired, the lease runs out, and the next
            // survivor's heartbeat carries on with the connections left in its hash (each one is
            // removed from the hash as it is handled, so none is announced twice but the one in
            // flight).
            let lease: Option<String> = redis::cmd("SET")
                .arg(keys.gateway_reaper(&id))
                .arg(&self.config.gateway.id)
                .arg("NX")
                .arg("PX")
                .arg(REAP_LEASE_MS)
                .query_async(&mut *c)
                .await?;
            if lease.is_none() {
                continue; // another gateway is on it
            }
            let conns: Vec<(String, String)> = redis::cmd("HGETALL")
                .arg(keys.gateway_conns(&id))
                .query_async(&mut *c)
                .await?;
            tracing::info!(gateway = %id, connections = conns.len(), "gateway died: clearing its presence entries");
            let mut failed = 0usize;
            let mut reaped = HashSet::new();
            for (conn, value) in conns {
                let (user, pid) = value.split_once('|').unwrap_or((&value, ""));
                if let Ok(user) = Uuid::parse_str(user) {
                    if let Some(pid) = sio::Sid::parse(pid) {
                        // Recoverable for the window from now, as if it had just dropped.
                        let mut pipe = redis::pipe();
                        self.recovery.expire_cmd(&mut pipe, pid);
                        let _: Vec<redis::Value> = c.spread(&pipe).await?;
                    }
                    if !self
                        .presence_disconnect(user, &conn, &id, Some(&mut reaped))
                        .await
                    {
                        failed += 1;
                    }
                } else {
                    // Not ours to understand: drop it so the cleanup can finish.
                    let _: i64 = redis::cmd("HDEL")
                        .arg(keys.gateway_conns(&id))
                        .arg(&conn)
                        .query_async(&mut *c)
                        .await?;
                }
            }
            if failed > 0 {
                // Leave the gateway listed and the lease to run out: a later heartbeat retries.
                anyhow::bail!("{failed} connections of dead gateway {id} not cleaned up yet");
            }
            // Done: forget the gateway, unless it came back meanwhile (its heartbeat raised its
            // expiry past now) — then it owns its entries again (and its heartbeats re-add any that
            // a late DEL removes).
            let score: Option<f64> = redis::cmd("ZSCORE")
                .arg(keys.gateways_alive())
                .arg(&id)
                .query_async(&mut *c)
                .await?;
            #[allow(clippy::cast_precision_loss)]
            if score.is_none_or(|s| s <= now as f64) {
                let _: i64 = redis::cmd("ZREM")
                    .arg(keys.gateways_alive())
                    .arg(&id)
                    .query_async(&mut *c)
                    .await?;
                let _: i64 = redis::cmd("DEL")
                    .arg(keys.gateway_conns(&id))
                    .arg(keys.gateway_reaper(&id))
                    .query_async(&mut *c)
                    .await?;
            }
        }
        Ok(())
    }

    /// This gateway is stopping and its sockets are gone: remove its liveness entry.
    pub async fn presence_shutdown(&self) {
        let keys = self.bus.keys();
        if let Ok(mut c) = self.bus.conn().await {
            let mut pipe = redis::pipe();
            pipe.cmd("ZREM")
                .arg(keys.gateways_alive())
                .arg(&self.config.gateway.id);
            pipe.cmd("DEL")
                .arg(keys.gateway_conns(&self.config.gateway.id));
            let _: Result<Vec<redis::Value>, _> = c.spread(&pipe).await;
        }
    }
}
