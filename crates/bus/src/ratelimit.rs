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

// KEYS[1] = the window's sorted set; optional KEYS[2] = a key whose existence is reported (a revoked
// token). ARGV = limit, window (ms), a unique member for this hit.
// Returns {allowed (0/1), retry_after_ms, remaining, KEYS[2] exists (0/1)}.
static SLIDING_WINDOW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local flagged = 0
if KEYS[2] then flagged = redis.call('EXISTS', KEYS[2]) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, 0, limit - count - 1, flagged}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local retry = tonumber(oldest[2]) + window - now
if retry < 1 then retry = 1 end
return {0, retry, 0, flagged}
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
        Ok(self.sliding_window(key, None, limit, window).await?.0)
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
        let revoked_key = self.keys.revoked_jti(user, jti);
        self.sliding_window(
            &self.keys.api_user_rate(user),
            Some(&revoked_key),
            limit,
            window,
        )
        .await
    }

    async fn sliding_window(
        &self,
        key: &str,
        flag_key: Option<&str>,
        limit: u32,
        window: Duration,
    ) -> BusResult<(RateDecision, bool)> {
        let mut c = self.conn().await?;
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut call = SLIDING_WINDOW.key(key);
        if let Some(flag) = flag_key {
            call.key(flag);
        }
        let (allowed, retry_ms, remaining, flagged): (i64, i64, i64, i64) = call
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
        Ok((decision, flagged == 1))
    }
}
