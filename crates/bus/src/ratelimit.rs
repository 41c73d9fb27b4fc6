//! Sliding-window rate limiting over a sorted set, shared by every replica.
//!
//! One script call per hit: drop entries older than the window, count the rest, and either record this hit
//! or report how long until the oldest entry leaves the window. A refused hit is not recorded, so a client
//! hammering a limit does not extend its own ban.

use crate::{Bus, BusResult};
use deadpool_redis::redis::Script;
use std::sync::LazyLock;
use std::time::Duration;
use uuid::Uuid;

// KEYS[1] = the window's sorted set. ARGV = limit, window (ms), a unique member for this hit.
// Returns {allowed (0/1), retry_after_ms, remaining}.
static SLIDING_WINDOW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, 0, limit - count - 1}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local retry = tonumber(oldest[2]) + window - now
if retry < 1 then retry = 1 end
return {0, retry, 0}
",
    )
});

// The REST gate of a signed-in user: the sliding window above on KEYS[1], plus whether the access token
// (KEYS[2]) was revoked. Returns {allowed, retry_after_ms, remaining, revoked}.
static API_GATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local revoked = redis.call('EXISTS', KEYS[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, 0, limit - count - 1, revoked}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local retry = tonumber(oldest[2]) + window - now
if retry < 1 then retry = 1 end
return {0, retry, 0, revoked}
",
    )
});

/// The answer of a rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// How long until a hit would be allowed (zero when allowed).
    pub retry_after: Duration,
    /// Hits left in the current window after this one.
    pub remaining: u32,
}

impl Bus {
    /// Counts one hit against `key` (a [`crate::Keys::rate_limit`] key), allowing `limit` per `window`.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn hit_rate_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> BusResult<RateDecision> {
        let mut c = self.conn().await?;
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let (allowed, retry_ms, remaining): (i64, i64, i64) = SLIDING_WINDOW
            .key(key)
            .arg(limit)
            .arg(window_ms)
            .arg(Uuid::now_v7().to_string())
            .invoke_async(&mut *c)
            .await?;
        Ok(RateDecision {
            allowed: allowed == 1,
            retry_after: Duration::from_millis(u64::try_from(retry_ms).unwrap_or(0)),
            remaining: u32::try_from(remaining).unwrap_or(0),
        })
    }

    /// One round trip for a signed-in REST request: counts a hit against the user's API window and says
    /// whether the token `jti` has been revoked.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn api_gate(
        &self,
        user: Uuid,
        jti: Uuid,
        limit: u32,
        window: Duration,
    ) -> BusResult<(RateDecision, bool)> {
        let mut c = self.conn().await?;
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let (allowed, retry_ms, remaining, revoked): (i64, i64, i64, i64) = API_GATE
            .key(self.keys.api_user_rate(user))
            .key(self.keys.revoked_jti(user, jti))
            .arg(limit)
            .arg(window_ms)
            .arg(Uuid::now_v7().to_string())
            .invoke_async(&mut *c)
            .await?;
        let decision = RateDecision {
            allowed: allowed == 1,
            retry_after: Duration::from_millis(u64::try_from(retry_ms).unwrap_or(0)),
            remaining: u32::try_from(remaining).unwrap_or(0),
        };
        Ok((decision, revoked == 1))
    }
}
