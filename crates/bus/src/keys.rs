//! Every Redis key, channel and stream of the system, in one place.
//!
//! `P` is the configured prefix; `v1` is the schema version of the key layout (bump it to change a
//! value's format without migrating in place).
//!
//! | key | type | what for |
//! |---|---|---|
//! | `P:v1:rl:<scope>:<id>` | sorted set | sliding-window rate limits: one member per hit, scored by time (ms); scopes `api:user`, `api:ip`, `login:acct`, `login:ip` |
//! | `P:v1:revoked:jti:<jti>` | string, TTL | an access token revoked by logout, kept until the token would expire |
//! | `P:v1:presence:user:<user>` | sorted set | the user's live connections (any gateway), scored by heartbeat expiry (ms) |
//!
//! Keys of one room will share the hash tag of the room's shard (`P:v1:{s}:…`), so one script may touch
//! them all on Redis Cluster; those arrive with the gateway.

use uuid::Uuid;

/// Names keys under a prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: format!("{prefix}:v1"),
        }
    }

    /// The versioned prefix, `P:v1`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A rate-limit window; `scope` is a fixed name such as `api:user`, `id` the limited subject.
    pub fn rate_limit(&self, scope: &str, id: &str) -> String {
        format!("{}:rl:{scope}:{id}", self.prefix)
    }

    pub fn revoked_jti(&self, jti: Uuid) -> String {
        format!("{}:revoked:jti:{jti}", self.prefix)
    }

    pub fn presence_user(&self, user: Uuid) -> String {
        format!("{}:presence:user:{user}", self.prefix)
    }
}
