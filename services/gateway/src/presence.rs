//! Presence: a user is online while any of their connections, on any gateway, has an unexpired entry
//! in their presence set (`P:v1:{u:<user>}:presence`, connection id → expiry, Redis clock).
//!
//! * Connect adds the entry; the user's rooms get `user_status {online: true}` when it was their first
//!   live connection.
//! * Every `PRESENCE_HEARTBEAT_SECS` the gateway pushes its entries' expiry `PRESENCE_TTL_SECS` ahead
//!   (one pipeline for all its sockets), refreshes its own liveness entry and its sockets' recovery
//!   sessions.
//! * Disconnect removes the entry; when it was the last, `lastSeen` is stored in Redis, appended to the
//!   persistence stream (the worker writes `users.last_seen`) and `user_status {online: false}` goes to
//!   the user's rooms.
//! * A gateway that dies stops heartbeating; the first other gateway to notice its liveness entry
//!   expired claims it (`ZREM` returns 1 to exactly one) and disconnects its connections as above. So a
//!   user whose gateway died is offline within `PRESENCE_TTL_SECS + PRESENCE_HEARTBEAT_SECS`.

use crate::state::{ClientSocket, Gateway};
use chat_bus::stream::{Envelope, Event, LastSeen};
use deadpool_redis::redis::{self, Script};
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, LazyLock};
use uuid::Uuid;

/// KEYS: presence set. ARGV: connection id, TTL ms. Returns the user's live connections before.
static CONNECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return before
",
    )
});

/// KEYS: presence set, last-seen key. ARGV: connection id, `1` when cleaning up after a dead gateway.
/// Returns `{live connections left, now ms}`; the count is -1 when this call did not remove the entry
/// (someone else already did) — except for a dead gateway's connections, which nobody else announces
/// (their entries may have expired, or the whole set with them, before the cleanup came).
static DISCONNECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local left = redis.call('ZCARD', KEYS[1])
if removed == 0 and ARGV[2] ~= '1' then return {-1, now} end
if left == 0 then redis.call('SET', KEYS[2], now, 'EX', 2592000) end
return {left, now}
",
    )
});

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
        let ttl = u64::try_from(self.config.gateway.presence_ttl.as_millis()).unwrap_or(30_000);
        let res: anyhow::Result<i64> = async {
            let mut c = self.bus.conn().await?;
            let before: i64 = CONNECT
                .key(keys.presence_user(d.user))
                .arg(&d.conn_id)
                .arg(ttl)
                .invoke_async(&mut *c)
                .await?;
            let _: i64 = redis::cmd("HSET")
                .arg(keys.gateway_conns(&self.config.gateway.id))
                .arg(&d.conn_id)
                .arg(d.user.to_string())
                .query_async(&mut *c)
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

    /// One heartbeat: refresh every local connection's presence entry and recovery session, this
    /// gateway's liveness, then clean up after gateways that died.
    pub async fn heartbeat(self: &Arc<Self>) {
        let sockets = self.socket_list();
        let keys = self.bus.keys();
        let gw = &self.config.gateway;
        let ttl = i64::try_from(gw.presence_ttl.as_millis()).unwrap_or(30_000);
        let res: anyhow::Result<i64> = async {
            let mut c = self.bus.bulk_conn().await?;
            let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut *c).await?;
            let now = secs * 1000 + micros / 1000;
            let conns = keys.gateway_conns(&gw.id);
            for chunk in sockets.chunks(500) {
                let mut pipe = redis::pipe();
                // Sessions are saved whenever they change (connect, join, leave); a heartbeat only
                // extends them, and saves again the ones Redis no longer has.
                let mut refreshed = Vec::with_capacity(chunk.len());
                // Checked here, after the awaits: a socket that left since the snapshot must not
                // get its presence entry or its session back.
                for s in chunk.iter().filter(|s| s.connected()) {
                    let d = s.data();
                    let p = keys.presence_user(d.user);
                    pipe.cmd("ZADD")
                        .arg(&p)
                        .arg(now + ttl)
                        .arg(&d.conn_id)
                        .ignore();
                    pipe.cmd("PEXPIRE").arg(&p).arg(ttl * 2).ignore();
                    pipe.cmd("HSET")
                        .arg(&conns)
                        .arg(&d.conn_id)
                        .arg(d.user.to_string())
                        .ignore();
                    if let Some(pid) = s.pid() {
                        self.recovery.refresh_cmd(&mut pipe, pid);
                        refreshed.push((s, pid));
                    }
                }
                let alive: Vec<i64> = pipe.query_async(&mut *c).await?;
                let mut lost = redis::pipe();
                for ((s, pid), _) in refreshed.iter().zip(&alive).filter(|(_, a)| **a == 0) {
                    if s.connected() {
                        self.recovery.save_cmd(
                            &mut lost,
                            &sio::Session {
                                sid: s.id(),
                                pid: *pid,
                                nsp: s.nsp().to_owned(),
                                state: crate::handler::recovery_state_of(s),
                            },
                        );
                    }
                }
                if lost.cmd_iter().next().is_some() {
                    let () = lost.query_async(&mut *c).await?;
                }
            }
            let _: i64 = redis::cmd("ZADD")
                .arg(keys.gateways_alive())
                .arg(now + ttl)
                .arg(&gw.id)
                .query_async(&mut *c)
                .await?;
            Ok(now)
        }
        .await;
        let now = match res {
            Ok(now) => now,
            Err(e) => {
                self.metrics.redis_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "presence heartbeat failed");
                return;
            }
        };
        if let Err(e) = self.reap_dead_gateways(now).await {
            self.metrics.redis_errors.fetch_add(1, Relaxed);
            tracing::warn!(error = %e, "could not clean up after dead gateways");
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
            for (conn, user) in conns {
                if let Ok(user) = Uuid::parse_str(&user) {
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
                .arg(&self.config.gateway.id)
                .ignore();
            pipe.cmd("DEL")
                .arg(keys.gateway_conns(&self.config.gateway.id))
                .ignore();
            let _: Result<(), _> = pipe.query_async(&mut *c).await;
        }
    }
}
