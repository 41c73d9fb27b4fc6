//! The worker's metrics, kept in atomics and written out in the Prometheus text format at `/metrics`.
//!
//! Hand-written rather than through a metrics crate: a dozen series, no labels beyond `shard` and
//! `event`, and the commit-lag histogram is kept at 1 ms resolution so the benchmark can read exact
//! percentiles from the same numbers the dashboard sees.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Event types, in the order of [`Metrics::events`].
pub const EVENT_NAMES: [&str; 6] = [
    "message_created",
    "message_edited",
    "message_deleted",
    "read_cursor",
    "delivered_cursor",
    "last_seen",
];

const BATCH_BUCKETS: [u64; 10] = [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000];
const LAG_BUCKETS_MS: [u64; 12] = [
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000,
];
/// Lag is counted per millisecond up to this; slower entries land in the last slot.
const LAG_SLOTS: usize = 60_001;

/// Counters and gauges of one worker process.
pub struct Metrics {
    shards: usize,
    pub batches: AtomicU64,
    batch_size_buckets: [AtomicU64; BATCH_BUCKETS.len()],
    batch_size_sum: AtomicU64,
    /// Rows MySQL reported as written.
    pub rows_written: AtomicU64,
    /// Entries applied, per event type ([`EVENT_NAMES`]).
    pub events: [AtomicU64; 6],
    /// Batches retried because MySQL was unreachable or busy.
    pub retries: AtomicU64,
    /// Refused batches split in halves to isolate a poison entry.
    pub isolations: AtomicU64,
    /// Redis errors (the shard loop reconnects and goes on).
    pub redis_errors: AtomicU64,
    /// Entries moved to a dead-letter stream.
    pub dead_letters: AtomicU64,
    /// Entries of a newer envelope version, left pending for a newer worker.
    pub newer_version: AtomicU64,
    /// Entries taken over from another consumer (`XAUTOCLAIM`).
    pub claimed: AtomicU64,
    /// Entries trimmed from the streams.
    pub trimmed: AtomicU64,
    mysql_write: chat_telemetry::Histogram,
    lag_ms: Box<[AtomicU64]>,
    lag_sum_ms: AtomicU64,
    stream_length: Box<[AtomicI64]>,
    pending: Box<[AtomicI64]>,
    undelivered: Box<[AtomicI64]>,
}

impl Metrics {
    pub fn new(shards: u16) -> Self {
        let shards = usize::from(shards);
        let gauges = || (0..shards).map(|_| AtomicI64::new(-1)).collect();
        Self {
            shards,
            batches: AtomicU64::new(0),
            batch_size_buckets: Default::default(),
            batch_size_sum: AtomicU64::new(0),
            rows_written: AtomicU64::new(0),
            events: Default::default(),
            retries: AtomicU64::new(0),
            isolations: AtomicU64::new(0),
            redis_errors: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            newer_version: AtomicU64::new(0),
            claimed: AtomicU64::new(0),
            trimmed: AtomicU64::new(0),
            mysql_write: chat_telemetry::Histogram::default(),
            lag_ms: (0..LAG_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            lag_sum_ms: AtomicU64::new(0),
            stream_length: gauges(),
            pending: gauges(),
            undelivered: gauges(),
        }
    }

    /// Records a committed batch of `entries` stream entries.
    pub fn observe_batch(&self, entries: usize) {
        let n = entries as u64;
        self.batches.fetch_add(1, Relaxed);
        self.batch_size_sum.fetch_add(n, Relaxed);
        if let Some(i) = BATCH_BUCKETS.iter().position(|b| n <= *b) {
            self.batch_size_buckets[i].fetch_add(1, Relaxed);
        }
    }

    /// Records how long one MySQL batch transaction took (committed or refused).
    pub fn observe_mysql_write(&self, d: std::time::Duration) {
        self.mysql_write.observe(d);
    }

    /// Records the time from an entry's `XADD` to its commit in MySQL.
    pub fn observe_lag_ms(&self, ms: u64) {
        let slot = usize::try_from(ms)
            .unwrap_or(LAG_SLOTS - 1)
            .min(LAG_SLOTS - 1);
        self.lag_ms[slot].fetch_add(1, Relaxed);
        self.lag_sum_ms.fetch_add(ms, Relaxed);
    }

    /// The `q` quantile (0..=1) of the commit lag in ms, and the number of samples.
    pub fn lag_quantile_ms(&self, q: f64) -> (u64, u64) {
        let counts: Vec<u64> = self.lag_ms.iter().map(|c| c.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return (0, 0);
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (ms, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return (ms as u64, total);
            }
        }
        ((LAG_SLOTS - 1) as u64, total)
    }

    pub fn set_shard(&self, shard: u16, length: i64, pending: i64, undelivered: i64) {
        let s = usize::from(shard);
        if s < self.shards {
            self.stream_length[s].store(length, Relaxed);
            self.pending[s].store(pending, Relaxed);
            self.undelivered[s].store(undelivered, Relaxed);
        }
    }

    /// (stream length, pending) of a shard as last sampled; -1 before the first sample.
    pub fn shard(&self, shard: u16) -> (i64, i64) {
        let s = usize::from(shard);
        (
            self.stream_length[s].load(Relaxed),
            self.pending[s].load(Relaxed),
        )
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        let counter = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            &mut o,
            "chat_worker_batches_total",
            "Batches committed to MySQL.",
            self.batches.load(Relaxed),
        );
        counter(
            &mut o,
            "chat_worker_rows_written_total",
            "Rows written to MySQL (as the server counts them).",
            self.rows_written.load(Relaxed),
        );
        counter(
            &mut o,
            "chat_worker_retries_total",
            "Batch attempts that failed because MySQL was unreachable or busy, and were retried.",
            self.retries.load(Relaxed),
        );
        counter(
            &mut o,
            "chat_worker_isolations_total",
            "Refused batches split in halves to isolate an entry that cannot be stored.",
            self.isolations.load(Relaxed),
        );
        counter(
            &mut o,
            "chat_worker_redis_errors_total",
            "Redis errors seen by the shard loops.",
            self.redis_errors.load(Relaxed),
        );
        counter(
            &mut o,
            "chat_worker_dead_letters_total",
            "Stream entries moved to a dead-letter stream.",
            self.dead_letters.load(Relaxed),
        );
        counter(
            &mut o,
            "chat_worker_newer_version_total",
            "Entries of a newer envelope version seen and left pending for a newer worker.",
            self.newer_version.load(Relaxed),
        );
        counter(
            &mut o,
            "chat_worker_claimed_total",
            "Stream entries taken over from idle consumers.",
            self.claimed.load(Relaxed),
        );
        counter(
            &mut o,
            "chat_worker_trimmed_total",
            "Acknowledged entries trimmed from the streams.",
            self.trimmed.load(Relaxed),
        );

        let _ = writeln!(
            o,
            "# HELP chat_worker_events_total Stream entries applied, by event type.\n\
             # TYPE chat_worker_events_total counter"
        );
        for (name, c) in EVENT_NAMES.iter().zip(&self.events) {
            let _ = writeln!(
                o,
                "chat_worker_events_total{{event=\"{name}\"}} {}",
                c.load(Relaxed)
            );
        }

        let _ = writeln!(
            o,
            "# HELP chat_worker_batch_size Stream entries per committed batch.\n\
             # TYPE chat_worker_batch_size histogram"
        );
        let mut cum = 0;
        for (b, c) in BATCH_BUCKETS.iter().zip(&self.batch_size_buckets) {
            cum += c.load(Relaxed);
            let _ = writeln!(o, "chat_worker_batch_size_bucket{{le=\"{b}\"}} {cum}");
        }
        let batches = self.batches.load(Relaxed);
        let _ = writeln!(
            o,
            "chat_worker_batch_size_bucket{{le=\"+Inf\"}} {batches}\n\
             chat_worker_batch_size_sum {}\nchat_worker_batch_size_count {batches}",
            self.batch_size_sum.load(Relaxed)
        );

        let _ = writeln!(
            o,
            "# HELP chat_worker_commit_lag_seconds Time from XADD to the commit of the entry in MySQL.\n\
             # TYPE chat_worker_commit_lag_seconds histogram"
        );
        let counts: Vec<u64> = self.lag_ms.iter().map(|c| c.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        for b in LAG_BUCKETS_MS {
            let upto = usize::try_from(b)
                .unwrap_or(LAG_SLOTS - 1)
                .min(LAG_SLOTS - 1);
            let cum: u64 = counts[..=upto].iter().sum();
            let _ = writeln!(
                o,
                "chat_worker_commit_lag_seconds_bucket{{le=\"{}\"}} {cum}",
                b as f64 / 1000.0
            );
        }
        let _ = writeln!(
            o,
            "chat_worker_commit_lag_seconds_bucket{{le=\"+Inf\"}} {total}\n\
             chat_worker_commit_lag_seconds_sum {}\nchat_worker_commit_lag_seconds_count {total}",
            self.lag_sum_ms.load(Relaxed) as f64 / 1000.0
        );

        self.mysql_write.render(
            &mut o,
            "chat_worker_mysql_write_seconds",
            "Time of one MySQL batch transaction (multi-row statements and commit).",
        );
        let gauge = |o: &mut String, name: &str, help: &str, values: &[AtomicI64]| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (s, v) in values.iter().enumerate() {
                let v = v.load(Relaxed);
                if v >= 0 {
                    let _ = writeln!(o, "{name}{{shard=\"{s}\"}} {v}");
                }
            }
        };
        gauge(
            &mut o,
            "chat_worker_stream_length",
            "Entries in the shard's stream (XLEN), acknowledged ones not yet trimmed included.",
            &self.stream_length,
        );
        gauge(
            &mut o,
            "chat_worker_stream_pending",
            "Entries delivered to a consumer of the persist group and not yet acknowledged.",
            &self.pending,
        );
        gauge(
            &mut o,
            "chat_worker_stream_undelivered",
            "Entries not yet delivered to the persist group (the group's lag).",
            &self.undelivered,
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_millisecond_counts() {
        let m = Metrics::new(2);
        for ms in 1..=100 {
            m.observe_lag_ms(ms);
        }
        assert_eq!(m.lag_quantile_ms(0.99), (99, 100));
        assert_eq!(m.lag_quantile_ms(0.5), (50, 100));
        m.observe_lag_ms(10_000_000);
        assert_eq!(m.lag_quantile_ms(1.0).0, (LAG_SLOTS - 1) as u64);
    }

    #[test]
    fn the_exposition_has_every_series() {
        let m = Metrics::new(2);
        m.observe_batch(7);
        m.observe_lag_ms(3);
        m.set_shard(1, 10, 2, 0);
        let text = m.render();
        for line in [
            "chat_worker_batches_total 1",
            "chat_worker_batch_size_bucket{le=\"10\"} 1",
            "chat_worker_batch_size_sum 7",
            "chat_worker_commit_lag_seconds_bucket{le=\"0.005\"} 1",
            "chat_worker_stream_length{shard=\"1\"} 10",
            "chat_worker_stream_pending{shard=\"1\"} 2",
            "chat_worker_events_total{event=\"message_created\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(
            !text.contains("shard=\"0\""),
            "unsampled shards are omitted"
        );
    }
}
