//! Configuration of every service, read from environment variables.
//!
//! Every setting has a working local default, so `make up` needs no `.env`; production deployments set
//! `APP_ENV=production`, which turns the development defaults for secrets into start-up errors. All values
//! are validated once at start-up ([`Config::from_env`]); secrets are wrapped in [`Secret`], whose `Debug`
//! prints `**redacted**`, so logging the config never leaks them.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// The JWT secret used when none is configured; refused in production.
pub const DEV_JWT_SECRET: &str = "dev-only-insecure-jwt-secret-change-me-0123456789";

/// A value that must never be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**redacted**")
    }
}

/// A configuration problem, reported at start-up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Development (defaults allowed) or production (secrets required).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

/// The whole configuration. Services read the parts they need.
#[derive(Clone, Debug)]
pub struct Config {
    pub app_env: AppEnv,
    /// `mysql://user:pass@host:port/db`
    pub database_url: Secret,
    pub database_max_connections: u32,
    /// `redis://host:port`, or a Redis Cluster's seed nodes as `redis+cluster://host:port,host:port`
    /// (`REDIS_CLUSTER_NODES=host:port,…` sets it in that form).
    pub redis_url: Secret,
    /// Replicas a durable write waits for before it is acknowledged (`WAIT n`): `None` is the
    /// mode's default (1 on a cluster, 0 on a single Redis).
    pub redis_wait_replicas: Option<u32>,
    /// How long a durable write waits for them (`REDIS_WAIT_TIMEOUT_MS`, default 500).
    pub redis_wait_timeout: Duration,
    /// Prefix of every Redis key and channel (isolates deployments and tests sharing one Redis).
    pub redis_prefix: String,
    pub jwt_secret: Secret,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// Interface the HTTP listeners bind to.
    pub bind_host: IpAddr,
    pub api_port: u16,
    pub gateway_port: u16,
    pub worker_port: u16,
    /// `*` or a comma-separated list of allowed origins.
    pub cors_origin: String,
    /// The web client the API serves at `/` (`WEB_DIR`, default `web/dist`, the output of
    /// `web/build.mjs`); `None` when set empty (then `/` answers 404).
    pub web_dir: Option<String>,
    /// Socket.IO gateway URLs the web client connects to (`WEB_GATEWAY_URL`, comma-separated, default
    /// `http://localhost:3000`); empty: the page's own origin (a proxy routes `/socket.io/`).
    pub web_gateway_urls: Vec<String>,
    /// Apply pending migrations when a service starts.
    pub run_migrations: bool,
    /// Requests per minute per user (per IP when anonymous) on the REST API.
    pub api_rate_limit_per_minute: u32,
    /// Login attempts per account from one client address, per account from all addresses together, and
    /// per address, within `login_rate_window`. Keying the first by (account, address) means someone
    /// guessing from one address locks out only that address, not the account's owner.
    pub login_attempts_per_account: u32,
    pub login_attempts_per_account_total: u32,
    pub login_attempts_per_ip: u32,
    pub login_rate_window: Duration,
    /// Chat messages per user per room within `message_rate_window`.
    pub message_rate_limit: u32,
    pub message_rate_window: Duration,
    /// Concurrent password hashes (argon2id, 19 MiB each); default: the number of CPUs.
    pub password_hash_concurrency: Option<usize>,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_proxy: bool,
    pub log_format: LogFormat,
    /// Number of Redis stream shards (rooms are spread over them by hash; each shard is one hash
    /// tag, so one Redis Cluster slot). Default 8 on a single Redis, 16 on a cluster (so three
    /// masters get 4–6 shards each; raise it before adding masters: changing it moves rooms).
    pub shards: u16,
    /// Entries kept in each room's recent logs in Redis (`RECENT_LOG_SIZE`, default 1000): what a
    /// reconnecting client can recover, and how far the API's history can run ahead of MySQL.
    pub recent_log_size: u32,
    /// The persistence worker's settings.
    pub worker: WorkerConfig,
    /// The gateway's settings.
    pub gateway: GatewayConfig,
}

/// Settings of the WebSocket gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    /// This replica's name, unique among gateways (`GATEWAY_ID`, default `<hostname>-<pid>`).
    pub id: String,
    /// A connection's presence entry expires this long after its last heartbeat
    /// (`PRESENCE_TTL_SECS`, default 30): the bound on how long a user stays "online" after their
    /// gateway dies.
    pub presence_ttl: Duration,
    /// How often presence entries and recovery sessions are refreshed (`PRESENCE_HEARTBEAT_SECS`, 10;
    /// must be below the TTL).
    pub presence_heartbeat: Duration,
    /// How long a dropped socket can be recovered (`RECOVERY_WINDOW_SECS`, 120).
    pub recovery_window: Duration,
    /// A typing indicator expires this long after its last refresh (`TYPING_TIMEOUT_MS`, 5000).
    pub typing_timeout: Duration,
    /// `join_room` lists the online members of rooms up to this many members
    /// (`JOIN_ONLINE_LIST_MAX`, 500); larger rooms get counts only, and their presence from
    /// `user_status` events (the list costs one presence lookup per member on every join).
    pub join_online_list_max: u32,
    /// Engine.IO heartbeat (`SIO_PING_INTERVAL_MS` 25000, `SIO_PING_TIMEOUT_MS` 20000).
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// The largest frame a client may send, in bytes (`SIO_MAX_PAYLOAD`, 100000).
    pub max_payload: usize,
    /// Frames queued per connection before a slow client is shed (`SEND_QUEUE_CAPACITY`, 256).
    pub queue_capacity: usize,
    /// How long a SIGTERM'd gateway waits for its connections to drain (`SHUTDOWN_DRAIN_SECS`, 10).
    pub shutdown_drain: Duration,
}

/// Settings of the persistence worker (`WORKER_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerConfig {
    /// At most this many stream entries per batch (`WORKER_BATCH_SIZE`, default 1000).
    pub batch_size: usize,
    /// How long a batch may wait to fill up after its first entry (`WORKER_BATCH_MAX_WAIT_MS`, 20).
    pub batch_max_wait: Duration,
    /// Entries pending this long on another consumer are taken over (`WORKER_CLAIM_IDLE_MS`, 30000).
    pub claim_idle: Duration,
    /// This process's consumer name in the group, unique per replica (`WORKER_CONSUMER`, default
    /// `<hostname>-<pid>`).
    pub consumer: String,
    /// How often stream lengths are sampled and streams trimmed (`WORKER_HOUSEKEEPING_MS`, 1000).
    pub housekeeping_interval: Duration,
    /// The longest back-off between retries while MySQL is unreachable (`WORKER_RETRY_MAX_MS`, 5000).
    pub retry_max_backoff: Duration,
    /// An edit or delete whose message is not in MySQL yet (another replica may still be writing it) is
    /// retried for this long, then dead-lettered (`WORKER_MISSING_TARGET_MS`, 120000). It must exceed
    /// `WORKER_CLAIM_IDLE_MS` plus a batch: the message may be pending on a replica that died, and is only
    /// taken over after the claim idle time.
    pub missing_target_timeout: Duration,
    /// Approximate cap of each dead-letter stream (`WORKER_DEAD_LETTER_MAXLEN`, 100000).
    pub dead_letter_maxlen: u64,
}

/// `<hostname>-<pid>`: unique per process on a host, and per pod on Kubernetes.
fn default_consumer(get: &dyn Fn(&str) -> Option<String>) -> String {
    format!("{}-{}", hostname(get, "worker"), std::process::id())
}

fn hostname(get: &dyn Fn(&str) -> Option<String>, fallback: &str) -> String {
    get("HOSTNAME")
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| fallback.to_owned())
}

impl Config {
    /// Reads the process environment.
    ///
    /// # Errors
    /// A variable that is set but invalid, or a secret missing in production.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads from a map; used by tests.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_lookup(|k| map.get(k).cloned())
    }

    /// Reads every setting through `get`, applying defaults and validating.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let r = Reader { get: &get };
        let app_env = match r.string("APP_ENV", "development").as_str() {
            "development" | "dev" | "test" => AppEnv::Development,
            "production" | "prod" => AppEnv::Production,
            other => {
                return Err(invalid(
                    "APP_ENV",
                    format!("must be development or production, got {other:?}"),
                ))
            }
        };
        let production = app_env == AppEnv::Production;

        let jwt_secret = match get("JWT_SECRET") {
            Some(s) if s.len() < 32 => {
                return Err(invalid("JWT_SECRET", "must be at least 32 bytes"))
            }
            Some(s) if production && s == DEV_JWT_SECRET => {
                return Err(invalid(
                    "JWT_SECRET",
                    "the development default is not allowed in production",
                ))
            }
            Some(s) => s,
            None if production => {
                return Err(invalid("JWT_SECRET", "is required when APP_ENV=production"))
            }
            None => DEV_JWT_SECRET.to_owned(),
        };
        let database_url = r.string("DATABASE_URL", "mysql://chat:chat@127.0.0.1:3306/chat");
        if !database_url.starts_with("mysql://") && !database_url.starts_with("mariadb://") {
            return Err(invalid("DATABASE_URL", "must start with mysql://"));
        }
        if production && get("DATABASE_URL").is_none() {
            return Err(invalid(
                "DATABASE_URL",
                "is required when APP_ENV=production",
            ));
        }
        let cluster_nodes = r.string("REDIS_CLUSTER_NODES", "");
        let redis_url = if cluster_nodes.trim().is_empty() {
            r.string("REDIS_URL", "redis://127.0.0.1:6379")
        } else {
            format!("redis+cluster://{}", cluster_nodes.trim())
        };
        let cluster = redis_url.starts_with("redis+cluster://");
        let (scheme_ok, nodes_ok) = match redis_url.strip_prefix("redis+cluster://") {
            Some(nodes) => (true, nodes.split(',').any(|n| !n.trim().is_empty())),
            None => (
                redis_url.starts_with("redis://") || redis_url.starts_with("rediss://"),
                true,
            ),
        };
        if !scheme_ok {
            return Err(invalid(
                "REDIS_URL",
                "must start with redis://, rediss:// or redis+cluster://",
            ));
        }
        if !nodes_ok {
            return Err(invalid(
                if cluster_nodes.trim().is_empty() {
                    "REDIS_URL"
                } else {
                    "REDIS_CLUSTER_NODES"
                },
                "must name at least one host:port",
            ));
        }
        let redis_wait_replicas = match get("REDIS_WAIT_REPLICAS") {
            Some(_) => Some(r.num("REDIS_WAIT_REPLICAS", 0, 0, 16)?),
            None => None,
        };
        let redis_prefix = r.string("REDIS_PREFIX", "chat");
        if redis_prefix.is_empty()
            || !redis_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.'))
        {
            return Err(invalid(
                "REDIS_PREFIX",
                "must be non-empty ASCII letters, digits, '_', '-', ':' or '.'",
            ));
        }
        let log_format = match r.string("LOG_FORMAT", "text").as_str() {
            "text" | "pretty" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "LOG_FORMAT",
                    format!("must be text or json, got {other:?}"),
                ))
            }
        };

        let cfg = Config {
            app_env,
            database_url: Secret(database_url),
            database_max_connections: r.num("DATABASE_MAX_CONNECTIONS", 10, 1, 1000)?,
            redis_url: Secret(redis_url),
            redis_wait_replicas,
            redis_wait_timeout: Duration::from_millis(r.num(
                "REDIS_WAIT_TIMEOUT_MS",
                500,
                1,
                60_000,
            )?),
            redis_prefix,
            jwt_secret: Secret(jwt_secret),
            access_token_ttl: Duration::from_secs(r.num(
                "ACCESS_TOKEN_TTL_SECS",
                900,
                10,
                86_400,
            )?),
            refresh_token_ttl: Duration::from_secs(r.num(
                "REFRESH_TOKEN_TTL_SECS",
                30 * 86_400,
                60,
                365 * 86_400,
            )?),
            bind_host: r
                .string("BIND_HOST", "0.0.0.0")
                .parse()
                .map_err(|_| invalid("BIND_HOST", "must be an IP address"))?,
            api_port: r.num("API_PORT", 8080, 0, 65535)?,
            gateway_port: r.num("GATEWAY_PORT", 3000, 0, 65535)?,
            worker_port: r.num("WORKER_PORT", 9090, 0, 65535)?,
            cors_origin: r.string("CORS_ORIGIN", "*"),
            web_dir: Some(r.string("WEB_DIR", "web/dist")).filter(|d| !d.trim().is_empty()),
            web_gateway_urls: web_gateway_urls(
                &r.string("WEB_GATEWAY_URL", "http://localhost:3000"),
            )?,
            run_migrations: r.flag("RUN_MIGRATIONS", false)?,
            api_rate_limit_per_minute: r.num("API_RATE_LIMIT_PER_MINUTE", 100, 1, 1_000_000)?,
            login_attempts_per_account: r.num("LOGIN_ATTEMPTS_PER_ACCOUNT", 10, 1, 10_000)?,
            login_attempts_per_ip: r.num("LOGIN_ATTEMPTS_PER_IP", 50, 1, 100_000)?,
            login_attempts_per_account_total: r.num(
                "LOGIN_ATTEMPTS_PER_ACCOUNT_TOTAL",
                100,
                1,
                1_000_000,
            )?,
            login_rate_window: Duration::from_secs(r.num(
                "LOGIN_RATE_WINDOW_SECS",
                900,
                1,
                86_400,
            )?),
            message_rate_limit: r.num("MESSAGE_RATE_LIMIT", 5, 1, 1_000_000)?,
            message_rate_window: Duration::from_millis(r.num(
                "MESSAGE_RATE_WINDOW_MS",
                10_000,
                100,
                3_600_000,
            )?),
            password_hash_concurrency: match get("PASSWORD_HASH_CONCURRENCY") {
                None => None,
                Some(_) => Some(r.num("PASSWORD_HASH_CONCURRENCY", 2, 1, 256)?),
            },
            trust_proxy: r.flag("TRUST_PROXY", false)?,
            log_format,
            shards: r.num("SHARDS", if cluster { 16 } else { 8 }, 1, 1024)?,
            worker: WorkerConfig {
                batch_size: r.num("WORKER_BATCH_SIZE", 1000, 1, 10_000)?,
                batch_max_wait: Duration::from_millis(r.num(
                    "WORKER_BATCH_MAX_WAIT_MS",
                    20,
                    0,
                    10_000,
                )?),
                claim_idle: Duration::from_millis(r.num(
                    "WORKER_CLAIM_IDLE_MS",
                    30_000,
                    100,
                    86_400_000,
                )?),
                consumer: match get("WORKER_CONSUMER") {
                    Some(c) => c,
                    None => default_consumer(&get),
                },
                housekeeping_interval: Duration::from_millis(r.num(
                    "WORKER_HOUSEKEEPING_MS",
                    1000,
                    10,
                    600_000,
                )?),
                retry_max_backoff: Duration::from_millis(r.num(
                    "WORKER_RETRY_MAX_MS",
                    5000,
                    10,
                    600_000,
                )?),
                missing_target_timeout: Duration::from_millis(r.num(
                    "WORKER_MISSING_TARGET_MS",
                    120_000,
                    0,
                    86_400_000,
                )?),
                dead_letter_maxlen: r.num(
                    "WORKER_DEAD_LETTER_MAXLEN",
                    100_000,
                    100,
                    100_000_000,
                )?,
            },
            recent_log_size: r.num("RECENT_LOG_SIZE", 1000, 10, 100_000)?,
            gateway: GatewayConfig {
                id: match get("GATEWAY_ID") {
                    Some(c) => c,
                    None => format!("{}-{}", hostname(&get, "gateway"), std::process::id()),
                },
                presence_ttl: Duration::from_secs(r.num("PRESENCE_TTL_SECS", 30, 2, 3600)?),
                presence_heartbeat: Duration::from_secs(r.num(
                    "PRESENCE_HEARTBEAT_SECS",
                    10,
                    1,
                    1800,
                )?),
                recovery_window: Duration::from_secs(r.num(
                    "RECOVERY_WINDOW_SECS",
                    120,
                    1,
                    86_400,
                )?),
                typing_timeout: Duration::from_millis(r.num(
                    "TYPING_TIMEOUT_MS",
                    5000,
                    100,
                    600_000,
                )?),
                join_online_list_max: r.num("JOIN_ONLINE_LIST_MAX", 500, 0, 100_000)?,
                ping_interval: Duration::from_millis(r.num(
                    "SIO_PING_INTERVAL_MS",
                    25_000,
                    50,
                    600_000,
                )?),
                ping_timeout: Duration::from_millis(r.num(
                    "SIO_PING_TIMEOUT_MS",
                    20_000,
                    50,
                    600_000,
                )?),
                max_payload: r.num("SIO_MAX_PAYLOAD", 100_000, 1024, 100_000_000)?,
                queue_capacity: r.num("SEND_QUEUE_CAPACITY", 256, 4, 1_000_000)?,
                shutdown_drain: Duration::from_secs(r.num("SHUTDOWN_DRAIN_SECS", 10, 0, 3600)?),
            },
        };
        if cfg.gateway.presence_heartbeat >= cfg.gateway.presence_ttl {
            return Err(invalid(
                "PRESENCE_HEARTBEAT_SECS",
                "must be less than PRESENCE_TTL_SECS",
            ));
        }
        check_name("GATEWAY_ID", &cfg.gateway.id)?;
        check_name("WORKER_CONSUMER", &cfg.worker.consumer)?;
        Ok(cfg)
    }
}

/// `WEB_GATEWAY_URL`: comma-separated `http(s)://host[:port]` origins (no path, query or quotes: they
/// go into the page's Content-Security-Policy), or empty for the page's own origin.
fn web_gateway_urls(raw: &str) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for url in raw.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .unwrap_or("");
        let host = rest.strip_suffix('/').unwrap_or(rest);
        let valid = !host.is_empty()
            && host.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            });
        if !valid {
            return Err(invalid(
                "WEB_GATEWAY_URL",
                format!(
                    "must be empty or comma-separated http(s)://host[:port] origins, got {url:?}"
                ),
            ));
        }
        out.push(url.trim_end_matches('/').to_owned());
    }
    Ok(out)
}

/// A replica's name (in Redis keys and consumer groups): 1 to 128 printable ASCII characters.
fn check_name(var: &'static str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 128 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            var,
            "must be 1 to 128 printable ASCII characters without spaces",
        ));
    }
    Ok(())
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        reason: reason.into(),
    }
}

struct Reader<'a, F: Fn(&str) -> Option<String>> {
    get: &'a F,
}

impl<F: Fn(&str) -> Option<String>> Reader<'_, F> {
    fn string(&self, name: &str, default: &str) -> String {
        (self.get)(name).unwrap_or_else(|| default.to_owned())
    }

    fn num<T>(&self, name: &'static str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let Some(raw) = (self.get)(name) else {
            return Ok(default);
        };
        let v: T = raw
            .trim()
            .parse()
            .map_err(|_| invalid(name, format!("must be a number, got {raw:?}")))?;
        if v < min || v > max {
            return Err(invalid(
                name,
                format!("must be between {min} and {max}, got {v}"),
            ));
        }
        Ok(v)
    }

    fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match (self.get)(name).as_deref().map(str::trim) {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off" | "") => Ok(false),
            Some(other) => Err(invalid(
                name,
                format!("must be true or false, got {other:?}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_map(&map)
    }

    #[test]
    fn defaults_work_locally() {
        let c = cfg(&[]).expect("defaults are valid");
        assert_eq!(c.api_port, 8080);
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        assert_eq!(c.message_rate_limit, 5);
        assert_eq!(c.redis_prefix, "chat");
    }

    #[test]
    fn a_redis_cluster_is_named_by_its_seed_nodes() {
        let c = cfg(&[]).expect("defaults are valid");
        assert_eq!(c.redis_url.expose(), "redis://127.0.0.1:6379");
        assert_eq!(c.redis_wait_replicas, None);
        assert_eq!(c.redis_wait_timeout, Duration::from_millis(500));
        assert_eq!(c.shards, 8);
        let c = cfg(&[
            ("REDIS_URL", "redis://ignored:6379"),
            ("REDIS_CLUSTER_NODES", "127.0.0.1:7000,127.0.0.1:7001 "),
            ("REDIS_WAIT_REPLICAS", "0"),
            ("REDIS_WAIT_TIMEOUT_MS", "250"),
        ])
        .expect("valid");
        assert_eq!(
            c.redis_url.expose(),
            "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"
        );
        assert_eq!(c.redis_wait_replicas, Some(0));
        assert_eq!(c.redis_wait_timeout, Duration::from_millis(250));
        assert_eq!(c.shards, 16, "a cluster spreads rooms over more slots");
        let c = cfg(&[("REDIS_URL", "redis+cluster://h:7000"), ("SHARDS", "64")]).expect("valid");
        assert_eq!(c.redis_url.expose(), "redis+cluster://h:7000");
        assert_eq!(c.shards, 64);
    }

    #[test]
    fn web_client_settings() {
        let c = cfg(&[]).expect("defaults are valid");
        assert_eq!(c.web_dir.as_deref(), Some("web/dist"));
        assert_eq!(c.web_gateway_urls, ["http://localhost:3000"]);
        let c = cfg(&[
            ("WEB_DIR", ""),
            ("WEB_GATEWAY_URL", " http://a:3000/, https://b.example "),
        ])
        .expect("valid");
        assert_eq!(c.web_dir, None);
        assert_eq!(c.web_gateway_urls, ["http://a:3000", "https://b.example"]);
        let c = cfg(&[("WEB_GATEWAY_URL", "")]).expect("same origin");
        assert!(c.web_gateway_urls.is_empty());
    }

    #[test]
    fn production_requires_real_secrets() {
        let e = cfg(&[("APP_ENV", "production")]).expect_err("no secret");
        assert!(e.to_string().contains("JWT_SECRET"));
        let e = cfg(&[("APP_ENV", "production"), ("JWT_SECRET", DEV_JWT_SECRET)])
            .expect_err("dev secret");
        assert!(e.to_string().contains("JWT_SECRET"));
        let secret = "a-real-production-secret-that-is-long-enough";
        let e = cfg(&[("APP_ENV", "production"), ("JWT_SECRET", secret)]).expect_err("no db url");
        assert!(e.to_string().contains("DATABASE_URL"));
        cfg(&[
            ("APP_ENV", "production"),
            ("JWT_SECRET", secret),
            ("DATABASE_URL", "mysql://u:p@db/chat"),
        ])
        .expect("complete production config");
    }

    #[test]
    fn invalid_values_are_reported_by_name() {
        for (k, v) in [
            ("API_PORT", "70000"),
            ("API_PORT", "abc"),
            ("JWT_SECRET", "short"),
            ("LOG_FORMAT", "xml"),
            ("RUN_MIGRATIONS", "maybe"),
            ("REDIS_URL", "http://x"),
            ("REDIS_URL", "redis+cluster://"),
            ("REDIS_CLUSTER_NODES", " , "),
            ("REDIS_WAIT_REPLICAS", "-1"),
            ("REDIS_WAIT_TIMEOUT_MS", "0"),
            ("REDIS_PREFIX", "a b"),
            ("BIND_HOST", "nowhere"),
            ("WORKER_BATCH_SIZE", "0"),
            ("WORKER_BATCH_SIZE", "20000"),
            ("WORKER_BATCH_MAX_WAIT_MS", "-1"),
            ("WORKER_CLAIM_IDLE_MS", "5"),
            ("WORKER_CONSUMER", "two words"),
            ("WORKER_CONSUMER", ""),
            ("WORKER_RETRY_MAX_MS", "0"),
            ("PRESENCE_HEARTBEAT_SECS", "30"),
            ("GATEWAY_ID", "a b"),
            ("SEND_QUEUE_CAPACITY", "1"),
            ("RECENT_LOG_SIZE", "x"),
            ("JOIN_ONLINE_LIST_MAX", "-1"),
            ("WEB_GATEWAY_URL", "ws://localhost:3000"),
            ("WEB_GATEWAY_URL", "http://x/path"),
            ("WEB_GATEWAY_URL", "http://x\"; script-src *"),
        ] {
            let e = cfg(&[(k, v)]).expect_err(k);
            assert!(e.to_string().starts_with(k), "{e}");
        }
    }

    #[test]
    fn worker_settings_have_defaults_and_can_be_set() {
        let c = cfg(&[("HOSTNAME", "pod-7")]).expect("defaults are valid");
        assert_eq!(c.worker.batch_size, 1000);
        assert_eq!(c.worker.batch_max_wait, Duration::from_millis(20));
        assert_eq!(c.worker.claim_idle, Duration::from_secs(30));
        assert_eq!(c.worker.consumer, format!("pod-7-{}", std::process::id()));
        let c = cfg(&[
            ("WORKER_BATCH_SIZE", "250"),
            ("WORKER_BATCH_MAX_WAIT_MS", "0"),
            ("WORKER_CLAIM_IDLE_MS", "1500"),
            ("WORKER_CONSUMER", "worker-a"),
            ("WORKER_RETRY_MAX_MS", "200"),
        ])
        .expect("valid");
        assert_eq!(c.worker.batch_size, 250);
        assert_eq!(c.worker.batch_max_wait, Duration::ZERO);
        assert_eq!(c.worker.claim_idle, Duration::from_millis(1500));
        assert_eq!(c.worker.consumer, "worker-a");
        assert_eq!(c.worker.retry_max_backoff, Duration::from_millis(200));
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let c = cfg(&[
            ("JWT_SECRET", "super-secret-value-that-is-long-enough-123"),
            ("DATABASE_URL", "mysql://chat:hunter2@db/chat"),
        ])
        .expect("valid");
        let printed = format!("{c:?}");
        assert!(!printed.contains("super-secret-value"));
        assert!(!printed.contains("hunter2"));
    }
}
