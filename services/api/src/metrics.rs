//! The API's metrics, in atomics, written out in the Prometheus text format at `/metrics`.
//!
//! Requests are counted by **route template** (axum's matched path, e.g. `/api/v1/rooms/{id}`; requests
//! no route matched are `unmatched`) and status, so the label set is bounded by the routes the API
//! defines. MySQL and Redis failures are counted where the API turns them into a 5xx (or, for the rate
//! limiter, lets a request through without Redis).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The route label of requests no route matched.
pub const UNMATCHED: &str = "unmatched";

/// Upper bounds (seconds) of the request-duration histogram.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Status codes 100..=599, one counter each.
const STATUSES: usize = 500;

/// Which dependency a failed request failed on; set by [`crate::http::error::ApiError`] on its
/// response, counted by the metrics middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Mysql,
    Redis,
}

struct RouteStats {
    statuses: Box<[AtomicU64]>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl RouteStats {
    fn new() -> Self {
        Self {
            statuses: (0..STATUSES).map(|_| AtomicU64::new(0)).collect(),
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

/// Counters of one API process.
#[derive(Default)]
pub struct Metrics {
    routes: RwLock<HashMap<String, Arc<RouteStats>>>,
    pub mysql_errors: AtomicU64,
    pub redis_errors: AtomicU64,
}

impl Metrics {
    /// Records one request of `route` (a template, or [`UNMATCHED`]) answered with `status`.
    pub fn observe(&self, route: &str, status: u16, took: Duration) {
        let stats = self.route(route);
        let i = usize::from(status.clamp(100, 599) - 100);
        stats.statuses[i].fetch_add(1, Relaxed);
        let s = took.as_secs_f64();
        if let Some(b) = BUCKETS.iter().position(|b| s <= *b) {
            stats.buckets[b].fetch_add(1, Relaxed);
        }
        stats.count.fetch_add(1, Relaxed);
        stats
            .sum_us
            .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Counts a failure of `dep`.
    pub fn dependency_error(&self, dep: Dependency) {
        match dep {
            Dependency::Mysql => self.mysql_errors.fetch_add(1, Relaxed),
            Dependency::Redis => self.redis_errors.fetch_add(1, Relaxed),
        };
    }

    fn route(&self, route: &str) -> Arc<RouteStats> {
        if let Some(s) = self.routes.read().ok().and_then(|m| m.get(route).cloned()) {
            return s;
        }
        match self.routes.write() {
            Ok(mut m) => Arc::clone(
                m.entry(route.to_owned())
                    .or_insert_with(|| Arc::new(RouteStats::new())),
            ),
            // A poisoned lock (a panic while inserting): count into a throw-away entry.
            Err(_) => Arc::new(RouteStats::new()),
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut routes: Vec<(String, Arc<RouteStats>)> = self
            .routes
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), Arc::clone(v))).collect())
            .unwrap_or_default();
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        let mut o = String::with_capacity(4096 + routes.len() * 1024);
        let _ = writeln!(
            o,
            "# HELP chat_api_http_requests_total HTTP requests answered, by route template and status.\n\
             # TYPE chat_api_http_requests_total counter"
        );
        for (route, s) in &routes {
            let route = escape(route);
            for (i, c) in s.statuses.iter().enumerate() {
                let n = c.load(Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        o,
                        "chat_api_http_requests_total{{route=\"{route}\",status=\"{}\"}} {n}",
                        i + 100
                    );
                }
            }
        }
        let _ = writeln!(
            o,
            "# HELP chat_api_http_request_duration_seconds Time from routing a request to its response, by route template.\n\
             # TYPE chat_api_http_request_duration_seconds histogram"
        );
        for (route, s) in &routes {
            let route = escape(route);
            let name = "chat_api_http_request_duration_seconds";
            let mut cum = 0;
            for (b, n) in BUCKETS.iter().zip(&s.buckets) {
                cum += n.load(Relaxed);
                let _ = writeln!(o, "{name}_bucket{{route=\"{route}\",le=\"{b}\"}} {cum}");
            }
            let count = s.count.load(Relaxed);
            #[allow(clippy::cast_precision_loss)]
            let sum = s.sum_us.load(Relaxed) as f64 / 1e6;
            let _ = writeln!(
                o,
                "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}\n\
                 {name}_sum{{route=\"{route}\"}} {sum}\n{name}_count{{route=\"{route}\"}} {count}"
            );
        }
        for (name, help, v) in [
            (
                "chat_api_mysql_errors_total",
                "MySQL failures that made a request fail.",
                self.mysql_errors.load(Relaxed),
            ),
            (
                "chat_api_redis_errors_total",
                "Redis failures: requests that failed on Redis, and rate-limit checks skipped because Redis did not answer.",
                self.redis_errors.load(Relaxed),
            ),
            (
                "chat_api_unsaved_trimmed_total",
                "Messages MySQL did not have yet trimmed from a room's Redis log at its hard cap (10 x RECENT_LOG_SIZE): missing from history until the worker stores them.",
                chat_realtime::unsaved_trimmed_total(),
            ),
            (
                "chat_api_unreplicated_acks_total",
                "Writes acknowledged with fewer Redis replicas than REDIS_WAIT_REPLICAS because their master had fewer (after a failover, until a replacement replica synced).",
                chat_realtime::unreplicated_acks_total(),
            ),
        ] {
            let _ = writeln!(
                o,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        o
    }
}

/// A label value as the exposition format wants it.
fn escape(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains(['\\', '"', '\n']) {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .into()
    } else {
        v.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_every_series_with_bounded_labels() {
        let m = Metrics::default();
        m.observe("/api/v1/rooms/{id}", 200, Duration::from_millis(3));
        m.observe("/api/v1/rooms/{id}", 200, Duration::from_millis(30));
        m.observe("/api/v1/rooms/{id}", 404, Duration::from_millis(1));
        m.observe(UNMATCHED, 404, Duration::from_micros(200));
        m.dependency_error(Dependency::Mysql);
        let text = m.render();
        for line in [
            "chat_api_http_requests_total{route=\"/api/v1/rooms/{id}\",status=\"200\"} 2",
            "chat_api_http_requests_total{route=\"/api/v1/rooms/{id}\",status=\"404\"} 1",
            "chat_api_http_requests_total{route=\"unmatched\",status=\"404\"} 1",
            "chat_api_http_request_duration_seconds_bucket{route=\"/api/v1/rooms/{id}\",le=\"0.005\"} 2",
            "chat_api_http_request_duration_seconds_bucket{route=\"/api/v1/rooms/{id}\",le=\"+Inf\"} 3",
            "chat_api_http_request_duration_seconds_count{route=\"unmatched\"} 1",
            "chat_api_mysql_errors_total 1",
            "chat_api_redis_errors_total 0",
            "# TYPE chat_api_unsaved_trimmed_total counter",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert_eq!(escape("a\"b"), "a\\\"b");
    }

    #[test]
    fn every_api_name_of_the_contract_is_rendered() {
        // Read at run time: the image's build context has no scripts/.
        let contract = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/ops/metrics.txt"
        ))
        .expect("scripts/ops/metrics.txt");
        let m = Metrics::default();
        m.observe("/health", 200, Duration::from_millis(1));
        let text = m.render();
        let names: Vec<&str> = contract
            .lines()
            .filter(|l| l.starts_with("api "))
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        assert_eq!(names.len(), 6);
        for n in names {
            assert!(text.contains(&format!("# TYPE {n} ")), "{n} missing");
        }
    }
}
